package main

// One measured run of each system over one workload and direction.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

// direction of a run.
type direction string

const (
	download direction = "download" // vsftpd → local disk
	upload   direction = "upload"   // local disk → vsftpd
	relay    direction = "relay"    // vsftpd → pure-ftpd through the agent
	// noopLocal names local paths on both sides, for no-op agents that
	// move nothing (the pipeline ceiling).
	noopLocal direction = "no-op"
)

// sample is one run's figures; unset ones are NaN-free zeros.
type sample struct {
	rate, mbps float64 // files/s, MB/s (10^6 bytes)
	p50, p99   float64 // per-task latency, ms
	rssD, rssA float64 // peak RSS, MiB (dispatcher; largest agent)
	cpuD, cpuA float64 // CPU seconds per 1,000 tasks (dispatcher; all agents)
	// Per 1,000 files too: the client (curl, ftpfetch, or dispatcher plus
	// agents), vsftpd (and pure-ftpd) with its sessions, the Kafka broker.
	cpuClient, cpuFTP, cpuKafka float64
	// ratio is FTP Pooler's rate over the pooled baseline's in the run just
	// before it (0 when none ran).
	ratio float64
}

// serverCPU samples the servers' CPU; the difference of two samples is a
// run's share (other users of the servers add to it, as to any figure here).
type serverCPU struct{ ftp, kafka float64 }

func (b *bench) serverCPU() serverCPU {
	return serverCPU{
		ftp:   b.serverTreeCPU("vsftpd") + b.serverTreeCPU("pureftpd") + b.serverTreeCPU("sftp/sshd"),
		kafka: b.serverTreeCPU("kafka"),
	}
}

// serverTreeCPU is the CPU seconds of a server the scripts started and
// its processes (<state>/<name>.pid).
func (b *bench) serverTreeCPU(name string) float64 {
	return proc.TreeCPU(proc.PIDFile(filepath.Join(b.env.StateDir, name+".pid")))
}

// perThousand sets the server CPU figures of s for n files since c0.
func (b *bench) perThousand(s *sample, c0 serverCPU, n int) {
	c1 := b.serverCPU()
	s.cpuFTP = (c1.ftp - c0.ftp) / float64(n) * 1000
	s.cpuKafka = (c1.kafka - c0.kafka) / float64(n) * 1000
}

// runDirs makes fresh destination directories for a run and returns the
// local one (below the local base) and the FTP one.
func (b *bench) runDirs(tag string) (local, remote string, err error) {
	b.runSeq++
	name := fmt.Sprintf("%s-%s-%d", b.runID, tag, b.runSeq)
	local = "dl/" + name
	remote = "/bench-up/" + name
	if err := os.MkdirAll(filepath.Join(b.localBase, local), 0o755); err != nil {
		return "", "", err
	}
	if err := stack.MkdirOwned(b.env.VSFTPD.Path(remote)); err != nil {
		return "", "", err
	}
	if b.env.PureFTPD.Addr != "" {
		if err := stack.MkdirOwned(b.env.PureFTPD.Path(remote)); err != nil {
			return "", "", err
		}
	}
	if b.env.SFTP.Addr != "" {
		// OpenSSH's sftp client logs in as the key user, FTP Pooler and the
		// pooled program as the password user: both write here.
		d := b.env.SFTP.Path(sftpUploads + remote)
		if err := stack.MkdirOwned(d); err != nil {
			return "", "", err
		}
		if err := os.Chmod(d, 0o777); err != nil {
			return "", "", err
		}
	}
	return local, remote, nil
}

// sftpUploads is where OpenSSH's users may write: "/" is the chroot,
// root's.
const sftpUploads = "/upload"

// remotePath is where an upload path below /bench-up lies on the server
// id.
func remotePath(id, p string) string {
	if id == "openssh" {
		return sftpUploads + p
	}
	return p
}

// cleanRun deletes a run's destination files: at once when they are
// large, else at the end of the benchmark. Deleting thousands of files
// between runs would slow the next runs' file creation (ext4 without a
// journal scans recently deleted inodes when it allocates one).
func (b *bench) cleanRun(local, remote string, bytes int64) {
	if bytes < 256<<20 {
		b.trash = append(b.trash, [2]string{local, remote})
		return
	}
	b.removeRun(local, remote)
}

