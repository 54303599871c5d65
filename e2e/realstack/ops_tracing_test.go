//go:build e2e

package realstack

// Traces in a real OTLP receiver: Jaeger v2 (scripts/e2e/jaeger.sh, started
// by run.sh), its OTLP/gRPC port and its query API's /api/traces/<trace id>.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
)

// jaegerAddrs are Jaeger's OTLP/gRPC address and query URL from <state>/env.
func jaegerAddrs(t testing.TB) (otlp, query string) {
	t.Helper()
	kv, err := stack.ReadEnvFile(env.Path())
	must(t, err)
	otlp, query = kv["JAEGER_OTLP_GRPC_ADDR"], kv["JAEGER_QUERY_URL"]
	if otlp == "" || query == "" {
		t.Fatalf("Jaeger is not set up (no JAEGER_OTLP_GRPC_ADDR in %s/env): scripts/e2e/jaeger.sh start (run.sh starts it)", env.StateDir)
	}
	c, err := net.DialTimeout("tcp", otlp, 3*time.Second)
	if err != nil {
		t.Fatalf("Jaeger does not answer on %s (%v): scripts/e2e/jaeger.sh start", otlp, err)
	}
	c.Close()
	return otlp, query
}

// jaegerTrace is /api/traces/<id>'s answer (Jaeger's v1 JSON model).
type jaegerTrace struct {
	Data []struct {
		TraceID string       `json:"traceID"`
		Spans   []jaegerSpan `json:"spans"`
		// Processes by processID.
		Processes map[string]struct {
			ServiceName string `json:"serviceName"`
			Tags        []jaegerTag
		} `json:"processes"`
	} `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64       `json:"startTime"` // µs
	Duration  int64       `json:"duration"`  // µs
	Tags      []jaegerTag `json:"tags"`
	ProcessID string      `json:"processID"`
	Warnings  []string    `json:"warnings"`
	// Service is filled in from the trace's processes.
	Service string `json:"-"`
}

type jaegerTag struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Tag is a tag's value as text ("" when absent).
func (s jaegerSpan) Tag(k string) string {
	for _, tg := range s.Tags {
		if tg.Key == k {
			return fmt.Sprint(tg.Value)
		}
	}
	return ""
}

// Parent is the span's CHILD_OF reference ("" for a root).
func (s jaegerSpan) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (s jaegerSpan) String() string {
	return fmt.Sprintf("%s %q (%s) parent %s", s.SpanID, s.OperationName, s.Service, s.Parent())
}

// fetchTrace gets a trace's spans from Jaeger's query API; nil while it has
// none.
func fetchTrace(t testing.TB, query, traceID string) []jaegerSpan {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(query + "/api/traces/" + traceID)
	if err != nil {
		t.Fatalf("Jaeger query API: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var tr jaegerTrace
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatalf("Jaeger /api/traces/%s: %d, %v", traceID, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("Jaeger /api/traces/%s: %d %v", traceID, resp.StatusCode, tr.Errors)
	}
	var out []jaegerSpan
	for _, d := range tr.Data {
		for _, s := range d.Spans {
			s.Service = d.Processes[s.ProcessID].ServiceName
			out = append(out, s)
		}
	}
	return out
}

// sameID compares hex ids ignoring case and leading zeros.
func sameID(a, b string) bool {
	return strings.TrimLeft(strings.ToLower(a), "0") == strings.TrimLeft(strings.ToLower(b), "0")
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	must(t, err)
	b[0] |= 0x10 // no leading zero digit
	return hex.EncodeToString(b)
}

// TestOpsTracing produces a task with a producer's W3C trace context
// (traceparent, tracestate, baggage headers), runs it on a dispatcher and an
// agent that export OTLP/gRPC to Jaeger, and reads the trace back from
// Jaeger's query API: the dispatcher's and the agent's spans are all in the
// producer's trace, each linked to the right parent up to the producer's
// span, as the README's traces section draws it. The outcome's headers
// carry the trace on (its traceparent names the publish span).
func TestOpsTracing(t *testing.T) {
	otlp, query := jaegerAddrs(t)
	s := PrepareStack(t, StackOptions{Agents: 1})
	otel := []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + otlp,
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_BSP_SCHEDULE_DELAY=100", // export within 0.1 s, not 5 s
		"OTEL_RESOURCE_ATTRIBUTES=deployment.environment=e2e,e2e.test=" + s.Name,
	}
	for _, p := range s.Procs() {
		p.Env = append(p.Env, otel...)
	}
	s.StartDispatcher()
	s.StartAgent(0)
	s.WaitReady(1, 60*time.Second)

	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir))
	content := []byte("traced transfer\n")
	PutFile(t, env.VSFTPD.Path(dir+"/traced.txt"), content)
	tk := Task{TaskID: s.ID("ops-traced"), SrcID: "vsftpd", SrcPath: dir + "/traced.txt", DstID: "local", DstPath: "traced.txt"}
	traceID, producerSpan := randomHex(t, 16), randomHex(t, 8)
	headers := map[string]string{
		"traceparent": "00-" + traceID + "-" + producerSpan + "-01",
		"tracestate":  "ops=e2e",
		"baggage":     "tenant=ops",
	}
	ProduceRaw(t, TasksTopic, -1, Record{Key: tk.TaskID, Value: tk.JSON(), Headers: headers})
	m := s.Outcome(t, tk.TaskID, 60*time.Second)
	s.CheckSuccess(t, m, tk, int64(len(content)))

	// The outcome continues the trace: its traceparent is the publish span.
	var outTrace, publishID string
	if tp := strings.Split(m.Headers["traceparent"], "-"); len(tp) != 4 || tp[0] != "00" || tp[3] != "01" {
		t.Errorf("outcome traceparent %q is not a sampled W3C traceparent", m.Headers["traceparent"])
	} else {
		outTrace, publishID = tp[1], tp[2]
		if outTrace != traceID || publishID == producerSpan {
			t.Errorf("outcome traceparent %q: want trace %s and a span of the dispatcher's", m.Headers["traceparent"], traceID)
		}
	}
	if m.Headers["tracestate"] != "ops=e2e" || m.Headers["baggage"] != "tenant=ops" {
		t.Errorf("outcome headers lost tracestate or baggage: %v", m.Headers)
	}

	// Jaeger gets the spans within a few batches; wait for all of them.
	want := []string{"ftp-tasks receive", "queue wait", "lease", "transfer", "pool checkout", "connect", "commit", "ftp-results publish"}
	var spans []jaegerSpan
	byName := map[string]jaegerSpan{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		spans = fetchTrace(t, query, traceID)
		byName = map[string]jaegerSpan{}
		for _, sp := range spans {
			if _, dup := byName[sp.OperationName]; dup {
				t.Errorf("two %q spans in the trace", sp.OperationName)
			}
			byName[sp.OperationName] = sp
		}
		missing := 0
		for _, n := range want {
			if _, ok := byName[n]; !ok {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s in Jaeger lacks spans after 60 s: has %v, want %v", traceID, spans, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].StartTime < spans[j].StartTime })
	var tree strings.Builder
	for _, sp := range spans {
		fmt.Fprintf(&tree, "\n  %s", sp)
	}
	t.Logf("trace %s (producer span %s) in Jaeger, %d spans:%s", traceID, producerSpan, len(spans), tree.String())

	const dispatcher, agent = "ftp-pooler-dispatcher", "ftp-pooler-agent"
	parents := []struct{ span, service, parent string }{
		{"ftp-tasks receive", dispatcher, ""}, // the producer's span, checked below
		{"queue wait", dispatcher, "ftp-tasks receive"},
		{"lease", dispatcher, "ftp-tasks receive"},
		{"transfer", agent, "lease"},
		{"pool checkout", agent, "transfer"},
		{"connect", agent, "pool checkout"},
		{"commit", agent, "transfer"},
		{"ftp-results publish", dispatcher, "ftp-tasks receive"},
	}
	for _, p := range parents {
		sp := byName[p.span]
		if sp.Service != p.service {
			t.Errorf("span %q comes from service %q, want %q", p.span, sp.Service, p.service)
		}
		if !sameID(sp.TraceID, traceID) {
			t.Errorf("span %q is in trace %s, want the producer's %s", p.span, sp.TraceID, traceID)
		}
		want := producerSpan
		if p.parent != "" {
			want = byName[p.parent].SpanID
		}
		if !sameID(sp.Parent(), want) {
			t.Errorf("span %q has parent %q, want %q (%s)", p.span, sp.Parent(), want, map[bool]string{true: "the producer's span", false: p.parent}[p.parent == ""])
		}
	}
	if !sameID(byName["ftp-results publish"].SpanID, publishID) {
		t.Errorf("the outcome's traceparent names span %s, not the publish span %s", publishID, byName["ftp-results publish"].SpanID)
	}

	// Attributes the README promises.
	rc := byName["ftp-tasks receive"]
	for k, v := range map[string]string{
		"span.kind": "consumer", "messaging.system": "kafka", "messaging.destination.name": TasksTopic,
		"messaging.consumer.group.name": s.Group, "messaging.kafka.message.key": tk.TaskID, "ftp_pooler.task_id": tk.TaskID,
	} {
		if got := rc.Tag(k); got != v {
			t.Errorf("receive span: %s = %q, want %q", k, got, v)
		}
	}
	if rc.Tag("messaging.destination.partition.id") == "" || rc.Tag("messaging.kafka.offset") == "" {
		t.Errorf("receive span lacks partition or offset: %v", rc.Tags)
	}
	if l := byName["lease"]; l.Tag("ftp_pooler.agent_id") != s.AgentID(0) || l.Tag("ftp_pooler.attempt") != "1" || l.Tag("ftp_pooler.task_id") != tk.TaskID {
		t.Errorf("lease span tags: %v", l.Tags)
	}
	if pc := byName["pool checkout"]; pc.Tag("server.address") != env.VSFTPD.Host || pc.Tag("server.port") != fmt.Sprint(env.VSFTPD.Port) {
		t.Errorf("pool checkout span tags: %v", pc.Tags)
	}
	if p := byName["ftp-results publish"]; p.Tag("span.kind") != "producer" || p.Tag("messaging.destination.name") != ResultsTopic {
		t.Errorf("publish span tags: %v", p.Tags)
	}
	if tr := byName["transfer"]; tr.Tag("ftp_pooler.bytes") != fmt.Sprint(len(content)) {
		t.Errorf("transfer span: ftp_pooler.bytes = %q, want %d (tags %v)", tr.Tag("ftp_pooler.bytes"), len(content), tr.Tags)
	}
	// The agent's spans lie within the lease's time.
	l, tr := byName["lease"], byName["transfer"]
	if tr.StartTime < l.StartTime || tr.StartTime+tr.Duration > l.StartTime+l.Duration+int64(time.Second/time.Microsecond) {
		t.Errorf("transfer span [%d, +%d] µs is not within the lease span [%d, +%d]", tr.StartTime, tr.Duration, l.StartTime, l.Duration)
	}
}
