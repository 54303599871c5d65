//go:build e2e && chaos

package realstack

// TestChaos is the fault-injection suite (`make chaos`, scripts/chaos/run.sh):
// two dispatchers and three agents, as processes of the real binaries,
// against real Kafka, vsftpd, pure-ftpd and OpenSSH's SFTP, run 5,000
// tasks (20 B, 100 KiB, 10 MiB and a few 200 MiB files; downloads, uploads
// and relays between the servers, SFTP among them)
// while faults are injected one after another in a seeded order: kill -9
// of an agent mid-transfer (three times), kill -9 of a dispatcher and
// restart, SIGTERM of an agent, vsftpd down for 10 s, the Kafka broker
// restarted, and a zombie agent whose streams are first frozen and then cut
// while its transfers go on. It then prints a table and fails unless every
// task has exactly one outcome (read_committed), every outcome is a
// success, every destination has its source's sha256, no temporary file is
// left and none was ever seen partial under its final name, and the
// servers never held more connections from the fleet than each endpoint's
// max_connections (for OpenSSH, SSH connections, each carrying
// chaosSFTPSessions transfers).
//
// E2E_CHAOS_SEED replays a run's choices (printed at the start and in the
// table). E2E_CHAOS_TASKS (5000) and E2E_CHAOS_HUGE (200 MiB) scale it down
// for development, E2E_CHAOS_RATE (30 tasks a second) sets the pace at
// which tasks are produced.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

// chaosRoute is where a task goes from and to.
type chaosRoute struct{ src, dst string }

var chaosRoutes = []chaosRoute{
	{"vsftpd", "local"}, {"pureftpd", "local"}, {"openssh", "local"}, // downloads
	{"local", "vsftpd"}, {"local", "pureftpd"}, {"local", "openssh"}, // uploads
	{"vsftpd", "pureftpd"}, {"pureftpd", "vsftpd"}, {"openssh", "vsftpd"}, {"pureftpd", "openssh"}, // relays
}

// chaosRemotes are the servers in the chaos suite's mix: two FTP servers
// and OpenSSH's SFTP (whose users write under /upload of its chroot).
var chaosRemotes = []string{"vsftpd", "pureftpd", "openssh"}

// chaosRemote is where a server keeps the run's files: on disk, and as
// the server names them.
type chaosRemote interface{ Path(p string) string }

// chaosClass is a file size and how many tasks and source files use it.
type chaosClass struct {
	name    string
	size    int64
	tasks   int
	sources int // distinct source files per endpoint
}

type chaosTask struct {
	Task
	Class string
	Size  int64
	Sum   string
	// Disk is the destination's path on this machine.
	Disk string
}

func envInt(t *testing.T, key string, def int64) int64 {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, v, err)
	}
	return n
}

