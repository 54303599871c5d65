package lease

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// Session is one agent stream. Its fields are guarded by the scheduler's
// mutex, except out, which has its own.
type Session struct {
	id          uint64
	agentID     string
	version     string
	hostname    string
	addr        string
	slots       uint32
	window      uint32
	draining    bool
	connectedAt time.Time
	leases      map[string]*lease
	out         *outbox
	// Connection accounting, per FTP endpoint id.
	quota    map[string]uint32 // granted by this dispatcher
	busy     map[string]uint32 // units of quota this dispatcher's leases on the agent use (LeasesPerConnection to a connection)
	pool     map[string]*leasev1.EndpointPool
	quotaSeq uint64
	reclaims []reclaim
	// reported is set by the agent's first pool report: until then what it
	// holds under other dispatchers' quotas is unknown.
	reported bool
	detached bool
}

// AgentID is the agent's identifier.
func (s *Session) AgentID() string { return s.agentID }

type lease struct {
	id         string
	token      uint64
	task       *Task
	sess       *Session
	leasedAt   time.Time
	heartbeat  time.Time
	expires    time.Time
	bytesDone  int64
	bytesTotal int64
	committed  bool
	// committedBytes is the size the approved commit verified.
	committedBytes int64
	// probe marks a lease sent to test an endpoint whose breaker is half-open.
	probe bool
	// span traces the delivery, when tracing is on.
	span trace.Span
}

// outbox queues messages for one agent. Pushing never blocks, so the
// scheduler can push under its lock; the stream's sender goroutine takes
// everything queued at once. Its length is bounded by the credit window
// plus a few control messages per lease.
type outbox struct {
	mu     sync.Mutex
	msgs   []*leasev1.ConnectResponse
	wake   chan struct{}
	closed bool
}

func newOutbox() *outbox { return &outbox{wake: make(chan struct{}, 1)} }

func (o *outbox) push(m *leasev1.ConnectResponse) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.msgs = append(o.msgs, m)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.msgs = nil
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take waits for queued messages and returns all of them, or nil once the
// outbox is closed or ctx ends.
func (o *outbox) take(ctx context.Context, buf []*leasev1.ConnectResponse) []*leasev1.ConnectResponse {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return nil
		}
		if len(o.msgs) > 0 {
			buf = append(buf[:0], o.msgs...)
			clear(o.msgs)
			o.msgs = o.msgs[:0]
			o.mu.Unlock()
			return buf
		}
		o.mu.Unlock()
		select {
		case <-o.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// takesWork reports whether the session may be given another lease: not
// draining, and with room in its credit window.
func (sess *Session) takesWork() bool {
	return !sess.draining && uint32(len(sess.leases)) < sess.window
}
