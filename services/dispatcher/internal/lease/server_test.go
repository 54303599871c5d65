package lease

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// streamTo serves h's scheduler on an in-memory listener and opens one
// lease stream to it.
func streamTo(t *testing.T, h *harness) leasev1.LeaseService_ConnectClient {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	leasev1.RegisterLeaseServiceServer(srv, NewServer(h.sched, slog.New(slog.NewTextHandler(io.Discard, nil))))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	stream, err := leasev1.NewLeaseServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

func send(t *testing.T, s leasev1.LeaseService_ConnectClient, m *leasev1.ConnectRequest) {
	t.Helper()
	if err := s.Send(m); err != nil {
		t.Fatal(err)
	}
}

// The handshake refuses a session that does not start with a well-formed
// hello, with InvalidArgument and a message that says what is wrong.
func TestStreamHandshakeRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		first *leasev1.ConnectRequest
		want  string
	}{
		{"credit first", &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Credit{Credit: &leasev1.Credit{Window: 1}}}, "the first message of a session must be hello"},
		{"no agent id", &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Hello{Hello: &leasev1.Hello{Slots: 1}}}, "hello.agent_id must not be empty"},
		{"no slots", &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Hello{Hello: &leasev1.Hello{AgentId: "a"}}}, "hello.slots must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := streamTo(t, newHarness(t, 3))
			send(t, s, tc.first)
			_, err := s.Recv()
			if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.want {
				t.Fatalf("got %v, want InvalidArgument %q", err, tc.want)
			}
		})
	}
}

// A session over a real stream: welcome first, a lease once the agent
// gives credit, its result finishes the task, a stale result does not end
// the stream, and a second hello does.
func TestStreamSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3)
	s := streamTo(t, h)
	send(t, s, &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Hello{Hello: &leasev1.Hello{AgentId: "a1", Slots: 2}}})
	m, err := s.Recv()
	if err != nil || m.GetWelcome() == nil {
		t.Fatalf("first message: %v, %v; want welcome", m, err)
	}
	send(t, s, &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_PoolReport{PoolReport: &leasev1.PoolReport{}}})
	send(t, s, &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Credit{Credit: &leasev1.Credit{Window: 2}}})
	h.enqueue(1)
	var l *leasev1.Lease
	for l == nil {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("waiting for the lease: %v", err)
		}
		l = m.GetLease()
	}
	// A stale token: refused, logged, and the stream goes on.
	send(t, s, &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Result{Result: &leasev1.Result{LeaseId: l.LeaseId, Token: l.Token + 7, Outcome: success()}}})
	send(t, s, &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Result{Result: &leasev1.Result{LeaseId: l.LeaseId, Token: l.Token, Outcome: success()}}})
	deadline := time.Now().Add(5 * time.Second)
	for len(h.done()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the result sent on the stream did not finish the task")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if f := h.done(); len(f) != 1 || f[0].Task.ID != "t1" || f[0].Outcome.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("finished: %+v", f)
	}
	send(t, s, &leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Hello{Hello: &leasev1.Hello{AgentId: "a1", Slots: 2}}})
	for {
		_, err := s.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "hello may only be sent once per session" {
			t.Fatalf("second hello: %v", err)
		}
		break
	}
	if n := h.sched.Admin().AgentCount(); n != 0 {
		t.Fatalf("%d sessions after the stream ended", n)
	}
}
