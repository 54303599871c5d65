package lease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// Server serves the lease stream.
type Server struct {
	leasev1.UnimplementedLeaseServiceServer
	sched  *Scheduler
	logger *slog.Logger
}

// NewServer returns the LeaseService implementation backed by sched.
func NewServer(sched *Scheduler, logger *slog.Logger) *Server {
	return &Server{sched: sched, logger: logger.With("component", "lease_server")}
}

// Connect runs one agent session: a receive loop on this goroutine feeding
// the scheduler, and a send loop draining the session's outbox.
func (srv *Server) Connect(stream leasev1.LeaseService_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message of a session must be hello")
	}
	if hello.AgentId == "" {
		return status.Error(codes.InvalidArgument, "hello.agent_id must not be empty")
	}
	if hello.Slots == 0 {
		return status.Error(codes.InvalidArgument, "hello.slots must be positive")
	}
	addr := ""
	if p, ok := peer.FromContext(stream.Context()); ok {
		addr = p.Addr.String()
	}
	sess := srv.sched.Attach(hello, addr)

	// Sending runs here; receiving on its own goroutine, because a blocked
	// Recv only returns once this handler has returned and ended the RPC.
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	recvDone := make(chan error, 1)
	go func() {
		recvDone <- srv.receive(stream, sess)
		cancel()
	}()
	sendErr := srv.send(ctx, stream, sess)
	cancel()
	var recvErr error
	select {
	case recvErr = <-recvDone:
	default: // the session was closed by the dispatcher
	}
	cause := recvErr
	if cause == nil {
		cause = sendErr
	}
	srv.sched.Detach(sess, cause)
	if recvErr == nil || errors.Is(recvErr, context.Canceled) || status.Code(recvErr) == codes.Canceled {
		return nil
	}
	srv.logger.Debug("agent stream ended", "agent_id", sess.agentID, "error", recvErr)
	return recvErr
}

func (srv *Server) send(ctx context.Context, stream leasev1.LeaseService_ConnectServer, sess *Session) error {
	var buf []*leasev1.ConnectResponse
	for {
		buf = sess.out.take(ctx, buf)
		if buf == nil {
			return ctx.Err()
		}
		for _, m := range buf {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

func (srv *Server) receive(stream leasev1.LeaseService_ConnectServer, sess *Session) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch m := req.Message.(type) {
		case *leasev1.ConnectRequest_Credit:
			srv.sched.SetWindow(sess, m.Credit.Window)
		case *leasev1.ConnectRequest_Progress:
			srv.refused(sess, srv.sched.Progress(sess, m.Progress))
		case *leasev1.ConnectRequest_Result:
			srv.refused(sess, srv.sched.Result(sess, m.Result))
		case *leasev1.ConnectRequest_Release:
			srv.refused(sess, srv.sched.Release(sess, m.Release))
		case *leasev1.ConnectRequest_Commit:
			d, err := srv.sched.Commit(sess, m.Commit)
			srv.refused(sess, err)
			sess.out.push(&leasev1.ConnectResponse{Message: &leasev1.ConnectResponse_CommitDecision{CommitDecision: d}})
		case *leasev1.ConnectRequest_PoolReport:
			srv.sched.PoolReport(sess, m.PoolReport)
		case *leasev1.ConnectRequest_Hello:
			return status.Error(codes.InvalidArgument, "hello may only be sent once per session")
		default:
			return status.Errorf(codes.InvalidArgument, "unknown message %T", m)
		}
	}
}

// Run ticks the scheduler until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	// Often enough that backoff and expiry are precise to a fraction of a
	// heartbeat, rarely enough to cost nothing.
	t := time.NewTicker(min(max(s.cfg.Heartbeat/10, 10*time.Millisecond), 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Tick()
		}
	}
}

// refused logs an agent's message about a lease it does not hold: after a
// lease expired or moved on, the agent of the old delivery is not told
// until its next message, and that one is dropped here.
func (srv *Server) refused(sess *Session, err error) {
	var r *RefusedError
	if errors.As(err, &r) {
		srv.logger.Warn("refused message for a lease the agent does not hold", "kind", r.Kind, "lease_id", r.LeaseID,
			"token", r.Token, "current_token", r.Current, "reason", r.Err.Error(), "agent_id", sess.agentID)
	}
}
