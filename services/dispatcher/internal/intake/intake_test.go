package intake

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/task"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/watermark"
)

const topic = "ftp-tasks"

// recorder is the handler: it keeps what it was handed, and on a revoke
// notes whether the tracker still held the partitions (the pipeline
// commits what finished then).
type recorder struct {
	tracker *watermark.Tracker

	mu      sync.Mutex
	records []*task.Record
	revokes [][]int32
	// ownedAtRevoke says, per revoked partition, whether the tracker still
	// owned it in the epoch of its last record while Revoke ran.
	ownedAtRevoke map[int32]bool
}

func (r *recorder) Handle(rec *task.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
}

func (r *recorder) Revoke(_ context.Context, partitions []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revokes = append(r.revokes, slices.Clone(partitions))
	for _, p := range partitions {
		for i := len(r.records) - 1; i >= 0; i-- {
			if rec := r.records[i]; rec.Partition == p {
				r.ownedAtRevoke[p] = r.tracker.Owns(p, rec.Epoch)
				break
			}
		}
	}
}

func (r *recorder) handled() []*task.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.records)
}

// values returns the values handed on of one partition, in order.
func (r *recorder) values(p int32) []string {
	var out []string
	for _, rec := range r.handled() {
		if rec.Partition == p {
			out = append(out, string(rec.Value))
		}
	}
	return out
}

// finish reports the first n records handed on of partition p as done
// (again, for those already done), as the publisher does once their
// outcomes are published.
func (r *recorder) finish(p int32, n int) {
	done := 0
	for _, rec := range r.handled() {
		if rec.Partition == p && done < n {
			r.tracker.Done(rec.Partition, rec.Epoch, rec.Offset)
			done++
		}
	}
}

type harness struct {
	t        *testing.T
	consumer *fakeConsumer
	tracker  *watermark.Tracker
	handler  *recorder
	metrics  *metrics.Metrics
	in       *Intake
	cancel   context.CancelFunc
	runErr   chan error
}

func newHarness(t *testing.T, protocol string, maxBuffered int) *harness {
	t.Helper()
	h := &harness{t: t, consumer: newFakeConsumer(topic, protocol), tracker: watermark.New(), metrics: metrics.New()}
	h.handler = &recorder{tracker: h.tracker, ownedAtRevoke: map[int32]bool{}}
	h.in = New(Config{Topic: topic, MaxBuffered: maxBuffered, CommittedTimeout: time.Second},
		h.consumer, h.tracker, h.handler, h.metrics, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return h
}

func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.runErr = make(chan error, 1)
	go func() { h.runErr <- h.in.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop ends Run and returns its error; Run has closed the consumer then.
func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	select {
	case err := <-h.runErr:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.runErr <- nil
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not return after its context ended")
	}
}

func (h *harness) assign(ps ...int32) {
	h.consumer.rebalance(kafka.AssignedPartitions{Partitions: h.consumer.partitions(ps...)})
}

func (h *harness) revoke(ps ...int32) {
	h.consumer.rebalance(kafka.RevokedPartitions{Partitions: h.consumer.partitions(ps...)})
}

// waitHandled waits until n records were handed on in all.
func (h *harness) waitHandled(n int) {
	h.t.Helper()
	eventually(h.t, "records to be handed on", func() bool { return len(h.handler.handled()) >= n })
}

// settle lets the intake run a while, long enough for many polls.
func settle() { time.Sleep(20 * time.Millisecond) }

func (h *harness) wantNoViolations() {
	h.t.Helper()
	if _, v, _, _ := h.consumer.state(); len(v) > 0 {
		h.t.Fatalf("calls the client would refuse: %v", v)
	}
}

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

func TestRecordsHandedOnInOrderPerPartition(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "COOPERATIVE", 100)
	// The intake does not judge records: one that is not a task is handed
	// on like the others (the pipeline sends it to the DLQ).
	h.consumer.produce(0, "a0", "not json {", "a2", "a3")
	h.consumer.produce(1, "b0", "b1", "")
	h.assign(0, 1)
	h.start()
	h.waitHandled(7)
	settle()

	if got := h.handler.values(0); !slices.Equal(got, []string{"a0", "not json {", "a2", "a3"}) {
		t.Errorf("partition 0 handed on %q", got)
	}
	if got := h.handler.values(1); !slices.Equal(got, []string{"b0", "b1", ""}) {
		t.Errorf("partition 1 handed on %q", got)
	}
	for _, rec := range h.handler.handled() {
		v := string(rec.Value)
		wantTime := time.Unix(1_700_000_000, 0).Add(time.Duration(rec.Offset) * time.Second)
		if rec.Topic != topic || string(rec.Key) != "key-"+v || !rec.Timestamp.Equal(wantTime) ||
			len(rec.Headers) != 1 || rec.Headers[0].Key != "traceparent" || string(rec.Headers[0].Value) != "tp-"+v {
			t.Errorf("record %d/%d handed on as %+v", rec.Partition, rec.Offset, rec)
		}
		if !h.tracker.Owns(rec.Partition, rec.Epoch) {
			t.Errorf("record %d/%d carries epoch %d, not its assignment's", rec.Partition, rec.Offset, rec.Epoch)
		}
	}
	if n := h.tracker.Outstanding(); n != 7 {
		t.Errorf("Outstanding = %d, want every record handed on tracked", n)
	}
	if n := testutil.ToFloat64(h.metrics.TasksReceived); n != 7 {
		t.Errorf("tasks_received = %v", n)
	}
	if !h.in.Ready() {
		t.Error("not ready after an assignment")
	}
	h.wantNoViolations()
}

