package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/task"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/watermark"
)

const (
	inputTopic  = "ftp-tasks"
	resultTopic = "ftp-results"
	dlqTopic    = "ftp-dlq"
)

var modes = []struct {
	name          string
	transactional bool
}{
	{"at-least-once", false},
	{"exactly-once", true},
}

// harness is a publisher over a fake broker, with the input records it
// answers tracked as the intake would.
type harness struct {
	t       *testing.T
	broker  *fakeBroker
	group   *fakeGroup
	tracker *watermark.Tracker
	metrics *metrics.Metrics
	pub     *Publisher
	epochs  map[int32]uint64
	done    atomic.Int32 // Record.Done calls
	runErr  chan error
	cancel  context.CancelFunc
}

func newHarness(t *testing.T, transactional bool) *harness {
	t.Helper()
	h := &harness{t: t, broker: newFakeBroker(transactional), tracker: watermark.New(), metrics: metrics.New(), epochs: map[int32]uint64{}}
	h.group = &fakeGroup{broker: h.broker}
	h.pub = New(Config{InputTopic: inputTopic, Transactional: transactional, Linger: 5 * time.Millisecond, MaxBatch: 4, RetryBackoff: time.Millisecond},
		h.broker, h.group, h.tracker, h.metrics, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return h
}

// read tracks consumed input offsets of a partition, assigning it first.
func (h *harness) read(p int32, offs ...int64) {
	h.t.Helper()
	if _, ok := h.epochs[p]; !ok {
		h.tracker.Assign(p, -1, "")
	}
	for _, off := range offs {
		v, epoch := h.tracker.Track(p, off)
		if v != watermark.Process {
			h.t.Fatalf("Track(%d, %d) = %v", p, off, v)
		}
		h.epochs[p] = epoch
	}
}

// outcome is the outcome record of input offset off of partition p.
func (h *harness) outcome(p int32, off int64) *Record {
	return &Record{
		Topic: resultTopic, Key: []byte(key(p, off)), Value: []byte(`{"status":"success"}`),
		Headers:   []task.Header{{Key: "traceparent", Value: []byte("00-abc-def-01")}},
		Partition: p, Offset: off, Epoch: h.epochs[p],
		Done: func() { h.done.Add(1) },
	}
}

func key(p int32, off int64) string { return fmt.Sprintf("task-%d-%d", p, off) }

func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.runErr = make(chan error, 1)
	go func() { h.runErr <- h.pub.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-h.runErr:
		case <-time.After(10 * time.Second):
			h.t.Error("Run did not return after its context ended")
		}
	})
}

func (h *harness) flush() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.pub.Flush(ctx); err != nil {
		h.t.Fatalf("Flush: %v", err)
	}
}

func (h *harness) wantCommitted(p int32, off int64) {
	h.t.Helper()
	if got, md := h.broker.offset(p); got != off {
		h.t.Fatalf("partition %d committed at %d (metadata %q), want %d", p, got, md, off)
	}
}

// wantDone waits for n Record.Done calls: they follow the records'
// settling, which is what Flush waits for, so they may lag it a little.
func (h *harness) wantDone(n int32) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("%d Done calls", n), func() bool { return h.done.Load() >= n })
	time.Sleep(5 * time.Millisecond)
	if got := h.done.Load(); got != n {
		h.t.Errorf("Done called %d times, want %d", got, n)
	}
}

func (h *harness) wantNoMisuse() {
	h.t.Helper()
	if _, _, _, misuse := h.broker.snapshot(); len(misuse) > 0 {
		h.t.Fatalf("calls the client would refuse: %v", misuse)
	}
}

