package lease

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

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

// rememberDelivery keeps what a lost delivery achieved for the next one: an
// approved commit (the result may already be in place) or progress (its
// temporary file may be continued).
func (t *Task) rememberDelivery(l *lease) {
	switch {
	case l.committed:
		t.prior = &leasev1.PriorCommit{Token: l.token, Bytes: l.committedBytes}
	case l.bytesDone > 0:
		t.resumeToken, t.resumeOffset = l.token, l.bytesDone
	}
}

// Finished is a task whose outcome is decided.
type Finished struct {
	Task     *Task
	Outcome  *leasev1.Outcome
	Attempts uint32
	AgentID  string
}

// ErrUnknownTask is returned for a task id the dispatcher does not hold.
var ErrUnknownTask = errors.New("unknown task")

// ErrTaskFinished is returned when acting on a task whose outcome is decided.
var ErrTaskFinished = errors.New("task already finished")

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

// retryPolicy is how often a task is delivered and how long it waits
// between deliveries.
type retryPolicy struct {
	maxAttempts int
	baseBackoff time.Duration
	maxBackoff  time.Duration
	rand        *rand.Rand
}

// backoff is exponential in the number of failures, capped, with ±20%
// jitter so tasks that failed together do not retry together.
func (p retryPolicy) backoff(failures uint32) time.Duration {
	d := p.baseBackoff << min(failures-1, 30)
	if d > p.maxBackoff || d <= 0 {
		d = p.maxBackoff
	}
	return time.Duration(float64(d) * (0.8 + 0.4*p.rand.Float64()))
}

// ledger is every task the scheduler holds, from Enqueue until its outcome
// is decided or its partition is revoked, and the leases out on them. It
// makes every move between states (queued, delayed, leased, finished,
// revoked), so the queue, the lease table and the counts by state never
// disagree, and it answers the agents' messages about their leases, fencing
// stale deliveries by token. The scheduler owns it and calls it under its
// lock; the ledger tells connections and breakers what its leases use and
// how they ended, and events what happened to each task.
type ledger struct {
	byKey    map[Key]*Task
	byID     map[string]*Task
	queue    *queue
	leases   map[string]*lease
	byState  map[taskState]int
	token    uint64 // the last delivery token handed out
	recent   *recentTasks
	finished []Finished    // decided since the scheduler last took them
	idle     chan struct{} // closed when no lease is in flight; see waitIdle

	dispatcherID string
	ttl          time.Duration
	policy       retryPolicy
	tracing      tracing
	conns        *connections
	breakers     *breakers
	events       *Events
	clock        Clock
	logger       *slog.Logger
	metrics      *metrics.Metrics
}

func (lg *ledger) setState(t *Task, st taskState) {
	if t.state != 0 {
		lg.byState[t.state]--
	}
	t.state = st
	lg.byState[st]++
}

// counts reports tasks waiting for an agent and tasks leased.
func (lg *ledger) counts() (queued, leased int) {
	return lg.byState[stateQueued] + lg.byState[stateDelayed], lg.byState[stateLeased]
}

// add takes ownership of a new task and queues it.
func (lg *ledger) add(t *Task) {
	t.route = routeKey{src: t.Spec.SrcId, dst: t.Spec.DstId}
	t.needs = lg.conns.needsOf(t.Spec)
	t.queuedAt = lg.clock.Now()
	lg.byKey[t.Key] = t
	lg.byID[t.ID] = t
	lg.setState(t, stateQueued)
	lg.queue.push(t)
	lg.events.emit(EventQueued, t, nil, nil)
}

// promote returns delayed tasks whose backoff ended to the ready queue.
func (lg *ledger) promote(now time.Time) {
	lg.queue.promote(now, func(t *Task) {
		lg.setState(t, stateQueued)
		t.queuedAt = lg.clock.Now()
	})
}