func TestAssignmentStartsFromTheCommittedOffsets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		committed    *kafka.TopicPartition
		committedErr error
		want         []string
		wantSkipped  float64
	}{
		{name: "nothing committed", want: []string{"r0", "r1", "r2", "r3", "r4"}},
		{name: "committed offset", committed: &kafka.TopicPartition{Partition: 0, Offset: 2}, want: []string{"r2", "r3", "r4"}},
		// The previous owner published 3's outcome beyond the commit point
		// (metadata: offset 2+1): doing it again would publish a second one.
		{name: "done-set in the metadata", committed: &kafka.TopicPartition{Partition: 0, Offset: 2, Metadata: ptr("ftp-pooler/1:1")},
			want: []string{"r2", "r4"}, wantSkipped: 1},
		{name: "another tool's metadata", committed: &kafka.TopicPartition{Partition: 0, Offset: 2, Metadata: ptr("checkpoint 7")},
			want: []string{"r2", "r3", "r4"}},
		// Unknown committed offsets: do the work again rather than stall.
		{name: "committed offsets unreadable", committedErr: kafka.NewError(kafka.ErrTimedOut, "timed out", false),
			want: []string{"r0", "r1", "r2", "r3", "r4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, "COOPERATIVE", 100)
			h.consumer.produce(0, "r0", "r1", "r2", "r3", "r4")
			if tc.committed != nil {
				tp := *tc.committed
				tp.Topic = ptr(topic)
				h.consumer.committed[0] = tp
			}
			h.consumer.committedErr = tc.committedErr
			h.assign(0)
			h.start()
			h.waitHandled(len(tc.want))
			settle()
			if got := h.handler.values(0); !slices.Equal(got, tc.want) {
				t.Errorf("handed on %q, want %q", got, tc.want)
			}
			if n := testutil.ToFloat64(h.metrics.TasksSkipped); n != tc.wantSkipped {
				t.Errorf("tasks_skipped = %v, want %v", n, tc.wantSkipped)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestBufferFullPausesUntilThreeQuartersDrained(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "COOPERATIVE", 8)
	for range 20 {
		h.consumer.produce(0, "r")
	}
	h.assign(0)
	h.start()
	h.waitHandled(8)
	settle()
	if n := len(h.handler.handled()); n != 8 {
		t.Fatalf("%d records taken with max_buffered_tasks 8", n)
	}
	if !h.consumer.isPaused(0) || testutil.ToFloat64(h.metrics.IntakePaused) != 1 {
		t.Fatal("partition not paused with the buffer full")
	}
	// One finished is not enough: resuming at once would flap.
	h.handler.finish(0, 1)
	settle()
	if n := len(h.handler.handled()); n != 8 || !h.consumer.isPaused(0) {
		t.Fatalf("resumed at 7 of 8 buffered (%d taken)", n)
	}
	// At three quarters (6) it resumes and fills up again.
	h.handler.finish(0, 2)
	h.waitHandled(10)
	eventually(t, "the buffer to fill again", func() bool { return h.consumer.isPaused(0) })
	settle()
	if n := len(h.handler.handled()); n != 10 {
		t.Fatalf("%d records taken after resuming, want the buffer refilled to 8 outstanding (10 in all)", n)
	}
	h.handler.finish(0, 10)
	h.waitHandled(18)
	h.wantNoViolations()
}

func TestRevokeHandsPartitionsOver(t *testing.T) {
	t.Parallel()
	tests := []struct {
		protocol   string
		revoked    []int32
		wantCalls  []string
		keepsOther bool
	}{
		{"COOPERATIVE", []int32{1}, []string{"IncrementalAssign", "IncrementalUnassign"}, true},
		{"EAGER", []int32{0, 1}, []string{"Assign", "Unassign"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.protocol, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.protocol, 100)
			h.consumer.produce(0, "a0", "a1")
			h.consumer.produce(1, "b0", "b1", "b2")
			h.assign(0, 1)
			h.start()
			h.waitHandled(5)
			h.handler.finish(1, 1)
			h.revoke(tc.revoked...)
			eventually(t, "the revoke", func() bool {
				h.handler.mu.Lock()
				defer h.handler.mu.Unlock()
				return len(h.handler.revokes) == 1
			})
			settle()

			h.handler.mu.Lock()
			revoked, owned := h.handler.revokes[0], h.handler.ownedAtRevoke[1]
			h.handler.mu.Unlock()
			if !slices.Equal(revoked, tc.revoked) {
				t.Errorf("Revoke(%v), want %v", revoked, tc.revoked)
			}
			if !owned {
				t.Error("the tracker gave the partition up before the handler published and committed what finished")
			}
			for _, st := range h.tracker.Snapshot() {
				if slices.Contains(tc.revoked, st.Partition) {
					t.Errorf("partition %d still tracked after its revoke", st.Partition)
				}
			}
			wantOutstanding := 0
			if tc.keepsOther {
				wantOutstanding = 2 // partition 0's
			}
			if n := h.tracker.Outstanding(); n != wantOutstanding {
				t.Errorf("Outstanding = %d after the revoke, want %d", n, wantOutstanding)
			}
			calls, _, _, _ := h.consumer.state()
			if !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("consumer calls %v, want %v", calls, tc.wantCalls)
			}
			if tc.keepsOther {
				h.consumer.produce(0, "a2")
				h.waitHandled(6)
				if got := h.handler.values(0); !slices.Equal(got, []string{"a0", "a1", "a2"}) {
					t.Errorf("kept partition handed on %q", got)
				}
			}
			h.wantNoViolations()
		})
	}
}

// The consumer keeps a partition's pause across rebalances: flow control
// must not lose track of it, or the partition is never read again.
func TestPauseStateSurvivesRebalances(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		protocol string
		// rebalance runs with the buffer paused at 7 of 8 (3/4 is 6).
		rebalance func(h *harness)
	}{
		{"cooperative, a partition added", "COOPERATIVE", func(h *harness) { h.assign(1) }},
		{"eager, everything assigned again", "EAGER", func(h *harness) { h.revoke(0); h.assign(0) }},
		{"cooperative, revoked and assigned again", "COOPERATIVE", func(h *harness) { h.revoke(0); h.assign(0) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.protocol, 8)
			for range 12 {
				h.consumer.produce(0, "r")
			}
			h.assign(0)
			h.start()
			h.waitHandled(8)
			eventually(t, "the pause", func() bool { return h.consumer.isPaused(0) })
			h.handler.finish(0, 1)
			settle()
			tc.rebalance(h)
			settle()
			// Everything taken finishes: the intake must read on.
			h.handler.finish(0, 100)
			eventually(t, "partition 0 to be read to its end", func() bool { return len(h.handler.values(0)) >= 12 })
			h.wantNoViolations()
		})
	}
}

