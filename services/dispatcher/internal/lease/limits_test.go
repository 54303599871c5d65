package lease

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// serverFull is the outcome of a login the server refused for being full
// while the agent held accepted connections to it.
func serverFull(accepted uint32) *leasev1.Outcome {
	return &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorCode: failure.ConnectionError,
		ErrorMessage: "log in to ftp: 530 Sorry, the maximum number of clients (3) for this user are already connected.",
		Retryable:    true, FailedEndpoint: "ftp", EndpointFull: true, EndpointAccepted: accepted, SourceSize: -1}
}

func (h *harness) endpoint(id string) EndpointView {
	for _, v := range h.sched.Admin().Endpoints() {
		if v.ID == id {
			return v
		}
	}
	h.t.Fatalf("no endpoint %s", id)
	return EndpointView{}
}

func TestServerFullLowersTheLimitWithoutUsingAttempts(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 1, ftpEndpoints(map[string]int{"ftp": 10}))
	a := h.agent("a1", 20)
	b := h.agent("a2", 20)
	for i := range 8 {
		h.enqueueRoute(int64(i), "ftp", "local")
	}
	la, lb := leases(h.drain(a)), leases(h.drain(b))
	if len(la)+len(lb) != 8 {
		t.Fatalf("%d+%d leases, want 8", len(la), len(lb))
	}
	// a held two connections when the server refused its third; b last
	// reported one open, but its leases in flight hold (or are logging in
	// to) one each, and reports lag: the fleet had 2 + len(lb).
	h.sched.PoolReport(b, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "ftp", Open: 1}}})
	want := 2 + max(1, len(lb))
	if want >= 10 {
		t.Fatalf("b took %d of 8 leases: nothing left to learn from", len(lb))
	}
	// More refusals than max_attempts: none may count as an attempt.
	for _, l := range la[:3] {
		h.sched.Result(a, result(l, serverFull(2)))
	}
	if f := h.done(); len(f) != 0 {
		t.Fatalf("a server-full refusal finished %d task(s): %+v", len(f), f[0].Outcome)
	}
	v := h.endpoint("ftp")
	if v.Limit != want || v.ConfiguredLimit != 10 || !strings.Contains(v.LimitReason, "maximum number of clients") || v.LimitChangedAt.IsZero() {
		t.Fatalf("endpoint after refusals: limit %d of %d, reason %q, at %v", v.Limit, v.ConfiguredLimit, v.LimitReason, v.LimitChangedAt)
	}
	if got := testutil.ToFloat64(h.metrics.ConnectionLimit.WithLabelValues("ftp")); got != float64(want) {
		t.Fatalf("connection limit metric %v, want %d", got, want)
	}
	if v.Breaker != BreakerClosed || v.ConsecutiveFailures != 0 {
		t.Fatalf("the breaker counted a full server: %v, %d failures", v.Breaker, v.ConsecutiveFailures)
	}
	// The share follows the learned limit: once the other leases end and
	// the quota comes back, no more than it is granted.
	for _, l := range la[3:] {
		h.sched.Result(a, result(l, success()))
	}
	for _, l := range lb {
		h.sched.Result(b, result(l, success()))
	}
	for _, sess := range []*Session{a, b} {
		if q := quotas(h.drain(sess)); len(q) > 0 {
			h.sched.PoolReport(sess, &leasev1.PoolReport{QuotaSeq: q[len(q)-1].Seq})
		}
	}
	h.clock.Advance(time.Minute)
	h.sched.Tick()
	again := len(leases(h.drain(a))) + len(leases(h.drain(b)))
	if again != 3 {
		t.Fatalf("%d refused task(s) leased again, want all 3", again)
	}
	if g := h.granted("ftp"); g > want {
		t.Fatalf("granted %d connections under a learned limit of %d", g, want)
	}
}

func TestLearnedLimitRecoversAfterQuietPeriods(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 1, ftpEndpoints(map[string]int{"ftp": 4}))
	a := h.agent("a1", 4)
	h.enqueueRoute(1, "ftp", "local")
	l := leases(h.drain(a))[0]
	h.sched.Result(a, result(l, serverFull(1)))
	if v := h.endpoint("ftp"); v.Limit != 1 {
		t.Fatalf("limit %d after a refusal with 1 open, want 1", v.Limit)
	}
	// A refusal with more open than the limit in force teaches nothing.
	h.clock.Advance(2 * baseBackoff)
	h.sched.Tick()
	l = leases(h.drain(a))[0]
	h.sched.Result(a, result(l, serverFull(3)))
	if v := h.endpoint("ftp"); v.Limit != 1 {
		t.Fatalf("a refusal raised the limit to %d", v.Limit)
	}
	// Recovery counts from the last refusal, one step per quiet minute.
	h.clock.Advance(time.Minute - 2*baseBackoff - time.Millisecond)
	h.sched.Tick()
	if v := h.endpoint("ftp"); v.Limit != 1 {
		t.Fatalf("limit %d before a quiet minute passed", v.Limit)
	}
	for want := 2; want <= 4; want++ {
		h.clock.Advance(time.Minute)
		h.sched.Tick()
		if v := h.endpoint("ftp"); v.Limit != want {
			t.Fatalf("limit %d after %d quiet minutes, want %d", v.Limit, want-1, want)
		}
	}
	v := h.endpoint("ftp")
	if v.LimitReason != "" || !v.LimitChangedAt.IsZero() {
		t.Fatalf("restored limit still explained: %q at %v", v.LimitReason, v.LimitChangedAt)
	}
	h.clock.Advance(10 * time.Minute)
	h.sched.Tick()
	if v := h.endpoint("ftp"); v.Limit != 4 {
		t.Fatalf("limit %d grew past max_connections 4", v.Limit)
	}
}

