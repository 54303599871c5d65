package session

import (
	"sync/atomic"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/capacity"
)

// quotaAck is one stream's connection quotas and their acknowledgement: a
// quota is acknowledged (its seq in a pool report) once the pools are
// within it.
type quotaAck struct {
	grant *capacity.Grant
	// applied is the seq of the last quota acknowledged: applied to the
	// pools, and the pools within it. pending is the last one received.
	applied atomic.Uint64
	pending atomic.Uint64
}

// received applies a quota from the dispatcher. It returns the seq to
// acknowledge and whether that can be done at once.
func (a *quotaAck) received(q *leasev1.Quota) (uint64, bool) {
	a.grant.Set(q.EndpointId, q.Connections)
	if q.Seq > a.pending.Load() {
		a.pending.Store(q.Seq)
	}
	seq := a.ackable()
	return seq, seq > a.applied.Load()
}

// ackable is the quota seq that may be acknowledged now: the last one
// received once the pools are within their quotas, else the last one
// acknowledged.
func (a *quotaAck) ackable() uint64 {
	if p := a.pending.Load(); p > a.applied.Load() && a.grant.Settled() {
		return p
	}
	return a.applied.Load()
}

// report acknowledges quotas up to seq and describes the pools.
func (a *quotaAck) report(seq uint64) *leasev1.ConnectRequest {
	if seq > a.applied.Load() {
		a.applied.Store(seq)
	}
	return &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_PoolReport{PoolReport: &leasev1.PoolReport{
		QuotaSeq: a.applied.Load(), Endpoints: a.grant.Report(),
	}}}
}
