// Package lease is the heart of the dispatcher: it owns every task from the
// moment it is read until its outcome is handed to the publisher, leases
// tasks to agent sessions within their credit, keeps leases alive on
// heartbeats, fences stale deliveries with tokens, and retries failures with
// backoff.
//
// Each concern is a type that owns its state, and all of them sit behind
// the Scheduler's one mutex:
//
//   - Scheduler: the agent sessions, where the next lease goes (routes take
//     turns, then the best-placed agent), draining, and the endpoints an
//     operator paused. Its exported methods are what the stream server, the
//     intake and the dispatcher's lifecycle call: each takes the lock,
//     hands the work to the part that owns the state, leases what it can,
//     and hands finished tasks over after unlocking.
//   - ledger (ledger.go): every task by key and id, the ready and delayed
//     queue, the leases and their delivery tokens, the counts by state and
//     the recently finished. It makes every move between states and answers
//     the agents' messages about their leases.
//   - connections (budget.go, limits.go): each FTP endpoint's connection
//     budget, this dispatcher's share, learned limits, and the quotas the
//     sessions hold or left behind.
//   - breakers (breaker.go): each FTP endpoint's circuit breaker.
//   - Events (events.go): Watch's subscriptions, behind a small lock of
//     their own so that subscribing never waits for the scheduler.
//   - Admin (admin.go, inspect.go, endpoints.go): no state of its own; the
//     operator's views and actions, each under the scheduler's lock.
//
// Operations are short (map and slice updates); the sends to agents happen
// on each session's own goroutine, and finished tasks are handed over after
// the mutex is released.
package lease

