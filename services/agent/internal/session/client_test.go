package session

import (
	"context"
	"errors"
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
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/capacity"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/shutdown"
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

// hangUp ends the stream once the agent closed its side (err is io.EOF),
// as the real dispatcher does: the agent waits for that before it cancels.
func (d *scriptedDispatcher) hangUp(err error) {
	if errors.Is(err, io.EOF) {
		select {
		case d.end <- struct{}{}:
		default:
		}
	}
}

// noPools has no connections open.
type noPools struct{}

func (noPools) SetLimit(string, int)            {}
func (noPools) Report() []*leasev1.EndpointPool { return nil }

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

// newTestClient is a client with 3 slots of a dispatcher the test scripts.
func newTestClient(t *testing.T, runner Runner) (*Client, *scriptedDispatcher) {
	l := bufconn.Listen(1 << 20)
	d := &scriptedDispatcher{streams: make(chan leasev1.LeaseService_ConnectServer, 2), end: make(chan struct{}, 1)}
	srv := grpc.NewServer()
	leasev1.RegisterLeaseServiceServer(srv, d)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := NewClient(Config{AgentID: "agent-1", Version: "test", Hostname: "h", CommitTimeout: 5 * time.Second, MaxBackoff: 100 * time.Millisecond,
		Tracer: noop.NewTracerProvider().Tracer(""), Propagator: propagation.TraceContext{}},
		"bufconn", conn, runner, capacity.NewSlots(3), capacity.NewQuotas(noPools{}, []string{"ftp"}), metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	return c, d
}

// The agent's side of a session against a dispatcher that follows the
// protocol: hello with the agent's identity and slots; after the welcome
// a pool report and its credit window; a lease runs through the runner,
// whose commit is answered, and its result comes back under the lease's
// token. When the stream ends the client dials again.
func TestClientSession(t *testing.T) {
	c, d := newTestClient(t, committingRunner{})
	stop := shutdown.New(time.Hour)
	defer stop.Now()
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(stop) }()

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
		go func() {
			for {
				if _, err := again.Recv(); err != nil {
					d.hangUp(err)
					return
				}
			}
		}()
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not reconnect after the stream ended")
	}
	stop.Graceful()
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Run did not return after a graceful stop with no job running (it waits for the dispatcher to end the stream, which it did)")
	}
}

// gatedRunner runs until the test lets it finish (then it commits) or its
// job is stopped.
type gatedRunner struct{ started, finish chan struct{} }

func (g gatedRunner) Run(ctx context.Context, job *transfer.Job) *leasev1.Outcome {
	close(g.started)
	select {
	case <-g.finish:
		return committingRunner{}.Run(ctx, job)
	case <-ctx.Done():
		return &leasev1.Outcome{Status: leasev1.Status_STATUS_FAILED, ErrorMessage: context.Cause(ctx).Error()}
	}
}

// record reads everything the agent sends, from a goroutine always
// waiting in Recv: a message the agent sends just before it cancels the
// stream is lost to a reader that is not (grpc-go's server stream prefers
// the cancel to buffered messages).
func record(d *scriptedDispatcher, stream leasev1.LeaseService_ConnectServer) <-chan *leasev1.ConnectRequest {
	msgs := make(chan *leasev1.ConnectRequest, 64)
	go func() {
		defer close(msgs)
		for {
			m, err := stream.Recv()
			if err != nil {
				d.hangUp(err)
				return
			}
			msgs <- m
		}
	}()
	return msgs
}

func nextKind[T any](t *testing.T, msgs <-chan *leasev1.ConnectRequest, get func(*leasev1.ConnectRequest) *T) *T {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("the stream ended before a %T", new(T))
			}
			if v := get(m); v != nil {
				return v
			}
		case <-timeout:
			t.Fatalf("no %T", new(T))
		}
	}
}

// A stop with a lease in flight: a graceful one keeps the stream up while
// the job finishes and commits; once the stopper aborts (drain timeout, or
// Now) the job is released, not failed. Either way Run then returns.
func TestClientStops(t *testing.T) {
	tests := []struct {
		name         string
		drainTimeout time.Duration
		stop         func(s *shutdown.Stopper, finish chan struct{})
		committed    bool
	}{
		{"graceful: the job finishes", time.Hour, func(s *shutdown.Stopper, finish chan struct{}) {
			s.Graceful()
			close(finish)
		}, true},
		{"graceful until the drain timeout", 50 * time.Millisecond, func(s *shutdown.Stopper, _ chan struct{}) { s.Graceful() }, false},
		{"graceful then now", time.Hour, func(s *shutdown.Stopper, _ chan struct{}) { s.Graceful(); s.Now() }, false},
		{"now", time.Hour, func(s *shutdown.Stopper, _ chan struct{}) { s.Now() }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runner := gatedRunner{started: make(chan struct{}), finish: make(chan struct{})}
			c, d := newTestClient(t, runner)
			stop := shutdown.New(tc.drainTimeout)
			defer stop.Now()
			runDone := make(chan error, 1)
			go func() { runDone <- c.Run(stop) }()
			stream := <-d.streams
			msgs := record(d, stream)
			nextKind(t, msgs, (*leasev1.ConnectRequest).GetHello)
			if err := stream.Send(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Welcome{Welcome: &leasev1.Welcome{
				DispatcherId: "d1", HeartbeatInterval: durationpb.New(time.Hour)}}}); err != nil {
				t.Fatal(err)
			}
			// Once the stream is quiet the recorder waits in Recv for
			// what the stop makes the agent send.
			nextKind(t, msgs, (*leasev1.ConnectRequest).GetPoolReport)
			nextKind(t, msgs, (*leasev1.ConnectRequest).GetCredit)
			lease := &leasev1.Lease{LeaseId: "d1/0/1", Token: 3, Transfer: &leasev1.TransferSpec{TaskId: "t1", SrcId: "ftp", DstId: "local"}}
			if err := stream.Send(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_Lease{Lease: lease}}); err != nil {
				t.Fatal(err)
			}
			<-runner.started
			tc.stop(stop, runner.finish)
			if tc.committed {
				commit := nextKind(t, msgs, (*leasev1.ConnectRequest).GetCommit)
				if err := stream.Send(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_CommitDecision{CommitDecision: &leasev1.CommitDecision{
					LeaseId: commit.LeaseId, Token: commit.Token, Approved: true}}}); err != nil {
					t.Fatal(err)
				}
				if res := nextKind(t, msgs, (*leasev1.ConnectRequest).GetResult); res.Outcome.GetStatus() != leasev1.Status_STATUS_SUCCEEDED {
					t.Fatalf("result after a graceful stop = %v", res)
				}
			} else {
				rel := nextKind(t, msgs, (*leasev1.ConnectRequest).GetRelease)
				if rel.LeaseId != lease.LeaseId || rel.Token != lease.Token || rel.Reason != errDraining.Error() {
					t.Fatalf("release = %v", rel)
				}
			}
			select {
			case err := <-runDone:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after the stop")
			}
		})
	}
}
