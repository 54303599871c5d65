package intake

import (
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// fakeConsumer stands in for librdkafka's consumer: per-partition logs,
// fetched from the assigned, unpaused partitions in offset order, and
// rebalances delivered through the callback inside Poll. As in librdkafka,
// a partition's pause survives its revocation and a later assignment;
// only Resume clears it.
type fakeConsumer struct {
	topic    string
	protocol string // "COOPERATIVE" or "EAGER"

	mu        sync.Mutex
	cb        kafka.RebalanceCb
	script    []kafka.Event // rebalances and errors Poll delivers before any record
	log       map[int32][]*kafka.Message
	next      map[int32]int64 // the next offset to fetch
	assigned  map[int32]bool
	paused    map[int32]bool
	committed map[int32]kafka.TopicPartition
	// committedErr fails the next Committed call.
	committedErr error
	lost         bool
	closed       bool
	seeks        []kafka.TopicPartition
	calls        []string // assign/unassign calls, by name
	violations   []string // calls librdkafka would refuse
}

func newFakeConsumer(topic, protocol string) *fakeConsumer {
	return &fakeConsumer{topic: topic, protocol: protocol, log: map[int32][]*kafka.Message{}, next: map[int32]int64{},
		assigned: map[int32]bool{}, paused: map[int32]bool{}, committed: map[int32]kafka.TopicPartition{}}
}

// produce appends records to a partition's log.
func (c *fakeConsumer) produce(p int32, values ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range values {
		off := kafka.Offset(len(c.log[p]))
		c.log[p] = append(c.log[p], &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &c.topic, Partition: p, Offset: off},
			Key:            []byte("key-" + v),
			Value:          []byte(v),
			Headers:        []kafka.Header{{Key: "traceparent", Value: []byte("tp-" + v)}},
			Timestamp:      time.Unix(1_700_000_000, 0).Add(time.Duration(off) * time.Second),
		})
	}
}

// rebalance queues a rebalance event (or an error) for the next Poll.
func (c *fakeConsumer) rebalance(ev kafka.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.script = append(c.script, ev)
}

func (c *fakeConsumer) partitions(ps ...int32) []kafka.TopicPartition {
	out := make([]kafka.TopicPartition, len(ps))
	for i, p := range ps {
		out[i] = kafka.TopicPartition{Topic: &c.topic, Partition: p, Offset: kafka.OffsetInvalid}
	}
	return out
}

func (c *fakeConsumer) SubscribeTopics(topics []string, cb kafka.RebalanceCb) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(topics) != 1 || topics[0] != c.topic {
		return errors.New("unexpected topics")
	}
	c.cb = cb
	return nil
}

func (c *fakeConsumer) Poll(int) kafka.Event {
	c.mu.Lock()
	if len(c.script) > 0 {
		ev := c.script[0]
		c.script = c.script[1:]
		cb := c.cb
		c.mu.Unlock()
		switch ev.(type) {
		case kafka.AssignedPartitions, kafka.RevokedPartitions:
			// The callback calls back into the consumer: no lock held.
			_ = cb(nil, ev)
			return nil
		}
		return ev
	}
	defer c.mu.Unlock()
	for _, p := range slices.Sorted(maps.Keys(c.assigned)) {
		if c.paused[p] {
			continue
		}
		if next := c.next[p]; next < int64(len(c.log[p])) {
			c.next[p] = next + 1
			return c.log[p][next]
		}
	}
	// Nothing to read: wait a little as Poll would, without spinning.
	c.mu.Unlock()
	time.Sleep(100 * time.Microsecond)
	c.mu.Lock()
	return nil
}

func (c *fakeConsumer) Seek(tp kafka.TopicPartition, _ int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.assigned[tp.Partition] {
		c.violations = append(c.violations, "seek on an unassigned partition")
	}
	c.seeks = append(c.seeks, tp)
	c.next[tp.Partition] = int64(tp.Offset)
	return nil
}

func (c *fakeConsumer) Committed(parts []kafka.TopicPartition, _ int) ([]kafka.TopicPartition, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.committedErr; err != nil {
		c.committedErr = nil
		return nil, err
	}
	out := make([]kafka.TopicPartition, 0, len(parts))
	for _, tp := range parts {
		if got, ok := c.committed[tp.Partition]; ok {
			out = append(out, got)
			continue
		}
		out = append(out, kafka.TopicPartition{Topic: &c.topic, Partition: tp.Partition, Offset: kafka.OffsetInvalid})
	}
	return out, nil
}

func (c *fakeConsumer) GetRebalanceProtocol() string { return c.protocol }

func (c *fakeConsumer) AssignmentLost() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// start begins fetching a newly assigned partition at its committed offset.
func (c *fakeConsumer) start(p int32) {
	c.assigned[p] = true
	c.next[p] = 0
	if tp, ok := c.committed[p]; ok && tp.Offset >= 0 {
		c.next[p] = int64(tp.Offset)
	}
}

func (c *fakeConsumer) Assign(parts []kafka.TopicPartition) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "Assign")
	if c.protocol == "COOPERATIVE" {
		c.violations = append(c.violations, "Assign under the cooperative protocol")
	}
	clear(c.assigned)
	for _, tp := range parts {
		c.start(tp.Partition)
	}
	return nil
}

func (c *fakeConsumer) IncrementalAssign(parts []kafka.TopicPartition) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "IncrementalAssign")
	if c.protocol != "COOPERATIVE" {
		c.violations = append(c.violations, "IncrementalAssign under the eager protocol")
	}
	for _, tp := range parts {
		if c.assigned[tp.Partition] {
			c.violations = append(c.violations, "partition assigned twice")
		}
		c.start(tp.Partition)
	}
	return nil
}

func (c *fakeConsumer) Unassign() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "Unassign")
	clear(c.assigned)
	return nil
}

func (c *fakeConsumer) IncrementalUnassign(parts []kafka.TopicPartition) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, "IncrementalUnassign")
	for _, tp := range parts {
		delete(c.assigned, tp.Partition)
	}
	return nil
}

func (c *fakeConsumer) Pause(parts []kafka.TopicPartition) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tp := range parts {
		c.paused[tp.Partition] = true
	}
	return nil
}

func (c *fakeConsumer) Resume(parts []kafka.TopicPartition) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tp := range parts {
		delete(c.paused, tp.Partition)
	}
	return nil
}

func (c *fakeConsumer) GetWatermarkOffsets(_ string, p int32) (int64, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return 0, int64(len(c.log[p])), nil
}

// Close gives up the assignment through the callback, as the real one does.
func (c *fakeConsumer) Close() error {
	c.mu.Lock()
	var parts []int32
	for p := range c.assigned {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	cb := c.cb
	c.mu.Unlock()
	if len(parts) > 0 {
		_ = cb(nil, kafka.RevokedPartitions{Partitions: c.partitions(parts...)})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *fakeConsumer) isPaused(p int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused[p]
}

func (c *fakeConsumer) state() (calls, violations []string, seeks []kafka.TopicPartition, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls), slices.Clone(c.violations), slices.Clone(c.seeks), c.closed
}
