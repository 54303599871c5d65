package session

import (
	"testing"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// fakePools holds connections as a pool does: a lowered limit closes
// idle ones only; busy ones stay open until they are given back.
type fakePools struct{ open, busy, limit map[string]int }

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
	pools := &fakePools{open: map[string]int{}, busy: map[string]int{}, limit: map[string]int{}}
	q := NewQuotas(pools, []string{"ftp"})
	s := &Session{}
	q.set(s, "ftp", 3)
	pools.open["ftp"], pools.busy["ftp"] = 3, 3
	if !q.Settled() {
		t.Fatal("3 open within a quota of 3 is settled")
	}
	q.set(s, "ftp", 2) // taken back while all three are busy
	if q.Settled() {
		t.Fatal("3 connections open above a quota of 2 must not be acknowledged")
	}
	pools.busy["ftp"] = 2
	pools.SetLimit("ftp", 2) // the transfer ended: the pool closes it on Put
	if !q.Settled() {
		t.Fatal("back within the quota: settled")
	}
}
