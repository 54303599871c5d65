package devstack

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
)

// The clients here use franz-go, not the dispatcher's confluent-kafka-go:
// tests that produce and consume with an independent client check the
// wire contract, not one library's view of it.

// Producer writes tasks the way any producer application would.
type Producer struct{ cl *kgo.Client }

// NewProducer connects to brokers.
func NewProducer(brokers ...string) (*Producer, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(16<<20))
	if err != nil {
		return nil, err
	}
	return &Producer{cl: cl}, nil
}

// Produce writes one record and waits for the broker's acknowledgement.
func (p *Producer) Produce(ctx context.Context, topic string, key, value []byte, headers map[string]string) error {
	r := &kgo.Record{Topic: topic, Key: key, Value: value}
	for k, v := range headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return p.cl.ProduceSync(ctx, r).FirstErr()
}

// Close disconnects.
func (p *Producer) Close() { p.cl.Close() }

// Consumer reads outcome topics from the beginning, seeing only committed
// transactions, as FTP Pooler's users are told to.
type Consumer struct{ cl *kgo.Client }

// NewConsumer reads topics from their start with read_committed isolation.
func NewConsumer(brokers []string, topics ...string) (*Consumer, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(32<<20),
	)
	if err != nil {
		return nil, err
	}
	return &Consumer{cl: cl}, nil
}

// Next returns the messages available now, waiting for at least one until
// ctx ends.
func (c *Consumer) Next(ctx context.Context) ([]kafka.Message, error) {
	fetches := c.cl.PollFetches(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var firstErr error
	fetches.EachError(func(topic string, p int32, err error) {
		if firstErr == nil {
			firstErr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
		}
	})
	if firstErr != nil {
		return nil, firstErr
	}
	var out []kafka.Message
	now := time.Now()
	fetches.EachRecord(func(r *kgo.Record) { out = append(out, kafka.FromRecord(r, now)) })
	return out, nil
}

// Close disconnects.
func (c *Consumer) Close() { c.cl.Close() }