// grant leases a task to a session under a new delivery token and queues
// the lease for the agent.
func (lg *ledger) grant(t *Task, sess *Session) {
	now := lg.clock.Now()
	lg.token++
	t.attempt++
	l := &lease{
		id:         leaseID(lg.dispatcherID, t.Key),
		token:      lg.token,
		task:       t,
		sess:       sess,
		leasedAt:   now,
		heartbeat:  now,
		expires:    now.Add(lg.ttl),
		bytesTotal: -1,
	}
	t.lease = l
	lg.setState(t, stateLeased)
	lg.leases[l.id] = l
	sess.leases[l.id] = l
	lg.conns.claim(sess, t.needs)
	l.probe = lg.breakers.leased(t.needs)
	lg.metrics.LeasesGranted.Inc()
	lg.events.emit(EventLeased, t, l, nil)
	sess.out.push(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Lease{Lease: &leasev1.Lease{
		LeaseId:      l.id,
		Token:        l.token,
		Attempt:      t.attempt,
		Transfer:     t.Spec,
		TraceContext: lg.tracing.startLease(t, l, now),
		ResumeToken:  t.resumeToken,
		ResumeOffset: t.resumeOffset,
		PriorCommit:  t.prior,
	}}})
}

func leaseID(dispatcherID string, k Key) string {
	return dispatcherID + "/" + strconv.FormatInt(int64(k.Partition), 10) + "/" + strconv.FormatInt(k.Offset, 10)
}

// held returns the lease if sess holds it under token, else a RefusedError
// (counted in ftp_pooler_stale_messages_total).
func (lg *ledger) held(sess *Session, leaseID string, token uint64, kind string) (*lease, error) {
	l := lg.leases[leaseID]
	if l != nil && l.token == token && l.sess == sess {
		return l, nil
	}
	lg.metrics.StaleMessages.WithLabelValues(kind).Inc()
	refused := &RefusedError{Kind: kind, LeaseID: leaseID, Token: token, Err: ErrUnknownLease}
	if l != nil {
		refused.Current, refused.Err = l.token, ErrStaleToken
	}
	return nil, refused
}

// progress records a heartbeat with the bytes moved so far.
func (lg *ledger) progress(sess *Session, p *leasev1.Progress) error {
	l, err := lg.held(sess, p.LeaseId, p.Token, "progress")
	if err != nil {
		return err
	}
	now := lg.clock.Now()
	l.heartbeat, l.expires = now, now.Add(lg.ttl)
	l.bytesDone, l.bytesTotal = p.BytesDone, p.BytesTotal
	if !l.committed {
		// After COMMITTED the bytes are final; a heartbeat while the agent
		// renames is no progress for Watch to show.
		lg.events.emit(EventProgress, l.task, l, nil)
	}
	return nil
}

// commit decides whether the agent may make its write visible: only while
// it still holds the lease under this token and nobody cancelled the task.
func (lg *ledger) commit(sess *Session, c *leasev1.Commit) (*leasev1.CommitDecision, error) {
	d := &leasev1.CommitDecision{LeaseId: c.LeaseId, Token: c.Token}
	l, err := lg.held(sess, c.LeaseId, c.Token, "commit")
	switch {
	case err != nil:
		d.Reason = "the lease is no longer held under this token"
	case l.task.cancel != "":
		d.Reason = "the task was cancelled: " + l.task.cancel
	default:
		now := lg.clock.Now()
		l.committed, l.committedBytes = true, c.Bytes
		l.heartbeat, l.expires = now, now.Add(lg.ttl)
		d.Approved = true
		lg.events.emit(EventCommitted, l.task, l, nil)
	}
	return d, err
}

