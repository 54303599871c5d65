// Package lease is the heart of the dispatcher: it owns every task from the
// moment it is read until its outcome is handed to the publisher, leases
// tasks to agent sessions within their credit, keeps leases alive on
// heartbeats, fences stale deliveries with tokens, and retries failures with
// backoff.
//
// All state sits behind one mutex. Operations are short (map and slice
// updates); the sends to agents happen on each session's own goroutine, and
// finished tasks are handed over after the mutex is released.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
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

// Key is a task's position in the input topic.
type Key struct {
	Partition int32
	Offset    int64
}

type taskState int

const (
	stateQueued taskState = iota + 1
	stateDelayed
	stateLeased
	stateFinished
	stateRevoked
)

// Task is a task the scheduler owns from Enqueue until it finishes.
type Task struct {
	Key  Key
	ID   string
	Spec *leasev1.TransferSpec
	// Span is the task's receive span; leases are traced as its children.
	Span       trace.SpanContext
	ReceivedAt time.Time
	// Payload is the caller's: it travels with the task to Finished.
	Payload any

	route     routeKey
	needs     []need
	queuedAt  time.Time
	state     taskState
	attempt   uint32 // deliveries so far
	failures  uint32 // deliveries that ended in a retryable failure
	unreached uint32 // deliveries whose endpoint could not be reached (not counted as attempts)
	notBefore time.Time
	lastCode  failure.Code
	lastMsg   string
	lease     *lease
	cancel    string // why an operator cancelled it, once they did
	// What earlier deliveries left that the next one can build on.
	resumeToken  uint64
	resumeOffset int64
	prior        *leasev1.PriorCommit
}

// Finished is a task whose outcome is decided.
type Finished struct {
	Task     *Task
	Outcome  *leasev1.Outcome
	Attempts uint32
	AgentID  string
}

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
	perConn  uint32 // cfg.LeasesPerConnection, at least 1
	clock    Clock
	logger   *slog.Logger
	metrics  *metrics.Metrics
	onFinish func([]Finished)

	mu       sync.Mutex
	queue    *queue
	tasks    map[Key]*Task
	byID     map[string]*Task
	leases   map[string]*lease
	sessions []*Session
	rr       int
	counts   map[taskState]int
	token    uint64
	nextSess uint64
	draining bool
	recent   *recentTasks
	finished []Finished
	idle     chan struct{} // closed when no lease is in flight; see WaitIdle
	conns    *connections
	breakers *breakers
	paused   map[string]bool
	events   hub
}

// New returns a scheduler that hands finished tasks to onFinish, in batches,
// outside its lock. onFinish must not block for long.
func New(cfg Config, clock Clock, m *metrics.Metrics, logger *slog.Logger, onFinish func([]Finished)) *Scheduler {
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	budgets, byEP := map[string]*budget{}, map[string]*breaker{}
	for id, ep := range cfg.Endpoints {
		if ep.FTP {
			budgets[id] = &budget{limit: ep.Limit, configured: ep.Limit, share: ep.Limit}
			byEP[id] = &breaker{}
			m.BreakerState.WithLabelValues(id).Set(0)
			m.ConnectionLimit.WithLabelValues(id).Set(float64(ep.Limit))
		}
	}
	s := &Scheduler{
		breakers: &breakers{byEP: byEP, cfg: cfg.Breaker, clock: clock, logger: logger.With("component", "scheduler"), metrics: m},
		paused:   map[string]bool{},
		cfg:      cfg,
		clock:    clock,
		logger:   logger.With("component", "scheduler"),
		metrics:  m,
		onFinish: onFinish,
		queue:    newQueue(),
		tasks:    map[Key]*Task{},
		byID:     map[string]*Task{},
		leases:   map[string]*lease{},
		counts:   map[taskState]int{},
		recent:   newRecentTasks(10000),
	}
	s.conns = &connections{
		endpoints: cfg.Endpoints, perConn: max(cfg.LeasesPerConnection, 1), budgets: budgets,
		sessions: &s.sessions, detachHold: cfg.DetachHold, limitRecovery: cfg.LimitRecovery,
		clock: clock, logger: s.logger, metrics: m,
	}
	return s
}

