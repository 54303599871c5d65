// Command bench is `make bench` and `make bench-smoke`: it measures FTP
// Pooler end to end — the real bin/dispatcher and bin/agent as separate
// processes, real Kafka (the embedded broker when none answers) and vsftpd
// on loopback — side by side with the limits in the same run: curl over
// reused connections, a plain pooled jlaffaye/ftp program
// (e2e/cmd/ftpfetch), and curl for one 1 GiB file; for SFTP, OpenSSH's sshd
// beside its own sftp client and ftpfetch -sftp (plain pkg/sftp).
//
// It prints markdown tables (medians of several runs, with their spread),
// and in full mode writes them to BENCHMARKS.md with the machine, versions
// and command, plus a PNG chart of throughput against connections.
//
// Smoke mode (`make bench-smoke`, for CI, under 2 minutes) runs 2,000
// small downloads and exits 1 when FTP Pooler's throughput falls below half
// of the pooled baseline measured in the same run.
//
// The servers come from scripts/e2e (scripts/bench/run.sh starts them); the
// addresses are read from <state>/env like the end-to-end suite does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

type options struct {
	smoke      bool
	reps       int
	bin        string
	out        string
	chart      string
	embedded   bool
	logLevel   string
	keepFiles  bool
	only       string
	conns      int
	agents     int
	scaleCount int
	idleCount  int
	smokeRatio float64
	workloads  string
	deliveries string
	divide     int
	agentConns int
	noFsync    bool
	// pprofDir, when set, receives CPU profiles of every measured run.
	pprofDir     string
	pprofSeconds int
	// set overrides config.yaml keys of every stack ("section.key=value").
	set configSets
}

type bench struct {
	opts      options
	env       *benchEnv
	kafka     *kafkaIO
	localBase string
	ftpfetch  string
	runID     string
	runSeq    int
	started   time.Time
	res       *results
	logLevel  string
	trash     [][2]string
	// version is the checkout's, read before the report is first written
	// into it (which would make every run "-dirty").
	version string
}