// result ends a lease with the agent's outcome and decides what becomes of
// its task: finished, retried after backoff, or waiting for its endpoint.
func (lg *ledger) result(sess *Session, r *leasev1.Result) error {
	l, err := lg.held(sess, r.LeaseId, r.Token, "result")
	if err != nil {
		return err
	}
	t, o := l.task, r.Outcome
	if o == nil {
		o = &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: failure.UnknownError,
			ErrorMessage: "agent sent a result without an outcome", SourceSize: -1}
	}
	l.endSpan(o, "")
	lg.end(l)
	now := lg.clock.Now()
	lg.breakers.result(t.needs, l.probe, o, now)
	switch {
	case o.Status == leasev1.Status_STATUS_SUCCEEDED:
		lg.finish(t, o, sess.agentID)
	case t.cancel != "":
		lg.finish(t, cancelled(t.cancel), sess.agentID)
	case o.EndpointFull && o.FailedEndpoint != "":
		// The server refused the login for being full: the task goes back
		// without using an attempt or telling the breaker (the server is up,
		// the task fine), and the limit just learned keeps the retry within
		// what the server accepts.
		lg.conns.serverFull(sess, o, now)
		t.lastCode, t.lastMsg = o.ErrorCode, o.ErrorMessage
		lg.metrics.Retries.WithLabelValues(failure.Name(o.ErrorCode)).Inc()
		lg.requeue(t, lg.policy.backoff(1))
	case unreachable(o):
		// The endpoint's fault, not the task's: the task waits for the
		// endpoint without using up its attempts, up to retry.max_outage:
		// the usual backoff while the breaker is closed, its open period
		// once it is open (unreached counts these deliveries for the
		// backoff). Nothing was written.
		if ep, b := lg.breakers.outageOver(t.needs, now); b != nil {
			lg.finish(t, lg.breakers.outageOutcome(ep, b, now), sess.agentID)
			return nil
		}
		t.unreached++
		t.lastCode, t.lastMsg = o.ErrorCode, o.ErrorMessage
		lg.metrics.Retries.WithLabelValues(failure.Name(o.ErrorCode)).Inc()
		lg.requeue(t, max(lg.policy.backoff(t.unreached), lg.breakers.wait(t.needs, now)))
	case o.Retryable:
		// The agent removed its temporary file: the next delivery starts
		// over.
		t.resumeToken, t.resumeOffset, t.prior = 0, 0, nil
		lg.retry(t, o, sess.agentID)
	default:
		lg.finish(t, o, sess.agentID)
	}
	return nil
}

// release takes back a lease the agent hands back without an outcome. It
// does not count as a failed attempt: the agent is going away, the task is
// fine.
func (lg *ledger) release(sess *Session, r *leasev1.Release) error {
	l, err := lg.held(sess, r.LeaseId, r.Token, "release")
	if err != nil {
		return err
	}
	lg.metrics.Releases.Inc()
	l.bytesDone = max(l.bytesDone, r.BytesDone)
	lg.end(l)
	lg.breakers.result(l.task.needs, l.probe, nil, lg.clock.Now())
	l.task.rememberDelivery(l)
	if r.ConnectionBusy {
		lg.conns.ownConnection(l.task)
	}
	if l.task.cancel != "" {
		lg.finish(l.task, cancelled(l.task.cancel), sess.agentID)
		return nil
	}
	lg.requeue(l.task, 0)
	lg.promote(lg.clock.Now())
	return nil
}

// expire ends the leases whose agent sent no heartbeat for a TTL and tells
// the agent to stop.
func (lg *ledger) expire(now time.Time) {
	for _, l := range lg.leases {
		if !now.After(l.expires) {
			continue
		}
		lg.metrics.LeaseExpiries.Inc()
		lg.logger.Warn("lease expired", "lease_id", l.id, "task_id", l.task.ID, "agent_id", l.sess.agentID,
			"token", l.token, "silent_for", now.Sub(l.heartbeat).Round(time.Millisecond))
		l.sess.out.push(cancelMsg(l, "lease expired"))
		lg.lose(l, failure.TransferTimeout,
			fmt.Sprintf("lease expired: agent %s sent no heartbeat for %s", l.sess.agentID, now.Sub(l.heartbeat).Round(time.Millisecond)))
	}
}

// end forgets a lease; the task's state is the caller's to set.
func (lg *ledger) end(l *lease) {
	l.endSpan(nil, "")
	delete(lg.leases, l.id)
	delete(l.sess.leases, l.id)
	l.task.lease = nil
	lg.conns.unclaim(l.sess, l.task.needs)
	if len(lg.leases) == 0 && lg.idle != nil {
		close(lg.idle)
		lg.idle = nil
	}
}

// lose ends a lease that produced no outcome (expired, agent gone) and
// decides what happens to its task.
func (lg *ledger) lose(l *lease, code failure.Code, msg string) {
	l.endSpan(nil, msg)
	lg.end(l)
	lg.breakers.result(l.task.needs, l.probe, nil, lg.clock.Now())
	t := l.task
	t.rememberDelivery(l)
	if t.cancel != "" {
		lg.finish(t, cancelled(t.cancel), l.sess.agentID)
		return
	}
	lg.retry(t, &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: code, ErrorMessage: msg,
		BytesTransferred: l.bytesDone, SourceSize: -1}, l.sess.agentID)
}

