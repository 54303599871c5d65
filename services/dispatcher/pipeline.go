package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/lease"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/outcome"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/publish"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/rate"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/task"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
	"github.com/ftp-pooler/ftp-pooler/services/internal/telemetry"
)

// traceHeaders are the task headers copied onto its outcome, so a trace
// continues from the producer through to the outcome's consumer.
var traceHeaders = map[string]bool{"traceparent": true, "tracestate": true, "baggage": true}

// pipeline connects intake, scheduler and publisher: it decides where each
// record goes and turns finished tasks into outcome messages.
type pipeline struct {
	kafka config.Kafka
	conns *config.Connections
	// defaultLimit is pool.max_sessions_per_connection.
	defaultLimit int
	sched        *lease.Scheduler
	pub          *publish.Publisher
	metrics      *metrics.Metrics
	logger       *slog.Logger
	now          func() time.Time

	mu     sync.Mutex
	byCode map[string]uint64 // outcomes, by error code; "success" and "DLQ" too
	rates  *rate.Window

	tracing *telemetry.Tracing
	tracer  trace.Tracer
}

// origin is what a lease.Task carries for its outcome.
type origin struct {
	task    *task.Task
	headers []task.Header
	span    trace.SpanContext
	epoch   uint64 // the partition's assignment the record was read in
}

// receive starts a task's trace: a consumer span continuing the producer's
// context from the record's headers. It returns a no-op when tracing is off.
func (p *pipeline) receive(rec *task.Record) trace.Span {
	if !p.tracing.Enabled {
		return trace.SpanFromContext(context.Background())
	}
	carrier := propagation.MapCarrier{}
	for _, h := range rec.Headers {
		carrier[h.Key] = string(h.Value)
	}
	parent := p.tracing.Propagator.Extract(context.Background(), carrier)
	_, span := p.tracer.Start(parent, rec.Topic+" receive", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeReceive,
		semconv.MessagingOperationName("receive"),
		semconv.MessagingDestinationName(rec.Topic),
		semconv.MessagingDestinationPartitionID(strconv.Itoa(int(rec.Partition))),
		semconv.MessagingKafkaOffset(int(rec.Offset)),
		semconv.MessagingKafkaMessageKey(string(rec.Key)),
		semconv.MessagingConsumerGroupName(p.kafka.ConsumerGroup),
		semconv.MessagingMessageBodySize(len(rec.Value)),
	))
	return span
}

// publishing starts the outcome's producer span and returns the record's
// headers carrying it, so the outcome's consumer continues the trace.
func (p *pipeline) publishing(parent trace.SpanContext, topic string, headers []task.Header) ([]task.Header, func()) {
	if !p.tracing.Enabled || !parent.IsValid() {
		return headers, nil
	}
	ctx, span := p.tracer.Start(trace.ContextWithSpanContext(context.Background(), parent), topic+" publish",
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			semconv.MessagingSystemKafka,
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(topic),
		))
	carrier := propagation.MapCarrier{}
	p.tracing.Propagator.Inject(ctx, carrier)
	out := make([]task.Header, 0, len(headers)+len(carrier))
	for _, h := range headers {
		if _, replaced := carrier[h.Key]; !replaced {
			out = append(out, h)
		}
	}
	for k, v := range carrier {
		out = append(out, task.Header{Key: k, Value: []byte(v)})
	}
	return out, func() { span.End() }
}

