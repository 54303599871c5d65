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
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ftp-pooler/ftp-pooler/e2e/devstack"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

const (
	seedTask    = `{"task_id":"test-001","src_id":"remote-ftp","src_path":"/test1.txt","dst_id":"local","dst_path":"/data/storage/test1.txt"}`
	seedContent = "Test file content 1\n"
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
	dir, base          string
	broker             *devstack.Broker
	remote, archive    *devstack.FTPServer
	procs              []*proc
	adminAddr, httpURL string
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
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
	var err error
	for _, b := range []string{"dispatcher", "agent"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("%s binary not found in %s: run `make build` first", b, binDir)
		}
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
	cfg := filepath.Join(d.dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`kafka:
  bootstrap_servers:
    - %s
  consumer_group: ftp-pooler
  input_topic: ftp-tasks
  result_topic: ftp-results
  fail_topic: ftp-failures
  dlq_topic: ftp-tasks-dlq

pool:
  max_sessions_per_pod: 100
  max_sessions_per_connection: 10
  session_timeout_seconds: 300

logging:
  level: INFO
  format: text

dispatcher:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  http_listen: 127.0.0.1:0
`, d.broker.Addr)), 0o644); err != nil {
		return err
	}
	conns := filepath.Join(d.dir, "connections.ini")
	if err := os.WriteFile(conns, []byte(fmt.Sprintf(`[remote-ftp]
type = ftp
host = %s
port = %d
user = ftpuser
pass = ftppass
passive = true

[archive-ftp]
type = ftp
host = %s
port = %d
user = archive
pass = s3cret;%%pass

[local]
type = local
base_path = %s
`, d.remote.Host, d.remote.Port, d.archive.Host, d.archive.Port, d.base)), 0o644); err != nil {
		return err
	}

	fmt.Println("FTP Pooler demo")
	fmt.Printf("  kafka (embedded)     %s\n", d.broker.Addr)
	fmt.Printf("  remote-ftp           %s  serving %s\n", d.remote.Addr, d.remote.Root)
	fmt.Printf("  archive-ftp          %s  serving %s\n", d.archive.Addr, d.archive.Root)
	fmt.Printf("  local                %s\n", d.base)
	fmt.Printf("  config               %s, %s\n", cfg, conns)

	// The dispatcher picks free ports and logs them; read them from its log.
	disp, err := d.spawn("dispatcher", filepath.Join(binDir, "dispatcher"), "--config", cfg, "--connections", conns, "--instance-id", "demo-dispatcher")
	if err != nil {
		return err
	}
	leaseAddr, err := waitLogValue(disp.log, "lease_address=", 15*time.Second)
	if err != nil {
		return fmt.Errorf("dispatcher did not start (log %s): %w", disp.log, err)
	}
	if d.adminAddr, err = waitLogValue(disp.log, "admin_address=", time.Second); err != nil {
		return err
	}
	httpAddr, err := waitLogValue(disp.log, "http_address=", time.Second)
	if err != nil {
		return err
	}
	d.httpURL = "http://" + httpAddr
	fmt.Printf("  dispatcher           pid %d, agents connect to %s, admin %s, http %s\n", disp.cmd.Process.Pid, leaseAddr, d.adminAddr, httpAddr)
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("agent-%d", i)
		a, err := d.spawn(name, filepath.Join(binDir, "agent"), "--config", cfg, "--connections", conns,
			"--dispatcher", leaseAddr, "--slots", "4", "--agent-id", "demo-"+name)
		if err != nil {
			return err
		}
		fmt.Printf("  %-20s pid %d\n", name, a.cmd.Process.Pid)
	}
	fmt.Printf("  logs                 %s/*.log\n", d.dir)
	return nil
}

func (d *demo) spawn(name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(d.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "FTP_POOLER_CONFIG=", "FTP_POOLER_CONNECTIONS=")
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	f.Close()
	p := &proc{name: name, cmd: cmd, log: logPath}
	d.procs = append(d.procs, p)
	return p, nil
}

// waitLogValue finds key=value in a text log.
func waitLogValue(path, key string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if i := bytes.Index(b, []byte(key)); i >= 0 {
			rest := string(b[i+len(key):])
			if j := strings.IndexAny(rest, " \n"); j > 0 {
				return strings.Trim(rest[:j], `"`), nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("%s not logged within %s", key, timeout)
}

func (d *demo) waitReady(ctx context.Context) error {
	conn, err := grpc.NewClient(d.adminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	admin := adminv1.NewAdminServiceClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		agents, err := admin.ListAgents(ctx, &adminv1.ListAgentsRequest{})
		ready := err == nil && len(agents.Agents) == 2
		if resp, err := http.Get(d.httpURL + "/readyz"); err == nil {
			resp.Body.Close()
			ready = ready && resp.StatusCode == http.StatusOK
		} else {
			ready = false
		}
		if ready {
			fmt.Println("ready: dispatcher joined its consumer group, 2 agents connected")
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the dispatcher and agents did not become ready within 20s; see the logs")
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
	got := map[string]devstack.Message{}
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
`, d.broker.Addr, d.adminAddr, d.httpURL)
}

// stop sends SIGTERM to every child (their graceful shutdown path) and
// waits, then stops the embedded servers.
func (d *demo) stop() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s exited: %v (log %s)\n", p.name, err, p.log)
			}
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			fmt.Fprintf(os.Stderr, "%s did not stop within 20s; killed (log %s)\n", p.name, p.log)
		}
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
