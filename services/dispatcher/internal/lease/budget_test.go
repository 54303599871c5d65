package lease

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

func ftpEndpoints(limits map[string]int) map[string]Endpoint {
	eps := map[string]Endpoint{"local": {ID: "local"}}
	for id, l := range limits {
		eps[id] = Endpoint{ID: id, Remote: true, Limit: l}
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
	g, _ := h.sched.conns.granted(endpoint)
	return g
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
	connFail := unreachableAt("down")
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

func unreachableAt(endpoint string) *leasev1.Outcome {
	return &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: failure.ConnectionError,
		ErrorMessage: "connect to " + endpoint + ": connection refused", Retryable: true,
		FailedEndpoint: endpoint, EndpointUnreachable: true, SourceSize: -1}
}

// A server that lets us log in and then fails every transfer (vsftpd's 426
// on a TLS 1.3 upload) is up: its breaker stays closed, and each failure is
// an attempt, so the task fails after max_attempts with its last delivery's
// figures instead of being held back forever.
func TestFailuresAfterLoginAreAttemptsNotOutages(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"flaky": 5}))
	a := h.agent("a1", 10)
	for i := range 3 {
		h.enqueueRoute(int64(i), "local", "flaky")
	}
	for round := 1; round <= 3; round++ {
		ls := leases(h.drain(a))
		if len(ls) != 3 {
			t.Fatalf("round %d: %d leases, want 3", round, len(ls))
		}
		for _, l := range ls {
			if l.Attempt != uint32(round) {
				t.Fatalf("round %d: attempt %d", round, l.Attempt)
			}
			h.sched.Result(a, result(l, &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED,
				ErrorCode: failure.ConnectionError, ErrorMessage: "426 Failure reading network stream",
				Retryable: true, FailedEndpoint: "flaky", SourceSize: 1 << 20, BytesTransferred: 65536,
				Duration: durationpb.New(1500 * time.Millisecond)}))
		}
		if got := testutilState(h, "flaky"); got != BreakerClosed {
			t.Fatalf("round %d: breaker %v after failures past login, want closed", round, got)
		}
		h.clock.Advance(time.Minute)
		h.sched.Tick()
	}
	done := h.done()
	if len(done) != 3 {
		t.Fatalf("%d outcomes after 3 attempts each, want 3", len(done))
	}
	for _, f := range done {
		o := f.Outcome
		if o.Status != leasev1.Status_STATUS_FAILED || o.ErrorCode != failure.ConnectionError || f.Attempts != 3 {
			t.Fatalf("outcome %v after %d attempts", o, f.Attempts)
		}
		if o.GetDuration().AsDuration() != 1500*time.Millisecond || o.BytesTransferred != 65536 || o.SourceSize != 1<<20 {
			t.Fatalf("the final outcome lost the last delivery's figures: %v", o)
		}
		if !strings.Contains(o.ErrorMessage, "426") || !strings.Contains(o.ErrorMessage, "gave up after 3 attempts") {
			t.Fatalf("message %q", o.ErrorMessage)
		}
	}
}

// An endpoint that cannot be reached is not the task's fault: even with
// max_attempts 1, however many deliveries find it down, before and after its
// breaker opens, and however many probes fail, the task waits and succeeds
// once the endpoint is back.
func TestUnreachableEndpointNeverUsesUpAttempts(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 1, ftpEndpoints(map[string]int{"down": 5}))
	a := h.agent("a1", 10)
	h.enqueueRoute(0, "down", "local")
	deliveries := 0
	for deliveries < 6 {
		h.clock.Advance(10 * time.Second)
		h.sched.Tick()
		ls := leases(h.drain(a))
		if len(ls) == 0 {
			continue
		}
		deliveries++
		if ls[0].Attempt != uint32(deliveries) {
			t.Fatalf("delivery %d has attempt %d", deliveries, ls[0].Attempt)
		}
		h.sched.Result(a, result(ls[0], unreachableAt("down")))
		if len(h.done()) != 0 {
			t.Fatalf("the task failed after %d deliveries to an unreachable endpoint: %v", deliveries, h.done()[0].Outcome)
		}
	}
	if got := testutilState(h, "down"); got != BreakerOpen {
		t.Fatalf("breaker %v after failed probes, want open", got)
	}
	h.clock.Advance(10 * time.Second)
	h.sched.Tick()
	ls := leases(h.drain(a))
	if len(ls) != 1 {
		t.Fatalf("%d probes", len(ls))
	}
	h.sched.Result(a, result(ls[0], success()))
	if done := h.done(); len(done) != 1 || done[0].Outcome.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("outcomes %v", done)
	}
	if got := testutilState(h, "down"); got != BreakerClosed {
		t.Fatalf("breaker %v after a successful probe", got)
	}
}