// Handle routes one consumed record: not a task → DLQ; a task that cannot
// run → failure; otherwise → scheduler.
func (p *pipeline) Handle(rec *task.Record) {
	span := p.receive(rec)
	defer span.End()
	t, rej := task.Parse(rec)
	if rej != nil {
		span.SetStatus(codes.Error, rej.Code)
		p.metrics.DeadLetters.WithLabelValues(rej.Code).Inc()
		p.count("DLQ")
		p.logger.Warn("record is not a task: sent to the DLQ", "partition", rec.Partition, "offset", rec.Offset,
			"error_type", rej.Type, "error_code", rej.Code, "error", rej.Message)
		dl := outcome.NewDeadLetter(rec, rej, p.now())
		headers, done := p.publishing(span.SpanContext(), p.kafka.DLQTopic, rec.Headers)
		p.pub.Submit(&publish.Record{
			Topic: p.kafka.DLQTopic, Key: rec.Key, Value: dl.Encode(), Headers: headers, Done: done,
			Partition: rec.Partition, Offset: rec.Offset, Epoch: rec.Epoch,
			// Keep the first 64 KiB if the DLQ topic refuses the whole record.
			Shrink: func() []byte { return dl.Truncated(rec.Value, 64<<10).Encode() },
		})
		return
	}
	span.SetAttributes(attribute.String("ftp_pooler.task_id", t.ID))
	headers := pickTraceHeaders(rec.Headers)
	if ferr := task.Check(t, p.conns, p.defaultLimit); ferr != nil {
		p.logger.Warn("task cannot run", "task_id", t.ID, "error_code", failure.Name(ferr.Code), "error", ferr.Error())
		span.SetStatus(codes.Error, ferr.Error())
		o := &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: ferr.Code, ErrorMessage: ferr.Error(), SourceSize: -1}
		p.pub.Submit(p.record(rec.Partition, rec.Offset, &origin{task: t, headers: headers, span: span.SpanContext(), epoch: rec.Epoch}, o, 0, ""))
		return
	}
	overwrite := leasev1.OverwritePolicy_OVERWRITE_POLICY_REPLACE
	if !t.Overwrite {
		overwrite = leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL
	}
	p.sched.Enqueue(&lease.Task{
		Key:        lease.Key{Partition: rec.Partition, Offset: rec.Offset},
		ID:         t.ID,
		ReceivedAt: p.now(),
		Span:       span.SpanContext(),
		Payload:    &origin{task: t, headers: headers, span: span.SpanContext(), epoch: rec.Epoch},
		Spec: &leasev1.TransferSpec{
			TaskId: t.ID, SrcId: t.SrcID, SrcPath: t.SrcPath, DstId: t.DstID, DstPath: t.DstPath, Overwrite: overwrite,
			Origin: fmt.Sprintf("%s/%d/%d", rec.Topic, rec.Partition, rec.Offset),
		},
	})
}

// Revoke stops the partitions' work first, so no outcome of theirs appears
// after the flush, then publishes and commits what already finished.
func (p *pipeline) Revoke(ctx context.Context, partitions []int32) {
	dropped := p.sched.Revoke(partitions)
	if err := p.pub.Flush(ctx); err != nil {
		p.logger.Warn("flushing outcomes of revoked partitions", "partitions", partitions, "error", err)
	}
	p.logger.Info("partitions handed over", "partitions", partitions, "tasks_left_for_next_owner", dropped)
}

// finish turns finished tasks into outcome records.
func (p *pipeline) finish(done []lease.Finished) {
	recs := make([]*publish.Record, 0, len(done))
	for _, f := range done {
		recs = append(recs, p.record(f.Task.Key.Partition, f.Task.Key.Offset, f.Task.Payload.(*origin), f.Outcome, f.Attempts, f.AgentID))
	}
	p.pub.Submit(recs...)
}

func (p *pipeline) record(partition int32, offset int64, org *origin,
	o *leasev1.Outcome, attempts uint32, agentID string) *publish.Record {
	t := org.task
	msg := &outcome.Outcome{
		TaskID:           t.ID,
		SrcID:            t.SrcID,
		SrcPath:          t.SrcPath,
		DstID:            t.DstID,
		DstPath:          t.DstPath,
		BytesTransferred: o.BytesTransferred,
		DurationMS:       o.Duration.AsDuration().Milliseconds(),
		Timestamp:        outcome.Timestamp(p.now()),
		Attempts:         attempts,
		Agent:            agentID,
		ResumedFrom:      o.ResumedFrom,
		AlreadyDone:      o.AlreadyDone,
		Metadata:         t.Metadata,
	}
	topic, code := p.kafka.ResultTopic, ""
	if o.Status == leasev1.Status_STATUS_SUCCEEDED {
		msg.Status = outcome.StatusSuccess
		p.count("success")
	} else {
		msg.Status = outcome.StatusFailed
		code = failure.Name(o.ErrorCode)
		msg.ErrorCode, msg.ErrorMessage = code, o.ErrorMessage
		if msg.ErrorMessage == "" {
			msg.ErrorMessage = code
		}
		topic = p.kafka.FailTopic
	}
	p.metrics.Outcomes.WithLabelValues(msg.Status, code).Inc()
	if code != "" {
		p.count(code)
	}
	headers, done := p.publishing(org.span, topic, org.headers)
	return &publish.Record{
		Topic: topic, Key: []byte(t.ID), Value: msg.Encode(), Headers: headers, Done: done,
		Partition: partition, Offset: offset, Epoch: org.epoch,
	}
}

func (p *pipeline) count(code string) {
	p.mu.Lock()
	p.byCode[code]++
	p.mu.Unlock()
	p.rates.Add(code)
}

func (p *pipeline) outcomesByCode() map[string]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]uint64, len(p.byCode))
	for k, v := range p.byCode {
		out[k] = v
	}
	return out
}

func pickTraceHeaders(hs []task.Header) []task.Header {
	var out []task.Header
	for _, h := range hs {
		if traceHeaders[h.Key] {
			out = append(out, h)
		}
	}
	return out
}
