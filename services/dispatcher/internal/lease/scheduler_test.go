package lease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t        *testing.T
	clock    *fakeClock
	sched    *Scheduler
	metrics  *metrics.Metrics
	mu       sync.Mutex
	finished []Finished
	// warnings holds what the scheduler logged at WARN and above.
	warnings *logBuffer
}

// logBuffer is a log destination the scheduler's goroutines may write to
// while a test reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

const (
	ttl         = 10 * time.Second
	baseBackoff = time.Second
)

func newHarness(t *testing.T, maxAttempts int) *harness {
	return newHarnessWith(t, maxAttempts, nil)
}

// newHarnessWith also configures endpoints (FTP ones get budgets and
// breakers) and the breaker.
func newHarnessWith(t *testing.T, maxAttempts int, endpoints map[string]Endpoint) *harness {
	t.Helper()
	h := &harness{t: t, clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}, metrics: metrics.New(), warnings: &logBuffer{}}
	h.sched = New(Config{
		DispatcherID: "d0", TTL: ttl, Heartbeat: time.Second, MaxAttempts: maxAttempts,
		BaseBackoff: baseBackoff, MaxBackoff: 8 * time.Second, Rand: rand.New(rand.NewPCG(1, 2)),
		Endpoints: endpoints,
		Breaker:   BreakerConfig{FailureThreshold: 2, SuccessThreshold: 1, OpenFor: 5 * time.Second, HalfOpenMax: 1},
	}, h.clock, h.metrics, slog.New(slog.NewTextHandler(h.warnings, &slog.HandlerOptions{Level: slog.LevelWarn})), func(f []Finished) {
		h.mu.Lock()
		h.finished = append(h.finished, f...)
		h.mu.Unlock()
	})
	return h
}

func (h *harness) enqueue(offsets ...int64) {
	for _, off := range offsets {
		h.sched.Enqueue(&Task{
			Key: Key{Partition: 0, Offset: off}, ID: fmt.Sprintf("t%d", off), ReceivedAt: h.clock.Now(),
			Spec: &leasev1.TransferSpec{TaskId: fmt.Sprintf("t%d", off), SrcId: "a", SrcPath: "/x", DstId: "b", DstPath: "y"},
		})
	}
}

func (h *harness) agent(id string, window uint32) *Session {
	sess := h.sched.Attach(&leasev1.Hello{AgentId: id, Slots: window}, "127.0.0.1:1")
	h.sched.PoolReport(sess, &leasev1.PoolReport{}) // as agents do on connecting
	h.sched.SetWindow(sess, window)
	if _, ok := h.next(sess).Message.(*leasev1.ConnectResponse_Welcome); !ok {
		h.t.Fatal("first message is not welcome")
	}
	return sess
}

// drain returns every message queued for the session now.
func (h *harness) drain(sess *Session) []*leasev1.ConnectResponse {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	return sess.out.take(ctx, nil)
}

func (h *harness) next(sess *Session) *leasev1.ConnectResponse {
	h.t.Helper()
	msgs := h.drain(sess)
	if len(msgs) == 0 {
		h.t.Fatal("no message queued")
	}
	if len(msgs) > 1 {
		// Put the rest back in order for the next call.
		for _, m := range msgs[1:] {
			sess.out.push(m)
		}
	}
	return msgs[0]
}

func leases(msgs []*leasev1.ConnectResponse) []*leasev1.Lease {
	var out []*leasev1.Lease
	for _, m := range msgs {
		if l := m.GetLease(); l != nil {
			out = append(out, l)
		}
	}
	return out
}

func (h *harness) done() []Finished {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Finished(nil), h.finished...)
}

func success() *leasev1.Outcome {
	return &leasev1.Outcome{Status: leasev1.Status_STATUS_SUCCEEDED, BytesTransferred: 20, SourceSize: 20}
}

func failed(code failure.Code) *leasev1.Outcome {
	return &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: code, ErrorMessage: "boom", Retryable: failure.Retryable(code), SourceSize: -1}
}

func result(l *leasev1.Lease, o *leasev1.Outcome) *leasev1.Result {
	return &leasev1.Result{LeaseId: l.LeaseId, Token: l.Token, Outcome: o}
}

