// Package publish hands outcomes to Kafka and commits the input offsets
// they answer, without ever losing one.
//
// In exactly-once mode every batch of outcomes and the offsets it completes
// go into one Kafka transaction, so a read_committed consumer sees each
// outcome once and an offset is committed exactly when its outcome is
// visible. In at-least-once mode outcomes go through an idempotent producer
// and offsets are committed after their outcomes are acknowledged.
//
// Either way a record that fails to publish is retried until it succeeds or
// the process stops; it is never dropped, and its offset is never committed
// without it.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/task"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/watermark"
)

// Record is one message to publish, answering one input offset.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []task.Header
	// Partition and Offset locate the input record this one answers, read
	// in the partition's assignment Epoch (watermark.Tracker.Epoch).
	Partition int32
	Offset    int64
	Epoch     uint64
	// Shrink, when set, returns a smaller value to send instead when the
	// broker refuses Value as too large (dead letters of huge records).
	Shrink func() []byte
	// Done, when set, is called once the record is durable (ends its span).
	Done func()
}

// Producer is the part of *kafka.Producer the publisher drives, so tests
// can stand in for the brokers.
type Producer interface {
	Produce(msg *kafka.Message, deliveryChan chan kafka.Event) error
	InitTransactions(ctx context.Context) error
	BeginTransaction() error
	SendOffsetsToTransaction(ctx context.Context, offsets []kafka.TopicPartition, consumerMetadata *kafka.ConsumerGroupMetadata) error
	CommitTransaction(ctx context.Context) error
	AbortTransaction(ctx context.Context) error
}

// Consumer is what the publisher needs from the input consumer.
type Consumer interface {
	CommitOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	GetConsumerGroupMetadata() (*kafka.ConsumerGroupMetadata, error)
}

var (
	_ Producer = (*kafka.Producer)(nil)
	_ Consumer = (*kafka.Consumer)(nil)
)

// Config tunes the publisher.
type Config struct {
	InputTopic    string
	Transactional bool
	// Linger is how long the first outcome of a batch waits for company.
	Linger   time.Duration
	MaxBatch int
	// RetryBackoff is the pause before a failed batch is tried again.
	RetryBackoff time.Duration
}

// Publisher is safe for concurrent Submit; Run owns the producer.
type Publisher struct {
	cfg      Config
	producer Producer
	consumer Consumer
	tracker  *watermark.Tracker
	metrics  *metrics.Metrics
	logger   *slog.Logger

	mu      sync.Mutex
	pending []*Record
	// lastSubmit is when records last arrived; afterQuiet says the first
	// pending record came after Linger without any (see waitForWork).
	lastSubmit time.Time
	afterQuiet bool
	submitted  uint64        // records ever submitted
	published  uint64        // records ever made durable
	progress   chan struct{} // closed and replaced whenever published grows
	failed     error         // set when Run stopped for good
	urgent     atomic.Int32  // flushes waiting: skip lingering
	wake       chan struct{}
	commitMu   sync.Mutex // serialises at-least-once offset commits

	deliveries chan kafka.Event
}

// New returns a publisher. In transactional mode the producer must have a
// transactional.id; Run initialises transactions.
func New(cfg Config, producer Producer, consumer Consumer, tracker *watermark.Tracker,
	m *metrics.Metrics, logger *slog.Logger) *Publisher {
	p := &Publisher{
		cfg:        cfg,
		producer:   producer,
		consumer:   consumer,
		tracker:    tracker,
		metrics:    m,
		logger:     logger.With("component", "publisher"),
		wake:       make(chan struct{}, 1),
		progress:   make(chan struct{}),
		deliveries: make(chan kafka.Event, 4*cfg.MaxBatch+64),
	}
	return p
}

// Submit queues records for publishing. It never blocks.
func (p *Publisher) Submit(recs ...*Record) {
	now := time.Now()
	p.mu.Lock()
	if len(p.pending) == 0 {
		p.afterQuiet = now.Sub(p.lastSubmit) >= p.cfg.Linger
	}
	p.lastSubmit = now
	p.pending = append(p.pending, recs...)
	p.submitted += uint64(len(recs))
	p.mu.Unlock()
	p.poke()
}

// Pending reports records submitted but not yet durable.
func (p *Publisher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int(p.submitted - p.published)
}