// Waiting is bounded: once an endpoint has been unreachable for
// retry.max_outage, its tasks fail with CONNECTION_ERROR, those held back
// by its open breaker included, and other endpoints' tasks go on.
func TestOutagePastMaxOutageFailsTheEndpointsTasks(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"down": 5, "up": 5}))
	h.sched.breakers.cfg.MaxOutage = 20 * time.Second
	a := h.agent("a1", 10)
	for i := range 3 {
		h.enqueueRoute(int64(i), "down", "local")
	}
	ls := leases(h.drain(a))
	h.sched.Result(a, result(ls[0], unreachableAt("down")))
	h.sched.Result(a, result(ls[1], unreachableAt("down"))) // threshold 2: open
	if got := testutilState(h, "down"); got != BreakerOpen {
		t.Fatalf("breaker %v", got)
	}
	h.clock.Advance(10 * time.Second) // under max_outage: a probe, which fails
	h.sched.Tick()
	probe := leases(h.drain(a))
	if len(probe) != 1 {
		t.Fatalf("%d probes", len(probe))
	}
	h.sched.Result(a, result(probe[0], unreachableAt("down")))
	if n := len(h.done()); n != 0 {
		t.Fatalf("%d tasks failed within max_outage", n)
	}
	h.sched.Result(a, result(ls[2], success())) // it was running when the endpoint went
	h.enqueueRoute(10, "up", "local")
	h.clock.Advance(11 * time.Second)
	h.sched.Tick()
	if got := leases(h.drain(a)); len(got) != 1 || got[0].Transfer.SrcId != "up" {
		t.Fatalf("leased %v, want only the other endpoint's task", got)
	}
	var failed int
	for _, f := range h.done() {
		if f.Outcome.Status == leasev1.Status_STATUS_SUCCEEDED {
			continue
		}
		failed++
		if f.Outcome.ErrorCode != failure.ConnectionError || !strings.Contains(f.Outcome.ErrorMessage, "unreachable for 21s") ||
			!strings.Contains(f.Outcome.ErrorMessage, "connection refused") {
			t.Fatalf("outcome %v", f.Outcome)
		}
	}
	if failed != 2 {
		t.Fatalf("%d tasks failed past max_outage, want the 2 waiting", failed)
	}
}

// Tasks waiting out a breaker open for longer than max_outage are looked at
// again when the outage runs out, not when the breaker would probe.
func TestMaxOutageShorterThanBreakerTimeout(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"down": 5}))
	h.sched.breakers.cfg.OpenFor, h.sched.breakers.cfg.MaxOutage = time.Minute, 3*time.Second
	a := h.agent("a1", 10)
	h.enqueueRoute(0, "down", "local")
	h.enqueueRoute(1, "down", "local")
	for _, l := range leases(h.drain(a)) {
		h.sched.Result(a, result(l, unreachableAt("down")))
	}
	h.clock.Advance(2 * time.Second)
	h.sched.Tick()
	if n := len(h.done()); n != 0 {
		t.Fatalf("%d failed before max_outage", n)
	}
	h.clock.Advance(2 * time.Second)
	h.sched.Tick()
	if n := len(h.done()); n != 2 {
		t.Fatalf("%d of 2 failed once the endpoint was down for max_outage", n)
	}
}