func (b *bench) removeRun(local, remote string) {
	_ = os.RemoveAll(filepath.Join(b.localBase, local))
	_ = os.RemoveAll(b.env.VSFTPD.Path(remote))
	if b.env.PureFTPD.Addr != "" {
		_ = os.RemoveAll(b.env.PureFTPD.Path(remote))
	}
	if b.env.SFTP.Addr != "" {
		_ = os.RemoveAll(b.env.SFTP.Path(sftpUploads + remote))
	}
}

// settle writes back what earlier runs left dirty in the page cache before
// a run that moves a lot of data: otherwise a run starts behind the
// writeback of the one before, and which run pays depends on the order, not
// on the program (a full run measured our 1 GiB upload at 232 MB/s right
// after the 4 × 1 GiB workloads; runs of the large section alone, 443-464).
func settle(count int, size int64) {
	if int64(count)*size >= 256<<20 {
		syscall.Sync()
	}
}

// runCurl moves w with curl -Z --parallel-max conns, reusing connections.
func (b *bench) runCurl(w workload, d direction, conns int) (sample, error) {
	local, remote, err := b.runDirs("curl")
	if err != nil {
		return sample{}, err
	}
	defer b.cleanRun(local, remote, int64(w.count)*w.size)
	var cfg strings.Builder
	for i := 0; i < w.count; i++ {
		if d == download {
			fmt.Fprintf(&cfg, "url = \"%s\"\noutput = \"%s\"\n", ftpURL(b.env.VSFTPD, remoteSrc(w, i)), filepath.Join(b.localBase, local, fileName(i)))
		} else {
			fmt.Fprintf(&cfg, "upload-file = \"%s\"\nurl = \"%s\"\n", filepath.Join(b.localBase, localSrc(w, i)), ftpURL(b.env.VSFTPD, remote+"/"+fileName(i)))
		}
	}
	cfgPath := filepath.Join(b.env.Work, "curl.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		return sample{}, err
	}
	args := []string{"-s", "-S", "-K", cfgPath}
	if w.count > 1 {
		args = append([]string{"-Z", "--parallel-max", fmt.Sprint(conns)}, args...)
	}
	settle(w.count, w.size)
	c0 := b.serverCPU()
	start := time.Now()
	cmd := exec.Command("curl", args...)
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Seconds()
	if err != nil {
		return sample{}, fmt.Errorf("curl: %v: %.500s", err, out)
	}
	smp := sample{rate: float64(w.count) / took, mbps: float64(w.count) * float64(w.size) / took / 1e6}
	smp.cpuClient = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() / float64(w.count) * 1000
	b.perThousand(&smp, c0, w.count)
	return smp, nil
}

// runCurlTo uploads one file with curl to srv (the relay's second leg).
func (b *bench) runCurlTo(srv stack.FTPServer, w workload) (sample, error) {
	local, remote, err := b.runDirs("curlput")
	if err != nil {
		return sample{}, err
	}
	defer b.cleanRun(local, remote, w.size)
	settle(1, w.size)
	start := time.Now()
	out, err := exec.Command("curl", "-s", "-S", "-T", filepath.Join(b.localBase, localSrc(w, 0)), ftpURL(srv, remote+"/"+fileName(0))).CombinedOutput()
	took := time.Since(start).Seconds()
	if err != nil {
		return sample{}, fmt.Errorf("curl: %v: %.500s", err, out)
	}
	return sample{rate: 1 / took, mbps: float64(w.size) / took / 1e6}, nil
}

// runPooled moves w with e2e/cmd/ftpfetch over conns jlaffaye connections
// to vsftpd.
func (b *bench) runPooled(w workload, d direction, conns int) (sample, error) {
	srv := b.env.VSFTPD
	return b.runFetch(w, d, "vsftpd", "-addr", srv.Addr, "-user", srv.User, "-pass", srv.Pass, "-conns", fmt.Sprint(conns))
}