func TestChaos(t *testing.T) {
	begin := time.Now()
	seed := uint64(envInt(t, "E2E_CHAOS_SEED", time.Now().UnixNano()%1e9))
	n := int(envInt(t, "E2E_CHAOS_TASKS", 5000))
	huge := envInt(t, "E2E_CHAOS_HUGE", 200<<20)
	rate := float64(envInt(t, "E2E_CHAOS_RATE", 30))
	fmt.Printf("chaos: seed %d (replay with E2E_CHAOS_SEED=%d), %d tasks\n", seed, seed, n)
	rng := rand.New(rand.NewPCG(seed, 0x63686173))

	openssh, _, err := env.SFTPServers()
	must(t, err)
	// openssh counts SSH connections; each carries chaosSFTPSessions.
	limits := map[string]int{"vsftpd": 8, "pureftpd": 6, "openssh": 3}
	const zombie = 2
	c := newChaosCluster(t, 2, 3, 8, limits, zombie)
	suffix := strings.TrimPrefix(c.Group, "chaos-")
	ftpRoot := "/chaos-" + suffix
	homes := map[string]chaosRemote{"vsftpd": env.VSFTPD, "pureftpd": env.PureFTPD, "openssh": openssh}
	roots := map[string]string{"vsftpd": ftpRoot, "pureftpd": ftpRoot, "openssh": "/upload" + ftpRoot}

	// Sources: the same few files on each endpoint, per size class.
	classes := []chaosClass{
		{"200MiB", huge, 4, 1},
		{"10MiB", 10 << 20, n * 100 / 5000, 3},
		{"100KiB", 100 << 10, n * 1900 / 5000, 40},
	}
	classes = append(classes, chaosClass{"20B", 20, n - classes[0].tasks - classes[1].tasks - classes[2].tasks, 40})
	sums := map[string]string{} // class/i -> sha256
	made := time.Now()
	for ci, cl := range classes {
		for i := 0; i < cl.sources; i++ {
			key := fmt.Sprintf("%s-%d", cl.name, i)
			contentSeed := seed ^ uint64(ci+1)<<32 ^ uint64(i)
			var sum string
			for _, at := range append([]string{"local"}, chaosRemotes...) {
				path := filepath.Join(c.Base, "src", key+".bin")
				if at != "local" {
					path = homes[at].Path(roots[at] + "/src/" + key + ".bin")
				}
				if cl.size > 16<<20 {
					sum = PutRandomFile(t, path, cl.size, contentSeed)
				} else {
					sum = PutFile(t, path, RandomBytes(int(cl.size), contentSeed))
				}
			}
			sums[key] = sum
		}
	}
	// Destination directories exist up front, owned like the homes, so the
	// watcher sees every file from its first moment.
	const buckets = 50
	dstRoots := map[string]string{"local": filepath.Join(c.Base, "dst")}
	for at, srv := range homes {
		dstRoots[at] = srv.Path(roots[at] + "/dst")
	}
	for _, root := range dstRoots {
		for b := 0; b < buckets; b++ {
			mkdirAllOwned(t, filepath.Join(root, fmt.Sprintf("b%02d", b)))
		}
	}
	RemoveOnSuccess(t, env.VSFTPD.Path(ftpRoot), env.PureFTPD.Path(ftpRoot), openssh.Path(roots["openssh"]))
	fmt.Printf("chaos: source files made in %s\n", time.Since(made).Round(time.Millisecond))

	// Tasks, in a seeded order; the 200 MiB ones go out spread over the run.
	hugeRoutes := []chaosRoute{{"vsftpd", "local"}, {"local", "pureftpd"}, {"pureftpd", "vsftpd"}, {"local", "openssh"}}
	var tasks []chaosTask
	var hugeTasks []chaosTask
	for _, cl := range classes {
		for k := 0; k < cl.tasks; k++ {
			r := chaosRoutes[rng.IntN(len(chaosRoutes))]
			if cl.name == "200MiB" {
				r = hugeRoutes[k%len(hugeRoutes)]
			}
			src := fmt.Sprintf("%s-%d", cl.name, rng.IntN(cl.sources))
			name := fmt.Sprintf("t%05d-%s.bin", len(tasks)+len(hugeTasks), cl.name)
			bucket := fmt.Sprintf("b%02d", rng.IntN(buckets))
			tk := chaosTask{Class: cl.name, Size: cl.size, Sum: sums[src]}
			tk.TaskID = fmt.Sprintf("chaos-%s-%05d", suffix, len(tasks)+len(hugeTasks))
			tk.SrcID, tk.DstID = r.src, r.dst
			if r.src == "local" {
				tk.SrcPath = "src/" + src + ".bin"
			} else {
				tk.SrcPath = roots[r.src] + "/src/" + src + ".bin"
			}
			if r.dst == "local" {
				tk.DstPath = "dst/" + bucket + "/" + name
				tk.Disk = filepath.Join(c.Base, "dst", bucket, name)
			} else {
				tk.DstPath = roots[r.dst] + "/dst/" + bucket + "/" + name
				tk.Disk = homes[r.dst].Path(tk.DstPath)
			}
			if cl.name == "200MiB" {
				hugeTasks = append(hugeTasks, tk)
			} else {
				tasks = append(tasks, tk)
			}
		}
	}
	rng.Shuffle(len(tasks), func(i, j int) { tasks[i], tasks[j] = tasks[j], tasks[i] })
	for k, tk := range hugeTasks {
		at := len(tasks) * (2*k + 1) / (2 * len(hugeTasks)) / 2 // within the first half of the run
		tasks = append(tasks[:at], append([]chaosTask{tk}, tasks[at:]...)...)
	}
	want := map[string]fileWant{}
	ids := make([]string, len(tasks))
	for i, tk := range tasks {
		want[tk.Disk] = fileWant{Size: tk.Size, Sum: tk.Sum}
		ids[i] = tk.TaskID
	}

	// The fleet.
	for i := range c.Dispatchers {
		must(t, c.StartDispatcher(i, 120*time.Second))
	}
	for i := range c.Agents {
		must(t, c.StartAgent(i))
	}
	must(t, c.WaitConnected(90*time.Second))
	fmt.Printf("chaos: 2 dispatchers and 3 agents up after %s\n", time.Since(begin).Round(time.Millisecond))

	// Warm up: one small task per partition, so both dispatchers' consumers
	// and transactional producers work (a fresh broker makes its
	// transaction log on first use) before the clock starts.
	since := time.Now().Add(-time.Second)
	var warm []string
	for part := 0; part < 6; part++ {
		tk := Task{TaskID: fmt.Sprintf("chaos-%s-warm%d", suffix, part), SrcID: "vsftpd", SrcPath: ftpRoot + "/src/20B-0.bin",
			DstID: "local", DstPath: fmt.Sprintf("warm/%d.bin", part)}
		ProduceRaw(t, TasksTopic, part, Record{Key: tk.TaskID, Value: tk.JSON()})
		warm = append(warm, tk.TaskID)
	}
	if _, missing := collector.Await(warm, "", since, 3*time.Minute); len(missing) > 0 {
		t.Fatalf("warm-up tasks without outcome after 3 minutes: %v", missing)
	}
	fmt.Printf("chaos: warm-up tasks done after %s\n", time.Since(begin).Round(time.Millisecond))

	watch := watchDestinations([]string{dstRoots["local"], dstRoots["vsftpd"], dstRoots["pureftpd"], dstRoots["openssh"]}, want, 2*time.Millisecond)
	_, sshPort, err := net.SplitHostPort(openssh.Addr)
	must(t, err)
	sshPortN, err := strconv.Atoi(sshPort)
	must(t, err)
	ports := map[int]string{env.VSFTPD.Port: "vsftpd", env.PureFTPD.Port: "pureftpd", sshPortN: "openssh"}
	conns := sampleConnections(ports, limits, 50*time.Millisecond, func(pid int) string {
		for _, p := range c.Procs() {
			if p.Pid() == pid {
				return fmt.Sprintf("%s(pid %d, run %d)", p.Name, pid, p.Starts())
			}
		}
		return fmt.Sprintf("pid %d", pid)
	})
	mem := proc.SampleMemory(500*time.Millisecond, c.Procs()...)
	runStart := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("chaos: %6.1fs "+format+"\n", append([]any{time.Since(runStart).Seconds()}, args...)...)
	}
	c.Supervise(logf)

	// Production is a steady trickle (E2E_CHAOS_RATE tasks a second) that
	// follows the faults, so each one meets work in flight: it never runs
	// more than its share ahead of the faults begun so far (all 5,000 once
	// the last one began), and pauses while 1,500 tasks wait for outcomes.
	faults := &chaosFaults{c: c, rng: rand.New(rand.NewPCG(seed, 0x6661756c74)), begin: runStart, zombie: zombie, logf: logf,
		total: len(chaosSchedule())}
	const chunk = 25
	var produced atomic.Int64
	var produceErr error
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		next := time.Now()
		for from := 0; from < len(tasks); {
			for {
				started, total := faults.Started()
				allowed := len(tasks) * (started + 1) / (total + 1)
				if started == total {
					allowed = len(tasks)
				}
				got, _ := collector.Count(ids[:from], since)
				if from < allowed && from-got < 1500 && !time.Now().Before(next) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			end := min(from+chunk, len(tasks))
			faults.Broker.Lock()
			err := produceTasks(tasks[from:end])
			faults.Broker.Unlock()
			if err != nil {
				produceErr = err
				return
			}
			from = end
			produced.Store(int64(end))
			next = next.Add(time.Duration(float64(chunk) / rate * float64(time.Second)))
			if time.Until(next) < -5*time.Second {
				next = time.Now() // held back: do not burst to catch up
			}
		}
	}()

	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		faults.Run(8*time.Second, 3*time.Second, 8*time.Second)
	}()

	// Progress until every task has an outcome and every fault healed.
	deadline := time.Now().Add(20 * time.Minute)
	lastLog := time.Now()
	for {
		time.Sleep(500 * time.Millisecond)
		got, total := collector.Count(ids, since)
		if closed(producerDone) && got == len(ids) && closed(faultsDone) {
			break
		}
		if closed(producerDone) && produceErr != nil {
			t.Fatalf("producing tasks: %v", produceErr)
		}
		if time.Now().After(deadline) {
			t.Errorf("not done after 20 minutes: %d of %d tasks have outcomes", got, len(ids))
			break
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			logf("produced %d, tasks with outcomes %d (%d outcomes), leases in flight %d", produced.Load(), got, total, len(c.Leases()))
		}
	}
	<-faultsDone
	<-producerDone
	workDone := time.Since(runStart)
	logf("all outcomes in and all faults healed")

	// Shut the fleet down cleanly: every process must exit 0 on SIGTERM.
	// Then give the outcome reader a moment: a late duplicate shows now.
	crashes := c.StopSupervising()
	bad := c.Stop()
	for _, b := range bad {
		t.Errorf("shutdown: %s", b)
	}
	time.Sleep(3 * time.Second)
	wr := watch.Stop()
	cr := conns.Stop()
	peak := mem.Stop()

	// The checks.
	var zero, dup, failed, sumBad []string
	outcomes := 0
	for _, tk := range tasks {
		ms := collector.Messages(tk.TaskID, "", since)
		outcomes += len(ms)
		switch {
		case len(ms) == 0:
			zero = append(zero, tk.TaskID)
		case len(ms) > 1:
			var what []string
			for _, m := range ms {
				what = append(what, fmt.Sprintf("%s@%d %s attempts=%v agent=%s", m.Topic, m.Offset, m.Str("status"), m.Fields["attempts"], m.Str("agent")))
			}
			dup = append(dup, tk.TaskID+": "+strings.Join(what, "; "))
		}
		for _, m := range ms {
			if m.Topic != ResultsTopic || m.Str("status") != "success" {
				failed = append(failed, fmt.Sprintf("%s (%s → %s, %s): %s %s %s", tk.TaskID, tk.SrcID, tk.DstID, tk.Class, m.Topic, m.Str("error_code"), m.Str("error_message")))
			}
		}
		if sum, size, err := FileSum(tk.Disk); err != nil || sum != tk.Sum || size != tk.Size {
			sumBad = append(sumBad, fmt.Sprintf("%s %s: %d bytes sha256 %.12s… (%v), want %d bytes %.12s…", tk.TaskID, tk.Disk, size, sum, err, tk.Size, tk.Sum))
		}
	}
	var temps []string
	for _, root := range []string{c.Base, env.VSFTPD.Path(ftpRoot), env.PureFTPD.Path(ftpRoot)} {
		temps = append(temps, TempFiles(root)...)
	}
	// pure-ftpd writes an upload it cannot finish (the client died) to a
	// .pureftpd-upload.* file of its own: the server's leftovers, reported
	// apart from the agents'.
	var strays, serverTemps []string
	for _, p := range wr.Strays {
		if strings.HasPrefix(filepath.Base(p), ".pureftpd-upload.") {
			serverTemps = append(serverTemps, p)
		} else {
			strays = append(strays, p)
		}
	}
	var partial []string
	for _, p := range sortedKeys(wr.Bad) {
		partial = append(partial, p+": "+wr.Bad[p])
	}

	// The table.
	var b strings.Builder
	row := func(check string, value any, limit string, ok bool) {
		res := "PASS"
		if !ok {
			res = "FAIL"
		}
		if limit == "" {
			res = ""
		}
		fmt.Fprintf(&b, "| %-58s | %8v | %-7s | %-4s |\n", check, value, limit, res)
	}
	fmt.Fprintf(&b, "\nchaos: seed %d (replay: E2E_CHAOS_SEED=%d make chaos)\n\n", seed, seed)
	fmt.Fprintf(&b, "| %-58s | %8s | %-7s | %-4s |\n|%s|%s|%s|%s|\n", "check", "value", "must be", "", strings.Repeat("-", 60), strings.Repeat("-", 10), strings.Repeat("-", 9), strings.Repeat("-", 6))
	row("tasks produced", len(tasks), "", true)
	row("outcomes read (read_committed)", outcomes, "", true)
	row("tasks with zero outcomes", len(zero), "0", len(zero) == 0)
	row("tasks with two or more outcomes", len(dup), "0", len(dup) == 0)
	row("failures not caused by the task (all tasks are valid)", len(failed), "0", len(failed) == 0)
	row("destinations whose sha256 differs from the source", len(sumBad), "0", len(sumBad) == 0)
	row("temporary files left", len(temps), "0", len(temps) == 0)
	row(fmt.Sprintf("partial files seen under a final name (%d samples)", wr.Sweeps), len(wr.Bad), "0", len(wr.Bad) == 0)
	row("files under names no task writes", len(strays), "0", len(strays) == 0)
	row("processes that died outside a fault (restarted)", len(crashes), "0", len(crashes) == 0)
	for _, ep := range chaosRemotes {
		row(fmt.Sprintf("most connections %s held from us (ss, %d samples)", ep, cr.Samples), cr.Max[ep], fmt.Sprintf("<= %d", limits[ep]), cr.Max[ep] <= limits[ep])
	}
	fmt.Fprintf(&b, "\nfaults (%d):\n", len(faults.Records()))
	for i, f := range faults.Records() {
		fmt.Fprintf(&b, "  %d. %7.1fs–%6.1fs  %-32s %-10s %s%s\n", i+1, f.Start.Seconds(), f.End.Seconds(), f.Name, f.Target, f.Detail, errSuffix(f.Err))
	}
	fmt.Fprintf(&b, "\nwatcher: a sweep every %s on average, %d destinations verified as they appeared, %d temporary files seen in passing (at most %d at once)\n",
		wr.Every.Round(100*time.Microsecond), wr.Verified, wr.TempSeen, wr.MaxTemp)
	for _, ep := range chaosRemotes {
		fmt.Fprintf(&b, "connections: %s peaked at %d at %s; %d samples above the limit\n", ep, cr.Max[ep], cr.MaxAt[ep].Format("15:04:05.000"), cr.Over[ep])
	}
	fmt.Fprintf(&b, "connections: %d server ends left out of the counts because their client end was already gone in the same ss pass (torn down while ss read the table); counting them too, the most would have been vsftpd %d, pureftpd %d, openssh %d\n",
		cr.Torn, cr.MaxWithTorn["vsftpd"], cr.MaxWithTorn["pureftpd"], cr.MaxWithTorn["openssh"])
	for _, snap := range conns.Snapshots {
		fmt.Fprintf(&b, "  above the limit: %s\n", snap)
	}
	if len(serverTemps) > 0 {
		fmt.Fprintf(&b, "pure-ftpd's own partial-upload files left after interrupted uploads (server side, not the agents'): %v\n", serverTemps)
	}
	fmt.Fprintf(&b, "fencing: %s\n", fencing(c, zombie))
	if rs := collector.Restarts(); len(rs) > 0 {
		fmt.Fprintf(&b, "outcome reader: kcat ended %d times (broker restart) and was started again; records read twice were skipped\n", len(rs))
	}
	if cr.Errors > 0 {
		fmt.Fprintf(&b, "connections: ss failed %d times (%s)\n", cr.Errors, cr.LastErr)
	}
	for _, p := range c.Procs() {
		m := peak[p.Name]
		fmt.Fprintf(&b, "process %-12s started %d times, peak RSS %s\n", p.Name, p.Starts(), proc.MiB(max(m.RSS, m.HWM)))
	}
	fmt.Fprintf(&b, "\nruntime: %s for the tasks and faults, %s in all\n", workDone.Round(100*time.Millisecond), time.Since(begin).Round(100*time.Millisecond))
	fmt.Print(b.String())
	_ = os.WriteFile(filepath.Join(c.Dir, "report.txt"), []byte(b.String()), 0o644)

	for _, list := range []struct {
		what  string
		items []string
	}{
		{"tasks with zero outcomes", zero}, {"tasks with two or more outcomes", dup}, {"failures", failed},
		{"sha256 mismatches", sumBad}, {"temporary files left", temps}, {"partial files seen", partial},
		{"stray files", strays}, {"processes that died outside a fault", crashes},
	} {
		if len(list.items) > 0 {
			t.Errorf("%d %s (seed %d), first: \n  %s", len(list.items), list.what, seed, strings.Join(first(list.items, 10), "\n  "))
		}
	}
	for _, ep := range chaosRemotes {
		if cr.Max[ep] > limits[ep] {
			t.Errorf("%s held %d connections from the fleet at %s, above its max_connections %d (seed %d)", ep, cr.Max[ep], cr.MaxAt[ep].Format("15:04:05.000"), limits[ep], seed)
		}
	}
	if cr.Samples == 0 {
		t.Errorf("the connection sampler got no sample: %s", cr.LastErr)
	}
	for _, f := range faults.Records() {
		if f.Err != "" {
			t.Errorf("fault %q on %s: %s", f.Name, f.Target, f.Err)
		}
	}
	if errs := collector.Errors(); len(errs) > 0 {
		t.Errorf("outcome reader: %s", strings.Join(errs, "; "))
	}
}