// A stream that broke on the dispatcher's side may still be alive on the
// agent's, which keeps transferring on its connections until it notices.
// Its quota stays counted for DetachHold before another agent gets it.
func TestDisconnectedAgentsQuotaIsHeld(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"ep": 2}))
	h.sched.conns.detachHold = 20 * time.Second
	a1 := h.agent("a1", 10)
	h.enqueueRoute(0, "ep", "local")
	h.enqueueRoute(1, "ep", "local")
	if got := leases(h.drain(a1)); len(got) != 2 {
		t.Fatalf("a1: %d leases", len(got))
	}
	h.sched.Detach(a1, fmt.Errorf("stream cut"))
	a2 := h.agent("a2", 10)
	h.clock.Advance(5 * time.Second) // past the retry backoff
	h.sched.Tick()
	if got := leases(h.drain(a2)); len(got) != 0 {
		t.Fatalf("a2 got %d leases while a1's connections may still be open", len(got))
	}
	h.clock.Advance(16 * time.Second)
	h.sched.Tick()
	if got := leases(h.drain(a2)); len(got) != 2 {
		t.Fatalf("a2: %d leases after the hold, want 2", len(got))
	}
}

func testutilState(h *harness, endpoint string) BreakerState {
	h.sched.mu.Lock()
	defer h.sched.mu.Unlock()
	return h.sched.breakers.byEP[endpoint].state
}

func TestLostLeasesCarryProgressForward(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 5)
	a := h.agent("a1", 2)
	h.enqueue(1, 2)
	ls := leases(h.drain(a))
	// Task 1 made progress; task 2 was committed; then the agent vanished.
	h.sched.Progress(a, &leasev1.Progress{LeaseId: ls[0].LeaseId, Token: ls[0].Token, BytesDone: 4096, BytesTotal: 1 << 20})
	if d, _ := h.sched.Commit(a, &leasev1.Commit{LeaseId: ls[1].LeaseId, Token: ls[1].Token, Bytes: 20}); !d.Approved {
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

// While the shares move (a dispatcher restarting, the group changing), a
// dispatcher whose share says yes must still leave room for connections
// agents hold under other dispatchers' quotas.
func TestGrantsLeaveRoomForOtherDispatchersConnections(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"ftp": 4}))
	a := h.agent("a1", 8)
	// The agent still holds 3 under a departed dispatcher's quota.
	h.sched.PoolReport(a, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "ftp", Open: 3, Elsewhere: 3}}})
	for i := range 4 {
		h.enqueueRoute(int64(i), "ftp", "local")
	}
	if n := len(leases(h.drain(a))); n != 1 {
		t.Fatalf("%d leases with 3 of the limit of 4 held elsewhere, want 1", n)
	}
	// Those transfers end: the rest may run.
	h.sched.PoolReport(a, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "ftp", Open: 1}}})
	if n := len(leases(h.drain(a))); n != 3 {
		t.Fatalf("%d more leases once nothing is held elsewhere, want 3", n)
	}
	if g := h.granted("ftp"); g != 4 {
		t.Fatalf("granted %d, want 4", g)
	}
}

// An agent that has not reported yet may hold connections under other
// dispatchers' quotas: nobody is granted anything until it has.
func TestNoGrantsBeforeEveryAgentReported(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"ftp": 4}))
	a := h.agent("a1", 8)
	silent := h.sched.Attach(&leasev1.Hello{AgentId: "a2", Slots: 8}, "127.0.0.1:2")
	h.sched.SetWindow(silent, 8)
	h.enqueueRoute(0, "ftp", "local")
	if n := len(leases(h.drain(a))); n != 0 {
		t.Fatalf("%d leases granted while an agent had not reported", n)
	}
	h.sched.PoolReport(silent, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "ftp", Elsewhere: 2}}})
	if n := len(leases(h.drain(a))) + len(leases(h.drain(silent))); n != 1 {
		t.Fatalf("%d leases after the report, want 1", n)
	}
	// A session that leaves without reporting does not block the rest.
	quiet := h.sched.Attach(&leasev1.Hello{AgentId: "a3", Slots: 8}, "127.0.0.1:3")
	h.sched.Detach(quiet, nil)
	h.enqueueRoute(1, "ftp", "local")
	if n := len(leases(h.drain(a))) + len(leases(h.drain(silent))); n != 1 {
		t.Fatalf("%d leases after the silent session left, want 1", n)
	}
}

