// Package session is the agent's side of the lease stream: one Client per
// dispatcher keeps a stream open (reconnecting with capped, jittered
// backoff), runs the leases it receives, heartbeats them, asks before
// committing, and reports outcomes.
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/transfer"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// errDraining is the cause of jobs stopped because the agent shuts down:
// they are released, not failed, and their partial files stay for the next
// delivery to continue.
var errDraining = fmt.Errorf("%w: agent is shutting down", transfer.ErrHandOver)

// errStreamLost is the cause of jobs stopped because their stream broke:
// the dispatcher has already taken their leases back, and re-leases them
// to continue from the partial files.
var errStreamLost = fmt.Errorf("%w: stream to the dispatcher was lost", transfer.ErrHandOver)

// Runner performs a job.
type Runner interface {
	Run(ctx context.Context, job *transfer.Job) *leasev1.Outcome
}

// Config describes the agent to dispatchers.
type Config struct {
	AgentID, Version, Hostname string
	CommitTimeout              time.Duration
	MaxBackoff                 time.Duration
	// Tracer and Propagator continue each lease's trace; no-ops when off.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// Client keeps one dispatcher stream alive.
type Client struct {
	cfg     Config
	addr    string
	conn    *grpc.ClientConn
	runner  Runner
	slots   *Slots
	quotas  *Quotas
	metrics *metrics.Metrics
	logger  *slog.Logger
	// Observe, if set, is told of each finished job (for metrics).
	Observe func(job *transfer.Job, o *leasev1.Outcome)

	mu      sync.Mutex
	current *Session
}

// NewClient returns a client for the dispatcher at conn.
func NewClient(cfg Config, addr string, conn *grpc.ClientConn, runner Runner, slots *Slots, quotas *Quotas, m *metrics.Metrics, logger *slog.Logger) *Client {
	return &Client{cfg: cfg, addr: addr, conn: conn, runner: runner, slots: slots, quotas: quotas, metrics: m,
		logger: logger.With("component", "session", "dispatcher", addr)}
}

// Run keeps a session open until ctx ends. When ctx ends, running jobs are
// given until drain ends to finish; then they are released.
func (c *Client) Run(ctx, drain context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := c.session(ctx, drain)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		wait := time.Duration(float64(backoff) * (0.5 + rand.Float64()))
		c.logger.Warn("dispatcher stream ended; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
	return nil
}

// Session is one connected stream.
type Session struct {
	c      *Client
	out    chan *leasev1.ConnectRequest
	dead   chan struct{} // closed when the sender stopped
	window chan uint32   // latest window, coalesced
	mu     sync.Mutex
	// jobs and commits are keyed by delivery, not lease: a lease that
	// expired while its agent was cut off is leased again under the same id
	// with a new token, possibly to the same agent while the old delivery
	// still runs. Keyed by id, the old delivery's refused commit reached
	// the new one, which failed its task as CANCELLED (seen in make chaos).
	jobs    map[delivery]*running
	commits map[delivery]chan *leasev1.CommitDecision
	// appliedSeq is the seq of the last quota acknowledged: applied to the
	// pools, and the pools within it. pendingSeq is the last one received.
	appliedSeq atomic.Uint64
	pendingSeq atomic.Uint64
}

type running struct {
	job    *transfer.Job
	cancel context.CancelCauseFunc
}

func (s *Session) setWindow(w uint32) {
	// Keep only the newest window if the sender has not taken the last one.
	select {
	case <-s.window:
	default:
	}
	s.window <- w
}

// session runs one stream until it breaks or ctx ends.
func (c *Client) session(ctx, drain context.Context) error {
	streamCtx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStream()
	stream, err := leasev1.NewLeaseServiceClient(c.conn).Connect(streamCtx)
	if err != nil {
		return err
	}
	err = stream.Send(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Hello{Hello: &leasev1.Hello{
		AgentId: c.cfg.AgentID, Version: c.cfg.Version, Slots: uint32(c.slots.Total()), Hostname: c.cfg.Hostname,
	}}})
	if err != nil {
		return err
	}
	// A dispatcher that accepts the stream but never answers must not
	// hold the agent: give up on it after a while and reconnect.
	noWelcome := time.AfterFunc(10*time.Second, cancelStream)
	welcome, err := recvWelcome(stream)
	noWelcome.Stop()
	if err != nil {
		return err
	}
	heartbeat := welcome.HeartbeatInterval.AsDuration()
	c.logger.Info("connected to dispatcher", "dispatcher_id", welcome.DispatcherId, "heartbeat", heartbeat)

	s := &Session{
		c:       c,
		out:     make(chan *leasev1.ConnectRequest, 256),
		dead:    make(chan struct{}),
		window:  make(chan uint32, 1),
		jobs:    map[delivery]*running{},
		commits: map[delivery]chan *leasev1.CommitDecision{},
	}
	c.mu.Lock()
	c.current = s
	c.mu.Unlock()
	c.metrics.Sessions.Inc()
	defer c.metrics.Sessions.Dec()

	jobsCtx, stopJobs := context.WithCancelCause(context.Background())
	defer stopJobs(nil)
	var jobs sync.WaitGroup
	sendErr := make(chan error, 1)
	go func() {
		err := s.send(streamCtx, stream, heartbeat)
		close(s.dead)
		sendErr <- err
	}()
	c.slots.join(s)

	recvErr := make(chan error, 1)
	go func() { recvErr <- s.receive(stream, jobsCtx, &jobs) }()

	var result error
	select {
	case result = <-recvErr:
		stopJobs(errStreamLost)
	case result = <-sendErr:
		stopJobs(errStreamLost)
	case <-ctx.Done():
		// Shutdown: windows are already zero (Slots.Drain); let running
		// jobs finish until drain ends, then release what is left.
		c.logger.Info("draining", "running", s.running())
		done := make(chan struct{})
		go func() { jobs.Wait(); close(done) }()
		select {
		case <-done:
		case <-drain.Done():
			stopJobs(errDraining)
		case result = <-recvErr:
			stopJobs(errStreamLost)
		}
	}
	c.slots.leave(s)
	jobs.Wait()
	c.quotas.drop(s)
	// Let the sender flush final results and releases before closing.
	s.enqueue(nil)
	select {
	case <-s.dead:
	case <-time.After(5 * time.Second):
	}
	cancelStream()
	c.mu.Lock()
	c.current = nil
	c.mu.Unlock()
	return result
}

func recvWelcome(stream leasev1.LeaseService_ConnectClient) (*leasev1.Welcome, error) {
	msg, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	w := msg.GetWelcome()
	if w == nil {
		return nil, fmt.Errorf("dispatcher sent %T before welcome", msg.Message)
	}
	if w.HeartbeatInterval.AsDuration() <= 0 {
		return nil, errors.New("dispatcher sent a welcome without a heartbeat interval")
	}
	return w, nil
}

func (s *Session) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}

