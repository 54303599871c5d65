package lease

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// tracing traces leases as children of their task's receive span; its
// tracer is nil when tracing is off.
type tracing struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// startLease records the task's wait in the queue and starts the lease's
// span; the agent continues the trace from the returned carrier.
func (tr tracing) startLease(t *Task, l *lease, now time.Time) map[string]string {
	if tr.tracer == nil || !t.Span.IsValid() {
		return nil
	}
	parent := trace.ContextWithRemoteSpanContext(context.Background(), t.Span)
	_, wait := tr.tracer.Start(parent, "queue wait", trace.WithTimestamp(t.queuedAt),
		trace.WithAttributes(attribute.Int("ftp_pooler.attempt", int(t.attempt))))
	wait.End(trace.WithTimestamp(now))
	ctx, span := tr.tracer.Start(parent, "lease", trace.WithTimestamp(now), trace.WithAttributes(
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
	tr.propagator.Inject(ctx, carrier)
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