func TestPartitionRevokedWhilePausedIsReadAgainWhenResumed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "COOPERATIVE", 4)
	for range 6 {
		h.consumer.produce(1, "r")
	}
	h.assign(0, 1)
	h.start()
	h.waitHandled(4)
	eventually(t, "the pause", func() bool { return h.consumer.isPaused(1) })
	// Partition 1 leaves while paused; the buffer empties with it and the
	// intake resumes what it still holds. Then partition 1 comes back.
	h.revoke(1)
	eventually(t, "the resume", func() bool { return !h.consumer.isPaused(0) })
	settle()
	h.assign(1)
	eventually(t, "partition 1 to be read again from its start", func() bool { return len(h.handler.values(1)) >= 8 })
	h.wantNoViolations()
}

func TestOperatorPauseRewindsRecordsAlreadyFetched(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "COOPERATIVE", 100)
	h.consumer.produce(0, "r0", "r1", "r2")
	// No Run: records fetched before the pause reached the consumer are
	// handed to handle directly.
	if err := h.in.rebalance(kafka.AssignedPartitions{Partitions: h.consumer.partitions(0)}); err != nil {
		t.Fatal(err)
	}
	h.in.Pause()
	h.in.handle(h.consumer.log[0][1])
	h.in.handle(h.consumer.log[0][2])
	if n := len(h.handler.handled()); n != 0 || h.tracker.Outstanding() != 0 {
		t.Fatalf("records read while paused were taken: %d handed on, %d tracked", n, h.tracker.Outstanding())
	}
	_, _, seeks, _ := h.consumer.state()
	if len(seeks) != 1 || seeks[0].Partition != 0 || seeks[0].Offset != 1 {
		t.Fatalf("seeks %v, want one back to the first record held back (0/1)", seeks)
	}
	// A record before the first one held back moves the rewind point.
	h.in.handle(h.consumer.log[0][0])
	if _, _, seeks, _ = h.consumer.state(); len(seeks) != 2 || seeks[1].Offset != 0 {
		t.Fatalf("seeks %v, want a second one back to 0/0", seeks)
	}
	h.in.Resume()
	h.in.handle(h.consumer.log[0][0])
	if got := h.handler.values(0); !slices.Equal(got, []string{"r0"}) {
		t.Fatalf("after Resume handed on %q", got)
	}
}