import (
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// Clock tells the time; tests inject a fake one so expiry and backoff run
// in microseconds.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// SystemClock is the wall clock.
var SystemClock Clock = systemClock{}

// Config tunes the scheduler.
type Config struct {
	DispatcherID string
	TTL          time.Duration
	Heartbeat    time.Duration
	MaxAttempts  int
	BaseBackoff  time.Duration
	MaxBackoff   time.Duration
	// Endpoints are the connections file's endpoints, for connection limits.
	Endpoints map[string]Endpoint
	Breaker   BreakerConfig
	// DetachHold is how long a disconnected agent's connection quotas stay
	// counted: a stream can break on the dispatcher's side while the agent,
	// not knowing yet (its keepalive notices within 15 s), still transfers.
	// The dispatcher uses lease.ttl, the time it trusts silence anyway.
	// Zero means 20 s.
	DetachHold time.Duration
	// LeasesPerConnection is how many leases with one FTP side share a unit
	// of an agent's connection quota (see needsOf). Zero means 1: a lease
	// per connection.
	LeasesPerConnection uint32
	// Tracer and Propagator trace leases; nil when tracing is off.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// LimitRecovery is how long a limit learned from a server's refusals
	// holds without another refusal before it is raised by one
	// (pool.limit_recovery_interval); zero means a minute.
	LimitRecovery time.Duration
	// Rand draws backoff jitter; nil means a random seed.
	Rand *rand.Rand
}

// Scheduler leases tasks to agents. Create it with New.
type Scheduler struct {
	cfg      Config
	clock    Clock
	logger   *slog.Logger
	metrics  *metrics.Metrics
	onFinish func([]Finished)
	events   *Events

	mu       sync.Mutex
	ledger   *ledger
	conns    *connections
	breakers *breakers
	sessions []*Session
	rr       int // the session placement looks at first
	nextSess uint64
	draining bool
	paused   map[string]bool // endpoints whose tasks an operator holds back
}

// New returns a scheduler that hands finished tasks to onFinish, in batches,
// outside its lock. onFinish must not block for long.
func New(cfg Config, clock Clock, m *metrics.Metrics, logger *slog.Logger, onFinish func([]Finished)) *Scheduler {
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	logger = logger.With("component", "scheduler")
	// Ours to change: SFTP endpoints learn their sessions per connection
	// (learnSessions).
	cfg.Endpoints = maps.Clone(cfg.Endpoints)
	budgets, byEP := map[string]*budget{}, map[string]*breaker{}
	for id, ep := range cfg.Endpoints {
		if ep.Remote {
			budgets[id] = &budget{limit: ep.Limit, configured: ep.Limit, share: ep.Limit}
			byEP[id] = &breaker{}
			m.BreakerState.WithLabelValues(id).Set(0)
			m.ConnectionLimit.WithLabelValues(id).Set(float64(ep.Limit))
		}
	}
	s := &Scheduler{
		cfg:      cfg,
		clock:    clock,
		logger:   logger,
		metrics:  m,
		onFinish: onFinish,
		events:   newEvents(clock),
		breakers: &breakers{byEP: byEP, cfg: cfg.Breaker, clock: clock, logger: logger, metrics: m},
		paused:   map[string]bool{},
	}
	s.conns = &connections{
		endpoints: cfg.Endpoints, perConn: max(cfg.LeasesPerConnection, 1), budgets: budgets,
		sessions: &s.sessions, detachHold: cfg.DetachHold, limitRecovery: cfg.LimitRecovery,
		clock: clock, logger: logger, metrics: m,
	}
	s.ledger = &ledger{
		byKey:        map[Key]*Task{},
		byID:         map[string]*Task{},
		queue:        newQueue(),
		leases:       map[string]*lease{},
		byState:      map[taskState]int{},
		recent:       newRecentTasks(10000),
		dispatcherID: cfg.DispatcherID,
		ttl:          cfg.TTL,
		policy:       retryPolicy{maxAttempts: cfg.MaxAttempts, baseBackoff: cfg.BaseBackoff, maxBackoff: cfg.MaxBackoff, rand: cfg.Rand},
		tracing:      tracing{tracer: cfg.Tracer, propagator: cfg.Propagator},
		conns:        s.conns,
		breakers:     s.breakers,
		events:       s.events,
		clock:        clock,
		logger:       logger,
		metrics:      m,
	}
	return s
}

// Events is where Watch subscribes to task events.
func (s *Scheduler) Events() *Events { return s.events }

// update runs fn under the lock, leases what it can, and hands finished
// tasks over after unlocking.
func (s *Scheduler) update(fn func()) {
	s.mu.Lock()
	fn()
	s.dispatchLocked()
	done := s.ledger.takeFinished()
	s.mu.Unlock()
	if len(done) > 0 {
		s.onFinish(done)
	}
}

// Enqueue takes ownership of a task. The task's Spec must name its endpoints.
func (s *Scheduler) Enqueue(t *Task) {
	s.update(func() { s.ledger.add(t) })
}

// Tick promotes tasks whose backoff ended and expires leases whose heartbeat
// stopped. Run calls it periodically; tests call it with a fake clock.
func (s *Scheduler) Tick() {
	s.update(func() {
		now := s.clock.Now()
		s.conns.releaseHeld(now)
		s.conns.recoverLimits(now)
		s.ledger.promote(now)
		s.ledger.expire(now)
	})
}

// dispatchLocked leases ready tasks. Routes take turns; each route's next
// task goes to the agent best placed to run it: one with an idle connection
// to its endpoints, else one with spare quota, else one the budget can
// grant quota to. A task no agent can take now stays queued without
// holding up other routes; when only another agent's unused quota is in the
// way, that quota is taken back for next time.
func (s *Scheduler) dispatchLocked() {
	if s.draining || len(s.sessions) == 0 {
		return
	}
	now := s.clock.Now()
	for {
		credit := false
		for _, sess := range s.sessions {
			if sess.takesWork() {
				credit = true
				break
			}
		}
		if !credit {
			return
		}
		taken := s.ledger.queue.scan(func(t *Task) bool {
			if ep, b := s.breakers.outageOver(t.needs, now); b != nil {
				s.ledger.finish(t, s.breakers.outageOutcome(ep, b, now), "")
				return true
			}
			if s.paused[t.route.src] || s.paused[t.route.dst] || !s.breakers.allow(t.needs, now) {
				return false
			}
			sess := s.placeLocked(t)
			if sess == nil {
				return false
			}
			s.ledger.grant(t, sess)
			return true
		})
		if taken == 0 {
			return
		}
	}
}

// placeLocked picks the session for a task, or nil.
func (s *Scheduler) placeLocked(t *Task) *Session {
	var withSpare, withGrant *Session
	n := len(s.sessions)
	for i := range n {
		sess := s.sessions[(s.rr+i)%n]
		if !sess.takesWork() {
			continue
		}
		if s.conns.spare(sess, t.needs) {
			if idleFor(sess, t.needs) {
				s.rr = (s.rr + i + 1) % n
				return sess
			}
			if withSpare == nil {
				withSpare = sess
			}
		} else if withGrant == nil && s.conns.grantable(sess, t.needs) {
			withGrant = sess
		}
	}
	s.rr = (s.rr + 1) % n
	if withSpare != nil {
		return withSpare
	}
	if withGrant != nil {
		return withGrant
	}
	// The budget is used up: if agents sit on quota they do not use, take
	// it back so this task can run soon.
	s.conns.gather(t.needs)
	return nil
}

// Attach registers an agent's stream and queues the Welcome.
func (s *Scheduler) Attach(hello *leasev1.Hello, addr string) *Session {
	sess := &Session{
		agentID:     hello.AgentId,
		version:     hello.Version,
		hostname:    hello.Hostname,
		slots:       hello.Slots,
		addr:        addr,
		leases:      map[string]*lease{},
		quota:       map[string]uint32{},
		busy:        map[string]uint32{},
		pool:        map[string]*leasev1.EndpointPool{},
		connectedAt: s.clock.Now(),
		out:         newOutbox(),
	}
	sess.out.push(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Welcome{Welcome: &leasev1.Welcome{
		DispatcherId:      s.cfg.DispatcherID,
		HeartbeatInterval: durationpb.New(s.cfg.Heartbeat),
		LeaseTtl:          durationpb.New(s.cfg.TTL),
	}}})
	s.update(func() {
		s.nextSess++
		sess.id = s.nextSess
		if s.draining {
			sess.draining = true
			sess.out.push(drainMsg(s.cfg.TTL))
		}
		s.sessions = append(s.sessions, sess)
		s.conns.unreported++
	})
	s.logger.Info("agent connected", "agent_id", sess.agentID, "address", addr, "slots", sess.slots, "version", sess.version)
	return sess
}

