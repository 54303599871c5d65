// Package session is the agent's side of the lease stream: one Client per
// dispatcher keeps a stream open (reconnecting with capped, jittered
// backoff), runs the leases it receives, heartbeats them, asks before
// committing, and reports outcomes.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/capacity"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/transfer"
)

// Runner performs a job.
type Runner interface {
	Run(ctx context.Context, job *transfer.Job) *leasev1.Outcome
}

// Stopper is the agent's shutdown as a client sees it (shutdown.Stopper).
type Stopper interface {
	// Stopping is closed once no new leases may be taken.
	Stopping() <-chan struct{}
	// Abort is closed once jobs still running are to be released.
	Abort() <-chan struct{}
}

// Config describes the agent to dispatchers.
type Config struct {
	AgentID, Version, Hostname string
	CommitTimeout              time.Duration
	MaxBackoff                 time.Duration
	// Tracer and Propagator continue each lease's trace; no-ops when off.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// Client keeps one dispatcher stream alive.
type Client struct {
	cfg     Config
	addr    string
	conn    *grpc.ClientConn
	runner  Runner
	slots   *capacity.Slots
	quotas  *capacity.Quotas
	metrics *metrics.Metrics
	logger  *slog.Logger
	// Observe, if set, is told of each finished job (for metrics).
	Observe func(job *transfer.Job, o *leasev1.Outcome)
}

// NewClient returns a client for the dispatcher at conn.
func NewClient(cfg Config, addr string, conn *grpc.ClientConn, runner Runner, slots *capacity.Slots, quotas *capacity.Quotas, m *metrics.Metrics, logger *slog.Logger) *Client {
	return &Client{cfg: cfg, addr: addr, conn: conn, runner: runner, slots: slots, quotas: quotas, metrics: m,
		logger: logger.With("component", "session", "dispatcher", addr)}
}

// Run keeps a stream open until stop is stopping. Jobs running then may
// finish until stop aborts; then they are released.
func (c *Client) Run(stop Stopper) error {
	backoff := 100 * time.Millisecond
	for !stopping(stop) {
		started := time.Now()
		err := c.session(stop)
		if stopping(stop) {
			return nil
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		wait := time.Duration(float64(backoff) * (0.5 + rand.Float64()))
		c.logger.Warn("dispatcher stream ended; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-stop.Stopping():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
	return nil
}

func stopping(stop Stopper) bool {
	select {
	case <-stop.Stopping():
		return true
	default:
		return false
	}
}

// session runs one stream until it breaks or the agent stops.
func (c *Client) session(stop Stopper) error {
	// The stream outlives the stop: the jobs' results and releases still
	// go out on it.
	streamCtx, cancelStream := context.WithCancel(context.Background())
	defer cancelStream()
	conn, heartbeat, err := c.connect(streamCtx, cancelStream)
	if err != nil {
		return err
	}
	c.metrics.Sessions.Inc()
	defer c.metrics.Sessions.Dec()
	s := c.newStream(conn)
	jobsCtx, stopJobs := context.WithCancelCause(context.Background())
	defer stopJobs(nil)
	sendErr := make(chan error, 1)
	go func() { sendErr <- s.send(streamCtx, heartbeat) }()
	recvErr := make(chan error, 1)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		recvErr <- s.receive(jobsCtx)
	}()

	result := s.await(stop, recvErr, sendErr, stopJobs)
	s.share.Leave()
	s.jobs.wait()
	s.acks.grant.Drop()
	// Let the sender flush final results and releases, then wait for the
	// dispatcher to end its side: cancelling the stream at once could make
	// the dispatcher's Recv return the cancel before the last messages it
	// had buffered (grpc-go prefers it), and those leases would expire
	// instead of being released.
	s.out.finish()
	flushed := time.After(5 * time.Second)
	select {
	case <-s.out.senderGone():
		select {
		case <-recvDone:
		case <-flushed:
		}
	case <-flushed:
	}
	return result
}

// connect opens a stream and says hello; it returns once the dispatcher
// has welcomed the agent, with the heartbeat interval it asks for. cancel
// ends ctx, and with it the stream.
func (c *Client) connect(ctx context.Context, cancel context.CancelFunc) (leasev1.LeaseService_ConnectClient, time.Duration, error) {
	stream, err := leasev1.NewLeaseServiceClient(c.conn).Connect(ctx)
	if err != nil {
		return nil, 0, err
	}
	err = stream.Send(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Hello{Hello: &leasev1.Hello{
		AgentId: c.cfg.AgentID, Version: c.cfg.Version, Slots: uint32(c.slots.Total()), Hostname: c.cfg.Hostname,
	}}})
	if err != nil {
		return nil, 0, err
	}
	// A dispatcher that accepts the stream but never answers must not
	// hold the agent: give up on it after a while and reconnect.
	noWelcome := time.AfterFunc(10*time.Second, cancel)
	welcome, err := recvWelcome(stream)
	noWelcome.Stop()
	if err != nil {
		return nil, 0, err
	}
	heartbeat := welcome.HeartbeatInterval.AsDuration()
	c.logger.Info("connected to dispatcher", "dispatcher_id", welcome.DispatcherId, "heartbeat", heartbeat)
	return stream, heartbeat, nil
}

func recvWelcome(stream leasev1.LeaseService_ConnectClient) (*leasev1.Welcome, error) {
	msg, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	w := msg.GetWelcome()
	if w == nil {
		return nil, fmt.Errorf("dispatcher sent %T before welcome", msg.Message)
	}
	if w.HeartbeatInterval.AsDuration() <= 0 {
		return nil, errors.New("dispatcher sent a welcome without a heartbeat interval")
	}
	return w, nil
}
