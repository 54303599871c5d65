//go:build e2e && chaos

package realstack

// The faults the chaos suite injects, one at a time, in an order and with
// targets and pauses drawn from the seed. Each waits for its moment (an
// agent mid-transfer), does its damage, heals, and waits until the fleet is
// whole again before the next one starts.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// faultRecord is one injected fault, for the report.
type faultRecord struct {
	Name   string
	Target string
	Start  time.Duration // since the run began
	End    time.Duration // healed
	Detail string
	Err    string
}

// chaosFaults runs the schedule.
type chaosFaults struct {
	c      *chaosCluster
	rng    *rand.Rand
	begin  time.Time
	zombie int // the agent behind proxies
	// logf prints progress.
	logf func(format string, args ...any)

	// Broker is held while the broker restarts: the test's producer (kcat)
	// takes it around each wave, since a kcat that saw the broker go away
	// cannot say which records it delivered, and producing a task twice
	// would rightly give it two outcomes.
	Broker sync.Mutex

	mu      sync.Mutex
	records []faultRecord
	started int
	total   int
}

// Started is how many faults have begun, of Total.
func (f *chaosFaults) Started() (started, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started, f.total
}

type faultFunc func(f *chaosFaults, rec *faultRecord) error

// chaosSchedule is every fault the issue asks for.
func chaosSchedule() []struct {
	name string
	run  faultFunc
} {
	return []struct {
		name string
		run  faultFunc
	}{
		{"kill -9 agent mid-transfer", (*chaosFaults).killAgent},
		{"kill -9 agent mid-transfer", (*chaosFaults).killAgent},
		{"kill -9 agent mid-transfer", (*chaosFaults).killAgent},
		{"kill -9 dispatcher, restart", (*chaosFaults).killDispatcher},
		{"SIGTERM agent, restart", (*chaosFaults).termAgent},
		{"vsftpd stopped 10 s, restarted", (*chaosFaults).stopFTP},
		{"Kafka broker restarted", (*chaosFaults).restartKafka},
		{"zombie agent: stream stalled", (*chaosFaults).stallZombie},
		{"zombie agent: stream cut", (*chaosFaults).cutZombie},
	}
}

// Run injects every fault in a seeded order; it returns when all healed.
// firstAfter is the quiet time before the first fault, gaps the range of
// pauses between faults.
func (f *chaosFaults) Run(firstAfter time.Duration, gapMin, gapMax time.Duration) {
	sched := chaosSchedule()
	f.rng.Shuffle(len(sched), func(i, j int) { sched[i], sched[j] = sched[j], sched[i] })
	time.Sleep(firstAfter)
	for i, fl := range sched {
		if i > 0 {
			time.Sleep(gapMin + time.Duration(f.rng.Int64N(int64(gapMax-gapMin)+1)))
		}
		f.mu.Lock()
		f.started = i + 1
		f.mu.Unlock()
		rec := faultRecord{Name: fl.name, Start: time.Since(f.begin)}
		f.logf("fault %d/%d: %s ...", i+1, len(sched), fl.name)
		if err := fl.run(f, &rec); err != nil {
			rec.Err = err.Error()
		}
		// Healed means the whole fleet is back: every process running and
		// every agent connected to every dispatcher.
		if err := f.c.WaitConnected(120 * time.Second); err != nil && rec.Err == "" {
			rec.Err = "after healing: " + err.Error()
		}
		rec.End = time.Since(f.begin)
		f.logf("fault %d/%d: %s on %s: %s (%s → %s)%s", i+1, len(sched), fl.name, rec.Target, rec.Detail,
			rec.Start.Round(100*time.Millisecond), rec.End.Round(100*time.Millisecond), errSuffix(rec.Err))
		f.mu.Lock()
		f.records = append(f.records, rec)
		f.mu.Unlock()
	}
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " ERROR: " + e
}

// Records are the faults injected so far.
func (f *chaosFaults) Records() []faultRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]faultRecord(nil), f.records...)
}