func TestCreditWindowBoundsLeases(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	sess := h.agent("a1", 2)
	h.enqueue(1, 2, 3, 4, 5)
	got := leases(h.drain(sess))
	if len(got) != 2 {
		t.Fatalf("window 2: %d leases sent", len(got))
	}
	h.sched.Result(sess, result(got[0], success()))
	if more := leases(h.drain(sess)); len(more) != 1 {
		t.Fatalf("after one result: %d more leases, want 1", len(more))
	}
	h.sched.SetWindow(sess, 0)
	h.sched.Result(sess, result(got[1], success()))
	if more := leases(h.drain(sess)); len(more) != 0 {
		t.Fatalf("window 0: %d leases sent", len(more))
	}
	if n := len(h.done()); n != 2 {
		t.Fatalf("%d finished, want 2", n)
	}
}

func TestLeaseExpiryReleasesWithNewToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	sess := h.agent("a1", 1)
	h.enqueue(7)
	first := leases(h.drain(sess))[0]
	if first.Attempt != 1 {
		t.Fatalf("attempt = %d", first.Attempt)
	}

	// Heartbeats keep the lease alive past its TTL.
	for range 3 {
		h.clock.Advance(ttl - time.Second)
		h.sched.Progress(sess, &leasev1.Progress{LeaseId: first.LeaseId, Token: first.Token, BytesDone: 5, BytesTotal: 20})
		h.sched.Tick()
	}
	if msgs := h.drain(sess); len(msgs) != 0 {
		t.Fatalf("lease with heartbeats was disturbed: %v", msgs)
	}

	// Silence past the TTL: the agent is told to cancel, the task waits out
	// its backoff and comes back with a new token.
	h.clock.Advance(ttl + time.Millisecond)
	h.sched.Tick()
	msgs := h.drain(sess)
	if len(msgs) != 1 || msgs[0].GetCancel().GetToken() != first.Token {
		t.Fatalf("want a cancel of the expired lease, got %v", msgs)
	}
	if got := testutil.ToFloat64(h.metrics.LeaseExpiries); got != 1 {
		t.Fatalf("expiries = %v", got)
	}
	h.sched.Tick()
	if len(leases(h.drain(sess))) != 0 {
		t.Fatal("re-leased before the backoff ended")
	}
	h.clock.Advance(2 * baseBackoff)
	h.sched.Tick()
	second := leases(h.drain(sess))
	if len(second) != 1 || second[0].Token <= first.Token || second[0].Attempt != 2 || second[0].LeaseId != first.LeaseId {
		t.Fatalf("re-lease = %v, want same lease id, newer token, attempt 2", second)
	}

	// The zombie's messages under the old token are refused.
	if d, _ := h.sched.Commit(sess, &leasev1.Commit{LeaseId: first.LeaseId, Token: first.Token}); d.Approved {
		t.Fatal("commit with a stale token approved")
	}
	h.sched.Result(sess, result(first, success()))
	if n := len(h.done()); n != 0 {
		t.Fatalf("a stale result finished the task (%d finished)", n)
	}
	if got := testutil.ToFloat64(h.metrics.StaleMessages.WithLabelValues("result")); got != 1 {
		t.Fatalf("stale results counted %v", got)
	}

	// The current token commits and finishes.
	if d, _ := h.sched.Commit(sess, &leasev1.Commit{LeaseId: second[0].LeaseId, Token: second[0].Token}); !d.Approved {
		t.Fatalf("current commit refused: %s", d.Reason)
	}
	h.sched.Result(sess, result(second[0], success()))
	if f := h.done(); len(f) != 1 || f[0].Attempts != 2 || f[0].Outcome.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("finished = %+v", f)
	}
}

func TestResultFromAnotherSessionRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	a := h.agent("a1", 1)
	b := h.agent("a2", 0)
	h.enqueue(1)
	l := leases(h.drain(a))[0]
	if err := h.sched.Result(b, result(l, success())); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("another session's result: %v, want ErrStaleToken", err)
	}
	if d, err := h.sched.Commit(b, &leasev1.Commit{LeaseId: l.LeaseId, Token: l.Token}); d.Approved || !errors.Is(err, ErrStaleToken) {
		t.Fatalf("another session's commit: approved %v, %v", d.Approved, err)
	}
	if len(h.done()) != 0 {
		t.Fatal("another session finished the lease")
	}
	// A stale token on the holder's own session, and a lease that never was.
	var refused *RefusedError
	err := h.sched.Progress(a, &leasev1.Progress{LeaseId: l.LeaseId, Token: l.Token + 1})
	if !errors.As(err, &refused) || !errors.Is(err, ErrStaleToken) || refused.Current != l.Token || refused.Kind != "progress" {
		t.Fatalf("progress under a stale token: %v", err)
	}
	if err := h.sched.Release(a, &leasev1.Release{LeaseId: "no-such-lease", Token: 1}); !errors.Is(err, ErrUnknownLease) {
		t.Fatalf("release of an unknown lease: %v, want ErrUnknownLease", err)
	}
	if err := h.sched.Result(a, result(l, success())); err != nil {
		t.Fatalf("the holder's result: %v", err)
	}
}

func TestRetryClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		outcomes   []failure.Code
		wantCode   failure.Code
		wantTries  uint32
		wantStatus leasev1.Status
	}{
		{name: "not found fails at once", outcomes: []failure.Code{failure.FileNotFound}, wantCode: failure.FileNotFound, wantTries: 1, wantStatus: leasev1.Status_STATUS_FAILED},
		{name: "auth fails at once", outcomes: []failure.Code{failure.AuthFailed}, wantCode: failure.AuthFailed, wantTries: 1, wantStatus: leasev1.Status_STATUS_FAILED},
		{name: "path rejected fails at once", outcomes: []failure.Code{failure.PathRejected}, wantCode: failure.PathRejected, wantTries: 1, wantStatus: leasev1.Status_STATUS_FAILED},
		{name: "connection errors retried until exhausted", outcomes: []failure.Code{failure.ConnectionError, failure.ConnectionError, failure.ConnectionError}, wantCode: failure.ConnectionError, wantTries: 3, wantStatus: leasev1.Status_STATUS_FAILED},
		{name: "timeout then success", outcomes: []failure.Code{failure.TransferTimeout, 0}, wantTries: 2, wantStatus: leasev1.Status_STATUS_SUCCEEDED},
		{name: "io error then not found", outcomes: []failure.Code{failure.IOError, failure.FileNotFound}, wantCode: failure.FileNotFound, wantTries: 2, wantStatus: leasev1.Status_STATUS_FAILED},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, 3)
			sess := h.agent("a1", 1)
			h.enqueue(1)
			for i, code := range tc.outcomes {
				h.clock.Advance(10 * time.Second) // past any backoff
				h.sched.Tick()
				ls := leases(h.drain(sess))
				if len(ls) != 1 {
					t.Fatalf("delivery %d: %d leases", i+1, len(ls))
				}
				o := success()
				if code != 0 {
					o = failed(code)
				}
				h.sched.Result(sess, result(ls[0], o))
			}
			f := h.done()
			if len(f) != 1 {
				t.Fatalf("finished %d tasks, want 1", len(f))
			}
			if f[0].Outcome.Status != tc.wantStatus || f[0].Outcome.ErrorCode != tc.wantCode || f[0].Attempts != tc.wantTries {
				t.Fatalf("outcome %v code %v after %d attempts; want %v %v after %d", f[0].Outcome.Status,
					f[0].Outcome.ErrorCode, f[0].Attempts, tc.wantStatus, tc.wantCode, tc.wantTries)
			}
			if tc.wantTries > 1 && tc.wantStatus == leasev1.Status_STATUS_FAILED && failure.Retryable(tc.wantCode) &&
				!strings.Contains(f[0].Outcome.ErrorMessage, "gave up after 3 attempts") {
				t.Fatalf("message %q does not say the retries were used up", f[0].Outcome.ErrorMessage)
			}
		})
	}
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 10)
	prevMax := time.Duration(0)
	for failures := uint32(1); failures <= 6; failures++ {
		want := min(baseBackoff<<(failures-1), 8*time.Second)
		for range 50 {
			d := h.sched.ledger.policy.backoff(failures)
			if d < want*8/10 || d > want*12/10 {
				t.Fatalf("backoff(%d) = %s, want %s ±20%%", failures, d, want)
			}
			prevMax = max(prevMax, d)
		}
	}
	if prevMax > 8*time.Second*12/10 {
		t.Fatalf("backoff exceeded the cap: %s", prevMax)
	}
}

func TestDisconnectRequeues(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	a := h.agent("a1", 2)
	h.enqueue(1, 2)
	if n := len(leases(h.drain(a))); n != 2 {
		t.Fatalf("%d leases", n)
	}
	b := h.agent("a2", 2)
	h.sched.Detach(a, io.EOF)
	h.clock.Advance(3 * baseBackoff)
	h.sched.Tick()
	got := leases(h.drain(b))
	if len(got) != 2 || got[0].Attempt != 2 {
		t.Fatalf("after disconnect the other agent got %v", got)
	}
}