// retry queues a task again after backoff, or fails it when its attempts
// are used up.
func (lg *ledger) retry(t *Task, o *leasev1.Outcome, agentID string) {
	t.failures++
	t.lastCode, t.lastMsg = o.ErrorCode, o.ErrorMessage
	if int(t.failures) >= lg.policy.maxAttempts {
		// The last delivery's outcome, so its bytes and duration are
		// reported, with the retries said in the message.
		final := proto.CloneOf(o)
		final.Status = leasev1.Status_STATUS_FAILED
		final.ErrorMessage = fmt.Sprintf("%s (gave up after %d attempts)", o.ErrorMessage, t.failures)
		lg.finish(t, final, agentID)
		return
	}
	lg.metrics.Retries.WithLabelValues(failure.Name(o.ErrorCode)).Inc()
	lg.requeue(t, lg.policy.backoff(t.failures))
}

func (lg *ledger) requeue(t *Task, after time.Duration) {
	t.notBefore = lg.clock.Now().Add(after)
	lg.setState(t, stateDelayed)
	lg.queue.delay(t)
	lg.events.emit(EventRetry, t, nil, nil)
}

// finish decides a task's outcome; the scheduler hands it over after
// unlocking (takeFinished).
func (lg *ledger) finish(t *Task, o *leasev1.Outcome, agentID string) {
	lg.setState(t, stateFinished)
	delete(lg.byKey, t.Key)
	if lg.byID[t.ID] == t {
		delete(lg.byID, t.ID)
	}
	lg.recent.add(t, o, agentID)
	lg.finished = append(lg.finished, Finished{Task: t, Outcome: o, Attempts: t.attempt, AgentID: agentID})
	kind := EventFailed
	if o.Status == leasev1.Status_STATUS_SUCCEEDED {
		kind = EventSucceeded
	}
	lg.events.emit(kind, t, nil, o)
}

// takeFinished returns the tasks finished since it was last called.
func (lg *ledger) takeFinished() []Finished {
	done := lg.finished
	lg.finished = nil
	return done
}

// revoke drops every task of the given partitions without an outcome: their
// new owner reads them again from the committed offset. Leases in flight
// are cancelled on their agents.
func (lg *ledger) revoke(partitions []int32) (dropped int) {
	for k, t := range lg.byKey {
		if !slices.Contains(partitions, k.Partition) {
			continue
		}
		if l := t.lease; l != nil {
			l.sess.out.push(cancelMsg(l, "partition revoked"))
			lg.end(l)
		}
		lg.setState(t, stateRevoked)
		lg.events.emit(EventRevoked, t, nil, nil)
		delete(lg.byKey, k)
		if lg.byID[t.ID] == t {
			delete(lg.byID, t.ID)
		}
		dropped++
	}
	return dropped
}

// cancel cancels a task by id. A queued task fails at once with CANCELLED;
// a leased one is cancelled on its agent and fails when the agent answers.
func (lg *ledger) cancel(taskID, reason string) (TaskState, error) {
	t := lg.byID[taskID]
	if t == nil {
		if _, ok := lg.recent.get(taskID); ok {
			return 0, ErrTaskFinished
		}
		return 0, ErrUnknownTask
	}
	prev := stateOf(t)
	if t.cancel != "" {
		return prev, nil
	}
	t.cancel = reason
	switch t.state {
	case stateQueued, stateDelayed:
		lg.finish(t, cancelled(reason), "")
	case stateLeased:
		t.lease.sess.out.push(cancelMsg(t.lease, "cancelled by operator: "+reason))
	}
	return prev, nil
}

// waitIdle returns a channel closed once no lease is in flight.
func (lg *ledger) waitIdle() <-chan struct{} {
	ch := make(chan struct{})
	if len(lg.leases) == 0 {
		close(ch)
		return ch
	}
	if lg.idle == nil {
		lg.idle = ch
	}
	return lg.idle
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