// ErrUnknownTask is returned for a task id the dispatcher does not hold.
var ErrUnknownTask = errors.New("unknown task")

// ErrTaskFinished is returned when acting on a task whose outcome is decided.
var ErrTaskFinished = errors.New("task already finished")

// ErrUnknownEndpoint is returned for an endpoint id not in the connections file.
var ErrUnknownEndpoint = errors.New("unknown endpoint")

// ErrUnknownAgent is returned for an agent id with no session.
var ErrUnknownAgent = errors.New("unknown agent")

// update runs fn under the lock, leases what it can, and hands finished
// tasks over after unlocking.
func (s *Scheduler) update(fn func()) {
	s.mu.Lock()
	fn()
	s.dispatchLocked()
	done := s.finished
	s.finished = nil
	s.mu.Unlock()
	if len(done) > 0 {
		s.onFinish(done)
	}
}

// promotedLocked is a delayed task's return to the ready queue.
func (s *Scheduler) promotedLocked(t *Task) {
	s.setState(t, stateQueued)
	t.queuedAt = s.clock.Now()
}

func (s *Scheduler) setState(t *Task, st taskState) {
	if t.state != 0 {
		s.counts[t.state]--
	}
	t.state = st
	s.counts[st]++
}

// Enqueue takes ownership of a task. The task's Spec must name its endpoints.
func (s *Scheduler) Enqueue(t *Task) {
	s.update(func() {
		t.route = routeKey{src: t.Spec.SrcId, dst: t.Spec.DstId}
		t.needs = s.conns.needsOf(t.Spec)
		t.queuedAt = s.clock.Now()
		s.tasks[t.Key] = t
		s.byID[t.ID] = t
		s.setState(t, stateQueued)
		s.queue.push(t)
		s.emit(EventQueued, t, nil, nil)
	})
}