// runFetch moves w with e2e/cmd/ftpfetch, to or from the server id, which
// args name.
func (b *bench) runFetch(w workload, d direction, id string, args ...string) (sample, error) {
	local, remote, err := b.runDirs("pooled")
	if err != nil {
		return sample{}, err
	}
	defer b.cleanRun(local, remote, int64(w.count)*w.size)
	var list strings.Builder
	for i := 0; i < w.count; i++ {
		if d == download {
			fmt.Fprintf(&list, "%s\t%s\n", remoteSrc(w, i), filepath.Join(b.localBase, local, fileName(i)))
		} else {
			fmt.Fprintf(&list, "%s\t%s\n", remotePath(id, remote+"/"+fileName(i)), filepath.Join(b.localBase, localSrc(w, i)))
		}
	}
	listPath := filepath.Join(b.env.Work, "ftpfetch.list")
	if err := os.WriteFile(listPath, []byte(list.String()), 0o600); err != nil {
		return sample{}, err
	}
	args = append(args, "-list", listPath)
	if d == upload {
		args = append(args, "-put")
	}
	settle(w.count, w.size)
	c0 := b.serverCPU()
	cmd := exec.Command(b.ftpfetch, args...)
	out, err := cmd.Output()
	if err != nil {
		return sample{}, fmt.Errorf("ftpfetch: %v: %s", err, out)
	}
	var r struct {
		Files   int
		Bytes   int64
		Seconds float64
		Failed  int
		Error   string
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return sample{}, fmt.Errorf("ftpfetch printed %q: %w", out, err)
	}
	if r.Failed > 0 {
		return sample{}, fmt.Errorf("ftpfetch: %d of %d failed: %s", r.Failed, r.Files, r.Error)
	}
	smp := sample{rate: float64(r.Files) / r.Seconds, mbps: float64(r.Bytes) / r.Seconds / 1e6}
	smp.cpuClient = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds() / float64(r.Files) * 1000
	b.perThousand(&smp, c0, r.Files)
	return smp, nil
}