func (f *chaosFaults) pause(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(f.rng.Int64N(int64(hi-lo)+1))
}

// midTransfer waits (up to timeout) until one of the agents is in the
// middle of a transfer and returns that agent's index and a description of
// its leases in flight. For the first few seconds only a lease with bytes
// moved and not all moved counts (the larger the file the better); then
// any lease in flight does (small files finish between two heartbeats, so
// their progress is never seen). Agents are tried in a seeded order.
func (f *chaosFaults) midTransfer(candidates []int, timeout time.Duration) (int, string) {
	order := append([]int(nil), candidates...)
	f.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	start := time.Now()
	for {
		leases := f.c.Leases()
		strict := time.Since(start) < 5*time.Second
		best, bestSize := -1, int64(-2)
		for _, i := range order {
			a := f.c.Agents[i]
			if !a.Proc.Running() {
				continue
			}
			for _, l := range leases {
				moving := l.BytesDone > 0 && (l.BytesTotal < 0 || l.BytesDone < l.BytesTotal)
				if l.AgentId == a.ID && (moving || !strict) && l.BytesTotal > bestSize {
					best, bestSize = i, l.BytesTotal
				}
			}
		}
		if best >= 0 || time.Since(start) > timeout {
			if best < 0 {
				best = order[0]
			}
			return best, describeLeases(f.c, leases, best)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// describeLeases says what agent i is moving: its leases and the largest.
func describeLeases(c *chaosCluster, leases []*adminv1.LeaseInfo, i int) string {
	n := 0
	var big *adminv1.LeaseInfo
	for _, l := range leases {
		if l.AgentId != c.Agents[i].ID {
			continue
		}
		n++
		if big == nil || l.BytesTotal > big.BytesTotal {
			big = l
		}
	}
	if big == nil {
		return "no lease in flight"
	}
	if big.BytesTotal < 0 {
		return fmt.Sprintf("%d leases in flight (sizes not reported yet)", n)
	}
	return fmt.Sprintf("%d leases in flight, largest %s at %s of %s", n, big.TaskId, proc.MiB(big.BytesDone), proc.MiB(big.BytesTotal))
}

// killAgent: SIGKILL an agent in the middle of a transfer, restart it
// after a moment.
func (f *chaosFaults) killAgent(rec *faultRecord) error {
	i, inFlight := f.midTransfer(f.all(), 20*time.Second)
	a := f.c.Agents[i]
	rec.Target = a.Proc.Name
	f.c.Expect(a.Proc)
	defer f.c.Release(a.Proc)
	a.Proc.Kill()
	down := f.pause(time.Second, 3*time.Second)
	rec.Detail = fmt.Sprintf("killed with %s; restarted after %s", inFlight, down.Round(100*time.Millisecond))
	time.Sleep(down)
	return f.c.StartAgent(i)
}

// termAgent: SIGTERM an agent mid-transfer (it drains, releases what it
// cannot finish, exits 0), then start it again.
func (f *chaosFaults) termAgent(rec *faultRecord) error {
	i, inFlight := f.midTransfer(f.all(), 20*time.Second)
	a := f.c.Agents[i]
	rec.Target = a.Proc.Name
	f.c.Expect(a.Proc)
	defer f.c.Release(a.Proc)
	start := time.Now()
	if err := a.Proc.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	err := a.Proc.Wait(90 * time.Second)
	rec.Detail = fmt.Sprintf("SIGTERM with %s; exited after %s (%v)", inFlight, time.Since(start).Round(100*time.Millisecond), exitText(err))
	if err != nil {
		a.Proc.Kill()
		_ = f.c.StartAgent(i)
		return fmt.Errorf("%s did not exit 0 after SIGTERM: %v", a.Proc.Name, err)
	}
	return f.c.StartAgent(i)
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// killDispatcher: SIGKILL a dispatcher, start it again on the same ports.
func (f *chaosFaults) killDispatcher(rec *faultRecord) error {
	i := f.rng.IntN(len(f.c.Dispatchers))
	d := f.c.Dispatchers[i]
	rec.Target = d.Proc.Name
	leases := 0
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	if r, err := d.API().ListLeases(ctx, &adminv1.ListLeasesRequest{}); err == nil {
		leases = len(r.Leases)
	}
	cancel()
	f.c.Expect(d.Proc)
	defer f.c.Release(d.Proc)
	d.Proc.Kill()
	down := f.pause(time.Second, 4*time.Second)
	time.Sleep(down)
	start := time.Now()
	err := f.c.StartDispatcher(i, 120*time.Second)
	rec.Detail = fmt.Sprintf("killed with %d leases in flight; restarted after %s, ready in %s", leases,
		down.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
	return err
}

// stopFTP: vsftpd stopped (its sessions end), down 10 s, started again.
func (f *chaosFaults) stopFTP(rec *faultRecord) error {
	rec.Target = "vsftpd"
	if out, err := script("e2e/ftp.sh", "stop-one", "vsftpd"); err != nil {
		return fmt.Errorf("ftp.sh stop-one vsftpd: %v: %s", err, out)
	}
	time.Sleep(10 * time.Second)
	start := time.Now()
	if out, err := script("e2e/ftp.sh", "start-one", "vsftpd"); err != nil {
		return fmt.Errorf("ftp.sh start-one vsftpd: %v: %s", err, out)
	}
	rec.Detail = fmt.Sprintf("down 10 s, serving again after %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// restartKafka: the broker is stopped (SIGTERM) and started again on the
// same data.
func (f *chaosFaults) restartKafka(rec *faultRecord) error {
	rec.Target = "kafka"
	f.Broker.Lock()
	defer f.Broker.Unlock()
	start := time.Now()
	out, err := script("chaos/kafka-restart.sh", "TERM", "0")
	rec.Detail = fmt.Sprintf("down and back in %s", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		return fmt.Errorf("kafka-restart.sh: %v: %s", err, out)
	}
	return nil
}

// stallZombie freezes the zombie agent's streams both ways for longer
// than a lease lives, while its transfers go on: its leases expire and go
// to other agents; then everything it sent in the meantime (heartbeats,
// commit requests under stale tokens) reaches the dispatchers, which must
// refuse it.
func (f *chaosFaults) stallZombie(rec *faultRecord) error {
	a := f.c.Agents[f.zombie]
	rec.Target = a.Proc.Name
	_, inFlight := f.midTransfer([]int{f.zombie}, 30*time.Second)
	for _, p := range a.Proxies {
		p.Stall()
	}
	hold := f.pause(12*time.Second, 14*time.Second)
	time.Sleep(hold)
	for _, p := range a.Proxies {
		p.Unstall()
	}
	rec.Detail = fmt.Sprintf("streams frozen %s with %s", hold.Round(100*time.Millisecond), inFlight)
	return nil
}

// cutZombie partitions the zombie agent from both dispatchers: bytes are
// swallowed both ways until both sides give the streams up; then the
// connections are closed and the agent may reconnect.
func (f *chaosFaults) cutZombie(rec *faultRecord) error {
	a := f.c.Agents[f.zombie]
	rec.Target = a.Proc.Name
	_, inFlight := f.midTransfer([]int{f.zombie}, 30*time.Second)
	for _, p := range a.Proxies {
		p.Cut()
	}
	hold := f.pause(18*time.Second, 22*time.Second)
	time.Sleep(hold)
	closed := 0
	for _, p := range a.Proxies {
		closed += p.Heal()
	}
	rec.Detail = fmt.Sprintf("streams cut %s with %s; %d connections closed at heal", hold.Round(100*time.Millisecond), inFlight, closed)
	return nil
}

func (f *chaosFaults) all() []int {
	out := make([]int, len(f.c.Agents))
	for i := range out {
		out[i] = i
	}
	return out
}

// script runs scripts/<name> with the test's environment (E2E_STATE_DIR,
// the ports).
func script(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(env.RepoRoot, "scripts", name), args...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
