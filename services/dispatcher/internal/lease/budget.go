package lease

import (
	"log/slog"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
)

// Endpoint is what the scheduler knows of an endpoint.
type Endpoint struct {
	ID string
	// Remote (FTP and SFTP) endpoints hold connections and have a limit;
	// local ones neither.
	Remote bool
	// Limit is max_connections: logged-in connections for the whole fleet
	// (for SFTP, SSH connections).
	Limit int
	// Sessions, for SFTP, is how many sessions one SSH connection carries
	// (max_sessions_per_connection): each lease takes a session of its
	// own, so a unit of quota is a session and a connection is Sessions
	// units. Zero for FTP, whose leases share connections
	// (Config.LeasesPerConnection).
	Sessions uint32
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
func (c *connections) needsOf(spec *leasev1.TransferSpec) []need {
	var out []need
	for _, id := range []string{spec.SrcId, spec.DstId} {
		ep, ok := c.endpoints[id]
		if !ok || !ep.Remote {
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
		switch {
		case c.endpoints[out[i].endpoint].Sessions > 0:
			out[i].units = out[i].n // a session each, never shared
		case shared:
			out[i].units = 1
		default:
			out[i].units = out[i].n * c.perConn
		}
	}
	return out
}

// unitsPerConnection is how many units of quota one connection to the
// endpoint is: SFTP sessions per SSH connection, or FTP leases sharing one.
func (c *connections) unitsPerConnection(endpoint string) uint32 {
	if n := c.endpoints[endpoint].Sessions; n > 0 {
		return n
	}
	return c.perConn
}

// connectionsFor is the quota that covers units of leases on endpoint.
func (c *connections) connectionsFor(endpoint string, units uint32) uint32 {
	per := c.unitsPerConnection(endpoint)
	return (units + per - 1) / per
}

// connections is every FTP endpoint's connection budget as this dispatcher
// accounts it: the limit in force (configured or learned, limits.go), this
// dispatcher's share of it, and the quotas its sessions hold, hold back for
// disconnected agents, and take back. What is granted is computed from
// those owners, never kept as a sum. The scheduler owns it and calls it
// under its lock; it reads the scheduler's sessions and pushes quota
// messages to them.
type connections struct {
	endpoints map[string]Endpoint
	perConn   uint32 // Config.LeasesPerConnection, at least 1
	budgets   map[string]*budget
	group     group
	// held are quotas of disconnected agents still counted (detachHold).
	held []heldQuota
	// unreported counts sessions whose agent has not sent a pool report.
	unreported    int
	sessions      *[]*Session // the scheduler's
	detachHold    time.Duration
	limitRecovery time.Duration
	clock         Clock
	logger        *slog.Logger
	metrics       *metrics.Metrics
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

// granted is an endpoint's quotas granted plus quota taken back but
// not yet acknowledged (reclaiming, also counted alone): connections that
// may be open under this dispatcher.
func (c *connections) granted(endpoint string) (granted, reclaiming int) {
	for _, sess := range *c.sessions {
		granted += int(sess.quota[endpoint])
		for _, rc := range sess.reclaims {
			if rc.endpoint == endpoint {
				granted += int(rc.n)
				reclaiming += int(rc.n)
			}
		}
	}
	for _, h := range c.held {
		if h.endpoint == endpoint {
			granted += h.n
			reclaiming += h.reclaiming
		}
	}
	return granted, reclaiming
}

// elsewhere is what connected agents report holding to an endpoint
// under other dispatchers' quotas (EndpointPool.elsewhere). Shares add up
// to the limit only once every member has read the same group; until then,
// and while a restarted dispatcher's predecessor's transfers finish, this
// keeps grants within limit - elsewhere.
func (c *connections) elsewhere(endpoint string) int {
	n := 0
	for _, sess := range *c.sessions {
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
func (c *connections) setShares(dispatchers, rank int) {
	for id, b := range c.budgets {
		share := 0
		if dispatchers > 0 {
			share = b.limit / dispatchers
			if rank < b.limit%dispatchers {
				share++
			}
		}
		if share != b.share {
			c.logger.Info("connection share changed", "endpoint", id, "limit", b.limit, "share", share,
				"dispatchers", dispatchers, "rank", rank)
		}
		b.share = share
	}
	c.shrink()
}

// SetGroup applies the consumer group's size and this dispatcher's rank.
func (s *Scheduler) SetGroup(dispatchers, rank int) {
	s.update(func() {
		s.conns.group = group{known: true, dispatchers: dispatchers, rank: rank}
		s.conns.setShares(dispatchers, rank)
	})
}

// spare reports whether sess can run a task with these needs within the
// quotas it already holds.
func (c *connections) spare(sess *Session, needs []need) bool {
	for _, nd := range needs {
		if !c.fits(sess, nd) {
			return false
		}
	}
	return true
}

// fits reports whether the quota sess holds for nd's endpoint has room for nd.
func (c *connections) fits(sess *Session, nd need) bool {
	return sess.quota[nd.endpoint]*c.unitsPerConnection(nd.endpoint) >= sess.busy[nd.endpoint]+nd.units
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
func (c *connections) grantable(sess *Session, needs []need) bool {
	for _, nd := range needs {
		if c.deficit(sess, nd) <= 0 {
			continue
		}
		if c.unreported > 0 {
			return false // an agent that has not reported may hold anything
		}
		if !c.room(sess, nd) {
			return false
		}
	}
	return true
}

// deficit is how many more connections sess needs for nd.
func (c *connections) deficit(sess *Session, nd need) int {
	return int(c.connectionsFor(nd.endpoint, sess.busy[nd.endpoint]+nd.units)) - int(sess.quota[nd.endpoint])
}

// room reports whether the budget of nd's endpoint can grant sess's deficit.
func (c *connections) room(sess *Session, nd need) bool {
	b := c.budgets[nd.endpoint]
	if b == nil {
		return false
	}
	granted, _ := c.granted(nd.endpoint)
	deficit := c.deficit(sess, nd)
	return granted+deficit <= b.share && granted+deficit+c.elsewhere(nd.endpoint) <= b.limit
}

// gather takes back, once per endpoint at a time, the quota a task that
// could not be placed lacks on the agent closest to running it (the one
// whose quota already fits most of its endpoints), from agents that hold it
// without using it. Quota of an endpoint the closest agent already has is
// left alone: taking it back would only make an agent close a connection
// it is about to use. Aiming at one agent matters for a task between two
// endpoints: were each endpoint's quota kept because some agent has spare
// for it, a task needing both would wait for ever when no agent has both.
func (c *connections) gather(needs []need) {
	var closest *Session
	most := -1
	for _, sess := range *c.sessions {
		if !sess.takesWork() {
			continue
		}
		n := 0
		for _, nd := range needs {
			if c.fits(sess, nd) {
				n++
			}
		}
		if n > most {
			closest, most = sess, n
		}
	}
	if closest == nil {
		return
	}
	for _, nd := range needs {
		if c.fits(closest, nd) || c.room(closest, nd) {
			continue
		}
		if _, reclaiming := c.granted(nd.endpoint); reclaiming == 0 {
			c.reclaim(nd.endpoint, closest)
		}
	}
}

// setPools records an agent's pool report and what it holds under
// other dispatchers' quotas.
func (c *connections) setPools(sess *Session, pools []*leasev1.EndpointPool) {
	if !sess.reported {
		sess.reported = true
		c.unreported--
	}
	for _, p := range pools {
		c.checkHostKey(sess, p)
		c.learnSessions(p)
		sess.pool[p.EndpointId] = p
	}
}

// learnSessions lowers an SFTP endpoint's sessions per connection to what
// an agent found its server carries (ProFTPD's mod_sftp: one), so quotas
// count connections the agents can really fill: planning with the
// configured number sent leases that could only wait for a session and
// bounce back after lease.connection_wait. It never rises again: every
// agent learns it anew, and one server does not change its mind.
func (c *connections) learnSessions(p *leasev1.EndpointPool) {
	ep, ok := c.endpoints[p.EndpointId]
	if !ok || ep.Sessions == 0 || p.SessionsPerConnection == 0 || p.SessionsPerConnection >= ep.Sessions {
		return
	}
	c.logger.Info("an agent found the server carries fewer SFTP sessions per connection than configured; planning with its number",
		"endpoint", p.EndpointId, "max_sessions_per_connection", ep.Sessions, "learned", p.SessionsPerConnection)
	ep.Sessions = p.SessionsPerConnection
	c.endpoints[p.EndpointId] = ep
}

// forgetPools drops a departed session's report.
func (c *connections) forgetPools(sess *Session) {
	if !sess.reported {
		sess.reported = true
		c.unreported--
	}
	sess.pool = map[string]*leasev1.EndpointPool{}
}

// claim raises sess's quotas as needed and counts the task's
// connections as busy.
func (c *connections) claim(sess *Session, needs []need) {
	for _, nd := range needs {
		busy := sess.busy[nd.endpoint] + nd.units
		want := c.connectionsFor(nd.endpoint, busy)
		if want > sess.quota[nd.endpoint] {
			c.setQuota(sess, nd.endpoint, want)
		}
		sess.busy[nd.endpoint] = busy
	}
}

// unclaim returns a finished lease's connections to its session's
// spare quota.
func (c *connections) unclaim(sess *Session, needs []need) {
	for _, nd := range needs {
		sess.busy[nd.endpoint] -= min(nd.units, sess.busy[nd.endpoint])
	}
	c.shrink()
}

func (c *connections) setQuota(sess *Session, endpoint string, n uint32) {
	sess.quota[endpoint] = n
	sess.quotaSeq++
	sess.out.push(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Quota{Quota: &leasev1.Quota{
		EndpointId: endpoint, Connections: n, Seq: sess.quotaSeq,
	}}})
}

// reclaim takes one unit of spare quota for endpoint back from a
// session that is not using it, so another agent can have it once the
// owner has closed the connection and acknowledged. It returns false when
// no session has spare quota.
func (c *connections) reclaim(endpoint string, except *Session) bool {
	var victim *Session
	for _, sess := range *c.sessions {
		if sess == except || sess.quota[endpoint] <= c.connectionsFor(endpoint, sess.busy[endpoint]) {
			continue
		}
		// Prefer the session with the most spare: its connections are idle.
		if victim == nil || c.spareConnections(sess, endpoint) > c.spareConnections(victim, endpoint) {
			victim = sess
		}
	}
	if victim == nil {
		return false
	}
	c.setQuota(victim, endpoint, victim.quota[endpoint]-1)
	victim.reclaims = append(victim.reclaims, reclaim{seq: victim.quotaSeq, endpoint: endpoint, n: 1})
	return true
}

// shrink takes back spare quota above a share that shrank.
func (c *connections) shrink() {
	for id, b := range c.budgets {
		for {
			granted, reclaiming := c.granted(id)
			if granted-reclaiming <= b.share || !c.reclaim(id, nil) {
				break
			}
		}
	}
}

// spareConnections is quota sess holds for endpoint beyond its leases' needs.
func (c *connections) spareConnections(sess *Session, endpoint string) uint32 {
	return sess.quota[endpoint] - min(sess.quota[endpoint], c.connectionsFor(endpoint, sess.busy[endpoint]))
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
			s.conns.setPools(sess, r.Endpoints)
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

// holdSession takes a disconnected agent's quotas off it but keeps
// them counted for DetachHold: its stream may have broken only on our side
// (a cut network, a frozen proxy) while it still holds logged-in
// connections and transfers. Granting them to another agent at once put
// the fleet over an endpoint's limit, counted on the server with ss.
func (c *connections) holdSession(sess *Session) {
	hold := c.detachHold
	if hold <= 0 {
		hold = 20 * time.Second
	}
	until := c.clock.Now().Add(hold)
	for id, q := range sess.quota {
		if q > 0 {
			c.held = append(c.held, heldQuota{endpoint: id, n: int(q), until: until})
		}
	}
	for _, rc := range sess.reclaims {
		c.held = append(c.held, heldQuota{endpoint: rc.endpoint, n: int(rc.n), reclaiming: int(rc.n), until: until})
	}
	sess.quota, sess.reclaims = map[string]uint32{}, nil
}

// releaseHeld returns held quotas whose time is up to the budget.
func (c *connections) releaseHeld(now time.Time) {
	kept := c.held[:0]
	for _, h := range c.held {
		if now.Before(h.until) {
			kept = append(kept, h)
			continue
		}
	}
	c.held = kept
}
