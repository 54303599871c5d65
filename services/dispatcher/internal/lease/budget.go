package lease

import (
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// Endpoint is what the scheduler knows of an endpoint.
type Endpoint struct {
	ID string
	// FTP endpoints hold connections and have a limit; local ones neither.
	FTP bool
	// Limit is max_connections: logged-in connections for the whole fleet.
	Limit int
}

// Config.LeasesPerConnection is how many leases with one FTP side may share
// a unit of connection quota. Such a lease holds its connection only while
// it reads or writes the remote file, not while the agent writes the local
// side, asks to commit, renames and reports: a second lease waiting in the
// agent's pool keeps the connection busy through that time (small files
// spend most of a lease there). The agent's pool never opens more than its
// quotas, so the fleet's connections stay within max_connections.
//
// A relay holds one connection while it waits for the other; were its
// connections shared, two relays in opposite directions could each hold
// what the other waits for. Relays therefore take whole connections
// (LeasesPerConnection units each), which keeps every relay's connections
// within the quota, while leases with one FTP side never wait holding one.

// need is one endpoint a task uses: how many connections to it, and how
// many units of quota (LeasesPerConnection units to a connection) it takes.
type need struct {
	endpoint string
	n        uint32
	units    uint32
}

// needsOf lists the FTP connections a transfer uses: one per FTP side, two
// when both sides are the same FTP endpoint.
func (s *Scheduler) needsOf(spec *leasev1.TransferSpec) []need {
	var out []need
	for _, id := range []string{spec.SrcId, spec.DstId} {
		ep, ok := s.cfg.Endpoints[id]
		if !ok || !ep.FTP {
			continue
		}
		if len(out) == 1 && out[0].endpoint == id {
			out[0].n++
			continue
		}
		out = append(out, need{endpoint: id, n: 1})
	}
	shared := len(out) == 1 && out[0].n == 1
	for i := range out {
		out[i].units = out[i].n * s.perConn
		if shared {
			out[i].units = 1
		}
	}
	return out
}

// connectionsFor is the quota that covers units of leases.
func (s *Scheduler) connectionsFor(units uint32) uint32 {
	return (units + s.perConn - 1) / s.perConn
}

// budget is one FTP endpoint's connections as this dispatcher accounts them.
//
// The fleet-wide limit is split between dispatchers (share); this dispatcher
// grants agents quotas out of its share and leases a task only within the
// quotas of its endpoints, so no agent ever opens a connection the budget
// does not cover, however many agents run.
type budget struct {
	// limit is the fleet-wide limit in force: configured (max_connections),
	// or less while a limit learned from the server applies (limits.go).
	limit      int
	configured int
	// limitReason says why limit is below configured; limitChangedAt is
	// when it last moved, lastFull when the server last refused a login
	// for being full.
	limitReason    string
	limitChangedAt time.Time
	lastFull       time.Time
	share          int
}

// What a budget has out is computed from the sessions and held quotas that
// own it, never kept as a sum to update by hand.

// grantedLocked is an endpoint's quotas granted plus quota taken back but
// not yet acknowledged (reclaiming, also counted alone): connections that
// may be open under this dispatcher.
func (s *Scheduler) grantedLocked(endpoint string) (granted, reclaiming int) {
	for _, sess := range s.sessions {
		granted += int(sess.quota[endpoint])
		for _, rc := range sess.reclaims {
			if rc.endpoint == endpoint {
				granted += int(rc.n)
				reclaiming += int(rc.n)
			}
		}
	}
	for _, h := range s.held {
		if h.endpoint == endpoint {
			granted += h.n
			reclaiming += h.reclaiming
		}
	}
	return granted, reclaiming
}

// elsewhereLocked is what connected agents report holding to an endpoint
// under other dispatchers' quotas (EndpointPool.elsewhere). Shares add up
// to the limit only once every member has read the same group; until then,
// and while a restarted dispatcher's predecessor's transfers finish, this
// keeps grants within limit - elsewhere.
func (s *Scheduler) elsewhereLocked(endpoint string) int {
	n := 0
	for _, sess := range s.sessions {
		if p := sess.pool[endpoint]; p != nil {
			n += int(p.Elsewhere)
		}
	}
	return n
}

// setShares recomputes every endpoint's share of its limit for a group of
// `dispatchers` members in which this one has the given rank, so the shares
// of all members add up to the limit; 0 dispatchers (group not known yet)
// means no share at all. A share smaller than what is granted is taken back
// as leases end.
func (s *Scheduler) setSharesLocked(dispatchers, rank int) {
	for id, b := range s.budgets {
		share := 0
		if dispatchers > 0 {
			share = b.limit / dispatchers
			if rank < b.limit%dispatchers {
				share++
			}
		}
		if share != b.share {
			s.logger.Info("connection share changed", "endpoint", id, "limit", b.limit, "share", share,
				"dispatchers", dispatchers, "rank", rank)
		}
		b.share = share
	}
	s.shrinkLocked()
}

// SetGroup applies the consumer group's size and this dispatcher's rank.
func (s *Scheduler) SetGroup(dispatchers, rank int) {
	s.update(func() {
		s.group = group{known: true, dispatchers: dispatchers, rank: rank}
		s.setSharesLocked(dispatchers, rank)
	})
}

// spare reports whether sess can run a task with these needs within the
// quotas it already holds.
func (s *Scheduler) spare(sess *Session, needs []need) bool {
	for _, nd := range needs {
		if !s.fits(sess, nd) {
			return false
		}
	}
	return true
}

// fits reports whether the quota sess holds for nd's endpoint has room for nd.
func (s *Scheduler) fits(sess *Session, nd need) bool {
	return sess.quota[nd.endpoint]*s.perConn >= sess.busy[nd.endpoint]+nd.units
}

// anySpareFor reports whether a session that takes work has quota with
// room for nd: then a task that cannot be placed waits for its other
// endpoint, and taking nd's quota back would only make the agent close a
// connection it is about to use.
func (s *Scheduler) anySpareFor(nd need) bool {
	for _, sess := range s.sessions {
		if sess.takesWork() && s.fits(sess, nd) {
			return true
		}
	}
	return false
}

// idleFor reports whether sess said it holds an idle connection to every
// endpoint in needs: the best agent for the task, no login needed.
func idleFor(sess *Session, needs []need) bool {
	for _, nd := range needs {
		if p := sess.pool[nd.endpoint]; p == nil || p.Idle == 0 {
			return false
		}
	}
	return true
}

// grantable reports whether this dispatcher's shares can cover what sess
// lacks for needs, and the fleet's limit, less what agents hold under other
// dispatchers' quotas, can too.
func (s *Scheduler) grantable(sess *Session, needs []need) bool {
	for _, nd := range needs {
		deficit := int(s.connectionsFor(sess.busy[nd.endpoint]+nd.units)) - int(sess.quota[nd.endpoint])
		if deficit <= 0 {
			continue
		}
		if s.unreported > 0 {
			return false // an agent that has not reported may hold anything
		}
		b := s.budgets[nd.endpoint]
		if b == nil {
			return false
		}
		granted, _ := s.grantedLocked(nd.endpoint)
		if granted+deficit > b.share || granted+deficit+s.elsewhereLocked(nd.endpoint) > b.limit {
			return false
		}
	}
	return true
}

// setPoolsLocked records an agent's pool report and what it holds under
// other dispatchers' quotas.
func (s *Scheduler) setPoolsLocked(sess *Session, pools []*leasev1.EndpointPool) {
	if !sess.reported {
		sess.reported = true
		s.unreported--
	}
	for _, p := range pools {
		sess.pool[p.EndpointId] = p
	}
}

// forgetPoolsLocked drops a departed session's report.
func (s *Scheduler) forgetPoolsLocked(sess *Session) {
	if !sess.reported {
		sess.reported = true
		s.unreported--
	}
	sess.pool = map[string]*leasev1.EndpointPool{}
}

// claimLocked raises sess's quotas as needed and counts the task's
// connections as busy.
func (s *Scheduler) claimLocked(sess *Session, needs []need) {
	for _, nd := range needs {
		busy := sess.busy[nd.endpoint] + nd.units
		want := s.connectionsFor(busy)
		if want > sess.quota[nd.endpoint] {
			s.setQuotaLocked(sess, nd.endpoint, want)
		}
		sess.busy[nd.endpoint] = busy
	}
}

// unclaimLocked returns a finished lease's connections to its session's
// spare quota.
func (s *Scheduler) unclaimLocked(sess *Session, needs []need) {
	for _, nd := range needs {
		sess.busy[nd.endpoint] -= min(nd.units, sess.busy[nd.endpoint])
	}
	s.shrinkLocked()
}

func (s *Scheduler) setQuotaLocked(sess *Session, endpoint string, n uint32) {
	sess.quota[endpoint] = n
	sess.quotaSeq++
	sess.out.push(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Quota{Quota: &leasev1.Quota{
		EndpointId: endpoint, Connections: n, Seq: sess.quotaSeq,
	}}})
}