// Flush returns once every record submitted before the call is durable and
// its input offset committed, or ctx ends.
func (p *Publisher) Flush(ctx context.Context) error {
	p.urgent.Add(1)
	defer p.urgent.Add(-1)
	p.mu.Lock()
	target := p.submitted
	p.mu.Unlock()
	p.poke()
	for {
		p.mu.Lock()
		published, progress, failed := p.published, p.progress, p.failed
		p.mu.Unlock()
		if published >= target {
			break
		}
		if failed != nil {
			return failed
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !p.cfg.Transactional {
		return p.commitOffsets()
	}
	return nil
}

func (p *Publisher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends. A fatal producer error (fenced by a newer
// instance with the same transactional.id, say) is returned: the process
// must stop, and what it did not commit is redone by the next owner.
func (p *Publisher) Run(ctx context.Context) error {
	if p.cfg.Transactional {
		if err := p.initTransactions(ctx, 60*time.Second); err != nil {
			if ctx.Err() != nil {
				return nil // shut down before the brokers answered
			}
			return fmt.Errorf("init transactions: %w", err)
		}
	}
	var err error
	if p.cfg.Transactional {
		err = p.runTransactional(ctx)
	} else {
		err = p.runAtLeastOnce(ctx)
	}
	if err == nil {
		err = errors.New("publisher stopped")
	}
	p.mu.Lock()
	p.failed = err
	close(p.progress)
	p.progress = make(chan struct{})
	p.mu.Unlock()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// initTransactions registers the transactional id, giving up after limit.
// librdkafka's call does not return when its context is cancelled, only at
// its deadline, so it is made in short slices: a SIGTERM while the brokers
// are away or refuse the login ends it within seconds, not a minute.
func (p *Publisher) initTransactions(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		slice, cancel := context.WithTimeout(ctx, min(5*time.Second, time.Until(deadline)))
		err := p.producer.InitTransactions(slice)
		cancel()
		var ke kafka.Error
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &ke) && ke.IsRetriable() && time.Now().Before(deadline):
			continue // timed out: the call resumes where it was
		}
		return err
	}
}

// waitForWork blocks until records are pending and, unless a flush waits,
// until a batch has had Linger to fill up. A batch also closes once no
// record arrived for a quarter of Linger: outcomes that trickle in one at a
// time would only wait for company that is not coming, while under load
// they arrive far more often than that and batches fill. And an outcome
// that ends a quiet Linger (an idle pipeline's single task) goes at once:
// waiting is what the Python service we replace never did, and the records
// that follow it, if a burst begins, gather while its transaction commits.
func (p *Publisher) waitForWork(ctx context.Context) error {
	for p.pendingLen() == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.wake:
		}
	}
	if p.urgent.Load() > 0 || p.cfg.Linger <= 0 || p.takeAfterQuiet() {
		return nil
	}
	timer := time.NewTimer(p.cfg.Linger)
	defer timer.Stop()
	quiet := time.NewTimer(p.cfg.Linger / 4)
	defer quiet.Stop()
	for p.pendingLen() < p.cfg.MaxBatch && p.urgent.Load() == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		case <-quiet.C:
			return nil
		case <-p.wake:
			quiet.Reset(p.cfg.Linger / 4)
		}
	}
	return nil
}

// take removes up to max pending records.
func (p *Publisher) take(max int) []*Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := min(len(p.pending), max)
	if n == 0 {
		return nil
	}
	batch := make([]*Record, n)
	copy(batch, p.pending)
	rest := copy(p.pending, p.pending[n:])
	clear(p.pending[rest:])
	p.pending = p.pending[:rest]
	return batch
}

// takeAfterQuiet reports, once, whether the pending batch began after a
// quiet Linger.
func (p *Publisher) takeAfterQuiet() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	quiet := p.afterQuiet
	p.afterQuiet = false
	return quiet
}

func (p *Publisher) pendingLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// settled counts n submitted records as done with, published or dropped,
// and wakes Flush.
func (p *Publisher) settled(n int) {
	p.mu.Lock()
	p.published += uint64(n)
	close(p.progress)
	p.progress = make(chan struct{})
	p.mu.Unlock()
}

func (p *Publisher) markPublished(batch []*Record) {
	p.settled(len(batch))
	for _, r := range batch {
		if r.Done != nil {
			r.Done()
		}
	}
}

// message builds the Kafka message for a record; opaque carries the record
// back in its delivery report.
func (p *Publisher) message(r *Record) *kafka.Message {
	topic := r.Topic
	m := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key:            r.Key,
		Value:          r.Value,
		Opaque:         r,
	}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, kafka.Header{Key: h.Key, Value: h.Value})
	}
	return m
}

// produce hands a record to librdkafka, shrinking it first if librdkafka
// refuses it as too large before it even reaches the broker.
func (p *Publisher) produce(r *Record) error {
	err := p.producer.Produce(p.message(r), p.deliveries)
	if isTooLarge(err) && r.Shrink != nil {
		p.shrink(r)
		err = p.producer.Produce(p.message(r), p.deliveries)
	}
	return err
}

func (p *Publisher) shrink(r *Record) {
	p.logger.Error("outcome too large for Kafka: sending it truncated", "topic", r.Topic,
		"partition", r.Partition, "offset", r.Offset, "bytes", len(r.Value))
	r.Value, r.Shrink = r.Shrink(), nil
}

func isTooLarge(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && (ke.Code() == kafka.ErrMsgSizeTooLarge || ke.Code() == kafka.ErrRecordListTooLarge)
}

func (p *Publisher) offsetsFor(offs []watermark.Offset) []kafka.TopicPartition {
	out := make([]kafka.TopicPartition, len(offs))
	for i, o := range offs {
		out[i] = kafka.TopicPartition{Topic: &p.cfg.InputTopic, Partition: o.Partition, Offset: kafka.Offset(o.Offset), Metadata: &o.Metadata}
	}
	return out
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