// With two leases to a connection, an agent gets twice as many downloads
// as connections: the second waits in its pool while the first writes the
// local file and commits. The quota granted, and so the fleet's logins,
// stay within the limit.
func TestLeasesShareAConnection(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"ftp": 2}))
	h.sched.conns.perConn = 2
	a := h.agent("a1", 8)
	for i := range 6 {
		h.enqueueRoute(int64(i), "ftp", "local")
	}
	msgs := h.drain(a)
	if n := len(leases(msgs)); n != 4 {
		t.Fatalf("%d leases on 2 connections at 2 leases each, want 4", n)
	}
	if g := h.granted("ftp"); g != 2 {
		t.Fatalf("granted %d connections, want 2", g)
	}
	q := quotas(msgs)
	if len(q) == 0 || q[len(q)-1].Connections != 2 {
		t.Fatalf("quotas %v, want 2 connections at last", q)
	}
	// One finished lease makes room for exactly one more.
	h.sched.Result(a, result(leases(msgs)[0], success()))
	if n := len(leases(h.drain(a))); n != 1 {
		t.Fatalf("%d leases after one finished, want 1", n)
	}
}

// A relay holds one connection while it waits for the other, so relays
// take whole connections: two relays in opposite directions between
// endpoints of one connection each could otherwise hold what the other
// waits for, for ever.
func TestRelaysTakeWholeConnections(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"x": 1, "y": 1}))
	h.sched.conns.perConn = 2
	a := h.agent("a1", 8)
	h.enqueueRoute(1, "x", "y")
	h.enqueueRoute(2, "y", "x")
	h.enqueueRoute(3, "x", "local")
	msgs := h.drain(a)
	if n := len(leases(msgs)); n != 1 {
		t.Fatalf("%d leases, want the first relay alone (it takes both connections whole)", n)
	}
	// Then either the download (a unit of x) or the other relay (both
	// connections whole), never both: x has one connection.
	h.sched.Result(a, result(leases(msgs)[0], success()))
	next := leases(h.drain(a))
	if len(next) != 1 {
		t.Fatalf("after the first relay: %v, want one lease", next)
	}
	h.sched.Result(a, result(next[0], success()))
	if last := leases(h.drain(a)); len(last) != 1 {
		t.Fatalf("then: %v, want the remaining task", last)
	}
}

// An SFTP endpoint's quota counts SSH connections, each carrying Sessions
// leases at once: max_connections 2 with 3 sessions each is 6 transfers
// for the fleet, on at most 2 connections.
func TestSFTPSessionsPerConnection(t *testing.T) {
	t.Parallel()
	eps := map[string]Endpoint{"local": {ID: "local"}, "sftp": {ID: "sftp", Remote: true, Limit: 2, Sessions: 3}}
	h := newHarnessWith(t, 3, eps)
	a := h.agent("a1", 10)
	b := h.agent("a2", 10)
	for i := range 10 {
		h.enqueueRoute(int64(i), "sftp", "local")
	}
	la, lb := h.drain(a), h.drain(b)
	if n := len(leases(la)) + len(leases(lb)); n != 6 {
		t.Fatalf("%d leases with 2 connections of 3 sessions", n)
	}
	if g := h.granted("sftp"); g != 2 {
		t.Fatalf("granted %d connections, want 2", g)
	}
	// No agent runs more sessions than its quota's connections carry.
	for _, msgs := range [][]*leasev1.ConnectResponse{la, lb} {
		var quota uint32
		for _, q := range quotas(msgs) {
			quota = q.Connections
		}
		if n := uint32(len(leases(msgs))); n > quota*3 {
			t.Fatalf("%d leases on a quota of %d connections", n, quota)
		}
	}
}