func main() {
	var o options
	flag.BoolVar(&o.smoke, "smoke", false, "the short CI check: 2,000 small downloads, fail below -smoke-ratio of the pooled baseline")
	flag.IntVar(&o.reps, "reps", 0, "runs of each measurement (default 3, smoke 2)")
	flag.StringVar(&o.bin, "bin", "", "directory of the dispatcher and agent binaries (default <repo>/bin)")
	flag.StringVar(&o.out, "out", "", "markdown report to write (default BENCHMARKS.md at the repository root; none in smoke mode)")
	flag.StringVar(&o.chart, "chart", "", "PNG chart to write (default docs/bench-throughput.png; none in smoke mode)")
	flag.BoolVar(&o.embedded, "embedded", false, "use the embedded broker even if Kafka answers")
	flag.StringVar(&o.logLevel, "log-level", "INFO", "logging.level of the dispatcher and agents")
	flag.BoolVar(&o.keepFiles, "keep-files", false, "keep the file sets (several GiB) for the next run")
	flag.StringVar(&o.only, "only", "", "comma-separated sections (baselines,large,workloads,idle,nofsync,scaling,memory,sftp,sftp-memory,ceiling,leases) to run; default all")
	flag.IntVar(&o.conns, "conns", 4, "connections per endpoint for the workloads (and the baselines' parallelism)")
	flag.IntVar(&o.agents, "agents", 1, "agents for the workloads")
	flag.IntVar(&o.scaleCount, "scale-count", 3000, "20 B files per scaling run")
	flag.IntVar(&o.idleCount, "idle-count", 50, "single tasks per idle-latency measurement")
	flag.Float64Var(&o.smokeRatio, "smoke-ratio", 0.5, "smoke mode fails below this share of the pooled baseline")
	flag.StringVar(&o.workloads, "workloads", "", "comma-separated workloads to run (w20B,w100K,w4M,w1G; default all)")
	flag.StringVar(&o.deliveries, "deliveries", "", "comma-separated delivery modes to run (txn,alo; default both)")
	flag.IntVar(&o.agentConns, "agent-conns", 0, "experiment: the agents' own max_connections, below -conns (leases prefetched ahead of free connections)")
	fsync := flag.Bool("fsync", true, "FTP Pooler's transfer.fsync in the workload and large-file stacks (false: what durability costs, beside baselines that never fsync)")
	flag.StringVar(&o.pprofDir, "pprof", "", "`directory` for CPU profiles of the dispatcher and agents, taken over the first -pprof-seconds of each measured run")
	flag.IntVar(&o.pprofSeconds, "pprof-seconds", 5, "length of each -pprof profile")
	flag.Var(&o.set, "set", "`section.key=value` for every stack's config.yaml (repeatable; the value is read as the key's type), e.g. -set lease.leases_per_connection=4")
	flag.IntVar(&o.divide, "divide", 1, "divide every file count by this, for a quick trial of the whole benchmark")
	flag.Parse()
	o.noFsync = !*fsync
	if o.reps == 0 {
		o.reps = 3
		if o.smoke {
			o.reps = 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	finished.Store(true)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// finished is set once run returned, so the interrupt handler stays quiet.
var finished atomic.Bool

var errGate = errors.New("below the smoke gate")

func run(ctx context.Context, o options) error {
	b := &bench{opts: o, runID: strconv.FormatInt(time.Now().Unix()%1e6, 36), started: time.Now(), res: newResults(), logLevel: o.logLevel}
	env, err := loadEnv(o.bin, o.embedded)
	if err != nil {
		return err
	}
	defer env.close()
	b.env = env
	b.version = cmdOutput("git", "-C", env.RepoRoot, "describe", "--tags", "--always", "--dirty")
	b.localBase = filepath.Join(env.Work, "local")
	if err := os.MkdirAll(b.localBase, 0o755); err != nil {
		return err
	}
	if o.pprofDir != "" {
		if b.opts.pprofDir, err = filepath.Abs(o.pprofDir); err != nil {
			return err
		}
		if err := os.MkdirAll(b.opts.pprofDir, 0o755); err != nil {
			return err
		}
	}
	b.logf("Kafka: %s at %s; vsftpd at %s; pure-ftpd at %s", env.KafkaKind, env.Kafka, env.VSFTPD.Addr, orNone(env.PureFTPD.Addr))
	b.ftpfetch = filepath.Join(env.Work, "ftpfetch")
	build := exec.Command("go", "build", "-o", b.ftpfetch, "./e2e/cmd/ftpfetch")
	build.Dir = env.RepoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build ftpfetch: %v: %s", err, out)
	}
	if b.kafka, err = newKafkaIO(env.Kafka); err != nil {
		return err
	}
	defer b.kafka.close()
	defer func() {
		for _, t := range b.trash {
			b.removeRun(t[0], t[1])
		}
		_ = os.RemoveAll(filepath.Join(b.localBase, "dl"))
		_ = os.RemoveAll(b.env.VSFTPD.Path("/bench-up"))
		if b.env.PureFTPD.Addr != "" {
			_ = os.RemoveAll(b.env.PureFTPD.Path("/bench-up"))
		}
		if b.env.SFTP.Addr != "" {
			_ = os.RemoveAll(b.env.SFTP.Path(sftpUploads + "/bench-up"))
		}
	}()
	go func() {
		<-ctx.Done()
		if finished.Load() {
			return
		}
		b.logf("interrupted: stopping the dispatcher and agents")
		activeMu.Lock()
		var running []*pooler
		for s := range active {
			running = append(running, s)
		}
		activeMu.Unlock()
		for _, s := range running {
			s.stop()
		}
		os.Exit(130)
	}()
	if o.smoke {
		return b.smoke(ctx)
	}
	return b.full(ctx)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) section(name string) bool { return listed(b.opts.only, name) }

// listed reports whether name is in the comma-separated list (or it is empty).
func listed(list, name string) bool {
	if list == "" {
		return true
	}
	for _, s := range strings.Split(list, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

var deliveries = []struct{ key, config, title string }{
	{"txn", "exactly_once", "transactional"},
	{"alo", "at_least_once", "at-least-once"},
}

// smoke is the CI check.
func (b *bench) smoke(ctx context.Context) error {
	w := workload{name: "w20B", count: 2000, size: 20}
	if err := b.ensureFiles(w); err != nil {
		return err
	}
	b.res.workloads = []workload{w}
	b.res.directions = []direction{download}
	b.res.conns = b.opts.conns
	// The gate compares the pipeline with the pooled program doing the same
	// work: neither fsyncs (the disk's flush latency is not what CI should
	// measure; the full benchmark shows the defaults and fsync's share).
	fmt.Println("smoke: FTP Pooler runs with transfer.fsync off, like the pooled baseline")
	for _, d := range deliveries {
		if !listed(b.opts.deliveries, d.key) {
			continue
		}
		s, err := b.startStack(stackOpts{name: d.key, delivery: d.config, agents: b.opts.agents, conns: b.opts.conns,
			extra: noFsync})
		if err != nil {
			return err
		}
		err = b.oursReps(ctx, s, d.key, []workload{w}, []direction{download})
		if err == nil {
			err = b.idle(s, d.key, 10)
		}
		s.stop()
		if err != nil {
			return err
		}
	}
	fmt.Println(b.res.markdown(b, false))
	pooled := b.res.get("pooled", w, download).med(func(s sample) float64 { return s.rate })
	fail := false
	for _, d := range deliveries {
		ours := b.res.get(d.key, w, download).med(func(s sample) float64 { return s.rate })
		ratio := b.res.get(d.key, w, download).med(func(s sample) float64 { return s.ratio })
		verdict := "ok"
		if ratio < b.opts.smokeRatio {
			verdict, fail = "FAIL", true
		}
		fmt.Printf("smoke: %s (fsync off) %.0f tasks/s; median of the ratios to the pooled baseline run just before each: %.0f%% (pooled median %.0f files/s; gate %.0f%%): %s\n",
			d.title, ours, ratio*100, pooled, b.opts.smokeRatio*100, verdict)
	}
	if fail {
		return errGate
	}
	return nil
}

// baselines runs curl and the pooled program once over w.
func (b *bench) baselines(ctx context.Context, w workload, d direction, rep int) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var s sample
	if !b.opts.smoke {
		var err error
		if s, err = b.runCurl(w, d, b.opts.conns); err != nil {
			return err
		}
		b.res.add("curl", w, d, s)
	}
	// The pooled baseline runs paired with FTP Pooler's runs (oursReps).
	b.logf("run %d %s %s: curl %.0f files/s (%.0f MB/s)", rep, w.title(), d, s.rate, s.mbps)
	return nil
}

// oursReps runs each workload and direction reps times on s.
func (b *bench) oursReps(ctx context.Context, s *pooler, key string, ws []workload, ds []direction) error {
	// Warm up: the pools log in, the page cache and the JIT of the broker settle.
	if ws[0].size < 1<<30 {
		if _, err := b.runOurs(s, ws[0], ds[0], min(ws[0].count, 200)); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	for rep := 1; rep <= b.opts.reps; rep++ {
		for _, w := range ws {
			for _, d := range ds {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// The pooled baseline runs just before, so each ratio compares
				// runs under the same load (others share the machine).
				var base sample
				if d != relay && b.section("baselines") {
					var err error
					if base, err = b.runPooled(w, d, s.opts.conns); err != nil {
						return err
					}
					b.res.add("pooled", w, d, base)
				}
				smp, err := b.runOurs(s, w, d, w.count)
				if err != nil {
					return fmt.Errorf("%s %s %s: %w", key, w.title(), d, err)
				}
				if base.rate > 0 {
					smp.ratio = smp.rate / base.rate
				}
				b.res.add(key, w, d, smp)
				b.logf("run %d %s %s %s: %.0f tasks/s (%.0f%% of pooled %.0f just before), %.0f MB/s, p50 %.0f ms, p99 %.0f ms, RSS %.0f/%.0f MiB, CPU %.2f/%.2f s per 1,000",
					rep, key, w.title(), d, smp.rate, smp.ratio*100, base.rate, smp.mbps, smp.p50, smp.p99, smp.rssD, smp.rssA, smp.cpuD, smp.cpuA)
			}
		}
	}
	return nil
}

func (b *bench) idle(s *pooler, key string, n int) error {
	lat, agent, err := b.idleLatency(s, workload{name: "w20B", count: 1, size: 20}, n)
	if err != nil {
		return fmt.Errorf("idle latency (%s): %w", key, err)
	}
	b.res.idle[key] = lat
	b.res.idleAgent[key] = agent
	b.logf("idle latency %s: p50 %.1f ms, p99 %.1f ms over %d tasks; the agent's transfer p50 %.1f ms", key, quantile(lat, 0.5), quantile(lat, 0.99), len(lat), quantile(agent, 0.5))
	return nil
}

// full is `make bench`.
func (b *bench) full(ctx context.Context) error {
	var ws []workload
	for _, w := range fullWorkloads {
		if listed(b.opts.workloads, w.name) {
			w.count = max(1, w.count/b.opts.divide)
			ws = append(ws, w)
		}
	}
	ds := []direction{download, upload}
	b.res.workloads, b.res.directions, b.res.conns = ws, ds, b.opts.conns
	for _, w := range ws {
		if err := b.ensureFiles(w); err != nil {
			return err
		}
	}
	if !b.opts.keepFiles {
		defer func() {
			for _, w := range ws {
				b.removeFiles(w)
			}
		}()
	}
	big := workload{name: "w1G", count: 1, size: 1 << 30}
	if b.section("baselines") {
		for rep := 1; rep <= b.opts.reps; rep++ {
			for _, w := range ws {
				for _, d := range ds {
					if err := b.baselines(ctx, w, d, rep); err != nil {
						return err
					}
				}
			}
		}
	}
	if b.section("large") {
		for rep := 1; rep <= b.opts.reps; rep++ {
			down, err := b.runCurl(big, download, 1)
			if err != nil {
				return err
			}
			b.res.add("curl", big, download, down)
			up, err := b.runCurl(big, upload, 1)
			if err != nil {
				return err
			}
			b.res.add("curl", big, upload, up)
			msg := fmt.Sprintf("run %d curl 1 GiB: RETR %.0f MB/s, STOR %.0f MB/s", rep, down.mbps, up.mbps)
			if b.env.PureFTPD.Addr != "" {
				leg, err := b.runCurlTo(b.env.PureFTPD, big)
				if err != nil {
					return err
				}
				b.res.add("curl-pure", big, upload, leg)
				msg += fmt.Sprintf(", STOR to pure-ftpd %.0f MB/s", leg.mbps)
			}
			b.logf("%s", msg)
		}
	}
	for _, d := range deliveries {
		if !listed(b.opts.deliveries, d.key) {
			continue
		}
		if !b.section("workloads") && !b.section("idle") && !(b.section("large") && d.key == "txn") {
			continue
		}
		opts := stackOpts{name: d.key, delivery: d.config, agents: b.opts.agents, conns: b.opts.conns, agentConns: b.opts.agentConns}
		if b.opts.noFsync {
			opts.extra = noFsync
		}
		s, err := b.startStack(opts)
		if err != nil {
			return err
		}
		err = func() error {
			if b.section("workloads") {
				if err := b.oursReps(ctx, s, d.key, ws, ds); err != nil {
					return err
				}
			}
			if b.section("large") && d.key == "txn" {
				bigDs := []direction{download, upload}
				if b.env.PureFTPD.Addr != "" {
					bigDs = append(bigDs, relay)
				}
				if err := b.oursReps(ctx, s, "txn", []workload{big}, bigDs); err != nil {
					return err
				}
			}
			if b.section("idle") {
				return b.idle(s, d.key, b.opts.idleCount)
			}
			return nil
		}()
		s.stop()
		if err != nil {
			return err
		}
		if _, err := b.writeReport(false); err != nil {
			return err
		}
	}
	if b.section("nofsync") {
		// What durability costs: the small downloads again, at-least-once,
		// with transfer.fsync off (the baselines never fsync).
		var small []workload
		for _, w := range ws {
			if w.size <= 100<<10 {
				small = append(small, w)
			}
		}
		if len(small) > 0 {
			s, err := b.startStack(stackOpts{name: "nofsync", delivery: "at_least_once", agents: b.opts.agents, conns: b.opts.conns,
				extra: noFsync})
			if err != nil {
				return err
			}
			err = b.oursReps(ctx, s, "nofsync", small, []direction{download})
			s.stop()
			if err != nil {
				return err
			}
		}
	}
	if _, err := b.writeReport(false); err != nil {
		return err
	}
	if b.section("scaling") {
		if err := b.scaling(ctx); err != nil {
			return err
		}
		if _, err := b.writeReport(false); err != nil {
			return err
		}
	}
	if b.section("memory") {
		if err := b.memory(ctx); err != nil {
			return err
		}
	}
	if b.section("sftp") || b.section("sftp-memory") {
		if err := b.sftp(ctx); err != nil {
			return err
		}
		if _, err := b.writeReport(false); err != nil {
			return err
		}
	}
	if b.section("ceiling") {
		if err := b.ceiling(); err != nil {
			return err
		}
		if _, err := b.writeReport(false); err != nil {
			return err
		}
	}
	if b.section("leases") {
		r, err := b.leaseThroughput()
		if err != nil {
			return err
		}
		b.res.leases = r
		b.logf("dispatcher alone: %.0f leases/s over gRPC to no-op agents", r)
	}
	md, err := b.writeReport(true)
	if err != nil {
		return err
	}
	fmt.Println(md)
	return nil
}

// writeReport writes BENCHMARKS.md (and the chart) from what was measured
// so far; it runs after every section, so an interrupted run leaves its
// results, marked as partial.
func (b *bench) writeReport(complete bool) (string, error) {
	md := b.res.markdown(b, true)
	if !complete {
		md = "**Partial: the run is still going or was interrupted.**\n\n" + md
	}
	out := b.opts.out
	if out == "" {
		out = filepath.Join(b.env.RepoRoot, "BENCHMARKS.md")
	}
	chart := b.opts.chart
	if chart == "" {
		chart = filepath.Join(b.env.RepoRoot, "docs", "bench-throughput.png")
	}
	if len(b.res.scale) > 0 {
		if err := os.MkdirAll(filepath.Dir(chart), 0o755); err != nil {
			return "", err
		}
		if err := b.res.writeChart(chart); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(out, []byte(b.res.document(b, md, chart)), 0o644); err != nil {
		return "", err
	}
	if complete {
		b.logf("wrote %s and %s", out, chart)
	}
	return md, nil
}

var scaleConns = []int{4, 8, 16}
var scaleAgents = []int{1, 2, 4}

// scaling measures small-file throughput against connections and agents.
func (b *bench) scaling(ctx context.Context) error {
	w := workload{name: "w20B", count: max(1, b.opts.scaleCount/b.opts.divide), size: 20}
	if err := b.ensureFiles(w); err != nil {
		return err
	}
	b.res.scaleWorkload = w
	for _, c := range scaleConns {
		for rep := 1; rep <= b.opts.reps; rep++ {
			cu, err := b.runCurl(w, download, c)
			if err != nil {
				return err
			}
			b.res.addScale("curl", c, cu)
			b.logf("scaling %d conns run %d: curl %.0f files/s", c, rep, cu.rate)
		}
	}
	for _, a := range scaleAgents {
		for _, c := range scaleConns {
			s, err := b.startStack(stackOpts{name: fmt.Sprintf("scale-%da-%dc", a, c), delivery: "exactly_once", agents: a, conns: c})
			if err != nil {
				return err
			}
			err = func() error {
				if _, err := b.runOurs(s, w, download, min(w.count, 500)); err != nil {
					return fmt.Errorf("warm-up: %w", err)
				}
				for rep := 1; rep <= b.opts.reps; rep++ {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					base, err := b.runPooled(w, download, c)
					if err != nil {
						return err
					}
					b.res.addScale("pooled", c, base)
					smp, err := b.runOurs(s, w, download, w.count)
					if err != nil {
						return err
					}
					smp.ratio = smp.rate / base.rate
					b.res.addScale(fmt.Sprintf("ours-%d", a), c, smp)
					b.logf("scaling %d agents %d conns run %d: %.0f tasks/s, %.0f%% of pooled %.0f just before", a, c, rep, smp.rate, smp.ratio*100, base.rate)
				}
				return nil
			}()
			s.stop()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// memory: an agent running 16 concurrent 1 GiB transfers, and a
// dispatcher with 100,000 tasks queued.
func (b *bench) memory(ctx context.Context) error {
	big := workload{name: "w1G", count: 1, size: 1 << 30}
	if err := b.ensureFiles(big); err != nil {
		return err
	}
	s, err := b.startStack(stackOpts{name: "mem-agent", delivery: "exactly_once", agents: 1, conns: 16, slots: 16})
	if err != nil {
		return err
	}
	smp, err := b.runOurs(s, big, download, max(2, 16/b.opts.divide))
	s.stop()
	if err != nil {
		return fmt.Errorf("16 × 1 GiB: %w", err)
	}
	b.res.mem16 = smp
	b.logf("16 concurrent 1 GiB downloads: agent peak RSS %.0f MiB, %.0f MB/s", smp.rssA, smp.mbps)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	s, err = b.startStack(stackOpts{name: "mem-queue", delivery: "exactly_once", agents: 0, conns: 4})
	if err != nil {
		return err
	}
	defer s.stop()
	n := 100_000 / b.opts.divide
	tasks := make([]kafka.Task, n)
	for i := range tasks {
		tasks[i] = kafka.Task{TaskID: fmt.Sprintf("q%s-%d", b.runID, i), SrcID: "vsftpd", SrcPath: remoteSrc(big, 0), DstID: "local", DstPath: fmt.Sprintf("q/%d", i)}
	}
	mem := proc.SampleMemory(100*time.Millisecond, s.Dispatcher.Proc)
	b.kafka.expect(nil)
	if _, err := b.kafka.produce(ctx, tasks); err != nil {
		mem.Stop()
		return err
	}
	// Wait until the dispatcher stops taking records in (its buffer is full
	// or it read everything) and its memory settles.
	var queued uint32
	stable := 0
	for i := 0; i < 300 && stable < 10; i++ {
		time.Sleep(200 * time.Millisecond)
		st, err := s.stats()
		if err != nil {
			continue
		}
		if st.Queued == queued && queued > 0 {
			stable++
		} else {
			stable = 0
		}
		queued = st.Queued
	}
	peak := mem.Stop()[s.Dispatcher.Name].RSS
	b.res.memQueue = float64(peak) / (1 << 20)
	b.res.memQueued = int(queued)
	b.logf("dispatcher with %d tasks produced, %d queued in it: peak RSS %.0f MiB", n, queued, b.res.memQueue)
	return nil
}