func TestOperatorPausePausesEveryPartition(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "COOPERATIVE", 100)
	h.consumer.produce(0, "a0")
	h.assign(0, 1)
	h.start()
	h.waitHandled(1)
	h.in.Pause()
	eventually(t, "the pause", func() bool { return h.consumer.isPaused(0) && h.consumer.isPaused(1) })
	h.consumer.produce(1, "b0")
	settle()
	if n := len(h.handler.handled()); n != 1 {
		t.Fatalf("%d records taken while paused by the operator", n)
	}
	h.in.Resume()
	h.waitHandled(2)
}

func TestStopTakesNoMoreRecords(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "COOPERATIVE", 100)
	h.consumer.produce(0, "a0")
	h.assign(0)
	h.start()
	h.waitHandled(1)
	h.in.Stop()
	eventually(t, "the pause", func() bool { return h.consumer.isPaused(0) })
	// A record fetched before the pause is neither handed on nor tracked:
	// never committed, so the partition's next owner reads it.
	h.in.handle(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: ptr(topic), Partition: 0, Offset: 1}, Value: []byte("a1")})
	if n := len(h.handler.handled()); n != 1 || h.tracker.Outstanding() != 1 {
		t.Fatalf("after Stop: %d handed on, %d tracked", n, h.tracker.Outstanding())
	}
}

func TestRunClosesTheConsumerAndRevokesEverything(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "COOPERATIVE", 100)
	h.consumer.produce(0, "a0")
	h.assign(0, 1)
	h.start()
	h.waitHandled(1)
	h.stop()
	_, _, _, closed := h.consumer.state()
	if !closed {
		t.Fatal("consumer not closed when Run ended")
	}
	h.handler.mu.Lock()
	defer h.handler.mu.Unlock()
	if len(h.handler.revokes) != 1 || !slices.Equal(h.handler.revokes[0], []int32{0, 1}) {
		t.Fatalf("revokes %v, want the whole assignment", h.handler.revokes)
	}
	if h.tracker.Outstanding() != 0 {
		t.Fatal("the tracker still holds revoked partitions")
	}
}

func TestConsumerErrors(t *testing.T) {
	t.Parallel()
	t.Run("fatal ends Run", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, "COOPERATIVE", 100)
		h.assign(0)
		h.consumer.rebalance(kafka.NewError(kafka.ErrFenced, "fenced", true))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := h.in.Run(ctx)
		if err == nil || !strings.Contains(err.Error(), "fenced") {
			t.Fatalf("Run returned %v, want the fatal error", err)
		}
		if _, _, _, closed := h.consumer.state(); !closed {
			t.Fatal("consumer left open")
		}
	})
	t.Run("transient is logged and consumption goes on", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, "COOPERATIVE", 100)
		h.consumer.produce(0, "a0")
		h.consumer.rebalance(kafka.NewError(kafka.ErrTransport, "broker down", false))
		h.assign(0)
		h.start()
		h.waitHandled(1)
	})
}