// Detach removes a session whose stream ended and takes back its leases.
func (s *Scheduler) Detach(sess *Session, cause error) {
	var lost int
	s.update(func() {
		i := slices.Index(s.sessions, sess)
		if i < 0 {
			return
		}
		s.sessions = slices.Delete(s.sessions, i, i+1)
		sess.detached = true
		// Hold its quotas first: granted is summed over the sessions, and
		// ending its leases below may reclaim against it.
		s.conns.holdSession(sess)
		for _, l := range sess.leases {
			lost++
			s.ledger.lose(l, failure.ConnectionError,
				fmt.Sprintf("agent %s disconnected during the transfer", sess.agentID))
		}
		s.conns.forgetPools(sess)
	})
	sess.out.close()
	s.logger.Info("agent disconnected", "agent_id", sess.agentID, "leases_taken_back", lost, "cause", cause)
}

// SetWindow applies an agent's credit.
func (s *Scheduler) SetWindow(sess *Session, window uint32) {
	s.update(func() { sess.window = window })
}

// Progress records a heartbeat with the bytes moved so far.
func (s *Scheduler) Progress(sess *Session, p *leasev1.Progress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ledger.progress(sess, p)
}

// Commit answers whether the agent may make its write visible: only while it
// still holds the lease under this token and nobody cancelled the task.
// A refused commit also comes back as a RefusedError, for the log.
func (s *Scheduler) Commit(sess *Session, c *leasev1.Commit) (*leasev1.CommitDecision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ledger.commit(sess, c)
}

// Result ends a lease with the agent's outcome.
func (s *Scheduler) Result(sess *Session, r *leasev1.Result) (err error) {
	s.update(func() { err = s.ledger.result(sess, r) })
	return err
}

// Release takes back a lease the agent hands back without an outcome. It
// does not count as a failed attempt: the agent is going away, the task is fine.
func (s *Scheduler) Release(sess *Session, r *leasev1.Release) (err error) {
	s.update(func() { err = s.ledger.release(sess, r) })
	return err
}

// Revoke drops every task of the given partitions without an outcome: their
// new owner reads them again from the committed offset. Leases in flight are
// cancelled on their agents.
func (s *Scheduler) Revoke(partitions []int32) (dropped int) {
	s.update(func() { dropped = s.ledger.revoke(partitions) })
	return dropped
}

func drainMsg(grace time.Duration) *leasev1.ConnectResponse {
	return &leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Drain{Drain: &leasev1.Drain{
		GracePeriod: durationpb.New(grace),
	}}}
}

// Drain stops all leasing, for shutdown, and tells every agent.
func (s *Scheduler) Drain(grace time.Duration) {
	s.update(func() {
		s.draining = true
		for _, sess := range s.sessions {
			if !sess.draining {
				sess.draining = true
				sess.out.push(drainMsg(grace))
			}
		}
	})
}

// CloseSessions ends every agent stream, for shutdown after the drain.
func (s *Scheduler) CloseSessions() {
	s.mu.Lock()
	sessions := slices.Clone(s.sessions)
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.out.close()
	}
}

// WaitIdle returns a channel closed once no lease is in flight.
func (s *Scheduler) WaitIdle() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ledger.waitIdle()
}

// Counts reports the tasks waiting for an agent and the leases in flight.
func (s *Scheduler) Counts() (queued, leased int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ledger.counts()
}