// enqueue queues a message for the sender; nil asks it to finish. Once
// the sender stopped, messages are dropped: the dispatcher has taken the
// session's leases back anyway.
func (s *Session) enqueue(m *leasev1.ConnectRequest) {
	select {
	case s.out <- m:
	case <-s.dead:
	}
}

// send is the only goroutine writing to the stream: queued messages, window
// changes, and a heartbeat for every job each interval.
func (s *Session) send(ctx context.Context, stream leasev1.LeaseService_ConnectClient, heartbeat time.Duration) error {
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	// The dispatcher grants no connections before it knows what this agent
	// holds under other dispatchers' quotas.
	if err := stream.Send(s.poolReport(s.ackableSeq())); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case w := <-s.window:
			if err := stream.Send(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Credit{Credit: &leasev1.Credit{Window: w}}}); err != nil {
				return err
			}
		case m := <-s.out:
			if m == nil {
				return stream.CloseSend()
			}
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-t.C:
			for _, p := range s.progress() {
				if err := stream.Send(p); err != nil {
					return err
				}
			}
			// Pool states help the dispatcher pick agents with idle
			// connections; the last applied quota seq rides along.
			if err := stream.Send(s.poolReport(s.ackableSeq())); err != nil {
				return err
			}
		}
	}
}

// ackableSeq is the quota seq that may be acknowledged now: the last one
// received once the pools are within their quotas, else the last one
// acknowledged.
func (s *Session) ackableSeq() uint64 {
	if p := s.pendingSeq.Load(); p > s.appliedSeq.Load() && s.c.quotas.Settled() {
		return p
	}
	return s.appliedSeq.Load()
}

