package main

// Tasks in, outcomes out, with franz-go (an independent client): one
// producer, and one read_committed consumer of the outcome topics that
// notes when each outcome became visible.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
)

type kafkaIO struct {
	prod *kgo.Client
	cons *kgo.Client
	// outcomes keeps only the ids a run expects; Message.Seen is when the
	// consumer polled the outcome.
	outcomes *kafka.Outcomes
	cancel   context.CancelFunc
	done     chan struct{}
}

func newKafkaIO(brokers string) (*kafkaIO, error) {
	bs := strings.Split(brokers, ",")
	prod, err := kgo.NewClient(kgo.SeedBrokers(bs...), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return nil, err
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(bs...),
		kgo.ConsumeTopics(kafka.ResultsTopic, kafka.FailuresTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		prod.Close()
		return nil, err
	}
	k := &kafkaIO{prod: prod, cons: cons, outcomes: kafka.NewOutcomes(), done: make(chan struct{})}
	k.outcomes.Track(nil)
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	go k.consume(ctx)
	// Make sure the consumer has its positions before anything is produced.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	if err := prod.Ping(ctx2); err != nil {
		k.close()
		return nil, fmt.Errorf("kafka at %s: %w", brokers, err)
	}
	time.Sleep(time.Second)
	return k, nil
}

func (k *kafkaIO) close() {
	k.cancel()
	<-k.done
	k.cons.Close()
	k.prod.Close()
}

func (k *kafkaIO) consume(ctx context.Context) {
	defer close(k.done)
	for ctx.Err() == nil {
		fs := k.cons.PollFetches(ctx)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			if k.outcomes.Wants(string(r.Key)) {
				k.outcomes.Add(kafka.FromRecord(r, now))
			}
		})
	}
}

// expect makes the outcomes of ids, and only those, the ones kept from now on.
func (k *kafkaIO) expect(ids []string) { k.outcomes.Track(ids) }

// await waits up to timeout for the outcome of each id and returns those
// that arrived.
func (k *kafkaIO) await(ids []string, timeout time.Duration) map[string]kafka.Message {
	got, _ := k.outcomes.Await(ids, "", time.Time{}, timeout)
	return got
}

// succeeded says whether an outcome is a success, and if not, why.
func succeeded(m kafka.Message) (bool, string) {
	return m.Str("status") == "success", m.Str("error_code") + ": " + m.Str("error_message")
}

// produce sends tasks as fast as the client takes them and returns each
// one's produce time (just before it was handed to the client).
func (k *kafkaIO) produce(ctx context.Context, tasks []kafka.Task) (map[string]time.Time, error) {
	at := make(map[string]time.Time, len(tasks))
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for _, t := range tasks {
		v := t.JSON()
		wg.Add(1)
		at[t.TaskID] = time.Now()
		k.prod.Produce(ctx, &kgo.Record{Topic: kafka.TasksTopic, Key: []byte(t.TaskID), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	return at, firstErr
}

// seekGroupToEnd commits the end offsets of the tasks topic for a new
// group, so a dispatcher in it reads only what is produced from now on.
func (k *kafkaIO) seekGroupToEnd(group string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return kafka.SeekGroupToEnd(ctx, kadm.NewClient(k.prod), group, kafka.TasksTopic)
}
