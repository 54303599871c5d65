package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/capacity"
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

// jobs runs the leases one stream receives, each in its own goroutine
// holding one of the agent's slots while it transfers, and reports how
// each ended.
type jobs struct {
	runner  Runner
	slots   *capacity.Slots
	out     *outbox
	commits *commits
	tracing tracing
	metrics *metrics.Metrics
	observe func(*transfer.Job, *leasev1.Outcome) // may be nil
	logger  *slog.Logger

	wg sync.WaitGroup
	mu sync.Mutex
	// byDelivery is keyed by delivery, not lease: a lease that expired
	// while its agent was cut off is leased again under the same id with a
	// new token, possibly to the same agent while the old delivery still
	// runs.
	byDelivery map[delivery]*running
}

type running struct {
	job    *transfer.Job
	cancel context.CancelCauseFunc
}

func (c *Client) newJobs(out *outbox, commits *commits) *jobs {
	return &jobs{
		runner: c.runner, slots: c.slots, out: out, commits: commits,
		tracing: tracing{tracer: c.cfg.Tracer, propagator: c.cfg.Propagator, agentID: c.cfg.AgentID},
		metrics: c.metrics, observe: c.Observe, logger: c.logger,
		byDelivery: map[delivery]*running{},
	}
}

// start runs a lease under jobsCtx, whose cause says why it was stopped.
func (j *jobs) start(jobsCtx context.Context, l *leasev1.Lease) {
	ctx, cancel := context.WithCancelCause(jobsCtx)
	ctx, span := j.tracing.start(ctx, l)
	r := &running{job: &transfer.Job{Lease: l}, cancel: cancel}
	r.job.Total.Store(-1)
	r.job.Commit = func(ctx context.Context, bytes int64) (bool, string, error) { return j.commits.ask(ctx, l, bytes) }
	j.mu.Lock()
	j.byDelivery[deliveryOf(l)] = r
	j.mu.Unlock()
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		defer cancel(nil)
		defer span.End()
		o := j.run(ctx, r.job)
		j.mu.Lock()
		delete(j.byDelivery, deliveryOf(l))
		j.mu.Unlock()
		j.report(ctx, r.job, o, span)
	}()
}

// run transfers once a slot is free; nil when the job stopped first.
func (j *jobs) run(ctx context.Context, job *transfer.Job) *leasev1.Outcome {
	if err := j.slots.Acquire(ctx); err != nil {
		return nil
	}
	defer j.slots.Release()
	j.metrics.SlotsBusy.Inc()
	defer j.metrics.SlotsBusy.Dec()
	return j.runner.Run(ctx, job)
}

// report tells the dispatcher how a job ended: nothing when its stream was
// lost, a release when it is to be leased again, else its outcome.
func (j *jobs) report(ctx context.Context, job *transfer.Job, o *leasev1.Outcome, span trace.Span) {
	l := job.Lease
	log := j.logger.With("task_id", l.Transfer.GetTaskId(), "lease_id", l.LeaseId, "token", l.Token, "attempt", l.Attempt)
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errStreamLost):
		// The dispatcher took the lease back when the stream broke.
		log.Warn("transfer abandoned: stream lost")
		return
	case job.ConnectionBusy && cause == nil:
		log.Info("lease handed back: every connection its quota allows stayed busy")
		j.out.send(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Release{Release: &leasev1.Release{
			LeaseId: l.LeaseId, Token: l.Token, Reason: "connections busy", BytesDone: job.Done.Load(), ConnectionBusy: true,
		}}})
		return
	case errors.Is(cause, errDraining) || o == nil:
		log.Info("lease released")
		j.out.send(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Release{Release: &leasev1.Release{
			LeaseId: l.LeaseId, Token: l.Token, Reason: errDraining.Error(), BytesDone: job.Done.Load(),
		}}})
		return
	}
	if j.observe != nil {
		j.observe(job, o)
	}
	traceOutcome(span, o)
	if o.Status == leasev1.Status_STATUS_SUCCEEDED {
		log.Info("transfer succeeded", "bytes", o.BytesTransferred, "duration", o.Duration.AsDuration())
	} else {
		log.Warn("transfer failed", "error_code", failure.Name(o.ErrorCode), "error", o.ErrorMessage, "retryable", o.Retryable)
	}
	j.out.send(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Result{Result: &leasev1.Result{
		LeaseId: l.LeaseId, Token: l.Token, Outcome: o,
	}}})
}

// cancel stops a job the dispatcher cancelled; it fails as CANCELLED.
func (j *jobs) cancel(c *leasev1.Cancel) {
	j.mu.Lock()
	r := j.byDelivery[delivery{c.LeaseId, c.Token}]
	j.mu.Unlock()
	if r == nil || r.job.Lease.Token != c.Token {
		return
	}
	j.logger.Info("lease cancelled by dispatcher", "lease_id", c.LeaseId, "reason", c.Reason)
	r.cancel(failure.New(failure.Cancelled, "cancelled by the dispatcher: %s", c.Reason))
}

// progress is a heartbeat for every job running.
func (j *jobs) progress() []*leasev1.ConnectRequest {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]*leasev1.ConnectRequest, 0, len(j.byDelivery))
	for _, r := range j.byDelivery {
		out = append(out, &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Progress{Progress: &leasev1.Progress{
			LeaseId: r.job.Lease.LeaseId, Token: r.job.Lease.Token, BytesDone: r.job.Done.Load(), BytesTotal: r.job.Total.Load(),
		}}})
	}
	return out
}

func (j *jobs) running() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.byDelivery)
}

// wait returns once every job started has ended.
func (j *jobs) wait() { j.wg.Wait() }

// idle is closed once every job started has ended.
func (j *jobs) idle() <-chan struct{} {
	done := make(chan struct{})
	go func() { j.wg.Wait(); close(done) }()
	return done
}

// tracing continues each lease's trace on the agent.
type tracing struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	agentID    string
}

// start begins the transfer's span as a child of the dispatcher's lease
// span, carried in the lease.
func (t tracing) start(ctx context.Context, l *leasev1.Lease) (context.Context, trace.Span) {
	if len(l.TraceContext) > 0 {
		ctx = t.propagator.Extract(ctx, propagation.MapCarrier(l.TraceContext))
	}
	spec := l.Transfer
	return t.tracer.Start(ctx, "transfer", trace.WithAttributes(
		attribute.String("ftp_pooler.task_id", spec.GetTaskId()),
		attribute.String("ftp_pooler.lease_id", l.LeaseId),
		attribute.Int("ftp_pooler.attempt", int(l.Attempt)),
		attribute.String("ftp_pooler.agent_id", t.agentID),
		attribute.String("ftp_pooler.src_id", spec.GetSrcId()),
		attribute.String("ftp_pooler.src_path", spec.GetSrcPath()),
		attribute.String("ftp_pooler.dst_id", spec.GetDstId()),
		attribute.String("ftp_pooler.dst_path", spec.GetDstPath()),
	))
}

func traceOutcome(span trace.Span, o *leasev1.Outcome) {
	span.SetAttributes(attribute.Int64("ftp_pooler.bytes", o.BytesTransferred), attribute.Int64("ftp_pooler.source_size", o.SourceSize),
		attribute.Bool("ftp_pooler.already_done", o.AlreadyDone), attribute.Int64("ftp_pooler.resumed_from", o.ResumedFrom))
	if o.Status != leasev1.Status_STATUS_SUCCEEDED {
		span.SetAttributes(attribute.String("ftp_pooler.error_code", failure.Name(o.ErrorCode)))
		span.SetStatus(codes.Error, o.ErrorMessage)
	}
}