// reclaimLocked takes one unit of spare quota for endpoint back from a
// session that is not using it, so another agent can have it once the
// owner has closed the connection and acknowledged. It returns false when
// no session has spare quota.
func (s *Scheduler) reclaimLocked(endpoint string, except *Session) bool {
	var victim *Session
	for _, sess := range s.sessions {
		if sess == except || sess.quota[endpoint] <= s.connectionsFor(sess.busy[endpoint]) {
			continue
		}
		// Prefer the session with the most spare: its connections are idle.
		if victim == nil || s.spareConnections(sess, endpoint) > s.spareConnections(victim, endpoint) {
			victim = sess
		}
	}
	if victim == nil {
		return false
	}
	s.setQuotaLocked(victim, endpoint, victim.quota[endpoint]-1)
	victim.reclaims = append(victim.reclaims, reclaim{seq: victim.quotaSeq, endpoint: endpoint, n: 1})
	return true
}

// shrinkLocked takes back spare quota above a share that shrank.
func (s *Scheduler) shrinkLocked() {
	for id, b := range s.budgets {
		for {
			granted, reclaiming := s.grantedLocked(id)
			if granted-reclaiming <= b.share || !s.reclaimLocked(id, nil) {
				break
			}
		}
	}
}

// spareConnections is quota sess holds for endpoint beyond its leases' needs.
func (s *Scheduler) spareConnections(sess *Session, endpoint string) uint32 {
	return sess.quota[endpoint] - min(sess.quota[endpoint], s.connectionsFor(sess.busy[endpoint]))
}

