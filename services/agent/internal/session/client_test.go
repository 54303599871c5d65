package session

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/transfer"
)

// scriptedDispatcher is a lease service a test drives message by message.
type scriptedDispatcher struct {
	leasev1.UnimplementedLeaseServiceServer
	streams chan leasev1.LeaseService_ConnectServer
	end     chan struct{} // each value ends one stream
}

func (d *scriptedDispatcher) Connect(stream leasev1.LeaseService_ConnectServer) error {
	d.streams <- stream
	select {
	case <-d.end:
	case <-stream.Context().Done():
	}
	return nil
}

// committingRunner asks to commit and reports success (or the refusal).
type committingRunner struct{}

func (committingRunner) Run(ctx context.Context, job *transfer.Job) *leasev1.Outcome {
	ok, reason, err := job.Commit(ctx, 20)
	if err != nil || !ok {
		return &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorMessage: reason}
	}
	return &leasev1.Outcome{Status: leasev1.Status_STATUS_SUCCEEDED, BytesTransferred: 20, SourceSize: 20, Duration: durationpb.New(time.Millisecond)}
}

func recvKind[T any](t *testing.T, stream leasev1.LeaseService_ConnectServer, get func(*leasev1.ConnectRequest) *T) *T {
	t.Helper()
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for a %T: %v", new(T), err)
		}
		if v := get(m); v != nil {
			return v
		}
	}
}

// The agent's side of a session against a dispatcher that follows the
// protocol: hello with the agent's identity and slots; after the welcome
// a pool report and its credit window; a lease runs through the runner,
// whose commit is answered, and its result comes back under the lease's
// token. When the stream ends the client dials again.
func TestClientSession(t *testing.T) {
	l := bufconn.Listen(1 << 20)
	d := &scriptedDispatcher{streams: make(chan leasev1.LeaseService_ConnectServer, 2), end: make(chan struct{}, 1)}
	srv := grpc.NewServer()
	leasev1.RegisterLeaseServiceServer(srv, d)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pools := &fakePools{open: map[string]int{}, busy: map[string]int{}, limit: map[string]int{}}
	slots := NewSlots(3)
	c := NewClient(Config{AgentID: "agent-1", Version: "test", Hostname: "h", CommitTimeout: 5 * time.Second, MaxBackoff: 100 * time.Millisecond,
		Tracer: noop.NewTracerProvider().Tracer(""), Propagator: propagation.TraceContext{}},
		"bufconn", conn, committingRunner{}, slots, NewQuotas(pools, []string{"ftp"}), metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx, context.Background()) }()

	stream := <-d.streams
	hello := recvKind(t, stream, (*leasev1.ConnectRequest).GetHello)
	if hello.AgentId != "agent-1" || hello.Slots != 3 || hello.Version != "test" {
		t.Fatalf("hello = %v", hello)
	}
	if err := stream.Send(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Welcome{Welcome: &leasev1.Welcome{
		DispatcherId: "d1", HeartbeatInterval: durationpb.New(time.Hour)}}}); err != nil {
		t.Fatal(err)
	}
	recvKind(t, stream, (*leasev1.ConnectRequest).GetPoolReport)
	if w := recvKind(t, stream, (*leasev1.ConnectRequest).GetCredit); w.Window == 0 {
		t.Fatalf("credit window 0 from an agent with 3 free slots")
	}
	lease := &leasev1.Lease{LeaseId: "d1/0/1", Token: 7, Attempt: 1,
		Transfer: &leasev1.TransferSpec{TaskId: "t1", SrcId: "ftp", SrcPath: "/a", DstId: "local", DstPath: "a"}}
	if err := stream.Send(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Lease{Lease: lease}}); err != nil {
		t.Fatal(err)
	}
	commit := recvKind(t, stream, (*leasev1.ConnectRequest).GetCommit)
	if commit.LeaseId != lease.LeaseId || commit.Token != lease.Token || commit.Bytes != 20 {
		t.Fatalf("commit = %v", commit)
	}
	if err := stream.Send(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_CommitDecision{CommitDecision: &leasev1.CommitDecision{
		LeaseId: lease.LeaseId, Token: lease.Token, Approved: true}}}); err != nil {
		t.Fatal(err)
	}
	res := recvKind(t, stream, (*leasev1.ConnectRequest).GetResult)
	if res.LeaseId != lease.LeaseId || res.Token != lease.Token || res.Outcome.GetStatus() != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("result = %v", res)
	}

	// The dispatcher ends the stream: the client connects again.
	d.end <- struct{}{}
	select {
	case again := <-d.streams:
		if h := recvKind(t, again, (*leasev1.ConnectRequest).GetHello); h.AgentId != "agent-1" {
			t.Fatalf("second hello = %v", h)
		}
		if err := again.Send(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Welcome{Welcome: &leasev1.Welcome{
			DispatcherId: "d1", HeartbeatInterval: durationpb.New(time.Hour)}}}); err != nil {
			t.Fatal(err)
		}
		recvKind(t, again, (*leasev1.ConnectRequest).GetPoolReport)
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not reconnect after the stream ended")
	}
	cancel()
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