// poolReport acknowledges quotas up to seq and describes the pools.
func (s *Session) poolReport(seq uint64) *leasev1.ConnectRequest {
	if seq > s.appliedSeq.Load() {
		s.appliedSeq.Store(seq)
	}
	return &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_PoolReport{PoolReport: &leasev1.PoolReport{
		QuotaSeq: s.appliedSeq.Load(), Endpoints: s.c.quotas.reportFor(s),
	}}}
}

func (s *Session) progress() []*leasev1.ConnectRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*leasev1.ConnectRequest, 0, len(s.jobs))
	for _, r := range s.jobs {
		out = append(out, &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Progress{Progress: &leasev1.Progress{
			LeaseId: r.job.Lease.LeaseId, Token: r.job.Lease.Token, BytesDone: r.job.Done.Load(), BytesTotal: r.job.Total.Load(),
		}}})
	}
	return out
}

// receive handles the dispatcher's messages until the stream ends.
func (s *Session) receive(stream leasev1.LeaseService_ConnectClient, jobsCtx context.Context, jobs *sync.WaitGroup) error {
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("dispatcher closed the stream")
		}
		if err != nil {
			return err
		}
		switch m := msg.Message.(type) {
		case *leasev1.ConnectResponse_Lease:
			s.start(jobsCtx, m.Lease, jobs)
		case *leasev1.ConnectResponse_Cancel:
			s.cancel(m.Cancel)
		case *leasev1.ConnectResponse_CommitDecision:
			s.decide(m.CommitDecision)
		case *leasev1.ConnectResponse_Quota:
			s.c.quotas.set(s, m.Quota.EndpointId, m.Quota.Connections)
			if m.Quota.Seq > s.pendingSeq.Load() {
				s.pendingSeq.Store(m.Quota.Seq)
			}
			if seq := s.ackableSeq(); seq > s.appliedSeq.Load() {
				s.enqueue(s.poolReport(seq))
			} // else the next heartbeat acknowledges it, once busy connections above it closed
		case *leasev1.ConnectResponse_Drain:
			s.c.logger.Info("dispatcher is draining; no new leases from it", "grace_period", m.Drain.GracePeriod.AsDuration())
		case *leasev1.ConnectResponse_Welcome:
			return errors.New("dispatcher sent a second welcome")
		}
	}
}

func (s *Session) start(jobsCtx context.Context, l *leasev1.Lease, jobs *sync.WaitGroup) {
	ctx, cancel := context.WithCancelCause(jobsCtx)
	ctx, span := s.c.traceTransfer(ctx, l)
	r := &running{job: &transfer.Job{Lease: l}, cancel: cancel}
	r.job.Total.Store(-1)
	r.job.Commit = func(ctx context.Context, bytes int64) (bool, string, error) { return s.commit(ctx, l, bytes) }
	s.mu.Lock()
	s.jobs[deliveryOf(l)] = r
	s.mu.Unlock()
	jobs.Add(1)
	go func() {
		defer jobs.Done()
		defer cancel(nil)
		defer span.End()
		log := s.c.logger.With("task_id", l.Transfer.GetTaskId(), "lease_id", l.LeaseId, "token", l.Token, "attempt", l.Attempt)
		var o *leasev1.Outcome
		if err := s.c.slots.Acquire(ctx); err != nil {
			o = nil
		} else {
			s.c.metrics.SlotsBusy.Inc()
			o = s.c.runner.Run(ctx, r.job)
			s.c.metrics.SlotsBusy.Dec()
			s.c.slots.Release()
		}
		s.mu.Lock()
		delete(s.jobs, deliveryOf(l))
		s.mu.Unlock()
		cause := context.Cause(ctx)
		switch {
		case errors.Is(cause, errStreamLost):
			// The dispatcher took the lease back when the stream broke.
			log.Warn("transfer abandoned: stream lost")
			return
		case r.job.ConnectionBusy && cause == nil:
			log.Info("lease handed back: every connection its quota allows stayed busy")
			s.enqueue(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Release{Release: &leasev1.Release{
				LeaseId: l.LeaseId, Token: l.Token, Reason: "connections busy", BytesDone: r.job.Done.Load(), ConnectionBusy: true,
			}}})
			return
		case errors.Is(cause, errDraining) || o == nil:
			log.Info("lease released")
			s.enqueue(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Release{Release: &leasev1.Release{
				LeaseId: l.LeaseId, Token: l.Token, Reason: errDraining.Error(), BytesDone: r.job.Done.Load(),
			}}})
			return
		}
		if s.c.Observe != nil {
			s.c.Observe(r.job, o)
		}
		span.SetAttributes(attribute.Int64("ftp_pooler.bytes", o.BytesTransferred), attribute.Int64("ftp_pooler.source_size", o.SourceSize),
			attribute.Bool("ftp_pooler.already_done", o.AlreadyDone), attribute.Int64("ftp_pooler.resumed_from", o.ResumedFrom))
		if o.Status != leasev1.Status_STATUS_SUCCEEDED {
			span.SetAttributes(attribute.String("ftp_pooler.error_code", failure.Name(o.ErrorCode)))
			span.SetStatus(codes.Error, o.ErrorMessage)
		}
		if o.Status == leasev1.Status_STATUS_SUCCEEDED {
			log.Info("transfer succeeded", "bytes", o.BytesTransferred, "duration", o.Duration.AsDuration())
		} else {
			log.Warn("transfer failed", "error_code", failure.Name(o.ErrorCode), "error", o.ErrorMessage, "retryable", o.Retryable)
		}
		s.enqueue(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Result{Result: &leasev1.Result{
			LeaseId: l.LeaseId, Token: l.Token, Outcome: o,
		}}})
	}()
}

