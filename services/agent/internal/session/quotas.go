package session

import (
	"sync"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// Pools is what sessions need of the agent's connection pools.
type Pools interface {
	// SetLimit sets how many connections to an endpoint may be held.
	SetLimit(endpoint string, n int)
	// Report describes every pool.
	Report() []*leasev1.EndpointPool
}

// Quotas adds up the connection quotas every dispatcher granted: an agent
// may hold, per endpoint, the sum of its sessions' quotas.
type Quotas struct {
	pools Pools
	mu    sync.Mutex
	bySes map[*Session]map[string]uint32
}

// NewQuotas starts with no quota anywhere: no connection is opened before
// a dispatcher grants one.
func NewQuotas(pools Pools, endpoints []string) *Quotas {
	q := &Quotas{pools: pools, bySes: map[*Session]map[string]uint32{}}
	for _, ep := range endpoints {
		pools.SetLimit(ep, 0)
	}
	return q
}

func (q *Quotas) set(sess *Session, endpoint string, n uint32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.bySes[sess]
	if m == nil {
		m = map[string]uint32{}
		q.bySes[sess] = m
	}
	m[endpoint] = n
	q.applyLocked(endpoint)
}

// drop forgets a session's quotas when its stream ends.
func (q *Quotas) drop(sess *Session) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.bySes[sess]
	delete(q.bySes, sess)
	for ep := range m {
		q.applyLocked(ep)
	}
}

// Settled reports whether every pool holds no more connections than its
// quotas allow. A lowered quota closes idle connections at once, busy ones
// only when their transfer ends (a zombie's, a cancelled one's): until then
// the lowered quota must not be acknowledged, or the dispatcher grants it
// to another agent while the connection is still open.
func (q *Quotas) Settled() bool {
	q.mu.Lock()
	totals := map[string]int{}
	for _, m := range q.bySes {
		for ep, n := range m {
			totals[ep] += int(n)
		}
	}
	q.mu.Unlock()
	for _, p := range q.pools.Report() {
		if int(p.Open) > totals[p.EndpointId] {
			return false
		}
	}
	return true
}

// reportFor describes the pools to sess's dispatcher: with each endpoint
// the connections that dispatcher did not grant (Elsewhere), so it never
// grants them a second time while another dispatcher's quota covers them.
func (q *Quotas) reportFor(sess *Session) []*leasev1.EndpointPool {
	q.mu.Lock()
	totals, mine := map[string]uint32{}, q.bySes[sess]
	for _, m := range q.bySes {
		for ep, n := range m {
			totals[ep] += n
		}
	}
	q.mu.Unlock()
	pools := q.pools.Report()
	for _, p := range pools {
		total, granted := totals[p.EndpointId], mine[p.EndpointId]
		p.Elsewhere = total - min(granted, total)
		if p.Open > total {
			p.Elsewhere += p.Open - total // closing above every quota
		}
	}
	return pools
}

func (q *Quotas) applyLocked(endpoint string) {
	total := 0
	for _, m := range q.bySes {
		total += int(m[endpoint])
	}
	q.pools.SetLimit(endpoint, total)
}