// eventually waits for cond, failing the test after a few seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestEveryOutcomePublishedOnceAndItsOffsetCommitted(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, mode.transactional)
			const perPartition = 10
			for p := int32(0); p < 3; p++ {
				for off := int64(0); off < perPartition; off++ {
					h.read(p, off)
				}
			}
			h.start()
			// Outcomes arrive from many goroutines (the scheduler's
			// finishing agents), out of order.
			var wg sync.WaitGroup
			for p := int32(0); p < 3; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for off := int64(perPartition - 1); off >= 0; off-- {
						h.pub.Submit(h.outcome(p, off))
					}
				}()
			}
			wg.Wait()
			h.flush()

			got := h.broker.outcomes()
			if len(got) != 3*perPartition {
				t.Errorf("%d distinct outcomes visible, want %d", len(got), 3*perPartition)
			}
			for p := int32(0); p < 3; p++ {
				for off := int64(0); off < perPartition; off++ {
					if n := got[resultTopic+"/"+key(p, off)]; n != 1 {
						t.Errorf("outcome of %d/%d visible %d times, want once", p, off, n)
					}
				}
				h.wantCommitted(p, perPartition)
			}
			h.wantDone(3 * perPartition)
			if n := h.pub.Pending(); n != 0 {
				t.Errorf("Pending = %d after Flush", n)
			}
			visible, _, _, _ := h.broker.snapshot()
			m := visible[0]
			if len(m.Headers) != 1 || m.Headers[0].Key != "traceparent" || string(m.Value) != `{"status":"success"}` {
				t.Errorf("outcome sent as %+v", m)
			}
			h.wantNoMisuse()
		})
	}
}

func TestCommitStopsBeforeTheFirstTaskWithoutItsOutcome(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, mode.transactional)
			h.read(0, 0, 1, 2, 3)
			h.start()
			// 1 is still running; 0, 2 and 3 finished.
			h.pub.Submit(h.outcome(0, 0), h.outcome(0, 2), h.outcome(0, 3))
			h.flush()
			h.wantCommitted(0, 1)
			// 2 and 3 travel in the metadata, so a next owner skips them.
			if _, md := h.broker.offset(0); md != "ftp-pooler/1:1-2" {
				t.Errorf("commit metadata %q, want the done-set of 2 and 3", md)
			}
			h.pub.Submit(h.outcome(0, 1))
			h.flush()
			h.wantCommitted(0, 4)
			h.wantNoMisuse()
		})
	}
}

func TestAtLeastOnceCommitWaitsForTheAcknowledgement(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	h.broker.refuse = func(m *kafka.Message, _ int) error {
		if string(m.Key) == key(0, 1) {
			return errHeld
		}
		return nil
	}
	h.read(0, 0, 1, 2)
	h.start()
	h.pub.Submit(h.outcome(0, 0), h.outcome(0, 1), h.outcome(0, 2))
	eventually(t, "the commit of the acknowledged outcomes", func() bool {
		off, _ := h.broker.offset(0)
		return off == 1
	})
	// Several commit ticks pass; none may move over the unacknowledged 1.
	time.Sleep(30 * time.Millisecond)
	h.wantCommitted(0, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := h.pub.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush returned %v with an outcome unacknowledged, want the deadline", err)
	}
	h.broker.release()
	h.flush()
	h.wantCommitted(0, 3)
	if n := h.broker.outcomes()[resultTopic+"/"+key(0, 1)]; n != 1 {
		t.Fatalf("held outcome visible %d times", n)
	}
	h.wantNoMisuse()
}

func TestAtLeastOnceRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	timedOut := kafka.NewError(kafka.ErrMsgTimedOut, "message timed out", false)
	queueFull := kafka.NewError(kafka.ErrQueueFull, "queue full", false)
	tests := []struct {
		name   string
		refuse func(m *kafka.Message, attempt int) error
		reject func(m *kafka.Message, attempt int) error
	}{
		{name: "delivery report failed", refuse: func(_ *kafka.Message, attempt int) error {
			if attempt <= 2 {
				return timedOut
			}
			return nil
		}},
		{name: "local queue full", reject: func(_ *kafka.Message, attempt int) error {
			if attempt <= 2 {
				return queueFull
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, false)
			h.broker.refuse, h.broker.reject = tc.refuse, tc.reject
			h.read(0, 0, 1)
			h.start()
			h.pub.Submit(h.outcome(0, 0), h.outcome(0, 1))
			h.flush()
			got := h.broker.outcomes()
			for off := int64(0); off < 2; off++ {
				if n := got[resultTopic+"/"+key(0, off)]; n != 1 {
					t.Errorf("outcome %d visible %d times after retries, want once", off, n)
				}
			}
			h.wantCommitted(0, 2)
			h.wantDone(2)
			h.wantNoMisuse()
		})
	}
}