type reclaim struct {
	seq      uint64
	endpoint string
	n        uint32
}

// PoolReport records an agent's pools and settles the reclaims it applied.
func (s *Scheduler) PoolReport(sess *Session, r *leasev1.PoolReport) {
	s.update(func() {
		if !sess.detached {
			s.setPoolsLocked(sess, r.Endpoints)
		}
		kept := sess.reclaims[:0]
		for _, rc := range sess.reclaims {
			if rc.seq <= r.QuotaSeq {
				continue // applied: the connection is closed
			}
			kept = append(kept, rc)
		}
		sess.reclaims = kept
	})
}

// heldQuota is connection budget a disconnected agent may still be using.
type heldQuota struct {
	endpoint   string
	n          int // counted in granted
	reclaiming int // of n, counted in reclaiming
	until      time.Time
}

// holdSessionLocked takes a disconnected agent's quotas off it but keeps
// them counted for DetachHold: its stream may have broken only on our side
// (a cut network, a frozen proxy) while it still holds logged-in
// connections and transfers. Granting them to another agent at once put
// the fleet over an endpoint's limit, counted on the server with ss.
func (s *Scheduler) holdSessionLocked(sess *Session) {
	hold := s.cfg.DetachHold
	if hold <= 0 {
		hold = 20 * time.Second
	}
	until := s.clock.Now().Add(hold)
	for id, q := range sess.quota {
		if q > 0 {
			s.held = append(s.held, heldQuota{endpoint: id, n: int(q), until: until})
		}
	}
	for _, rc := range sess.reclaims {
		s.held = append(s.held, heldQuota{endpoint: rc.endpoint, n: int(rc.n), reclaiming: int(rc.n), until: until})
	}
	sess.quota, sess.reclaims = map[string]uint32{}, nil
}

// releaseHeldLocked returns held quotas whose time is up to the budget.
func (s *Scheduler) releaseHeldLocked(now time.Time) {
	kept := s.held[:0]
	for _, h := range s.held {
		if now.Before(h.until) {
			kept = append(kept, h)
			continue
		}
	}
	s.held = kept
}
