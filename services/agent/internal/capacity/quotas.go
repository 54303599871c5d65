package capacity

import (
	"sync"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// Pools is what quotas need of the agent's connection pools.
type Pools interface {
	// SetLimit sets how many connections to an endpoint may be held.
	SetLimit(endpoint string, n int)
	// Report describes every pool.
	Report() []*leasev1.EndpointPool
}

// Quotas adds up the connection quotas every dispatcher granted: an agent
// may hold, per endpoint, the sum of its streams' quotas.
type Quotas struct {
	pools Pools
	mu    sync.Mutex
	// grants holds each stream's quotas by endpoint; a stream appears once
	// it was granted one.
	grants map[*Grant]map[string]uint32
}

// NewQuotas starts with no quota anywhere: no connection is opened before
// a dispatcher grants one.
func NewQuotas(pools Pools, endpoints []string) *Quotas {
	q := &Quotas{pools: pools, grants: map[*Grant]map[string]uint32{}}
	for _, ep := range endpoints {
		pools.SetLimit(ep, 0)
	}
	return q
}

// Grant returns a handle for what one stream's dispatcher grants.
func (q *Quotas) Grant() *Grant { return &Grant{quotas: q} }

// Settled reports whether every pool holds no more connections than its
// quotas allow. A lowered quota closes idle connections at once, busy ones
// only when their transfer ends (a zombie's, a cancelled one's): until then
// the lowered quota must not be acknowledged, or the dispatcher grants it
// to another agent while the connection is still open.
func (q *Quotas) Settled() bool {
	q.mu.Lock()
	totals := q.totalsLocked()
	q.mu.Unlock()
	for _, p := range q.pools.Report() {
		if p.Open > totals[p.EndpointId] {
			return false
		}
	}
	return true
}

// totalsLocked sums every stream's quotas by endpoint.
func (q *Quotas) totalsLocked() map[string]uint32 {
	totals := map[string]uint32{}
	for _, m := range q.grants {
		for ep, n := range m {
			totals[ep] += n
		}
	}
	return totals
}

func (q *Quotas) applyLocked(endpoint string) {
	total := 0
	for _, m := range q.grants {
		total += int(m[endpoint])
	}
	q.pools.SetLimit(endpoint, total)
}

// Grant is what one stream's dispatcher granted.
type Grant struct {
	quotas *Quotas
}

// Set records the dispatcher's quota for an endpoint and applies the new
// sum to its pool.
func (g *Grant) Set(endpoint string, n uint32) {
	q := g.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.grants[g]
	if m == nil {
		m = map[string]uint32{}
		q.grants[g] = m
	}
	m[endpoint] = n
	q.applyLocked(endpoint)
}

// Drop forgets the stream's quotas when it ends.
func (g *Grant) Drop() {
	q := g.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.grants[g]
	delete(q.grants, g)
	for ep := range m {
		q.applyLocked(ep)
	}
}

// Settled is Quotas.Settled, which a stream checks before it acknowledges
// a quota.
func (g *Grant) Settled() bool { return g.quotas.Settled() }

// Report describes the pools to this stream's dispatcher: with each
// endpoint the connections it did not grant (Elsewhere), so it never
// grants them a second time while another dispatcher's quota covers them.
func (g *Grant) Report() []*leasev1.EndpointPool {
	q := g.quotas
	q.mu.Lock()
	totals, mine := q.totalsLocked(), map[string]uint32{}
	for ep, n := range q.grants[g] {
		mine[ep] = n
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
