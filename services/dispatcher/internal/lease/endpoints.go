package lease

import (
	"errors"
	"slices"
	"time"
)

// ErrUnknownEndpoint is returned for an endpoint id not in the connections file.
var ErrUnknownEndpoint = errors.New("unknown endpoint")

// PauseEndpoint holds back tasks that use an endpoint; they wait, queued.
func (a *Admin) PauseEndpoint(id string) (queued int, err error) {
	s := a.s
	s.update(func() {
		if _, ok := s.cfg.Endpoints[id]; !ok {
			err = ErrUnknownEndpoint
			return
		}
		s.paused[id] = true
		queued = a.queuedForLocked(id)
	})
	if err == nil {
		s.logger.Info("endpoint paused", "endpoint", id, "queued", queued)
	}
	return queued, err
}

// ResumeEndpoint undoes PauseEndpoint.
func (a *Admin) ResumeEndpoint(id string) error {
	s := a.s
	var err error
	s.update(func() {
		if _, ok := s.cfg.Endpoints[id]; !ok {
			err = ErrUnknownEndpoint
			return
		}
		delete(s.paused, id)
	})
	if err == nil {
		s.logger.Info("endpoint resumed", "endpoint", id)
	}
	return err
}

func (a *Admin) queuedForLocked(id string) int {
	n := 0
	a.s.ledger.queue.each(func(t *Task) {
		if t.route.src == id || t.route.dst == id {
			n++
		}
	})
	return n
}

// EndpointView is one endpoint as the admin API shows it.
type EndpointView struct {
	ID                    string
	Remote                bool
	Limit, Share, Granted int
	// ConfiguredLimit is max_connections; Limit is below it while a limit
	// learned from the server applies, for LimitReason since LimitChangedAt.
	ConfiguredLimit int
	LimitReason     string
	LimitChangedAt  time.Time
	// Quirks are what agents' connections found in the server (their pool
	// reports), each once.
	Quirks []string
	// HostKeys are the host keys an SFTP server offered on the agents'
	// last connections, each once (hostkeys.go); none for FTP and local
	// endpoints.
	HostKeys            []string
	Busy, Idle          int
	Breaker             BreakerState
	ConsecutiveFailures int
	LastError           string
	LastErrorAt         time.Time
	Paused              bool
	Queued              int
	Agents              []AgentConnections
}

// AgentConnections is one agent's connections to an endpoint.
type AgentConnections struct {
	AgentID                 string
	Quota, Busy, Open, Idle uint32
}

// Endpoints describes every endpoint of the connections file, by id.
func (a *Admin) Endpoints() []EndpointView {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]EndpointView, 0, len(s.cfg.Endpoints))
	for id, ep := range s.cfg.Endpoints {
		v := EndpointView{ID: id, Remote: ep.Remote, Limit: ep.Limit, Paused: s.paused[id], Queued: a.queuedForLocked(id)}
		if b := s.conns.budgets[id]; b != nil {
			v.Granted, _ = s.conns.granted(id)
			v.Limit, v.ConfiguredLimit, v.Share = b.limit, b.configured, b.share
			v.LimitReason, v.LimitChangedAt = b.limitReason, b.limitChangedAt
		}
		if br := s.breakers.byEP[id]; br != nil {
			v.Breaker, v.ConsecutiveFailures, v.LastError, v.LastErrorAt = br.state, br.failures, br.lastError, br.lastAt
		}
		for _, sess := range s.sessions {
			ac := AgentConnections{AgentID: sess.agentID, Quota: sess.quota[id], Busy: s.conns.connectionsFor(id, sess.busy[id])}
			if p := sess.pool[id]; p != nil {
				ac.Open, ac.Idle = p.Open, p.Idle
				for _, q := range p.Quirks {
					if !slices.Contains(v.Quirks, q) {
						v.Quirks = append(v.Quirks, q)
					}
				}
			}
			if ac.Quota+ac.Busy+ac.Open > 0 {
				v.Agents = append(v.Agents, ac)
			}
			v.Busy += int(ac.Busy)
			v.Idle += int(ac.Idle)
		}
		v.HostKeys = s.conns.hostKeys(id)
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b EndpointView) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}
