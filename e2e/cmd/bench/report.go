package main

// Results: medians and spreads, the markdown tables and BENCHMARKS.md.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

type series []sample

func (s series) values(f func(sample) float64) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = f(x)
	}
	slices.Sort(out)
	return out
}

// med is the median of a field (0 without samples).
func (s series) med(f func(sample) float64) float64 {
	v := s.values(f)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// spread is "median [min–max]" of a field.
func (s series) spread(f func(sample) float64, _ string) string {
	v := s.values(f)
	if len(v) == 0 {
		return "–"
	}
	m := num(s.med(f))
	if len(v) == 1 {
		return m
	}
	return fmt.Sprintf("%s [%s–%s]", m, num(v[0]), num(v[len(v)-1]))
}

// num formats a figure with sensible precision.
func num(x float64) string {
	switch {
	case x == 0:
		return "0"
	case x < 1:
		return fmt.Sprintf("%.3f", x)
	case x < 10:
		return fmt.Sprintf("%.2f", x)
	case x < 100:
		return fmt.Sprintf("%.1f", x)
	}
	return thousands(int(x + 0.5))
}

func rate(s sample) float64 { return s.rate }

// ratioPct is s's ratio in percent.
func ratioPct(s sample) float64 { return s.ratio * 100 }

// paired is the median [min–max] of the paired ratios, in percent.
func paired(s series) string {
	if len(s) == 0 || s.med(ratioPct) == 0 {
		return "–"
	}
	v := s.values(ratioPct)
	if len(v) == 1 {
		return fmt.Sprintf("%.0f%%", v[0])
	}
	return fmt.Sprintf("%.0f%% [%.0f–%.0f]", s.med(ratioPct), v[0], v[len(v)-1])
}
func mbps(s sample) float64 { return s.mbps }

type results struct {
	workloads     []workload
	directions    []direction
	conns         int
	by            map[string]series
	idle          map[string][]float64
	idleAgent     map[string][]float64
	scale         map[string]map[int]series
	scaleWorkload workload
	mem16         sample
	// sftpSmall is the sftp section's small-file workload; sftpMem16 the
	// agent with 16 concurrent 1 GiB SFTP downloads.
	sftpSmall workload
	sftpMem16 sample
	memQueue  float64
	memQueued int
	leases    float64
	// ceiling is the pipeline with no-op agents, one sample a run of
	// ceilingCount tasks.
	ceiling      series
	ceilingCount int
}

// ftpMeasured reports whether any FTP workload ran (the sftp section's
// results are keyed "sftp-...").
func (r *results) ftpMeasured() bool {
	for k := range r.by {
		if !strings.HasPrefix(k, "sftp-") {
			return true
		}
	}
	return false
}

func newResults() *results {
	return &results{by: map[string]series{}, idle: map[string][]float64{}, idleAgent: map[string][]float64{}, scale: map[string]map[int]series{}}
}

func key(sys string, w workload, d direction) string {
	return fmt.Sprintf("%s|%s-%d|%s", sys, w.name, w.count, d)
}

func (r *results) add(sys string, w workload, d direction, s sample) {
	k := key(sys, w, d)
	r.by[k] = append(r.by[k], s)
}

func (r *results) get(sys string, w workload, d direction) series { return r.by[key(sys, w, d)] }

func (r *results) addScale(sys string, conns int, s sample) {
	if r.scale[sys] == nil {
		r.scale[sys] = map[int]series{}
	}
	r.scale[sys][conns] = append(r.scale[sys][conns], s)
}

func pct(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", a/b*100)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// markdown renders every table measured.
func (r *results) markdown(b *bench, full bool) string {
	var m strings.Builder
	n := b.opts.reps
	fmt.Fprintf(&m, "Kafka: %s. Medians of %d runs, [min–max] after each. %d connections to vsftpd, %d agent(s) with 16 slots; "+
		"FTP Pooler with its defaults (%s, JSON logs at %s).\n\n", b.env.KafkaKind, n, r.conns, b.opts.agents, fsyncNote(b), b.logLevel)

	if r.ftpMeasured() {
		fmt.Fprintf(&m, "### Throughput, files per second\n\n")
		fmt.Fprintf(&m, "| workload | direction | curl -Z, %d reused connections | Go jlaffaye, %d pooled connections | FTP Pooler transactional | FTP Pooler at-least-once | ours ÷ pooled run just before (txn / alo) | at-least-once, `transfer.fsync: false` |\n", r.conns, r.conns)
		m.WriteString("|---|---|---:|---:|---:|---:|---:|---:|\n")
		for _, w := range r.workloads {
			for _, d := range r.directions {
				nf := "–"
				if s := r.get("nofsync", w, d); len(s) > 0 {
					nf = s.spread(rate, "") + " (" + paired(s) + ")"
				}
				fmt.Fprintf(&m, "| %s | %s | %s | %s | %s | %s | %s / %s | %s |\n", w.title(), d,
					r.get("curl", w, d).spread(rate, "%.0f"), r.get("pooled", w, d).spread(rate, "%.0f"),
					r.get("txn", w, d).spread(rate, "%.0f"), r.get("alo", w, d).spread(rate, "%.0f"),
					paired(r.get("txn", w, d)), paired(r.get("alo", w, d)), nf)
			}
		}
		fmt.Fprintf(&m, "\n### FTP Pooler in detail\n\n")
		m.WriteString("Tasks/s from the first task produced to the last outcome read; latency from a task's produce to its outcome's arrival at a read_committed consumer; " +
			"peak RSS sampled every 50 ms; CPU is user + system seconds per 1,000 tasks.\n\n")
		m.WriteString("| workload | direction | delivery | tasks/s | MB/s | latency p50 / p99 (ms) | dispatcher peak RSS (MiB) | agent peak RSS (MiB) | dispatcher CPU s / 1,000 | agent CPU s / 1,000 |\n")
		m.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, w := range r.workloads {
			for _, d := range r.directions {
				for _, dl := range append(deliveries[:len(deliveries):len(deliveries)], struct{ key, config, title string }{"nofsync", "", "at-least-once, fsync off"}) {
					s := r.get(dl.key, w, d)
					if len(s) == 0 {
						continue
					}
					fmt.Fprintf(&m, "| %s | %s | %s | %s | %s | %s / %s | %.0f | %.0f | %s | %s |\n", w.title(), d, dl.title,
						s.spread(rate, ""), s.spread(mbps, ""),
						num(s.med(func(x sample) float64 { return x.p50 })), num(s.med(func(x sample) float64 { return x.p99 })),
						s.med(func(x sample) float64 { return x.rssD }), s.med(func(x sample) float64 { return x.rssA }),
						num(s.med(func(x sample) float64 { return x.cpuD })), num(s.med(func(x sample) float64 { return x.cpuA })))
				}
			}
		}
		m.WriteString("\n")
	}

	if r.ftpMeasured() && len(r.get("pooled", r.workloads[0], r.directions[0])) > 0 {
		m.WriteString("### CPU per 1,000 files (seconds, medians)\n\n")
		m.WriteString("Where the small-file gap comes from on a 2-core machine: client is curl, ftpfetch, or the dispatcher plus the agents; " +
			"FTP server is vsftpd with its session processes; Kafka is the broker (FTP Pooler only).\n\n")
		m.WriteString("| workload | direction | curl: client / FTP server | Go pooled: client / FTP server | transactional: dispatcher + agents / FTP server / Kafka | at-least-once: dispatcher + agents / FTP server / Kafka |\n|---|---|---:|---:|---:|---:|\n")
		cpu := func(s series, withKafka bool) string {
			if len(s) == 0 {
				return "–"
			}
			c := num(s.med(func(x sample) float64 { return x.cpuClient }))
			if withKafka {
				c = num(s.med(func(x sample) float64 { return x.cpuD })) + " + " + num(s.med(func(x sample) float64 { return x.cpuA }))
			}
			out := c + " / " + num(s.med(func(x sample) float64 { return x.cpuFTP }))
			if withKafka {
				out += " / " + num(s.med(func(x sample) float64 { return x.cpuKafka }))
			}
			return out
		}
		for _, w := range r.workloads {
			if w.size > 100<<10 {
				continue
			}
			for _, d := range r.directions {
				fmt.Fprintf(&m, "| %s | %s | %s | %s | %s | %s |\n", w.title(), d, cpu(r.get("curl", w, d), false), cpu(r.get("pooled", w, d), false),
					cpu(r.get("txn", w, d), true), cpu(r.get("alo", w, d), true))
			}
		}
		m.WriteString("\n")
	}

	big := workload{name: "w1G", count: 1, size: 1 << 30}
	if len(r.get("curl", big, download)) > 0 {
		m.WriteString("### Large files: one 1 GiB file, MB/s\n\n")
		m.WriteString("| direction | curl | FTP Pooler (transactional) | ratio | target |\n|---|---:|---:|---:|---|\n")
		for _, d := range []direction{download, upload} {
			c, o := r.get("curl", big, d), r.get("txn", big, d)
			ok := o.med(mbps) >= 0.95*c.med(mbps)
			fmt.Fprintf(&m, "| %s (vsftpd) | %s | %s | %s | ≥ 95%%: %s |\n", d, c.spread(mbps, "%.0f"), o.spread(mbps, "%.0f"), pct(o.med(mbps), c.med(mbps)), verdict(ok))
		}
		if leg := r.get("curl-pure", big, upload); len(leg) > 0 {
			slower := min(r.get("curl", big, download).med(mbps), leg.med(mbps))
			o := r.get("txn", big, relay)
			fmt.Fprintf(&m, "| relay vsftpd → pure-ftpd | slower leg %.0f (RETR %.0f, STOR to pure-ftpd %s) | %s | %s | ≥ 70%%: %s |\n",
				slower, r.get("curl", big, download).med(mbps), leg.spread(mbps, "%.0f"), o.spread(mbps, "%.0f"), pct(o.med(mbps), slower), verdict(o.med(mbps) >= 0.7*slower))
		}
		m.WriteString("\n")
	}

	if len(r.idle) > 0 {
		m.WriteString("### Latency at idle: single 20 B downloads, one at a time\n\n")
		m.WriteString("From the task's produce to its outcome at a read_committed consumer; the last column is the part spent in the agent's transfer (`duration_ms`).\n\n")
		m.WriteString("| delivery | tasks | p50 (ms) | p99 (ms) | target p50 | agent's transfer p50 (ms) |\n|---|---:|---:|---:|---|---:|\n")
		for _, dl := range deliveries {
			lat, ok := r.idle[dl.key]
			if !ok {
				continue
			}
			target := 4.0 // issue 13; the service we replace did 6.0 ms
			if dl.key == "txn" {
				target = 8
			}
			fmt.Fprintf(&m, "| %s | %d | %.1f | %.1f | ≤ %.0f ms: %s | %.1f |\n", dl.title, len(lat), quantile(lat, 0.5), quantile(lat, 0.99), target,
				verdict(quantile(lat, 0.5) <= target), quantile(r.idleAgent[dl.key], 0.5))
		}
		m.WriteString("\n")
	}

	if len(r.scale) > 0 {
		fmt.Fprintf(&m, "### Scaling: %s downloads, files per second\n\n", r.scaleWorkload.title())
		m.WriteString("FTP Pooler transactional; connections are each endpoint's `max_connections` for the whole fleet (the baselines' parallelism).\n\n")
		m.WriteString("| connections | curl -Z | Go jlaffaye pooled | FTP Pooler, 1 agent | 2 agents | 4 agents | best ÷ pooled run just before |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range scaleConns {
			best, bestRatio := 0.0, "–"
			for _, a := range scaleAgents {
				if o := r.scale[fmt.Sprintf("ours-%d", a)][c]; o.med(rate) > best {
					best, bestRatio = o.med(rate), paired(o)
				}
			}
			fmt.Fprintf(&m, "| %d | %s | %s | %s | %s | %s | %s |\n", c, r.scale["curl"][c].spread(rate, "%.0f"), r.scale["pooled"][c].spread(rate, "%.0f"),
				r.scale["ours-1"][c].spread(rate, "%.0f"), r.scale["ours-2"][c].spread(rate, "%.0f"), r.scale["ours-4"][c].spread(rate, "%.0f"),
				bestRatio)
		}
		m.WriteString("\n")
	}

	if r.mem16.rssA > 0 || r.memQueue > 0 || r.leases > 0 || len(r.ceiling) > 0 {
		m.WriteString("### Memory and the dispatcher alone\n\n| measure | result | target |\n|---|---:|---|\n")
		if r.mem16.rssA > 0 {
			fmt.Fprintf(&m, "| agent peak RSS, 16 concurrent 1 GiB downloads (%.0f MB/s) | %.0f MiB | ≤ 100 MiB: %s |\n", r.mem16.mbps, r.mem16.rssA, verdict(r.mem16.rssA <= 100))
		}
		if r.memQueue > 0 {
			fmt.Fprintf(&m, "| dispatcher peak RSS, 100,000 tasks produced (%s held in the dispatcher, the rest left in Kafka by `kafka.max_buffered_tasks`) | %.0f MiB | ≤ 150 MiB: %s |\n",
				thousands(r.memQueued), r.memQueue, verdict(r.memQueue <= 150))
		}
		if r.leases > 0 {
			fmt.Fprintf(&m, "| dispatcher alone: leases/s over real gRPC streams to 4 no-op agents (`BenchmarkLeaseThroughputOverGRPC`) | %s | ≥ 20,000: %s |\n", num(r.leases), verdict(r.leases >= 20000))
		}
		if len(r.ceiling) > 0 {
			rate := func(s sample) float64 { return s.rate }
			cpuD := func(s sample) float64 { return s.cpuD }
			cpuKafka := func(s sample) float64 { return s.cpuKafka }
			fmt.Fprintf(&m, "| pipeline ceiling: Kafka → bin/dispatcher → 4 no-op agents (a fenced commit each, nothing moved) → outcomes on Kafka, exactly-once, %s tasks a run: tasks/s | %s | ≥ 10,000: %s |\n",
				thousands(r.ceilingCount), r.ceiling.spread(rate, ""), verdict(r.ceiling.med(rate) >= 10000))
			fmt.Fprintf(&m, "| the same: CPU s per 1,000 tasks, dispatcher / Kafka broker | %s / %s | ≤ 0.15 / ≤ 0.25: %s / %s |\n",
				num(r.ceiling.med(cpuD)), num(r.ceiling.med(cpuKafka)), verdict(r.ceiling.med(cpuD) <= 0.15), verdict(r.ceiling.med(cpuKafka) <= 0.25))
		}
		m.WriteString("\n")
	}

	m.WriteString(r.sftpMarkdown(b))

	if full && r.ftpMeasured() {
		m.WriteString("### Targets against the pooled client\n\nMedian [min–max] of the ratios of each FTP Pooler run to the pooled baseline run just before it, with the same connections.\n\n| workload | direction | delivery | ours ÷ pooled | target |\n|---|---|---|---:|---|\n")
		for _, w := range r.workloads {
			target := 70.0 // small files
			switch {
			case w.size >= 1<<30:
				target = 85
			case w.size > 100<<10:
				target = 80
			}
			for _, d := range r.directions {
				for _, dl := range deliveries {
					o := r.get(dl.key, w, d)
					if len(o) == 0 {
						continue
					}
					fmt.Fprintf(&m, "| %s | %s | %s | %s | ≥ %.0f%%: %s |\n", w.title(), d, dl.title, paired(o), target, verdict(o.med(ratioPct) >= target))
				}
			}
		}
		m.WriteString("\n")
	}
	return m.String()
}

func cmdOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(v), &kb)
			return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func osName() string {
	b, _ := os.ReadFile("/etc/os-release")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

// document is BENCHMARKS.md.
func (r *results) document(b *bench, tables, chart string) string {
	var d strings.Builder
	d.WriteString("# Benchmarks\n\n")
	d.WriteString("Written by `make bench` (`scripts/bench/run.sh`, which runs `go run ./e2e/cmd/bench`); do not edit by hand — rerun it. " +
		"Everything runs on one machine over loopback: the real `bin/dispatcher` and `bin/agent` as separate processes, " +
		"Kafka, vsftpd and pure-ftpd as started by `scripts/e2e`, and the baselines (curl with `-Z --parallel-max N` over reused connections; " +
		"`e2e/cmd/ftpfetch`, a plain Go program moving the same files with jlaffaye/ftp over N pooled connections, no Kafka, no gRPC, " +
		"and with pkg/sftp over pooled SFTP sessions; OpenSSH's `sftp` client for SFTP's large file). " +
		"Client and servers share the cores, so compare ratios measured in the same run.\n\n")
	fmt.Fprintf(&d, "- **When:** %s, %.0f minutes\n", b.started.UTC().Format("2006-01-02 15:04 MST"), time.Since(b.started).Minutes())
	fmt.Fprintf(&d, "- **Machine:** %d × %s, %s RAM, %s, kernel %s\n", runtime.NumCPU(), cpuModel(), memTotal(), osName(), cmdOutput("uname", "-r"))
	fmt.Fprintf(&d, "- **Versions:** FTP Pooler %s (%s); %s; Kafka: %s; vsftpd %s; pure-ftpd %s; %s; jlaffaye/ftp v0.2.4%s; franz-go (the benchmark's producer and consumer)\n",
		b.version, runtime.Version(), firstLine(cmdOutput("go", "version")),
		b.env.KafkaKind, cmdOutput("dpkg-query", "-W", "-f", "${Version}", "vsftpd"), pureVersion(), firstLine(cmdOutput("curl", "--version")), sftpVersions(b.env))
	fmt.Fprintf(&d, "- **Command:** `%s`\n\n", strings.Join(append([]string{"go run ./e2e/cmd/bench"}, os.Args[1:]...), " "))
	if rel, err := filepath.Rel(b.env.RepoRoot, chart); err == nil && len(r.scale) > 0 {
		fmt.Fprintf(&d, "![small-file throughput against connections](%s)\n\n", rel)
	}
	d.WriteString(tables)
	return d.String()
}

func pureVersion() string {
	v := cmdOutput("sh", "-c", "ls /var/cache/ftp-pooler-e2e/pure-ftpd/*.deb 2>/dev/null | head -1")
	if v == "" || v == "unknown" {
		return "1.0.50 (Debian)"
	}
	base := filepath.Base(v)
	parts := strings.Split(base, "_")
	if len(parts) >= 2 {
		return parts[1]
	}
	return base
}

func fsyncNote(b *bench) string {
	if b.opts.smoke {
		return "except transfer.fsync off, like the pooled baseline"
	}
	if b.opts.noFsync {
		return "except transfer.fsync off (-fsync=false), like the baselines"
	}
	return "transfer.fsync on"
}