func TestBusyReleaseLeasesAgainWithAConnectionOfItsOwn(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 2, ftpEndpoints(map[string]int{"ftp": 10}))
	h.sched.conns.perConn = 2 // lease.leases_per_connection's default
	a := h.agent("a1", 4)
	h.enqueueRoute(1, "ftp", "local") // this one stalls
	h.enqueueRoute(2, "ftp", "local") // and this one waits behind it
	msgs := h.drain(a)
	ls, qs := leases(msgs), quotas(msgs)
	if len(ls) != 2 || len(qs) != 1 || qs[0].Connections != 1 {
		t.Fatalf("two small leases should share one connection: %d leases, quotas %v", len(ls), qs)
	}
	h.sched.Release(a, &leasev1.Release{LeaseId: ls[1].LeaseId, Token: ls[1].Token, Reason: "connections busy", ConnectionBusy: true})
	msgs = h.drain(a)
	ls2, qs2 := leases(msgs), quotas(msgs)
	if len(ls2) != 1 || ls2[0].Transfer.TaskId != "t2" {
		t.Fatalf("the handed-back task was not leased again: %v", msgs)
	}
	if len(qs2) != 1 || qs2[0].Connections != 2 {
		t.Fatalf("the task should come back with a connection of its own (quota 2): %v", qs2)
	}
	if f := h.done(); len(f) != 0 {
		t.Fatalf("a hand-back finished a task: %+v", f[0].Outcome)
	}
}

func TestEndpointQuirksFromPoolReports(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 1, ftpEndpoints(map[string]int{"ftp": 4}))
	a, b := h.agent("a1", 1), h.agent("a2", 1)
	h.sched.PoolReport(a, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "ftp", Quirks: []string{"EPSV refused: PASV used"}}}})
	h.sched.PoolReport(b, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "ftp", Quirks: []string{"EPSV refused: PASV used", "no SIZE"}}}})
	if q := h.endpoint("ftp").Quirks; len(q) != 2 || q[0] != "EPSV refused: PASV used" || q[1] != "no SIZE" {
		t.Fatalf("quirks = %q", q)
	}
	if q := h.endpoint("local").Quirks; len(q) != 0 {
		t.Fatalf("local quirks = %q", q)
	}
}

// ListEndpoints shows the host keys agents report for an SFTP endpoint,
// each once: one while they agree, every one while they do not; a key no
// agent reported before, while another was known, is worth a WARN.
func TestEndpointHostKeysFromPoolReports(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, 1, ftpEndpoints(map[string]int{"ftp": 4, "sftp": 4}))
	a, b := h.agent("a1", 1), h.agent("a2", 1)
	const k1, k2 = "ssh-ed25519 SHA256:first", "ssh-rsa SHA256:second"
	report := func(sess *Session, key string) {
		t.Helper()
		h.sched.PoolReport(sess, &leasev1.PoolReport{Endpoints: []*leasev1.EndpointPool{{EndpointId: "sftp", Open: 1, HostKey: key}, {EndpointId: "ftp", Open: 1}}})
	}
	changes := func() int { return strings.Count(h.warnings.String(), "SFTP host key changed") }
	steps := []struct {
		name     string
		sess     *Session
		key      string
		want     []string
		warnings int
	}{
		// Before the first connection agents report no key.
		{"no connection yet", a, "", nil, 0},
		{"first key", a, k1, []string{k1}, 0},
		{"second agent agrees", b, k1, []string{k1}, 0},
		{"same key again", a, k1, []string{k1}, 0},
		{"one agent sees a new key", b, k2, []string{k1, k2}, 1},
		{"the other follows", a, k2, []string{k2}, 1},
	}
	for _, st := range steps {
		report(st.sess, st.key)
		if got := h.endpoint("sftp").HostKeys; !slices.Equal(got, st.want) {
			t.Fatalf("%s: host keys = %q, want %q", st.name, got, st.want)
		}
		if n := changes(); n != st.warnings {
			t.Fatalf("%s: %d host key warnings, want %d:\n%s", st.name, n, st.warnings, h.warnings)
		}
	}
	if w := h.warnings.String(); !strings.Contains(w, "endpoint=sftp") || !strings.Contains(w, "agent_id=a2") || !strings.Contains(w, k2) {
		t.Errorf("the warning does not name the endpoint, agent and new key: %s", w)
	}
	for _, id := range []string{"ftp", "local"} {
		if k := h.endpoint(id).HostKeys; len(k) != 0 {
			t.Errorf("%s host keys = %q, want none", id, k)
		}
	}
}