// runOurs produces w as tasks to s and waits for every outcome.
func (b *bench) runOurs(s *pooler, w workload, d direction, count int) (sample, error) {
	local, remote, err := b.runDirs("ours")
	if err != nil {
		return sample{}, err
	}
	defer b.cleanRun(local, remote, int64(count)*w.size)
	b.runSeq++
	prefix := fmt.Sprintf("b%s-%d-", b.runID, b.runSeq)
	tasks := make([]kafka.Task, count)
	ids := make([]string, count)
	for i := range tasks {
		t := kafka.Task{TaskID: prefix + fmt.Sprint(i)}
		id := s.opts.remote
		switch d {
		case download:
			t.SrcID, t.SrcPath, t.DstID, t.DstPath = id, remoteSrc(w, i%w.count), "local", local+"/"+fileName(i)
		case upload:
			t.SrcID, t.SrcPath, t.DstID, t.DstPath = "local", localSrc(w, i%w.count), id, remotePath(id, remote+"/"+fileName(i))
		case relay:
			t.SrcID, t.SrcPath, t.DstID, t.DstPath = "vsftpd", remoteSrc(w, i%w.count), "pureftpd", remote+"/"+fileName(i)
		case noopLocal:
			t.SrcID, t.SrcPath, t.DstID, t.DstPath = "local", "src/"+fileName(i), "local", local+"/"+fileName(i)
		}
		tasks[i], ids[i] = t, t.TaskID
	}
	settle(count, w.size)
	procs := s.Procs()
	cpu0 := make([]float64, len(procs))
	for i, p := range procs {
		cpu0[i] = proc.CPUSeconds(p.Pid())
	}
	c0 := b.serverCPU()
	mem := proc.SampleMemory(50*time.Millisecond, procs...)
	b.kafka.expect(ids)
	prof := b.startProfiles(s, fmt.Sprintf("%s-%s-%s-%d", s.opts.name, w.name, d, b.runSeq))
	defer prof.wait(b)
	produced, err := b.kafka.produce(context.Background(), tasks)
	if err != nil {
		mem.Stop()
		return sample{}, fmt.Errorf("produce: %w", err)
	}
	timeout := 2*time.Minute + time.Duration(float64(count)*float64(w.size)/100e6*float64(time.Second))
	got := b.kafka.await(ids, timeout)
	peak := mem.Stop()
	if len(got) < count {
		return sample{}, fmt.Errorf("%d of %d outcomes after %s (dispatcher log %s)", len(got), count, timeout, s.Dispatcher.LogPath)
	}
	first := time.Time{}
	for _, t := range produced {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	var last time.Time
	lat := make([]float64, 0, count)
	failed := 0
	var failure string
	for id, m := range got {
		if ok, why := succeeded(m); !ok {
			failed++
			failure = why
		}
		if m.Seen.After(last) {
			last = m.Seen
		}
		lat = append(lat, float64(m.Seen.Sub(produced[id]))/1e6)
	}
	if failed > 0 {
		return sample{}, fmt.Errorf("%d of %d tasks failed, e.g. %s", failed, count, failure)
	}
	took := last.Sub(first).Seconds()
	slices.Sort(lat)
	smp := sample{rate: float64(count) / took, mbps: float64(count) * float64(w.size) / took / 1e6,
		p50: quantile(lat, 0.5), p99: quantile(lat, 0.99)}
	var cpuA float64
	for i, p := range procs { // the dispatcher, then the agents
		c := proc.CPUSeconds(p.Pid()) - cpu0[i]
		rss := float64(peak[p.Name].RSS) / (1 << 20)
		if i == 0 {
			smp.cpuD, smp.rssD = c/float64(count)*1000, rss
			continue
		}
		cpuA += c
		smp.rssA = max(smp.rssA, rss)
	}
	smp.cpuA = cpuA / float64(count) * 1000
	smp.cpuClient = smp.cpuD + smp.cpuA
	b.perThousand(&smp, c0, count)
	return smp, nil
}

// idleLatency runs n single 20 B tasks one at a time and returns their
// latencies in ms, and the part of each spent in the agent's transfer.
func (b *bench) idleLatency(s *pooler, w workload, n int) ([]float64, []float64, error) {
	var lat, agent, toOutcome []float64
	for i := -3; i < n; i++ { // three warm-ups
		local, remote, err := b.runDirs("idle")
		if err != nil {
			return nil, nil, err
		}
		b.runSeq++
		t := kafka.Task{TaskID: fmt.Sprintf("i%s-%d", b.runID, b.runSeq), SrcID: "vsftpd", SrcPath: remoteSrc(w, 0), DstID: "local", DstPath: local + "/" + fileName(0)}
		b.kafka.expect([]string{t.TaskID})
		at, err := b.kafka.produce(context.Background(), []kafka.Task{t})
		if err != nil {
			return nil, nil, err
		}
		m, ok := b.kafka.await([]string{t.TaskID}, 30*time.Second)[t.TaskID]
		if !ok {
			return nil, nil, fmt.Errorf("no outcome for %s within 30 s", t.TaskID)
		}
		if ok, why := succeeded(m); !ok {
			return nil, nil, fmt.Errorf("%s failed: %s", t.TaskID, why)
		}
		if i >= 0 {
			agentMS, _ := m.Num("duration_ms") // the transfer's time on the agent
			lat = append(lat, float64(m.Seen.Sub(at[t.TaskID]))/1e6)
			agent = append(agent, agentMS)
			toOutcome = append(toOutcome, float64(m.Time.Sub(at[t.TaskID]))/1e6)
		}
		b.cleanRun(local, remote, 0)
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(lat)
	slices.Sort(agent)
	slices.Sort(toOutcome)
	b.logf("idle: produce → outcome produced p50 %.1f ms, → outcome read p50 %.1f ms", quantile(toOutcome, 0.5), quantile(lat, 0.5))
	return lat, agent, nil
}

// quantile of sorted xs, nearest rank.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(q*float64(len(xs))+0.5) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// leaseThroughput runs the scheduler's gRPC lease benchmark (five rounds
// of 20,000 leases) and returns its leases per second.
func (b *bench) leaseThroughput() (float64, error) {
	cmd := exec.Command("go", "test", "-count=1", "-run", "^$", "-bench", "^BenchmarkLeaseThroughputOverGRPC$", "-benchtime", "5x",
		"./services/dispatcher/internal/lease/")
	cmd.Dir = b.env.RepoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("go test -bench: %v: %s", err, out)
	}
	// BenchmarkLeaseThroughputOverGRPC-2   5   174794687 ns/op   117603 leases/s
	for _, line := range bytes.Split(out, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) >= 2 && strings.HasPrefix(f[0], "BenchmarkLeaseThroughputOverGRPC") && f[len(f)-1] == "leases/s" {
			if r, err := strconv.ParseFloat(f[len(f)-2], 64); err == nil {
				return r, nil
			}
		}
	}
	return 0, fmt.Errorf("no leases/s in go test -bench output: %s", out)
}