func TestAtLeastOnceFailedDeliveryHoldsTheCommitBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	var brokerDown atomic.Bool
	brokerDown.Store(true)
	h.broker.refuse = func(m *kafka.Message, _ int) error {
		if string(m.Key) == key(0, 1) && brokerDown.Load() {
			return kafka.NewError(kafka.ErrMsgTimedOut, "message timed out", false)
		}
		return nil
	}
	h.read(0, 0, 1, 2)
	h.start()
	h.pub.Submit(h.outcome(0, 0), h.outcome(0, 1), h.outcome(0, 2))
	eventually(t, "the commit of the delivered outcome", func() bool {
		off, _ := h.broker.offset(0)
		return off == 1
	})
	// Deliveries of 1 keep failing over several commit ticks.
	time.Sleep(30 * time.Millisecond)
	h.wantCommitted(0, 1)
	h.wantNoMisuse()
	brokerDown.Store(false)
	h.flush()
	h.wantCommitted(0, 3)
	if n := h.broker.outcomes()[resultTopic+"/"+key(0, 1)]; n != 1 {
		t.Fatalf("outcome visible %d times", n)
	}
	h.wantNoMisuse()
}

func TestAtLeastOnceFailedCommitIsRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	h.group.commitErrs = []error{kafka.NewError(kafka.ErrRebalanceInProgress, "rebalancing", false)}
	// A long linger keeps the commit loop out of the way: only Flush commits.
	h.pub.cfg.Linger = time.Hour
	h.read(0, 0)
	h.start()
	h.pub.Submit(h.outcome(0, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.pub.Flush(ctx); err == nil {
		t.Fatal("Flush hid a failed offset commit")
	}
	h.wantCommitted(0, -1)
	h.flush()
	h.wantCommitted(0, 1)
}

func TestTransactionCarriesItsOutcomesAndTheirOffsets(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.read(0, 0, 1, 2)
	h.read(1, 5)
	h.start()
	h.pub.Submit(h.outcome(0, 0), h.outcome(0, 1), h.outcome(1, 5))
	h.flush()

	_, txns, _, _ := h.broker.snapshot()
	if len(txns) != 1 {
		t.Fatalf("%d transactions, want 1", len(txns))
	}
	tx := txns[0]
	if len(tx.messages) != 3 {
		t.Fatalf("transaction holds %d outcomes, want 3", len(tx.messages))
	}
	got := map[int32]int64{}
	for _, tp := range tx.offsets {
		if tp.Topic == nil || *tp.Topic != inputTopic {
			t.Errorf("offset committed on topic %v, want %s", tp.Topic, inputTopic)
		}
		got[tp.Partition] = int64(tp.Offset)
	}
	if len(got) != 2 || got[0] != 2 || got[1] != 6 {
		t.Fatalf("transaction commits offsets %v, want 0→2 and 1→6", got)
	}
	calls := strings.Join(h.broker.callLog(), " ")
	if want := "init begin produce produce produce send_offsets commit"; calls != want {
		t.Fatalf("calls %q, want %q", calls, want)
	}
	h.wantNoMisuse()
}

func TestTransactionAbortedAndRetriedAfterAFailure(t *testing.T) {
	t.Parallel()
	abortable := kafka.NewError(kafka.ErrInvalidTxnState, "transaction requires abort", false)
	tests := []struct {
		name  string
		setup func(b *fakeBroker)
	}{
		{"commit fails", func(b *fakeBroker) { b.commitErrs = []error{abortable} }},
		{"sending the offsets fails", func(b *fakeBroker) { b.sendOffsetsErrs = []error{abortable} }},
		{"a record is refused", func(b *fakeBroker) {
			b.refuse = func(m *kafka.Message, attempt int) error {
				if string(m.Key) == key(0, 1) && attempt == 1 {
					return kafka.NewError(kafka.ErrNotEnoughReplicas, "not enough replicas", false)
				}
				return nil
			}
		}},
		{"a produce fails", func(b *fakeBroker) {
			b.reject = func(m *kafka.Message, attempt int) error {
				if string(m.Key) == key(0, 1) && attempt == 1 {
					return kafka.NewError(kafka.ErrUnknownTopicOrPart, "unknown topic", false)
				}
				return nil
			}
		}},
		{"the first abort fails", func(b *fakeBroker) {
			b.commitErrs = []error{abortable}
			b.abortErrs = []error{kafka.NewError(kafka.ErrTimedOut, "abort timed out", false)}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, true)
			tc.setup(h.broker)
			h.read(0, 0, 1, 2)
			h.start()
			h.pub.Submit(h.outcome(0, 0), h.outcome(0, 1), h.outcome(0, 2))
			h.flush()

			visible, txns, aborts, _ := h.broker.snapshot()
			if aborts != 1 {
				t.Errorf("%d aborted transactions, want 1", aborts)
			}
			if len(txns) != 1 || len(txns[0].messages) != 3 {
				t.Fatalf("committed transactions %+v, want one with the 3 outcomes", txns)
			}
			if len(visible) != 3 {
				t.Errorf("%d outcomes visible, want 3: an aborted attempt's must not show", len(visible))
			}
			for off := int64(0); off < 3; off++ {
				if n := h.broker.outcomes()[resultTopic+"/"+key(0, off)]; n != 1 {
					t.Errorf("outcome %d visible %d times, want once", off, n)
				}
			}
			h.wantCommitted(0, 3)
			h.wantDone(3)
			h.wantNoMisuse()
		})
	}
}

