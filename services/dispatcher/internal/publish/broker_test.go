package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// errHeld, returned by a delivery rule, keeps the message's delivery
// report back until release: an acknowledgement still on its way.
var errHeld = errors.New("held")

// txn is one committed transaction: its outcomes and the input offsets
// that went with them.
type txn struct {
	messages []*kafka.Message
	offsets  []kafka.TopicPartition
}

// fakeBroker stands in for the producer and the brokers behind it. What
// a read_committed consumer of the outcome topics would see is visible;
// the input offsets the consumer group holds are committed.
type fakeBroker struct {
	transactional bool

	mu sync.Mutex
	// refuse, when set, decides each produced message's delivery report
	// (nil: delivered); attempt counts from 1 per topic and key.
	refuse func(m *kafka.Message, attempt int) error
	// reject, when set, makes Produce itself fail (a full local queue).
	reject   func(m *kafka.Message, attempt int) error
	attempts map[string]int
	held     []heldReport

	visible []*kafka.Message
	// answered maps each input position an outcome was produced for to
	// whether that outcome is visible yet.
	answered  map[position]bool
	committed map[int32]kafka.TopicPartition
	commits   [][]kafka.TopicPartition // every successful offset commit, in order

	// The open transaction.
	inTxn      bool
	txnMsgs    []*kafka.Message
	txnOffsets []kafka.TopicPartition
	txnFailed  error
	txns       []txn
	aborts     int
	// Scripted results of the next calls; nil entries succeed.
	initErrs, beginErrs, sendOffsetsErrs, commitErrs, abortErrs []error
	// misuse records calls librdkafka would refuse (a produce outside a
	// transaction, say): the code under test is wrong if any appear.
	misuse []string
	calls  []string
}

type position struct {
	partition int32
	offset    int64
}

func positionOf(m *kafka.Message) (position, bool) {
	r, ok := m.Opaque.(*Record)
	if !ok {
		return position{}, false
	}
	return position{r.Partition, r.Offset}, true
}

type heldReport struct {
	ch  chan kafka.Event
	msg *kafka.Message
}

func newFakeBroker(transactional bool) *fakeBroker {
	return &fakeBroker{transactional: transactional, attempts: map[string]int{}, answered: map[position]bool{}, committed: map[int32]kafka.TopicPartition{}}
}

func pop(errs *[]error) error {
	if len(*errs) == 0 {
		return nil
	}
	err := (*errs)[0]
	*errs = (*errs)[1:]
	return err
}

func (b *fakeBroker) Produce(msg *kafka.Message, deliveryChan chan kafka.Event) error {
	b.mu.Lock()
	key := *msg.TopicPartition.Topic + "/" + string(msg.Key)
	b.attempts[key]++
	attempt := b.attempts[key]
	b.calls = append(b.calls, "produce")
	if b.reject != nil {
		if err := b.reject(msg, attempt); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	if b.transactional && !b.inTxn {
		b.misuse = append(b.misuse, "produce outside a transaction")
	}
	if pos, ok := positionOf(msg); ok && !b.answered[pos] {
		b.answered[pos] = false
	}
	var err error
	if b.refuse != nil {
		err = b.refuse(msg, attempt)
	}
	// The report is a copy, as librdkafka's is: the value sent is kept.
	sent := *msg
	sent.Value = slices.Clone(msg.Value)
	if errors.Is(err, errHeld) {
		b.held = append(b.held, heldReport{deliveryChan, &sent})
		b.mu.Unlock()
		return nil
	}
	b.settle(&sent, err)
	b.mu.Unlock()
	deliveryChan <- &sent
	return nil
}

// settle decides a message's fate; b.mu is held.
func (b *fakeBroker) settle(m *kafka.Message, err error) {
	m.TopicPartition.Error = err
	switch {
	case err != nil && b.transactional:
		b.txnFailed = err
	case err != nil:
	case b.transactional:
		b.txnMsgs = append(b.txnMsgs, m)
	default:
		b.show(m)
	}
}

// show makes an outcome visible; b.mu is held.
func (b *fakeBroker) show(m *kafka.Message) {
	b.visible = append(b.visible, m)
	if pos, ok := positionOf(m); ok {
		b.answered[pos] = true
	}
}

// release delivers every held report.
func (b *fakeBroker) release() {
	b.mu.Lock()
	held := b.held
	b.held = nil
	for _, h := range held {
		b.settle(h.msg, nil)
	}
	b.mu.Unlock()
	for _, h := range held {
		h.ch <- h.msg
	}
}

func (b *fakeBroker) InitTransactions(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "init")
	return pop(&b.initErrs)
}

