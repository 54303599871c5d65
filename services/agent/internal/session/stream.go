package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/capacity"
)

// stream is one connected lease stream: a sender that alone writes to it,
// a receiver that hands the dispatcher's messages on, and the jobs and
// commits in flight on it.
type stream struct {
	conn    leasev1.LeaseService_ConnectClient
	out     *outbox
	share   *capacity.Share
	acks    *quotaAck
	jobs    *jobs
	commits *commits
	logger  *slog.Logger
}

// newStream takes the stream's share of the slots at once: its first
// credit window goes out after the first pool report.
func (c *Client) newStream(conn leasev1.LeaseService_ConnectClient) *stream {
	out := newOutbox()
	commits := newCommits(out, c.cfg.CommitTimeout, c.metrics)
	return &stream{
		conn:    conn,
		out:     out,
		share:   c.slots.Join(),
		acks:    &quotaAck{grant: c.quotas.Grant()},
		jobs:    c.newJobs(out, commits),
		commits: commits,
		logger:  c.logger,
	}
}

// await waits for the stream to break or the agent to stop, and stops the
// jobs to match: a broken stream abandons them (the dispatcher has taken
// their leases back); a stop lets them finish until it aborts, then
// releases what is left. It returns why the stream broke.
func (s *stream) await(stop Stopper, recvErr, sendErr <-chan error, stopJobs context.CancelCauseFunc) error {
	select {
	case err := <-recvErr:
		stopJobs(errStreamLost)
		return err
	case err := <-sendErr:
		stopJobs(errStreamLost)
		return err
	case <-stop.Stopping():
	}
	// The agent's windows are already zero (Slots.Drain): no new leases.
	s.logger.Info("draining", "running", s.jobs.running())
	select {
	case <-s.jobs.idle():
	case <-stop.Abort():
		stopJobs(errDraining)
	case err := <-recvErr:
		stopJobs(errStreamLost)
		return err
	}
	return nil
}

// send is the only goroutine writing to the stream: queued messages, window
// changes, and a heartbeat for every job each interval.
func (s *stream) send(ctx context.Context, heartbeat time.Duration) error {
	defer s.out.senderDone()
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	// The dispatcher grants no connections before it knows what this agent
	// holds under other dispatchers' quotas.
	if err := s.conn.Send(s.acks.report(s.acks.ackable())); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case w := <-s.share.Window():
			if err := s.conn.Send(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Credit{Credit: &leasev1.Credit{Window: w}}}); err != nil {
				return err
			}
		case m := <-s.out.queue:
			if m == nil {
				return s.conn.CloseSend()
			}
			if err := s.conn.Send(m); err != nil {
				return err
			}
		case <-t.C:
			if err := s.heartbeat(); err != nil {
				return err
			}
		}
	}
}

// heartbeat reports every job's progress, then the pools: their states
// help the dispatcher pick agents with idle connections, and the last
// quota seq the pools are within rides along.
func (s *stream) heartbeat() error {
	for _, p := range s.jobs.progress() {
		if err := s.conn.Send(p); err != nil {
			return err
		}
	}
	return s.conn.Send(s.acks.report(s.acks.ackable()))
}

// receive handles the dispatcher's messages until the stream ends.
func (s *stream) receive(jobsCtx context.Context) error {
	for {
		msg, err := s.conn.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("dispatcher closed the stream")
		}
		if err != nil {
			return err
		}
		switch m := msg.Message.(type) {
		case *leasev1.ConnectResponse_Lease:
			s.jobs.start(jobsCtx, m.Lease)
		case *leasev1.ConnectResponse_Cancel:
			s.jobs.cancel(m.Cancel)
		case *leasev1.ConnectResponse_CommitDecision:
			s.commits.decide(m.CommitDecision)
		case *leasev1.ConnectResponse_Quota:
			if seq, now := s.acks.received(m.Quota); now {
				s.out.send(s.acks.report(seq))
			} // else the next heartbeat acknowledges it, once busy connections above it closed
		case *leasev1.ConnectResponse_Drain:
			s.logger.Info("dispatcher is draining; no new leases from it", "grace_period", m.Drain.GracePeriod.AsDuration())
		case *leasev1.ConnectResponse_Welcome:
			return errors.New("dispatcher sent a second welcome")
		}
	}
}