func TestFatalTransactionErrorStopsThePublisher(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.broker.commitErrs = []error{kafka.NewError(kafka.ErrFenced, "fenced by a newer instance", true)}
	h.read(0, 0)
	h.start()
	h.pub.Submit(h.outcome(0, 0))
	var err error
	select {
	case err = <-h.runErr:
	case <-time.After(10 * time.Second):
		t.Fatal("Run went on after the producer was fenced")
	}
	if err == nil || !strings.Contains(err.Error(), "fenced") {
		t.Fatalf("Run returned %v, want the fatal error", err)
	}
	h.runErr <- err // for the cleanup
	if ferr := h.pub.Flush(context.Background()); ferr == nil {
		t.Fatal("Flush succeeded on a publisher that stopped")
	}
	visible, _, aborts, _ := h.broker.snapshot()
	if len(visible) != 0 || aborts != 0 {
		t.Fatalf("after fencing: %d outcomes visible, %d aborts; a fenced producer must do nothing more", len(visible), aborts)
	}
	h.wantCommitted(0, -1)
}

func TestInitTransactionsFailureStopsThePublisher(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.broker.initErrs = []error{kafka.NewError(kafka.ErrTransactionalIDAuthorizationFailed, "not authorised", false)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.pub.Run(ctx); err == nil || !strings.Contains(err.Error(), "init transactions") {
		t.Fatalf("Run returned %v, want the init error", err)
	}
}

func TestExactlyOnceDropsOutcomesOfAPartitionGivenUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		giveUp  func(tr *watermark.Tracker)
		wantOff int64
	}{
		{"revoked", func(tr *watermark.Tracker) { tr.Revoke(0) }, -1},
		// Lost and assigned again: its records are read and redone anew.
		{"assigned again", func(tr *watermark.Tracker) { tr.Assign(0, -1, "") }, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, true)
			h.read(0, 0)
			h.read(1, 0)
			stale := h.outcome(0, 0)
			tc.giveUp(h.tracker)
			h.start()
			h.pub.Submit(stale, h.outcome(1, 0))
			h.flush()
			got := h.broker.outcomes()
			if got[resultTopic+"/"+key(0, 0)] != 0 {
				t.Error("an outcome of a partition given up was published: its next owner publishes another")
			}
			if got[resultTopic+"/"+key(1, 0)] != 1 {
				t.Error("the outcome of a partition still held was not published")
			}
			h.wantCommitted(0, tc.wantOff)
			h.wantCommitted(1, 1)
			if n := testutil.ToFloat64(h.metrics.OutcomesDropped); n != 1 {
				t.Errorf("outcomes_dropped = %v, want 1", n)
			}
			// A dropped outcome's span ends too.
			h.wantDone(2)
			h.wantNoMisuse()
		})
	}
}

