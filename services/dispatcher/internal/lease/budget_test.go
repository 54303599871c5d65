package lease

import (
	"fmt"
	"testing"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

func ftpEndpoints(limits map[string]int) map[string]Endpoint {
	eps := map[string]Endpoint{"local": {ID: "local"}}
	for id, l := range limits {
		eps[id] = Endpoint{ID: id, FTP: true, Limit: l}
	}
	return eps
}

func (h *harness) enqueueRoute(off int64, src, dst string) {
	h.sched.Enqueue(&Task{Key: Key{Offset: off}, ID: fmt.Sprintf("t%d", off), ReceivedAt: h.clock.Now(),
		Spec: &leasev1.TransferSpec{TaskId: fmt.Sprintf("t%d", off), SrcId: src, SrcPath: "/f", DstId: dst, DstPath: "f"}})
}

func quotas(msgs []*leasev1.ConnectResponse) []*leasev1.Quota {
	var out []*leasev1.Quota
	for _, m := range msgs {
		if q := m.GetQuota(); q != nil {
			out = append(out, q)
		}
	}
	return out
}

// granted sums the quotas the scheduler has outstanding for an endpoint.
func (h *harness) granted(endpoint string) int {
	h.sched.mu.Lock()
	defer h.sched.mu.Unlock()
	return h.sched.budgets[endpoint].granted
}

func TestConnectionLimitHoldsForTheFleet(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"ftp": 2}))
	a := h.agent("a1", 4)
	b := h.agent("a2", 4)
	for i := range 6 {
		h.enqueueRoute(int64(i), "ftp", "local")
	}
	la, lb := h.drain(a), h.drain(b)
	if n := len(leases(la)) + len(leases(lb)); n != 2 {
		t.Fatalf("%d leases with a fleet-wide limit of 2", n)
	}
	if g := h.granted("ftp"); g != 2 {
		t.Fatalf("granted %d, want 2", g)
	}
	// Quota travels before the lease that needs it.
	for _, msgs := range [][]*leasev1.ConnectResponse{la, lb} {
		if len(leases(msgs)) > 0 && msgs[0].GetQuota() == nil {
			t.Fatalf("lease sent before its quota: %v", msgs)
		}
	}
	// A finished lease frees its connection for the next task, on the same
	// agent (its connection is idle) without new quota.
	first := append(leases(la), leases(lb)...)[0]
	holder := a
	if len(leases(la)) == 0 {
		holder = b
	}
	h.sched.PoolReport(holder, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "ftp", Open: 1, Idle: 1}}})
	h.sched.Result(holder, result(first, success()))
	next := h.drain(holder)
	if len(leases(next)) != 1 || len(quotas(next)) != 0 {
		t.Fatalf("the next task should reuse the freed quota on the same agent: %v", next)
	}
	if g := h.granted("ftp"); g != 2 {
		t.Fatalf("granted %d after reuse, want 2", g)
	}
}

func TestQuotaReclaimedFromAnIdleAgent(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"ftp": 1}))
	a := h.agent("a1", 1)
	h.enqueueRoute(1, "ftp", "local")
	l := leases(h.drain(a))[0]
	h.sched.Result(a, result(l, success()))
	h.sched.SetWindow(a, 0) // a keeps its quota (and idle connection) but takes no work
	b := h.agent("a2", 1)
	h.enqueueRoute(2, "ftp", "local")
	if got := leases(h.drain(b)); len(got) != 0 {
		t.Fatalf("b leased while a holds the only connection: %v", got)
	}
	qa := quotas(h.drain(a))
	if len(qa) != 1 || qa[0].Connections != 0 {
		t.Fatalf("a should be asked to give its connection back: %v", qa)
	}
	h.sched.Tick()
	if got := leases(h.drain(b)); len(got) != 0 {
		t.Fatal("b leased before a acknowledged closing its connection")
	}
	h.sched.PoolReport(a, &leasev1.PoolReport{QuotaSeq: qa[0].Seq})
	msgs := h.drain(b)
	if len(leases(msgs)) != 1 || len(quotas(msgs)) != 1 || quotas(msgs)[0].Connections != 1 {
		t.Fatalf("after the ack b should get the quota and the lease: %v", msgs)
	}
	if g := h.granted("ftp"); g != 1 {
		t.Fatalf("granted %d, want 1", g)
	}
}

func TestSaturatedEndpointDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"slow": 1, "fast": 5}))
	for i := range 3 {
		h.enqueueRoute(int64(i), "slow", "local")
	}
	for i := range 3 {
		h.enqueueRoute(int64(10+i), "fast", "local")
	}
	a := h.agent("a1", 4)
	got := leases(h.drain(a))
	bySrc := map[string]int{}
	for _, l := range got {
		bySrc[l.Transfer.SrcId]++
	}
	if bySrc["slow"] != 1 || bySrc["fast"] != 3 {
		t.Fatalf("leases by source = %v, want slow 1 and fast 3", bySrc)
	}
}

