package dispatcher

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/lease"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/outcome"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/publish"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/rate"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/task"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/watermark"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/telemetry"
)

// sink is an at-least-once producer whose brokers take every record up to
// maxValue bytes and refuse larger ones, as a DLQ topic with a small
// max.message.bytes does.
type sink struct {
	maxValue int

	mu   sync.Mutex
	sent []*kafka.Message
}

func (s *sink) Produce(m *kafka.Message, deliveries chan kafka.Event) error {
	report := *m
	if s.maxValue > 0 && len(m.Value) > s.maxValue {
		report.TopicPartition.Error = kafka.NewError(kafka.ErrMsgSizeTooLarge, "message too large", false)
	} else {
		s.mu.Lock()
		s.sent = append(s.sent, &report)
		s.mu.Unlock()
	}
	deliveries <- &report
	return nil
}

func (s *sink) messages() []*kafka.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*kafka.Message(nil), s.sent...)
}

func (*sink) InitTransactions(context.Context) error { return nil }
func (*sink) BeginTransaction() error                { return nil }
func (*sink) SendOffsetsToTransaction(context.Context, []kafka.TopicPartition, *kafka.ConsumerGroupMetadata) error {
	return nil
}
func (*sink) CommitTransaction(context.Context) error { return nil }
func (*sink) AbortTransaction(context.Context) error  { return nil }

type noCommits struct{}

func (noCommits) CommitOffsets(o []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	return o, nil
}
func (noCommits) GetConsumerGroupMetadata() (*kafka.ConsumerGroupMetadata, error) {
	return &kafka.ConsumerGroupMetadata{}, nil
}

// newTestPipeline is a pipeline whose publisher runs over out, with one
// local endpoint, and the tracker holding partition 0 of the input topic.
func newTestPipeline(t *testing.T, out *sink) (*pipeline, *watermark.Tracker) {
	t.Helper()
	conns, err := config.ParseConnections([]byte("[local]\ntype = local\nbase_path = /tmp\n"), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	k := config.Default().Kafka
	m := metrics.New()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	tracker := watermark.New()
	tracker.Assign(0, -1, "")
	pub := publish.New(publish.Config{InputTopic: k.InputTopic, Linger: 5 * time.Millisecond, MaxBatch: 8, RetryBackoff: time.Millisecond},
		out, noCommits{}, tracker, m, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = pub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	p := &pipeline{kafka: k, conns: conns, defaultLimit: 2, metrics: m, logger: logger, now: time.Now,
		byCode: map[string]uint64{}, rates: rate.New(nil), tracing: &telemetry.Tracing{},
		sched: lease.New(lease.Config{}, lease.SystemClock, m, logger, func([]lease.Finished) {}), pub: pub}
	return p, tracker
}

func consumed(t *testing.T, tracker *watermark.Tracker, off int64, value string) *task.Record {
	t.Helper()
	v, epoch := tracker.Track(0, off)
	if v != watermark.Process {
		t.Fatalf("Track(0, %d) = %v", off, v)
	}
	return &task.Record{Topic: "ftp-tasks", Partition: 0, Offset: off, Epoch: epoch, Key: []byte("k"), Value: []byte(value),
		Headers: []task.Header{{Key: "traceparent", Value: []byte("00-1-2-01")}, {Key: "producer", Value: []byte("batch-7")}}}
}

func flush(t *testing.T, p *pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRecordRouting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		value      string
		wantTopic  string // "" when the task goes to the scheduler
		wantQueued int
		check      func(t *testing.T, m *kafka.Message)
	}{
		{name: "a task", value: `{"task_id":"t1","src_id":"local","src_path":"a","dst_id":"local","dst_path":"b"}`, wantQueued: 1},
		{name: "not JSON", value: "{oops", wantTopic: "ftp-tasks-dlq", check: func(t *testing.T, m *kafka.Message) {
			var dl outcome.DeadLetter
			if err := json.Unmarshal(m.Value, &dl); err != nil {
				t.Fatal(err)
			}
			if dl.OriginalTopic != "ftp-tasks" || dl.OriginalPartition != 0 || dl.OriginalOffset != 0 || dl.OriginalValue != "{oops" ||
				dl.OriginalKey == nil || *dl.OriginalKey != "k" || dl.ErrorType != task.TypeParseError || dl.ErrorCode != task.CodeInvalidJSON {
				t.Errorf("dead letter %+v", dl)
			}
			if string(m.Key) != "k" || len(m.Headers) != 2 {
				t.Errorf("dead letter keyed %q with headers %v, want the record's key and every header", m.Key, m.Headers)
			}
		}},
		{name: "a task that cannot run", value: `{"task_id":"t2","src_id":"nowhere","src_path":"a","dst_id":"local","dst_path":"b"}`,
			wantTopic: "ftp-failures", check: func(t *testing.T, m *kafka.Message) {
				var o outcome.Outcome
				if err := json.Unmarshal(m.Value, &o); err != nil {
					t.Fatal(err)
				}
				if o.TaskID != "t2" || o.Status != outcome.StatusFailed || o.ErrorCode != "UNKNOWN_ENDPOINT" {
					t.Errorf("failure %+v", o)
				}
				// Only the trace headers carry over to an outcome.
				if string(m.Key) != "t2" || len(m.Headers) != 1 || m.Headers[0].Key != "traceparent" {
					t.Errorf("failure keyed %q with headers %v", m.Key, m.Headers)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := &sink{}
			p, tracker := newTestPipeline(t, out)
			p.Handle(consumed(t, tracker, 0, tc.value))
			flush(t, p)
			if queued, _ := p.sched.Counts(); queued != tc.wantQueued {
				t.Errorf("%d tasks queued, want %d", queued, tc.wantQueued)
			}
			sent := out.messages()
			if tc.wantTopic == "" {
				if len(sent) != 0 {
					t.Fatalf("a task to run was published: %d messages", len(sent))
				}
				return
			}
			if len(sent) != 1 || *sent[0].TopicPartition.Topic != tc.wantTopic {
				t.Fatalf("published %d messages (%v), want one on %s", len(sent), sent, tc.wantTopic)
			}
			tc.check(t, sent[0])
		})
	}
}

func TestDeadLetterTooLargeForTheDLQIsSentTruncated(t *testing.T) {
	t.Parallel()
	out := &sink{maxValue: 100 << 10}
	p, tracker := newTestPipeline(t, out)
	huge := strings.Repeat("x", 200<<10) // not JSON, and larger than the DLQ takes
	p.Handle(consumed(t, tracker, 0, huge))
	flush(t, p)
	sent := out.messages()
	if len(sent) != 1 {
		t.Fatalf("%d dead letters published, want 1", len(sent))
	}
	var dl outcome.DeadLetter
	if err := json.Unmarshal(sent[0].Value, &dl); err != nil {
		t.Fatal(err)
	}
	if !dl.OriginalValueTruncated || len(dl.OriginalValue) != 64<<10 || dl.OriginalValueSize != len(huge) || dl.OriginalOffset != 0 {
		t.Fatalf("dead letter: truncated %v, %d bytes of value kept, size %d", dl.OriginalValueTruncated, len(dl.OriginalValue), dl.OriginalValueSize)
	}
}