// traceTransfer starts the transfer's span as a child of the dispatcher's
// lease span, carried in the lease.
func (c *Client) traceTransfer(ctx context.Context, l *leasev1.Lease) (context.Context, trace.Span) {
	if len(l.TraceContext) > 0 {
		ctx = c.cfg.Propagator.Extract(ctx, propagation.MapCarrier(l.TraceContext))
	}
	spec := l.Transfer
	return c.cfg.Tracer.Start(ctx, "transfer", trace.WithAttributes(
		attribute.String("ftp_pooler.task_id", spec.GetTaskId()),
		attribute.String("ftp_pooler.lease_id", l.LeaseId),
		attribute.Int("ftp_pooler.attempt", int(l.Attempt)),
		attribute.String("ftp_pooler.agent_id", c.cfg.AgentID),
		attribute.String("ftp_pooler.src_id", spec.GetSrcId()),
		attribute.String("ftp_pooler.src_path", spec.GetSrcPath()),
		attribute.String("ftp_pooler.dst_id", spec.GetDstId()),
		attribute.String("ftp_pooler.dst_path", spec.GetDstPath()),
	))
}

func (s *Session) cancel(c *leasev1.Cancel) {
	s.mu.Lock()
	r := s.jobs[delivery{c.LeaseId, c.Token}]
	s.mu.Unlock()
	if r == nil || r.job.Lease.Token != c.Token {
		return
	}
	s.c.logger.Info("lease cancelled by dispatcher", "lease_id", c.LeaseId, "reason", c.Reason)
	r.cancel(failure.New(failure.Cancelled, "cancelled by the dispatcher: %s", c.Reason))
}

// commit asks the dispatcher whether the lease is still ours.
func (s *Session) commit(ctx context.Context, l *leasev1.Lease, bytes int64) (bool, string, error) {
	ch := make(chan *leasev1.CommitDecision, 1)
	s.mu.Lock()
	s.commits[deliveryOf(l)] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.commits, deliveryOf(l))
		s.mu.Unlock()
	}()
	s.enqueue(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Commit{Commit: &leasev1.Commit{
		LeaseId: l.LeaseId, Token: l.Token, Bytes: bytes,
	}}})
	t := time.NewTimer(s.c.cfg.CommitTimeout)
	defer t.Stop()
	select {
	case d := <-ch:
		if !d.Approved {
			s.c.metrics.CommitRefused.Inc()
		}
		return d.Approved, d.Reason, nil
	case <-t.C:
		return false, "", fmt.Errorf("no commit decision within %s", s.c.cfg.CommitTimeout)
	case <-ctx.Done():
		return false, "", context.Cause(ctx)
	}
}

func (s *Session) decide(d *leasev1.CommitDecision) {
	s.mu.Lock()
	ch := s.commits[delivery{d.LeaseId, d.Token}]
	s.mu.Unlock()
	if ch != nil {
		select {
		case ch <- d:
		default:
		}
	}
}

// delivery is one delivery of a lease: its id and token.
type delivery struct {
	leaseID string
	token   uint64
}

func deliveryOf(l *leasev1.Lease) delivery { return delivery{l.LeaseId, l.Token} }