// Tick promotes tasks whose backoff ended and expires leases whose heartbeat
// stopped. Run calls it periodically; tests call it with a fake clock.
func (s *Scheduler) Tick() {
	s.update(func() {
		now := s.clock.Now()
		s.conns.releaseHeld(now)
		s.conns.recoverLimits(now)
		s.queue.promote(now, s.promotedLocked)
		for _, l := range s.leases {
			if now.After(l.expires) {
				s.metrics.LeaseExpiries.Inc()
				s.logger.Warn("lease expired", "lease_id", l.id, "task_id", l.task.ID, "agent_id", l.sess.agentID,
					"token", l.token, "silent_for", now.Sub(l.heartbeat).Round(time.Millisecond))
				l.sess.out.push(cancelMsg(l, "lease expired"))
				s.loseLeaseLocked(l, failure.TransferTimeout,
					fmt.Sprintf("lease expired: agent %s sent no heartbeat for %s", l.sess.agentID, now.Sub(l.heartbeat).Round(time.Millisecond)))
			}
		}
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
		taken := s.queue.scan(func(t *Task) bool {
			if ep, b := s.breakers.outageOver(t.needs, now); b != nil {
				s.finishLocked(t, s.breakers.outageOutcome(ep, b, now), "")
				return true
			}
			if s.paused[t.route.src] || s.paused[t.route.dst] || !s.breakers.allow(t.needs, now) {
				return false
			}
			sess := s.placeLocked(t)
			if sess == nil {
				return false
			}
			s.leaseLocked(t, sess)
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
	// The budget is used up. If an agent sits on quota it does not use,
	// take it back (once per endpoint at a time) so this task can run soon.
	for _, nd := range t.needs {
		if s.conns.anySpareFor(nd) {
			continue // not this endpoint's connections are missing
		}
		b := s.conns.budgets[nd.endpoint]
		if b == nil {
			continue
		}
		if granted, reclaiming := s.conns.granted(nd.endpoint); reclaiming == 0 && (granted >= b.share || granted+s.conns.elsewhere(nd.endpoint) >= b.limit) {
			s.conns.reclaim(nd.endpoint, nil)
		}
	}
	return nil
}

func (s *Scheduler) leaseLocked(t *Task, sess *Session) {
	now := s.clock.Now()
	s.token++
	t.attempt++
	l := &lease{
		id:         leaseID(s.cfg.DispatcherID, t.Key),
		token:      s.token,
		task:       t,
		sess:       sess,
		leasedAt:   now,
		heartbeat:  now,
		expires:    now.Add(s.cfg.TTL),
		bytesTotal: -1,
	}
	t.lease = l
	s.setState(t, stateLeased)
	s.leases[l.id] = l
	sess.leases[l.id] = l
	s.conns.claim(sess, t.needs)
	l.probe = s.breakers.leased(t.needs)
	s.metrics.LeasesGranted.Inc()
	s.emit(EventLeased, t, l, nil)
	sess.out.push(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Lease{Lease: &leasev1.Lease{
		LeaseId:      l.id,
		Token:        l.token,
		Attempt:      t.attempt,
		Transfer:     t.Spec,
		TraceContext: s.traceLeaseLocked(t, l, now),
		ResumeToken:  t.resumeToken,
		ResumeOffset: t.resumeOffset,
		PriorCommit:  t.prior,
	}}})
}

// traceLeaseLocked records the task's wait in the queue and starts the
// lease's span; the agent continues the trace from the returned carrier.
func (s *Scheduler) traceLeaseLocked(t *Task, l *lease, now time.Time) map[string]string {
	if s.cfg.Tracer == nil || !t.Span.IsValid() {
		return nil
	}
	parent := trace.ContextWithRemoteSpanContext(context.Background(), t.Span)
	_, wait := s.cfg.Tracer.Start(parent, "queue wait", trace.WithTimestamp(t.queuedAt),
		trace.WithAttributes(attribute.Int("ftp_pooler.attempt", int(t.attempt))))
	wait.End(trace.WithTimestamp(now))
	ctx, span := s.cfg.Tracer.Start(parent, "lease", trace.WithTimestamp(now), trace.WithAttributes(
		attribute.String("ftp_pooler.task_id", t.ID),
		attribute.String("ftp_pooler.lease_id", l.id),
		attribute.Int64("ftp_pooler.token", int64(l.token)),
		attribute.Int("ftp_pooler.attempt", int(t.attempt)),
		attribute.String("ftp_pooler.agent_id", l.sess.agentID),
		attribute.String("ftp_pooler.src_id", t.Spec.SrcId),
		attribute.String("ftp_pooler.dst_id", t.Spec.DstId),
	))
	l.span = span
	carrier := propagation.MapCarrier{}
	s.cfg.Propagator.Inject(ctx, carrier)
	return carrier
}

// endSpan ends a lease's span with its outcome.
func (l *lease) endSpan(o *leasev1.Outcome, lost string) {
	if l.span == nil {
		return
	}
	switch {
	case lost != "":
		l.span.SetStatus(codes.Error, lost)
	case o != nil && o.Status != leasev1.Status_STATUS_SUCCEEDED:
		l.span.SetAttributes(attribute.String("ftp_pooler.error_code", failure.Name(o.ErrorCode)))
		l.span.SetStatus(codes.Error, o.ErrorMessage)
	case o != nil:
		l.span.SetAttributes(attribute.Int64("ftp_pooler.bytes", o.BytesTransferred))
	}
	l.span.End()
	l.span = nil
}

func leaseID(dispatcherID string, k Key) string {
	return dispatcherID + "/" + strconv.FormatInt(int64(k.Partition), 10) + "/" + strconv.FormatInt(k.Offset, 10)
}

// endLeaseLocked forgets a lease; the task's state is the caller's to set.
func (s *Scheduler) endLeaseLocked(l *lease) {
	l.endSpan(nil, "")
	delete(s.leases, l.id)
	delete(l.sess.leases, l.id)
	l.task.lease = nil
	s.conns.unclaim(l.sess, l.task.needs)
	if len(s.leases) == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// loseLeaseLocked ends a lease that produced no outcome (expired, agent
// gone) and decides what happens to its task.
func (s *Scheduler) loseLeaseLocked(l *lease, code failure.Code, msg string) {
	l.endSpan(nil, msg)
	s.endLeaseLocked(l)
	s.breakers.result(l.task.needs, l.probe, nil, s.clock.Now())
	t := l.task
	s.rememberLocked(t, l)
	if t.cancel != "" {
		s.finishLocked(t, cancelled(t.cancel), l.sess.agentID)
		return
	}
	s.retryLocked(t, &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: code, ErrorMessage: msg,
		BytesTransferred: l.bytesDone, SourceSize: -1}, l.sess.agentID)
}

// rememberLocked keeps what a lost delivery achieved for the next one: an
// approved commit (the result may already be in place) or progress (its
// temporary file may be continued).
func (s *Scheduler) rememberLocked(t *Task, l *lease) {
	switch {
	case l.committed:
		t.prior = &leasev1.PriorCommit{Token: l.token, Bytes: l.committedBytes}
	case l.bytesDone > 0:
		t.resumeToken, t.resumeOffset = l.token, l.bytesDone
	}
}

// retryLocked queues a task again after backoff, or fails it when its
// attempts are used up.
func (s *Scheduler) retryLocked(t *Task, o *leasev1.Outcome, agentID string) {
	t.failures++
	t.lastCode, t.lastMsg = o.ErrorCode, o.ErrorMessage
	if int(t.failures) >= s.cfg.MaxAttempts {
		// The last delivery's outcome, so its bytes and duration are
		// reported, with the retries said in the message.
		final := proto.CloneOf(o)
		final.Status = leasev1.Status_STATUS_FAILED
		final.ErrorMessage = fmt.Sprintf("%s (gave up after %d attempts)", o.ErrorMessage, t.failures)
		s.finishLocked(t, final, agentID)
		return
	}
	s.metrics.Retries.WithLabelValues(failure.Name(o.ErrorCode)).Inc()
	s.requeueLocked(t, s.backoff(t.failures))
}

// waitForEndpointLocked queues a task whose endpoint could not be reached
// again without counting the attempt: after the usual backoff while the
// endpoint's breaker is closed, after the breaker's open period once it is
// open. unreached counts these deliveries for the backoff.
func (s *Scheduler) waitForEndpointLocked(t *Task, o *leasev1.Outcome, now time.Time) {
	t.unreached++
	t.lastCode, t.lastMsg = o.ErrorCode, o.ErrorMessage
	s.metrics.Retries.WithLabelValues(failure.Name(o.ErrorCode)).Inc()
	s.requeueLocked(t, max(s.backoff(t.unreached), s.breakers.wait(t.needs, now)))
}

func (s *Scheduler) requeueLocked(t *Task, after time.Duration) {
	t.notBefore = s.clock.Now().Add(after)
	s.setState(t, stateDelayed)
	s.queue.delay(t)
	s.emit(EventRetry, t, nil, nil)
}

// backoff is exponential in the number of failures, capped, with ±20%
// jitter so tasks that failed together do not retry together.
func (s *Scheduler) backoff(failures uint32) time.Duration {
	d := s.cfg.BaseBackoff << min(failures-1, 30)
	if d > s.cfg.MaxBackoff || d <= 0 {
		d = s.cfg.MaxBackoff
	}
	return time.Duration(float64(d) * (0.8 + 0.4*s.cfg.Rand.Float64()))
}

func (s *Scheduler) finishLocked(t *Task, o *leasev1.Outcome, agentID string) {
	s.setState(t, stateFinished)
	delete(s.tasks, t.Key)
	if s.byID[t.ID] == t {
		delete(s.byID, t.ID)
	}
	s.recent.add(t, o, agentID)
	s.finished = append(s.finished, Finished{Task: t, Outcome: o, Attempts: t.attempt, AgentID: agentID})
	kind := EventFailed
	if o.Status == leasev1.Status_STATUS_SUCCEEDED {
		kind = EventSucceeded
	}
	s.emit(kind, t, nil, o)
}

func cancelled(reason string) *leasev1.Outcome {
	return &leasev1.Outcome{
		Status:       leasev1.Status_STATUS_FAILED,
		ErrorCode:    failure.Cancelled,
		ErrorMessage: "cancelled by operator: " + reason,
		SourceSize:   -1,
	}
}

func cancelMsg(l *lease, reason string) *leasev1.ConnectResponse {
	return &leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Cancel{Cancel: &leasev1.Cancel{
		LeaseId: l.id, Token: l.token, Reason: reason,
	}}}
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
			s.loseLeaseLocked(l, failure.ConnectionError,
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

// ErrUnknownLease refuses a message for a lease this dispatcher does not
// hold: it ended (expired, revoked, finished) or never was.
var ErrUnknownLease = errors.New("unknown lease")

// ErrStaleToken refuses a message for a lease now held under another
// delivery token or by another agent: the sender's delivery was superseded.
var ErrStaleToken = errors.New("stale delivery token")

// RefusedError is an agent's message about a lease it does not hold; it
// wraps ErrUnknownLease or ErrStaleToken.
type RefusedError struct {
	Kind    string // progress, commit, result, release
	LeaseID string
	Token   uint64
	// Current is the lease's token now (0 when unknown).
	Current uint64
	Err     error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s for lease %s token %d refused: %v (current token %d)", e.Kind, e.LeaseID, e.Token, e.Err, e.Current)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// holdsLocked returns the lease if sess holds it under token, else a
// RefusedError (counted in ftp_pooler_stale_messages_total).
func (s *Scheduler) holdsLocked(sess *Session, leaseID string, token uint64, kind string) (*lease, error) {
	l := s.leases[leaseID]
	if l != nil && l.token == token && l.sess == sess {
		return l, nil
	}
	s.metrics.StaleMessages.WithLabelValues(kind).Inc()
	refused := &RefusedError{Kind: kind, LeaseID: leaseID, Token: token, Err: ErrUnknownLease}
	if l != nil {
		refused.Current, refused.Err = l.token, ErrStaleToken
	}
	return nil, refused
}

// Progress records a heartbeat with the bytes moved so far.
func (s *Scheduler) Progress(sess *Session, p *leasev1.Progress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.holdsLocked(sess, p.LeaseId, p.Token, "progress")
	if err != nil {
		return err
	}
	now := s.clock.Now()
	l.heartbeat, l.expires = now, now.Add(s.cfg.TTL)
	l.bytesDone, l.bytesTotal = p.BytesDone, p.BytesTotal
	if !l.committed {
		// After COMMITTED the bytes are final; a heartbeat while the agent
		// renames is no progress for Watch to show.
		s.emit(EventProgress, l.task, l, nil)
	}
	return nil
}

// Commit answers whether the agent may make its write visible: only while it
// still holds the lease under this token and nobody cancelled the task.
// A refused commit also comes back as a RefusedError, for the log.
func (s *Scheduler) Commit(sess *Session, c *leasev1.Commit) (*leasev1.CommitDecision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &leasev1.CommitDecision{LeaseId: c.LeaseId, Token: c.Token}
	l, err := s.holdsLocked(sess, c.LeaseId, c.Token, "commit")
	switch {
	case err != nil:
		d.Reason = "the lease is no longer held under this token"
	case l.task.cancel != "":
		d.Reason = "the task was cancelled: " + l.task.cancel
	default:
		now := s.clock.Now()
		l.committed, l.committedBytes = true, c.Bytes
		l.heartbeat, l.expires = now, now.Add(s.cfg.TTL)
		d.Approved = true
		s.emit(EventCommitted, l.task, l, nil)
	}
	return d, err
}

// Result ends a lease with the agent's outcome.
func (s *Scheduler) Result(sess *Session, r *leasev1.Result) (err error) {
	s.update(func() {
		var l *lease
		if l, err = s.holdsLocked(sess, r.LeaseId, r.Token, "result"); err != nil {
			return
		}
		t, o := l.task, r.Outcome
		if o == nil {
			o = &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: failure.UnknownError,
				ErrorMessage: "agent sent a result without an outcome", SourceSize: -1}
		}
		l.endSpan(o, "")
		s.endLeaseLocked(l)
		now := s.clock.Now()
		s.breakers.result(t.needs, l.probe, o, now)
		switch {
		case o.Status == leasev1.Status_STATUS_SUCCEEDED:
			s.finishLocked(t, o, sess.agentID)
		case t.cancel != "":
			s.finishLocked(t, cancelled(t.cancel), sess.agentID)
		case o.EndpointFull && o.FailedEndpoint != "":
			s.conns.serverFull(sess, o, now)
			s.waitForRoomLocked(t, o)
		case unreachable(o):
			// The endpoint's fault, not the task's: the task waits for the
			// endpoint (its breaker, once open, holds it back) without
			// using up its attempts, up to retry.max_outage. Nothing was
			// written.
			if ep, b := s.breakers.outageOver(t.needs, now); b != nil {
				s.finishLocked(t, s.breakers.outageOutcome(ep, b, now), sess.agentID)
				return
			}
			s.waitForEndpointLocked(t, o, now)
		case o.Retryable:
			// The agent removed its temporary file: the next delivery
			// starts over.
			t.resumeToken, t.resumeOffset, t.prior = 0, 0, nil
			s.retryLocked(t, o, sess.agentID)
		default:
			s.finishLocked(t, o, sess.agentID)
		}
	})
	return err
}

// Release takes back a lease the agent hands back without an outcome. It
// does not count as a failed attempt: the agent is going away, the task is fine.
func (s *Scheduler) Release(sess *Session, r *leasev1.Release) (err error) {
	s.update(func() {
		var l *lease
		if l, err = s.holdsLocked(sess, r.LeaseId, r.Token, "release"); err != nil {
			return
		}
		s.metrics.Releases.Inc()
		l.bytesDone = max(l.bytesDone, r.BytesDone)
		s.endLeaseLocked(l)
		s.breakers.result(l.task.needs, l.probe, nil, s.clock.Now())
		s.rememberLocked(l.task, l)
		if r.ConnectionBusy {
			s.conns.ownConnection(l.task)
		}
		if l.task.cancel != "" {
			s.finishLocked(l.task, cancelled(l.task.cancel), sess.agentID)
			return
		}
		s.requeueLocked(l.task, 0)
		s.queue.promote(s.clock.Now(), s.promotedLocked)
	})
	return err
}

// Revoke drops every task of the given partitions without an outcome: their
// new owner reads them again from the committed offset. Leases in flight are
// cancelled on their agents.
func (s *Scheduler) Revoke(partitions []int32) (dropped int) {
	s.update(func() {
		for k, t := range s.tasks {
			if !slices.Contains(partitions, k.Partition) {
				continue
			}
			if l := t.lease; l != nil {
				l.sess.out.push(cancelMsg(l, "partition revoked"))
				s.endLeaseLocked(l)
			}
			s.setState(t, stateRevoked)
			s.emit(EventRevoked, t, nil, nil)
			delete(s.tasks, k)
			if s.byID[t.ID] == t {
				delete(s.byID, t.ID)
			}
			dropped++
		}
	})
	return dropped
}

// Cancel cancels a task by id. A queued task fails at once with CANCELLED; a
// leased one is cancelled on its agent and fails when the agent answers.
func (s *Scheduler) Cancel(taskID, reason string) (TaskState, error) {
	var prev TaskState
	var err error
	s.update(func() {
		t := s.byID[taskID]
		if t == nil {
			if _, ok := s.recent.get(taskID); ok {
				err = ErrTaskFinished
			} else {
				err = ErrUnknownTask
			}
			return
		}
		prev = stateOf(t)
		if t.cancel != "" {
			return
		}
		t.cancel = reason
		switch t.state {
		case stateQueued, stateDelayed:
			s.finishLocked(t, cancelled(reason), "")
		case stateLeased:
			t.lease.sess.out.push(cancelMsg(t.lease, "cancelled by operator: "+reason))
		}
	})
	return prev, err
}

// DrainAgent stops leasing to every session of an agent.
func (s *Scheduler) DrainAgent(agentID string) (inFlight int, err error) {
	s.update(func() {
		found := false
		for _, sess := range s.sessions {
			if sess.agentID == agentID {
				found = true
				if !sess.draining {
					sess.draining = true
					sess.out.push(drainMsg(s.cfg.TTL))
				}
				inFlight += len(sess.leases)
			}
		}
		if !found {
			err = ErrUnknownAgent
		}
	})
	return inFlight, err
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
	ch := make(chan struct{})
	if len(s.leases) == 0 {
		close(ch)
		return ch
	}
	if s.idle == nil {
		s.idle = ch
	}
	return s.idle
}

// Counts reports tasks by state.
func (s *Scheduler) Counts() (queued, leased int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[stateQueued] + s.counts[stateDelayed], s.counts[stateLeased]
}

// AgentCount reports connected sessions.
func (s *Scheduler) AgentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
