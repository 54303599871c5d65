package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/lease"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/outcome"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/publish"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/rate"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/task"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
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
}

// origin is what a lease.Task carries for its outcome.
type origin struct {
	task    *task.Task
	headers []task.Header
}

// Handle routes one consumed record: not a task → DLQ; a task that cannot
// run → failure; otherwise → scheduler.
func (p *pipeline) Handle(rec *task.Record) {
	t, rej := task.Parse(rec)
	if rej != nil {
		p.metrics.DeadLetters.WithLabelValues(rej.Code).Inc()
		p.count("DLQ")
		p.logger.Warn("record is not a task: sent to the DLQ", "partition", rec.Partition, "offset", rec.Offset,
			"error_type", rej.Type, "error_code", rej.Code, "error", rej.Message)
		dl := outcome.NewDeadLetter(rec, rej, p.now())
		p.pub.Submit(&publish.Record{
			Topic: p.kafka.DLQTopic, Key: rec.Key, Value: dl.Encode(), Headers: rec.Headers,
			Partition: rec.Partition, Offset: rec.Offset,
			// Keep the first 64 KiB if the DLQ topic refuses the whole record.
			Shrink: func() []byte { return dl.Truncated(rec.Value, 64<<10).Encode() },
		})
		return
	}
	headers := pickTraceHeaders(rec.Headers)
	if ferr := task.Check(t, p.conns, p.defaultLimit); ferr != nil {
		p.logger.Warn("task cannot run", "task_id", t.ID, "error_code", failure.Name(ferr.Code), "error", ferr.Error())
		o := &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: ferr.Code, ErrorMessage: ferr.Error(), SourceSize: -1}
		p.pub.Submit(p.record(rec.Partition, rec.Offset, t, headers, o, 0, ""))
		return
	}
	overwrite := leasev1.OverwritePolicy_OVERWRITE_POLICY_REPLACE
	if !t.Overwrite {
		overwrite = leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL
	}
	trace := map[string]string{}
	for _, h := range headers {
		trace[h.Key] = string(h.Value)
	}
	p.sched.Enqueue(&lease.Task{
		Key:        lease.Key{Partition: rec.Partition, Offset: rec.Offset},
		ID:         t.ID,
		ReceivedAt: p.now(),
		Trace:      trace,
		Payload:    &origin{task: t, headers: headers},
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
		o := f.Task.Payload.(*origin)
		recs = append(recs, p.record(f.Task.Key.Partition, f.Task.Key.Offset, o.task, o.headers, f.Outcome, f.Attempts, f.AgentID))
	}
	p.pub.Submit(recs...)
}

func (p *pipeline) record(partition int32, offset int64, t *task.Task, headers []task.Header,
	o *leasev1.Outcome, attempts uint32, agentID string) *publish.Record {
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
	return &publish.Record{
		Topic: topic, Key: []byte(t.ID), Value: msg.Encode(), Headers: headers,
		Partition: partition, Offset: offset,
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
