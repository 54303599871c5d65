package capacity

import (
	"testing"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// fakePools holds connections as a pool does: a lowered limit closes
// idle ones only; busy ones stay open until they are given back.
type fakePools struct{ open, busy, limit map[string]int }

func newFakePools() *fakePools {
	return &fakePools{open: map[string]int{}, busy: map[string]int{}, limit: map[string]int{}}
}

func (f *fakePools) SetLimit(ep string, n int) {
	f.limit[ep] = n
	f.open[ep] = max(min(f.open[ep], n), f.busy[ep])
}

func (f *fakePools) Report() []*leasev1.EndpointPool {
	var out []*leasev1.EndpointPool
	for ep, n := range f.open {
		out = append(out, &leasev1.EndpointPool{EndpointId: ep, Open: uint32(n)})
	}
	return out
}

// A lowered quota is not settled while a busy connection above it is open:
// acknowledging it then would let the dispatcher grant the connection to
// another agent, one over the endpoint's limit.
func TestLoweredQuotaSettlesWhenBusyConnectionsClose(t *testing.T) {
	pools := newFakePools()
	q := NewQuotas(pools, []string{"ftp"})
	g := q.Grant()
	g.Set("ftp", 3)
	pools.open["ftp"], pools.busy["ftp"] = 3, 3
	if !q.Settled() {
		t.Fatal("3 open within a quota of 3 is settled")
	}
	g.Set("ftp", 2) // taken back while all three are busy
	if g.Settled() {
		t.Fatal("3 connections open above a quota of 2 must not be acknowledged")
	}
	pools.busy["ftp"] = 2
	pools.SetLimit("ftp", 2) // the transfer ended: the pool closes it on Put
	if !g.Settled() {
		t.Fatal("back within the quota: settled")
	}
}

// The pool's limit is the sum of every stream's quota, and a stream that
// ends takes its quota with it.
func TestPoolLimitSumsTheGrants(t *testing.T) {
	pools := newFakePools()
	q := NewQuotas(pools, []string{"ftp", "other"})
	if pools.limit["ftp"] != 0 || pools.limit["other"] != 0 {
		t.Fatalf("limits before any grant: %v", pools.limit)
	}
	d1, d2 := q.Grant(), q.Grant()
	d1.Set("ftp", 3)
	d2.Set("ftp", 2)
	if pools.limit["ftp"] != 5 {
		t.Fatalf("limit %d, want 3+2", pools.limit["ftp"])
	}
	d1.Drop()
	if pools.limit["ftp"] != 2 {
		t.Fatalf("limit %d after d1 left, want 2", pools.limit["ftp"])
	}
}

// Each dispatcher hears what the agent holds under the others' quotas,
// also a departed dispatcher's while its transfers finish, and connections
// still closing above every quota.
func TestReportTellsEachDispatcherWhatOthersGranted(t *testing.T) {
	pools := newFakePools()
	q := NewQuotas(pools, []string{"ftp"})
	d1, d2 := q.Grant(), q.Grant()
	d1.Set("ftp", 3)
	d2.Set("ftp", 2)
	pools.open["ftp"], pools.busy["ftp"] = 5, 5
	elsewhere := func(g *Grant) uint32 {
		for _, p := range g.Report() {
			if p.EndpointId == "ftp" {
				return p.Elsewhere
			}
		}
		t.Fatal("no report for ftp")
		return 0
	}
	if e1, e2 := elsewhere(d1), elsewhere(d2); e1 != 2 || e2 != 3 {
		t.Fatalf("elsewhere d1=%d d2=%d, want 2 and 3", e1, e2)
	}
	// d2 takes one back while all five are busy: one connection is above
	// every quota until it closes, and both must count it.
	d2.Set("ftp", 1)
	if e1, e2 := elsewhere(d1), elsewhere(d2); e1 != 2 || e2 != 4 {
		t.Fatalf("with one closing: elsewhere d1=%d d2=%d, want 2 and 4", e1, e2)
	}
	// A third dispatcher, just connected, learns of all of them.
	if e3 := elsewhere(q.Grant()); e3 != 5 {
		t.Fatalf("new dispatcher hears of %d, want 5", e3)
	}
}