func (b *fakeBroker) BeginTransaction() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "begin")
	if err := pop(&b.beginErrs); err != nil {
		return err
	}
	if b.inTxn {
		b.misuse = append(b.misuse, "begin inside a transaction")
	}
	b.inTxn, b.txnMsgs, b.txnOffsets, b.txnFailed = true, nil, nil, nil
	return nil
}

func (b *fakeBroker) SendOffsetsToTransaction(_ context.Context, offsets []kafka.TopicPartition, _ *kafka.ConsumerGroupMetadata) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "send_offsets")
	if !b.inTxn {
		b.misuse = append(b.misuse, "offsets sent outside a transaction")
	}
	if err := pop(&b.sendOffsetsErrs); err != nil {
		return err
	}
	b.txnOffsets = append(b.txnOffsets, offsets...)
	return nil
}

func (b *fakeBroker) CommitTransaction(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "commit")
	if !b.inTxn {
		b.misuse = append(b.misuse, "commit outside a transaction")
	}
	if err := pop(&b.commitErrs); err != nil {
		return err
	}
	if b.txnFailed != nil {
		// A refused record fails the commit; the transaction must be aborted.
		return kafka.NewError(kafka.ErrInvalidTxnState, fmt.Sprintf("a record was refused: %v", b.txnFailed), false)
	}
	for _, m := range b.txnMsgs {
		b.show(m)
	}
	b.commitOffsets(b.txnOffsets)
	b.txns = append(b.txns, txn{messages: b.txnMsgs, offsets: b.txnOffsets})
	b.inTxn, b.txnMsgs, b.txnOffsets = false, nil, nil
	return nil
}

func (b *fakeBroker) AbortTransaction(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "abort")
	if err := pop(&b.abortErrs); err != nil {
		return err
	}
	b.aborts++
	b.inTxn, b.txnMsgs, b.txnOffsets, b.txnFailed = false, nil, nil, nil
	return nil
}

// commitOffsets records a commit of the input group; b.mu is held. A
// commit past an input record whose outcome was produced but is not
// visible would lose that outcome in a crash.
func (b *fakeBroker) commitOffsets(offsets []kafka.TopicPartition) {
	if len(offsets) == 0 {
		return
	}
	for _, tp := range offsets {
		for pos, visible := range b.answered {
			if pos.partition == tp.Partition && pos.offset < int64(tp.Offset) && !visible {
				b.misuse = append(b.misuse, fmt.Sprintf("committed %d/%d before the outcome of offset %d is visible", tp.Partition, tp.Offset, pos.offset))
			}
		}
		b.committed[tp.Partition] = tp
	}
	b.commits = append(b.commits, slices.Clone(offsets))
}

// offset returns the committed offset of an input partition and its
// metadata (-1 when none).
func (b *fakeBroker) offset(p int32) (int64, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tp, ok := b.committed[p]
	if !ok {
		return -1, ""
	}
	md := ""
	if tp.Metadata != nil {
		md = *tp.Metadata
	}
	return int64(tp.Offset), md
}

// outcomes returns the visible outcomes, counted by topic and key.
func (b *fakeBroker) outcomes() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for _, m := range b.visible {
		out[*m.TopicPartition.Topic+"/"+string(m.Key)]++
	}
	return out
}

func (b *fakeBroker) snapshot() (visible []*kafka.Message, txns []txn, aborts int, misuse []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.visible), slices.Clone(b.txns), b.aborts, slices.Clone(b.misuse)
}

func (b *fakeBroker) callLog() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// fakeGroup is the input consumer's side: at-least-once commits go
// through it; exactly-once ones through the broker's transactions.
type fakeGroup struct {
	broker *fakeBroker

	mu         sync.Mutex
	commitErrs []error
}

func (g *fakeGroup) CommitOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	g.mu.Lock()
	err := pop(&g.commitErrs)
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	g.broker.mu.Lock()
	defer g.broker.mu.Unlock()
	g.broker.commitOffsets(offsets)
	return offsets, nil
}

func (g *fakeGroup) GetConsumerGroupMetadata() (*kafka.ConsumerGroupMetadata, error) {
	return &kafka.ConsumerGroupMetadata{}, nil
}
