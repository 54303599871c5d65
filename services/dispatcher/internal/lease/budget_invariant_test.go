package lease

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// simAgent is an agent as the budget must assume it behaves: it may hold
// as many connections as the last quota it received, closes connections at
// once when a quota shrinks but says so only in its next pool report, and
// keeps them after its stream broke until the dispatcher's hold ends.
type simAgent struct {
	sess   *Session
	open   map[string]uint32 // connections it may hold, per endpoint
	seq    uint64            // the last quota message it applied
	leases []*leasev1.Lease
	goneAt time.Time // when its stream broke; zero while attached
}

// TestBudgetInvariantUnderRandomOperations drives the scheduler with random
// connects, tasks, results, pool reports, reclaims, disconnects and expiries,
// and checks after every step that the connections agents may hold to an
// endpoint never exceed its limit, and that the budget counts at least what
// they may hold. Then the agents finish what they hold and acknowledge what
// they are asked to give back, and every task must end: quota must never be
// parked where no task can use it.
func TestBudgetInvariantUnderRandomOperations(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { budgetWalk(t, seed) })
	}
}

func budgetWalk(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	limits := map[string]int{"a": 1 + rng.IntN(5), "b": 1 + rng.IntN(3), "s": 1 + rng.IntN(3)}
	endpoints := ftpEndpoints(limits)
	sessions := uint32(1 + rng.IntN(3))
	endpoints["s"] = Endpoint{ID: "s", Remote: true, Limit: limits["s"], Sessions: sessions} // SFTP
	h := newHarnessWith(t, 3, endpoints)
	h.sched.conns.perConn = uint32(1 + rng.IntN(2))
	var agents []*simAgent
	offset := int64(0)
	hold := 20 * time.Second // Config.DetachHold's default; the harness sets none
	if h.sched.cfg.DetachHold > 0 {
		hold = h.sched.cfg.DetachHold
	}
	now, cancel := context.WithCancel(context.Background())
	cancel() // take returns what is queued without waiting
	deliver := func(a *simAgent) {
		for _, m := range a.sess.out.take(now, nil) {
			if q := m.GetQuota(); q != nil {
				a.open[q.EndpointId] = q.Connections
				a.seq = q.Seq
			}
			if l := m.GetLease(); l != nil {
				a.leases = append(a.leases, l)
			}
		}
	}
	routes := [][2]string{{"a", "local"}, {"local", "a"}, {"b", "local"}, {"a", "a"}, {"a", "b"},
		{"s", "local"}, {"a", "s"}, {"s", "b"}, {"s", "s"}}
	for step := 0; step < 400; step++ {
		live := agents[:0:0]
		for _, a := range agents {
			if a.goneAt.IsZero() {
				live = append(live, a)
			}
		}
		switch op := rng.IntN(10); {
		case op == 0 && len(live) < 4:
			a := &simAgent{open: map[string]uint32{}}
			a.sess = h.agent(fmt.Sprintf("s%d-%d", seed, len(agents)), uint32(1+rng.IntN(4)))
			agents = append(agents, a)
		case op <= 2:
			r := routes[rng.IntN(len(routes))]
			if r[0] == r[1] && limits[r[0]]*int(max(endpoints[r[0]].Sessions, 1)) < 2 {
				break // intake refuses it (task.Check): it needs 2 connections at once
			}
			offset++
			h.enqueueRoute(offset, r[0], r[1])
		case op <= 4 && len(live) > 0:
			a := live[rng.IntN(len(live))]
			deliver(a)
			if len(a.leases) > 0 {
				i := rng.IntN(len(a.leases))
				l := a.leases[i]
				a.leases = append(a.leases[:i], a.leases[i+1:]...)
				o := success()
				if rng.IntN(3) == 0 {
					o = failed(failure.ConnectionError)
				}
				_ = h.sched.Result(a.sess, result(l, o))
			}
		case op <= 6 && len(live) > 0:
			a := live[rng.IntN(len(live))]
			deliver(a)
			var pools []*leasev1.EndpointPool
			for ep, n := range a.open {
				pools = append(pools, &leasev1.EndpointPool{EndpointId: ep, Open: n, Idle: n})
			}
			h.sched.PoolReport(a.sess, &leasev1.PoolReport{QuotaSeq: a.seq, Endpoints: pools})
		case op == 7 && len(live) > 0:
			a := live[rng.IntN(len(live))]
			deliver(a)
			h.sched.Detach(a.sess, nil)
			a.goneAt = h.clock.Now()
		default:
			h.clock.Advance(time.Duration(rng.IntN(int(ttl/time.Millisecond))) * time.Millisecond)
			h.sched.Tick()
		}
		for _, a := range agents {
			if a.goneAt.IsZero() {
				deliver(a)
			}
		}
		for ep, limit := range limits {
			mayHold := 0
			for _, a := range agents {
				if a.goneAt.IsZero() || h.clock.Now().Sub(a.goneAt) < hold {
					mayHold += int(a.open[ep])
				}
			}
			h.sched.mu.Lock()
			granted, _ := h.sched.conns.granted(ep)
			h.sched.mu.Unlock()
			if mayHold > limit {
				t.Fatalf("step %d: agents may hold %d connections to %s, over its limit %d (granted %d)", step, mayHold, ep, limit, granted)
			}
			if granted < mayHold {
				t.Fatalf("step %d: the budget counts %d connections to %s, agents may hold %d", step, granted, ep, mayHold)
			}
			if granted > limit {
				t.Fatalf("step %d: granted %d connections to %s, over its limit %d", step, granted, ep, limit)
			}
		}
	}
	if len(agents) == 0 || !agents[len(agents)-1].goneAt.IsZero() {
		agents = append(agents, &simAgent{sess: h.agent(fmt.Sprintf("s%d-last", seed), 2), open: map[string]uint32{}})
	}
	for round := 0; round < 200; round++ {
		if queued, leased := h.sched.Counts(); queued == 0 && leased == 0 {
			return
		}
		for _, a := range agents {
			if !a.goneAt.IsZero() {
				continue
			}
			deliver(a)
			for _, l := range a.leases {
				_ = h.sched.Result(a.sess, result(l, success()))
			}
			a.leases = nil
			deliver(a)
			var pools []*leasev1.EndpointPool
			for ep, n := range a.open {
				pools = append(pools, &leasev1.EndpointPool{EndpointId: ep, Open: n, Idle: n})
			}
			h.sched.PoolReport(a.sess, &leasev1.PoolReport{QuotaSeq: a.seq, Endpoints: pools})
		}
		h.clock.Advance(time.Second)
		h.sched.Tick()
	}
	queued, leased := h.sched.Counts()
	t.Fatalf("%d tasks still queued and %d leased after the agents finished everything they were given", queued, leased)
}