func TestRecordTooLargeIsSentShrunk(t *testing.T) {
	t.Parallel()
	tooLarge := kafka.NewError(kafka.ErrMsgSizeTooLarge, "message too large", false)
	big := strings.Repeat("x", 1000)
	tests := []struct {
		name          string
		transactional bool
		local         bool // refused by librdkafka itself, not the broker
	}{
		{"at-least-once, refused by the broker", false, false},
		{"at-least-once, refused locally", false, true},
		{"exactly-once, refused by the broker", true, false},
		{"exactly-once, refused locally", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.transactional)
			tooBig := func(m *kafka.Message, _ int) error {
				if len(m.Value) > 100 {
					return tooLarge
				}
				return nil
			}
			if tc.local {
				h.broker.reject = tooBig
			} else {
				h.broker.refuse = tooBig
			}
			h.read(0, 0)
			h.start()
			shrinks := 0
			h.pub.Submit(&Record{
				Topic: dlqTopic, Key: []byte("k"), Value: []byte(big), Partition: 0, Offset: 0, Epoch: h.epochs[0],
				Shrink: func() []byte { shrinks++; return []byte("truncated") },
			})
			h.flush()
			visible, _, _, _ := h.broker.snapshot()
			if len(visible) != 1 || string(visible[0].Value) != "truncated" {
				t.Fatalf("visible %d records (first %q), want the one shrunk record", len(visible), firstValue(visible))
			}
			if shrinks != 1 {
				t.Errorf("Shrink called %d times, want once", shrinks)
			}
			h.wantCommitted(0, 1)
			h.wantNoMisuse()
		})
	}
}

func firstValue(ms []*kafka.Message) string {
	if len(ms) == 0 {
		return ""
	}
	return string(ms[0].Value)
}

func TestTooLargeWithoutShrinkIsNotDropped(t *testing.T) {
	t.Parallel()
	// An outcome (not a dead letter) has no smaller form: it is retried,
	// never dropped, and its offset is not committed without it.
	h := newHarness(t, false)
	h.broker.refuse = func(_ *kafka.Message, attempt int) error {
		if attempt <= 3 {
			return kafka.NewError(kafka.ErrMsgSizeTooLarge, "message too large", false)
		}
		return nil
	}
	h.read(0, 0)
	h.start()
	h.pub.Submit(h.outcome(0, 0))
	h.flush()
	if n := h.broker.outcomes()[resultTopic+"/"+key(0, 0)]; n != 1 {
		t.Fatalf("outcome visible %d times", n)
	}
	h.wantCommitted(0, 1)
	h.wantNoMisuse()
}

// An outcome after a quiet Linger is published at once, not after waiting
// for company; one that follows closely waits for its batch to fill (or
// for Flush).
func TestOutcomeAfterQuietGoesAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.pub.cfg.Linger = time.Hour // any lingering shows
	h.read(0, 0, 1)
	h.start()
	h.pub.Submit(h.outcome(0, 0))
	eventually(t, "the lone outcome's transaction", func() bool {
		_, txns, _, _ := h.broker.snapshot()
		return len(txns) == 1
	})
	h.pub.Submit(h.outcome(0, 1))
	time.Sleep(50 * time.Millisecond)
	if _, txns, _, _ := h.broker.snapshot(); len(txns) != 1 {
		t.Fatalf("%d transactions: the outcome right behind the first should wait for company", len(txns))
	}
	h.flush()
	h.wantCommitted(0, 2)
	h.wantNoMisuse()
}