// fencing sums up, from the logs of every run of every process, the
// messages the dispatchers refused for a stale token and the commits the
// zombie agent was refused: evidence that a delivery whose lease was
// taken back could not publish or rename.
func fencing(c *chaosCluster, zombie int) string {
	kinds := map[string]int{}
	kindRE := regexp.MustCompile(`kind=(\w+)`)
	for _, d := range c.Dispatchers {
		data, _ := os.ReadFile(d.Proc.LogPath)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "refused message for a lease the agent does not hold") {
				if m := kindRE.FindStringSubmatch(line); m != nil {
					kinds[m[1]]++
				}
			}
		}
	}
	var parts []string
	for _, k := range sortedKeys(kinds) {
		parts = append(parts, fmt.Sprintf("%s %d", k, kinds[k]))
	}
	refused := map[string]int{}
	for _, a := range c.Agents {
		data, _ := os.ReadFile(a.Proc.LogPath)
		refused[a.Proc.Name] = strings.Count(string(data), "the dispatcher refused the commit")
	}
	var per []string
	for _, k := range sortedKeys(refused) {
		per = append(per, fmt.Sprintf("%s %d", k, refused[k]))
	}
	return fmt.Sprintf("dispatchers refused stale-token messages (%s); commits refused, as the agents logged them: %s (zombie: %s)",
		strings.Join(parts, ", "), strings.Join(per, ", "), c.Agents[zombie].Proc.Name)
}

// produceTasks writes tasks to ftp-tasks with one kcat, keyed by task id.
func produceTasks(tasks []chaosTask) error {
	recs := make([]Record, len(tasks))
	for i, tk := range tasks {
		recs[i] = Record{Key: tk.TaskID, Value: tk.JSON()}
	}
	return kcat.ProduceLines(TasksTopic, recs)
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