func TestReleaseRequeuesWithoutPenalty(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1) // a single failure would be final
	a := h.agent("a1", 1)
	h.enqueue(1)
	l := leases(h.drain(a))[0]
	h.sched.Release(a, &leasev1.Release{LeaseId: l.LeaseId, Token: l.Token, Reason: "draining"})
	again := leases(h.drain(a))
	if len(again) != 1 || again[0].Token == l.Token {
		t.Fatalf("released task not leased again: %v", again)
	}
	if len(h.done()) != 0 {
		t.Fatal("a release counted as a failure")
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	a := h.agent("a1", 1)
	h.enqueue(1, 2)
	l := leases(h.drain(a))[0] // t1 leased, t2 queued

	if st, err := h.sched.Admin().Cancel("t2", "operator"); err != nil || st != TaskQueued {
		t.Fatalf("cancel queued: %v %v", st, err)
	}
	if f := h.done(); len(f) != 1 || f[0].Task.ID != "t2" || f[0].Outcome.ErrorCode != failure.Cancelled {
		t.Fatalf("queued cancel outcome: %+v", f)
	}

	if st, err := h.sched.Admin().Cancel("t1", "operator"); err != nil || st != TaskLeased {
		t.Fatalf("cancel leased: %v %v", st, err)
	}
	if c := h.next(a).GetCancel(); c == nil || c.LeaseId != l.LeaseId {
		t.Fatal("agent not told to cancel")
	}
	if d, _ := h.sched.Commit(a, &leasev1.Commit{LeaseId: l.LeaseId, Token: l.Token}); d.Approved {
		t.Fatal("commit approved after cancel")
	}
	h.sched.Result(a, result(l, failed(failure.Cancelled)))
	f := h.done()
	if len(f) != 2 || f[1].Outcome.ErrorCode != failure.Cancelled || !strings.Contains(f[1].Outcome.ErrorMessage, "operator") {
		t.Fatalf("leased cancel outcome: %+v", f)
	}
	if _, err := h.sched.Admin().Cancel("t1", "again"); err != ErrTaskFinished {
		t.Fatalf("cancel finished task: %v", err)
	}
	if _, err := h.sched.Admin().Cancel("nope", "x"); err != ErrUnknownTask {
		t.Fatalf("cancel unknown task: %v", err)
	}
}

func TestRevokeDropsWithoutOutcome(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	a := h.agent("a1", 1)
	h.sched.Enqueue(&Task{Key: Key{Partition: 1, Offset: 1}, ID: "p1", Spec: &leasev1.TransferSpec{SrcId: "a", DstId: "b"}})
	h.sched.Enqueue(&Task{Key: Key{Partition: 1, Offset: 2}, ID: "p1b", Spec: &leasev1.TransferSpec{SrcId: "a", DstId: "b"}})
	h.sched.Enqueue(&Task{Key: Key{Partition: 2, Offset: 1}, ID: "p2", Spec: &leasev1.TransferSpec{SrcId: "a", DstId: "b"}})
	l := leases(h.drain(a))[0]
	if n := h.sched.Revoke([]int32{1}); n != 2 {
		t.Fatalf("revoked %d, want 2", n)
	}
	msgs := h.drain(a)
	if len(msgs) < 1 || msgs[0].GetCancel().GetLeaseId() != l.LeaseId {
		t.Fatalf("leased task of a revoked partition not cancelled: %v", msgs)
	}
	h.sched.Result(a, result(l, success()))
	if len(h.done()) != 0 {
		t.Fatal("a revoked task produced an outcome")
	}
	if got := leases(msgs); len(got) != 1 || got[0].LeaseId == l.LeaseId {
		t.Fatalf("the other partition's task was not leased next: %v", got)
	}
}

func TestDrainStopsLeasing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	a := h.agent("a1", 1)
	h.enqueue(1, 2)
	l := leases(h.drain(a))[0]
	h.sched.Drain(time.Second)
	if d := h.next(a).GetDrain(); d == nil {
		t.Fatal("agent not told to drain")
	}
	idle := h.sched.WaitIdle()
	h.sched.Result(a, result(l, success()))
	select {
	case <-idle:
	default:
		t.Fatal("WaitIdle not released once the last lease finished")
	}
	if got := leases(h.drain(a)); len(got) != 0 {
		t.Fatalf("leased while draining: %v", got)
	}
}

func TestRoutesTakeTurns(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	for i := range 6 {
		dst := "b"
		if i >= 3 {
			dst = "c"
		}
		h.sched.Enqueue(&Task{Key: Key{Offset: int64(i)}, ID: fmt.Sprint(i), Spec: &leasev1.TransferSpec{SrcId: "a", DstId: dst}})
	}
	a := h.agent("a1", 2)
	got := leases(h.drain(a))
	if len(got) != 2 || got[0].Transfer.DstId == got[1].Transfer.DstId {
		t.Fatalf("first two leases should serve both routes: %v, %v", got[0].Transfer.DstId, got[1].Transfer.DstId)
	}
}
