package integration

import (
	"context"
	"encoding/hex"
	"net"
	"path/filepath"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// otlpReceiver is an OTLP/gRPC trace endpoint collecting what it is sent.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	service string
	span    *tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				r.spans = append(r.spans, receivedSpan{service: service, span: sp})
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) trace(id string) []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receivedSpan
	for _, s := range r.spans {
		if hex.EncodeToString(s.span.TraceId) == id {
			out = append(out, s)
		}
	}
	return out
}

// TestTraceFollowsTheTask produces a task inside a trace and checks that
// the dispatcher's and the agent's spans arrive over OTLP, in that trace,
// with the right parents, and that the outcome carries the trace on.
func TestTraceFollowsTheTask(t *testing.T) {
	recv := &otlpReceiver{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, recv)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+l.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	s := newStack(t, stackOptions{agents: 1})
	writeFile(t, filepath.Join(s.ftpA.Root, "traced.txt"), "traced")
	const traceID, producerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	s.produce("traced-1", []byte(`{"task_id":"traced-1","src_id":"remote-ftp","src_path":"/traced.txt","dst_id":"local","dst_path":"traced.txt"}`),
		map[string]string{"traceparent": "00-" + traceID + "-" + producerSpan + "-01"})
	m := s.outcome("traced-1")
	if m.Fields["status"] != "success" {
		t.Fatalf("outcome: %s", m.Value)
	}
	s.stop() // flushes every provider

	byName := map[string]receivedSpan{}
	for _, sp := range recv.trace(traceID) {
		byName[sp.span.Name] = sp
	}
	parentOf := func(name string) string { return hex.EncodeToString(byName[name].span.ParentSpanId) }
	idOf := func(name string) string { return hex.EncodeToString(byName[name].span.SpanId) }
	want := []struct{ name, service, parent string }{
		{"ftp-tasks receive", "ftp-pooler-dispatcher", producerSpan},
		{"queue wait", "ftp-pooler-dispatcher", "ftp-tasks receive"},
		{"lease", "ftp-pooler-dispatcher", "ftp-tasks receive"},
		{"transfer", "ftp-pooler-agent", "lease"},
		{"pool checkout", "ftp-pooler-agent", "transfer"},
		{"connect", "ftp-pooler-agent", "pool checkout"},
		{"commit", "ftp-pooler-agent", "transfer"},
		{"ftp-results publish", "ftp-pooler-dispatcher", "ftp-tasks receive"},
	}
	for _, w := range want {
		sp, ok := byName[w.name]
		if !ok {
			t.Errorf("span %q missing from the trace (have %d spans)", w.name, len(byName))
			continue
		}
		if sp.service != w.service {
			t.Errorf("span %q from service %q, want %q", w.name, sp.service, w.service)
		}
		wantParent := w.parent
		if _, isSpan := byName[w.parent]; isSpan {
			wantParent = idOf(w.parent)
		}
		if got := parentOf(w.name); got != wantParent {
			t.Errorf("span %q has parent %s, want %s (%s)", w.name, got, wantParent, w.parent)
		}
	}
	if attrs := byName["ftp-tasks receive"].span.GetAttributes(); !hasAttr(attrs, "messaging.system", "kafka") || !hasAttr(attrs, "messaging.destination.name", "ftp-tasks") {
		t.Errorf("receive span lacks messaging attributes: %v", attrs)
	}
	if attrs := byName["connect"].span.GetAttributes(); !hasAttr(attrs, "server.address", "127.0.0.1") {
		t.Errorf("connect span lacks network attributes: %v", attrs)
	}
	if got, want := m.Headers["traceparent"], "00-"+traceID+"-"+idOf("ftp-results publish")+"-01"; got != want {
		t.Errorf("outcome traceparent %q, want %q (the publish span)", got, want)
	}
}

func hasAttr(attrs []*commonpb.KeyValue, key, value string) bool {
	for _, kv := range attrs {
		if kv.Key == key && kv.Value.GetStringValue() == value {
			return true
		}
	}
	return false
}