func TestRelayWithinOneEndpointNeedsTwoConnections(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"ftp": 3}))
	a := h.agent("a1", 4)
	h.enqueueRoute(1, "ftp", "ftp")
	h.enqueueRoute(2, "ftp", "ftp")
	msgs := h.drain(a)
	if n := len(leases(msgs)); n != 1 {
		t.Fatalf("%d relays within one endpoint limited to 3 connections, want 1 (each needs 2)", n)
	}
	if q := quotas(msgs); len(q) != 1 || q[0].Connections != 2 {
		t.Fatalf("quota %v, want 2 connections for one relay", q)
	}
}

func TestSharesSplitTheLimitBetweenDispatchers(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"ftp": 3}))
	h.sched.SetGroup(0, 0) // group not known yet: nothing may be granted
	a := h.agent("a1", 10)
	for i := range 5 {
		h.enqueueRoute(int64(i), "ftp", "local")
	}
	if got := leases(h.drain(a)); len(got) != 0 {
		t.Fatalf("leased %d before the group was known", len(got))
	}
	h.sched.SetGroup(2, 1) // second of two: 3 = 2 + 1
	if got := leases(h.drain(a)); len(got) != 1 {
		t.Fatalf("rank 1 of 2 leased %d, want 1", len(got))
	}
	h.sched.SetGroup(2, 0)
	if got := leases(h.drain(a)); len(got) != 1 {
		t.Fatalf("rank 0 of 2 should lease one more (share 2), got %d", len(got))
	}
}

func TestBreakerHoldsTasksWithoutFailingThem(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 2, ftpEndpoints(map[string]int{"down": 5, "up": 5}))
	a := h.agent("a1", 10)
	for i := range 4 {
		h.enqueueRoute(int64(i), "down", "local")
	}
	first := leases(h.drain(a))
	if len(first) != 4 {
		t.Fatalf("%d leases", len(first))
	}
	connFail := &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: failure.ConnectionError,
		ErrorMessage: "connection refused", Retryable: true, FailedEndpoint: "down", SourceSize: -1}
	for _, l := range first {
		h.sched.Result(a, result(l, connFail)) // threshold 2: the breaker opens on the second
	}
	if got := testutilState(h, "down"); got != BreakerOpen {
		t.Fatalf("breaker = %v, want open", got)
	}
	// With max_attempts 2 these tasks would fail on a second failure; held
	// by the breaker, nothing fails and nothing is leased.
	h.clock.Advance(time.Second)
	h.sched.Tick()
	if got := leases(h.drain(a)); len(got) != 0 {
		t.Fatalf("leased %d with the breaker open", len(got))
	}
	h.enqueueRoute(100, "up", "local")
	if got := leases(h.drain(a)); len(got) != 1 || got[0].Transfer.SrcId != "up" {
		t.Fatalf("other endpoints must go on: %v", got)
	}
	// After OpenFor: one probe. Its success closes the breaker and the rest go.
	h.clock.Advance(5 * time.Second)
	h.sched.Tick()
	probe := leases(h.drain(a))
	if len(probe) != 1 || probe[0].Transfer.SrcId != "down" {
		t.Fatalf("half-open should send exactly one probe: %v", probe)
	}
	h.sched.Result(a, result(probe[0], success()))
	h.clock.Advance(10 * time.Second)
	h.sched.Tick()
	if rest := leases(h.drain(a)); len(rest) != 3 {
		t.Fatalf("after the probe succeeded %d leased, want the 3 waiting", len(rest))
	}
	for _, f := range h.done() {
		if f.Outcome.Status != leasev1.Status_STATUS_SUCCEEDED {
			t.Fatalf("a task failed while its endpoint's breaker held it: %v", f.Outcome)
		}
	}
}

func testutilState(h *harness, endpoint string) BreakerState {
	h.sched.mu.Lock()
	defer h.sched.mu.Unlock()
	return h.sched.breakers[endpoint].state
}

func TestLostLeasesCarryProgressForward(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 5)
	a := h.agent("a1", 2)
	h.enqueue(1, 2)
	ls := leases(h.drain(a))
	// Task 1 made progress; task 2 was committed; then the agent vanished.
	h.sched.Progress(a, &leasev1.Progress{LeaseId: ls[0].LeaseId, Token: ls[0].Token, BytesDone: 4096, BytesTotal: 1 << 20})
	if d := h.sched.Commit(a, &leasev1.Commit{LeaseId: ls[1].LeaseId, Token: ls[1].Token, Bytes: 20}); !d.Approved {
		t.Fatal(d.Reason)
	}
	h.sched.Detach(a, fmt.Errorf("killed"))
	b := h.agent("a2", 2)
	h.clock.Advance(time.Minute)
	h.sched.Tick()
	again := leases(h.drain(b))
	if len(again) != 2 {
		t.Fatalf("%d re-leases", len(again))
	}
	for _, l := range again {
		switch l.LeaseId {
		case ls[0].LeaseId:
			if l.ResumeToken != ls[0].Token || l.ResumeOffset != 4096 {
				t.Errorf("resume = token %d offset %d, want %d and 4096", l.ResumeToken, l.ResumeOffset, ls[0].Token)
			}
		case ls[1].LeaseId:
			if pc := l.PriorCommit; pc == nil || pc.Token != ls[1].Token || pc.Bytes != 20 {
				t.Errorf("prior commit = %v", pc)
			}
		}
	}
}
