// Command demo runs FTP Pooler end to end on one machine with nothing
// installed: an embedded Kafka-protocol broker and embedded FTP servers in
// this process, the real dispatcher and two agents as child processes. It
// submits the original service's seed task plus an upload, an FTP-to-FTP
// relay and a malformed message, prints every outcome as it arrives, checks
// the bytes, and exits 0 when everything is as it should be.
//
// With --keep it stays up and prints how to drive it with kcat and grpcurl.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/devstack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
)

const (
	seedTask    = kafka.SeedTask
	seedContent = kafka.SeedContent
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	binDir := flag.String("bin", "bin", "directory holding the dispatcher and agent binaries")
	keep := flag.Bool("keep", false, "keep running after the demo (make dev)")
	base := flag.String("base", "/data/storage", "base_path of the local endpoint (as in the original's test setup)")
	flag.Parse()
	if err := run(ctx, *binDir, *base, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

type demo struct {
	dir, base       string
	broker          *devstack.Broker
	remote, archive *devstack.FTPServer
	stack           *stack.Stack
}

func run(ctx context.Context, binDir, base string, keep bool) error {
	dir, err := os.MkdirTemp("", "ftp-pooler-demo-")
	if err != nil {
		return err
	}
	d := &demo{dir: dir}
	defer d.stop()
	if err := d.start(binDir, base); err != nil {
		return err
	}
	if err := d.waitReady(ctx); err != nil {
		return err
	}
	if err := d.submitAndCheck(ctx); err != nil {
		return err
	}
	if !keep {
		return nil
	}
	d.printDevHelp()
	<-ctx.Done()
	fmt.Println("\nstopping")
	return nil
}

func (d *demo) start(binDir, base string) error {
	if err := stack.CheckBinaries(binDir); err != nil {
		return err
	}
	d.base = base
	if err := os.MkdirAll(base, 0o755); err != nil {
		d.base = filepath.Join(d.dir, "data/storage")
		fmt.Printf("note: cannot create %s (%v); using %s as the local endpoint's base_path,\n", base, err, d.base)
		fmt.Printf("      so /data/storage/test1.txt lands at %s/data/storage/test1.txt (a path outside the base is taken relative to it)\n", d.base)
		if err := os.MkdirAll(d.base, 0o755); err != nil {
			return err
		}
	}
	var err error
	if d.broker, err = devstack.StartBroker(0); err != nil {
		return err
	}
	if d.remote, err = devstack.StartFTP(filepath.Join(d.dir, "remote-ftp"), "ftpuser", "ftppass"); err != nil {
		return err
	}
	if d.archive, err = devstack.StartFTP(filepath.Join(d.dir, "archive-ftp"), "archive", "s3cret;%pass"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.remote.Root, "test1.txt"), []byte(seedContent), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(d.base, "outbox"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.base, "outbox/report.csv"), []byte("id,amount\n1,42\n"), 0o644); err != nil {
		return err
	}

	// The original service's config.yaml shape: bootstrap_servers as a list.
	cfg := config.Default()
	cfg.Kafka.BootstrapServers = []string{d.broker.Addr}
	cfg.Logging.Format = "text"
	cfg.Dispatcher.Listen, cfg.Dispatcher.AdminListen, cfg.Dispatcher.HTTPListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	conns := config.Connections{
		config.FTP("remote-ftp", d.remote.Host, d.remote.Port, "ftpuser", "ftppass"),
		config.FTP("archive-ftp", d.archive.Host, d.archive.Port, "archive", "s3cret;%pass"),
		config.Local("local", d.base),
	}
	d.stack, err = stack.New(stack.Options{Dir: d.dir, Bin: binDir, Config: cfg, Connections: conns, Comment: "Written by e2e/cmd/demo.",
		InstanceID: "demo-dispatcher", Agents: 2, Slots: 4, AgentID: func(i int) string { return fmt.Sprintf("demo-agent-%d", i+1) }})
	if err != nil {
		return err
	}
	// The user's environment reaches the binaries (OTEL_* for traces, say),
	// all but what would point them at other files.
	for _, p := range d.stack.Procs() {
		p.Inherit, p.Env = true, []string{"FTP_POOLER_CONFIG=", "FTP_POOLER_CONNECTIONS="}
	}

	fmt.Println("FTP Pooler demo")
	fmt.Printf("  kafka (embedded)     %s\n", d.broker.Addr)
	fmt.Printf("  remote-ftp           %s  serving %s\n", d.remote.Addr, d.remote.Root)
	fmt.Printf("  archive-ftp          %s  serving %s\n", d.archive.Addr, d.archive.Root)
	fmt.Printf("  local                %s\n", d.base)
	fmt.Printf("  config               %s, %s\n", d.stack.Files.Config, d.stack.Files.Connections)

	// The dispatcher picks free ports and logs them; read them from its log.
	if err := d.stack.StartDispatcher(15 * time.Second); err != nil {
		return err
	}
	disp := d.stack.Dispatcher
	fmt.Printf("  dispatcher           pid %d, agents connect to %s, admin %s, http %s\n", disp.Pid(), disp.Lease, disp.Admin, disp.HTTP)
	for i, a := range d.stack.Agents {
		if err := d.stack.StartAgent(i, 0); err != nil {
			return err
		}
		fmt.Printf("  %-20s pid %d\n", a.Name, a.Pid())
	}
	fmt.Printf("  logs                 %s/*.log\n", d.dir)
	return nil
}

func (d *demo) waitReady(ctx context.Context) error {
	wait := make(chan error, 1)
	go func() { wait <- d.stack.WaitReady(2, 20*time.Second) }()
	select {
	case err := <-wait:
		if err != nil {
			return fmt.Errorf("the dispatcher and agents did not become ready within 20s (%w); see the logs", err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	fmt.Println("ready: dispatcher joined its consumer group, 2 agents connected")
	return nil
}

func (d *demo) submitAndCheck(ctx context.Context) error {
	prod, err := devstack.NewProducer(d.broker.Addr)
	if err != nil {
		return err
	}
	defer prod.Close()
	cons, err := devstack.NewConsumer([]string{d.broker.Addr}, "ftp-results", "ftp-failures", "ftp-tasks-dlq")
	if err != nil {
		return err
	}
	defer cons.Close()

	messages := []struct{ key, value string }{
		{"test-001", seedTask},
		{"upload-001", `{"task_id":"upload-001","src_id":"local","src_path":"/data/storage/outbox/report.csv","dst_id":"remote-ftp","dst_path":"/incoming/2025-11-25/report.csv"}`},
		{"relay-001", `{"task_id":"relay-001","src_id":"remote-ftp","src_path":"/test1.txt","dst_id":"archive-ftp","dst_path":"/archive/test1.txt","metadata":{"requested_by":"demo"}}`},
		{"bad-001", `not json`},
	}
	if d.base != "/data/storage" {
		// Keep the upload's source path meaningful with a fallback base.
		messages[1].value = strings.Replace(messages[1].value, "/data/storage/outbox", "outbox", 1)
	}
	fmt.Printf("\nproducing %d messages to ftp-tasks:\n", len(messages))
	sent := map[string]time.Time{}
	start := time.Now()
	for _, m := range messages {
		fmt.Printf("  %s\n", m.value)
		sent[m.key] = time.Now()
		if err := prod.Produce(ctx, "ftp-tasks", []byte(m.key), []byte(m.value), nil); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	fmt.Println("\noutcomes (read_committed):")
	got := map[string]kafka.Message{}
	latency := map[string]time.Duration{}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for len(got) < len(messages) {
		msgs, err := cons.Next(waitCtx)
		if err != nil {
			return fmt.Errorf("waiting for outcomes (%d of %d arrived): %w", len(got), len(messages), err)
		}
		for _, m := range msgs {
			key := m.Key
			if m.Topic == "ftp-tasks-dlq" {
				key = "bad-001"
			}
			latency[key] = time.Since(sent[key])
			got[key] = m
			fmt.Printf("  [%5.1f ms] %-14s %s\n", float64(latency[key].Microseconds())/1000, m.Topic, m.Value)
		}
	}
	total := time.Since(start)

	var problems []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	seed := got["test-001"]
	check(seed.Topic == "ftp-results" && seed.Fields["status"] == "success" && seed.Fields["bytes_transferred"] == float64(20),
		"test-001: want a success with bytes_transferred 20, got %s", seed.Value)
	seedPath := filepath.Join(d.base, "test1.txt")
	if d.base != "/data/storage" {
		seedPath = filepath.Join(d.base, "data/storage/test1.txt")
	}
	content, err := os.ReadFile(seedPath)
	check(err == nil && string(content) == seedContent, "%s holds %q (%v), want %q", seedPath, content, err, seedContent)
	check(got["upload-001"].Fields["status"] == "success", "upload-001: %s", got["upload-001"].Value)
	up, err := os.ReadFile(filepath.Join(d.remote.Root, "incoming/2025-11-25/report.csv"))
	check(err == nil && string(up) == "id,amount\n1,42\n", "uploaded file holds %q (%v)", up, err)
	check(got["relay-001"].Fields["status"] == "success", "relay-001: %s", got["relay-001"].Value)
	relayed, err := os.ReadFile(filepath.Join(d.archive.Root, "archive/test1.txt"))
	check(err == nil && string(relayed) == seedContent, "relayed file holds %q (%v)", relayed, err)
	dl := got["bad-001"]
	check(dl.Topic == "ftp-tasks-dlq" && dl.Fields["original_value"] == "not json" && dl.Fields["error_code"] == "INVALID_JSON",
		"bad-001: want a DLQ message keeping the original bytes, got %s", dl.Value)

	sum := sha256.Sum256(content)
	fmt.Printf("\nsummary: %d outcomes in %s (3 succeeded, 1 dead-lettered); test-001 took %.1f ms from produce to outcome; %s holds the source's 20 bytes (sha256 %x)\n",
		len(got), total.Round(time.Millisecond), float64(latency["test-001"].Microseconds())/1000, seedPath, sum[:8])
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	fmt.Println("demo passed")
	return nil
}

func (d *demo) printDevHelp() {
	fmt.Printf(`
The stack keeps running (Ctrl-C stops it). Try:

  # submit a task (kcat from Debian's kcat package)
  echo '{"task_id":"t-2","src_id":"remote-ftp","src_path":"/test1.txt","dst_id":"local","dst_path":"copy-2.txt"}' \
    | kcat -P -b %[1]s -t ftp-tasks -k t-2
  # read outcomes as a consumer should: read_committed
  kcat -C -b %[1]s -t ftp-results -X isolation.level=read_committed -o beginning -e

  # admin API (grpcurl from github.com/fullstorydev/grpcurl; reflection is on)
  grpcurl -plaintext %[2]s list
  grpcurl -plaintext %[2]s ftppooler.admin.v1.AdminService/ListAgents
  grpcurl -plaintext -d '{"task_id":"t-2"}' %[2]s ftppooler.admin.v1.AdminService/GetTask
  grpcurl -plaintext %[2]s ftppooler.admin.v1.AdminService/GetStats

  # metrics and health
  curl -s %[3]s/metrics | grep ^ftp_pooler_
  curl -s %[3]s/readyz
`, d.broker.Addr, d.stack.Dispatcher.Admin, "http://"+d.stack.Dispatcher.HTTP)
}

// stop sends SIGTERM to every child (their graceful shutdown path), the
// agents first, and waits, then stops the embedded servers.
func (d *demo) stop() {
	if d.stack != nil {
		procs := d.stack.Procs()
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			if p.Starts() == 0 {
				continue
			}
			if err := p.Stop(20 * time.Second); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v (log %s)\n", p.Name, err, p.LogPath)
			}
		}
		d.stack.Close()
	}
	if d.remote != nil {
		d.remote.Close()
	}
	if d.archive != nil {
		d.archive.Close()
	}
	if d.broker != nil {
		d.broker.Close()
	}
}