// A task between two endpoints whose quotas sit on different agents must
// still run: the chaos suite stalled on its last three vsftpd↔OpenSSH
// tasks because one agent held OpenSSH's only connection, the others held
// all of vsftpd's, each idle, and each quota was kept because "some agent
// has spare for it" while no agent had spare for both.
func TestCrossEndpointTaskGathersQuotaSplitAcrossAgents(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 3, ftpEndpoints(map[string]int{"x": 2, "y": 1}))
	a, b, c := h.agent("a1", 1), h.agent("a2", 1), h.agent("a3", 1)
	// One download each leaves a1 and a2 with x's two connections and a3
	// with y's one, all idle.
	h.enqueueRoute(1, "x", "local")
	h.enqueueRoute(2, "x", "local")
	h.enqueueRoute(3, "y", "local")
	for _, sess := range []*Session{a, b, c} {
		ls := leases(h.drain(sess))
		if len(ls) != 1 {
			t.Fatalf("%s: %d leases, want 1", sess.agentID, len(ls))
		}
		ep := ls[0].Transfer.SrcId
		h.sched.PoolReport(sess, &leasev1.PoolReport{QuotaSeq: sess.quotaSeq,
			Endpoints: []*leasev1.EndpointPool{{EndpointId: ep, Open: 1, Idle: 1}}})
		h.sched.Result(sess, result(ls[0], success()))
	}
	h.enqueueRoute(4, "x", "y")
	// Agents give back what they are asked to, as they do: close the idle
	// connection, acknowledge in the next pool report.
	for round := 0; round < 5; round++ {
		for _, sess := range []*Session{a, b, c} {
			msgs := h.drain(sess)
			if len(leases(msgs)) > 0 {
				if got := leases(msgs)[0].Transfer.TaskId; got != "t4" {
					t.Fatalf("leased %s, want t4", got)
				}
				return
			}
			if qs := quotas(msgs); len(qs) > 0 {
				h.sched.PoolReport(sess, &leasev1.PoolReport{QuotaSeq: qs[len(qs)-1].Seq})
			}
		}
	}
	t.Fatalf("x→y never leased: quotas x=%d y=%d granted, none on one agent", h.granted("x"), h.granted("y"))
}

// An SFTP server found to carry fewer sessions per connection than
// configured (mod_sftp: one) is planned with the agents' number: quota
// counts connections the agents can fill, not sessions they cannot open.
func TestSFTPSessionsPerConnectionLearnedFromAgents(t *testing.T) {
	t.Parallel()
	eps := map[string]Endpoint{"local": {ID: "local"}, "sftp": {ID: "sftp", Remote: true, Limit: 2, Sessions: 4}}
	h := newHarnessWith(t, 3, eps)
	a := h.agent("a1", 10)
	h.sched.PoolReport(a, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "sftp", SessionsPerConnection: 1}}})
	for i := range 8 {
		h.enqueueRoute(int64(i), "sftp", "local")
	}
	if n := len(leases(h.drain(a))); n != 2 {
		t.Fatalf("%d leases on 2 connections of one session each, want 2", n)
	}
	if eps["sftp"].Sessions != 4 {
		t.Fatal("the caller's endpoints were changed")
	}
	// Another agent that has not connected yet reports the configured
	// number: that never raises it again.
	b := h.agent("a2", 10)
	h.sched.PoolReport(b, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "sftp", SessionsPerConnection: 4}}})
	if n := len(leases(h.drain(b))) + len(leases(h.drain(a))); n != 0 {
		t.Fatalf("%d more leases with both one-session connections in use", n)
	}
}
