package main

// Tasks in, outcomes out, with franz-go (an independent client): one
// producer, and one read_committed consumer of the outcome topics that
// notes when each outcome became visible.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	tasksTopic    = "ftp-tasks"
	resultsTopic  = "ftp-results"
	failuresTopic = "ftp-failures"
)

// task is a task message.
type task struct {
	ID      string `json:"task_id"`
	SrcID   string `json:"src_id"`
	SrcPath string `json:"src_path"`
	DstID   string `json:"dst_id"`
	DstPath string `json:"dst_path"`
}

// arrival is one outcome as the consumer saw it.
type arrival struct {
	at     time.Time
	ok     bool
	code   string
	detail string
	// agentMS is the outcome's duration_ms: the transfer's time on the agent.
	agentMS float64
	// produced is the outcome record's timestamp (when the dispatcher
	// produced it).
	produced time.Time
}

type kafkaIO struct {
	brokers []string
	prod    *kgo.Client
	cons    *kgo.Client

	mu      sync.Mutex
	want    map[string]bool
	got     map[string]arrival
	waiting int
	all     chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

func newKafkaIO(brokers string) (*kafkaIO, error) {
	bs := strings.Split(brokers, ",")
	prod, err := kgo.NewClient(kgo.SeedBrokers(bs...), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return nil, err
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(bs...),
		kgo.ConsumeTopics(resultsTopic, failuresTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		prod.Close()
		return nil, err
	}
	k := &kafkaIO{brokers: bs, prod: prod, cons: cons, done: make(chan struct{})}
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
			var o struct {
				Status  string  `json:"status"`
				Code    string  `json:"error_code"`
				Message string  `json:"error_message"`
				Dur     float64 `json:"duration_ms"`
			}
			_ = json.Unmarshal(r.Value, &o)
			k.arrive(string(r.Key), arrival{at: now, ok: o.Status == "success", code: o.Code, detail: o.Message, agentMS: o.Dur, produced: r.Timestamp})
		})
	}
}

func (k *kafkaIO) arrive(id string, a arrival) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.want[id] {
		return
	}
	if _, dup := k.got[id]; dup {
		return
	}
	k.got[id] = a
	k.waiting--
	if k.waiting == 0 && k.all != nil {
		close(k.all)
		k.all = nil
	}
}

// expect registers the task ids whose outcomes the next await waits for.
func (k *kafkaIO) expect(ids []string) <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.want = make(map[string]bool, len(ids))
	for _, id := range ids {
		k.want[id] = true
	}
	k.got = make(map[string]arrival, len(ids))
	k.waiting = len(ids)
	ch := make(chan struct{})
	k.all = ch
	return ch
}

// outcomes returns what arrived for the expected ids.
func (k *kafkaIO) outcomes() map[string]arrival {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]arrival, len(k.got))
	for id, a := range k.got {
		out[id] = a
	}
	return out
}

// produce sends tasks as fast as the client takes them and returns each
// one's produce time (just before it was handed to the client).
func (k *kafkaIO) produce(ctx context.Context, tasks []task) (map[string]time.Time, error) {
	at := make(map[string]time.Time, len(tasks))
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for _, t := range tasks {
		v, _ := json.Marshal(t)
		wg.Add(1)
		at[t.ID] = time.Now()
		k.prod.Produce(ctx, &kgo.Record{Topic: tasksTopic, Key: []byte(t.ID), Value: v}, func(_ *kgo.Record, err error) {
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
	adm := kadm.NewClient(k.prod)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, tasksTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", tasksTopic, err)
	}
	if err := adm.CommitAllOffsets(ctx, group, ends.Offsets()); err != nil {
		return fmt.Errorf("commit end offsets for group %s: %w", group, err)
	}
	return nil
}
