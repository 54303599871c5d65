package lease

import (
	"sync"
	"sync/atomic"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// EventKind says what happened to a task.
type EventKind int

// The task events Watch streams.
const (
	EventQueued EventKind = iota + 1
	EventLeased
	EventProgress
	EventCommitted
	EventRetry
	EventSucceeded
	EventFailed
	EventRevoked
)

// Event is a moment in a task's life.
type Event struct {
	Kind                  EventKind
	Time                  time.Time
	TaskID, LeaseID       string
	AgentID               string
	Attempt               uint32
	BytesDone, BytesTotal int64
	BytesPerSecond        float64
	ErrorCode, ErrorMsg   string
}

// Subscription receives events until cancelled. A subscriber that reads too
// slowly misses events rather than slowing the scheduler; Dropped counts them.
type Subscription struct {
	C            chan Event
	taskID       string
	skipProgress bool
	dropped      atomic.Uint64
}

// Dropped counts events this subscriber missed.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Events fans task events out to Watch's subscribers without blocking. It
// owns the subscriptions, under a small lock of its own rather than the
// scheduler's: subscribing never waits for the scheduler, and the scheduler
// emits while it holds its lock.
type Events struct {
	clock Clock
	mu    sync.Mutex
	subs  map[*Subscription]struct{}
	n     atomic.Int32 // len(subs), read without the lock on the hot path
}

func newEvents(clock Clock) *Events {
	return &Events{clock: clock, subs: map[*Subscription]struct{}{}}
}

// Subscribe streams events of one task (taskID) or of all ("").
func (e *Events) Subscribe(taskID string, skipProgress bool) *Subscription {
	sub := &Subscription{C: make(chan Event, 1024), taskID: taskID, skipProgress: skipProgress}
	e.mu.Lock()
	e.subs[sub] = struct{}{}
	e.n.Store(int32(len(e.subs)))
	e.mu.Unlock()
	return sub
}

// Unsubscribe stops a subscription.
func (e *Events) Unsubscribe(sub *Subscription) {
	e.mu.Lock()
	delete(e.subs, sub)
	e.n.Store(int32(len(e.subs)))
	e.mu.Unlock()
}

// emit builds and sends an event only when somebody watches.
func (e *Events) emit(kind EventKind, t *Task, l *lease, o *leasev1.Outcome) {
	if e.n.Load() == 0 {
		return
	}
	ev := Event{Kind: kind, Time: e.clock.Now(), TaskID: t.ID, Attempt: t.attempt, BytesTotal: -1}
	if l != nil {
		ev.LeaseID, ev.AgentID, ev.BytesDone, ev.BytesTotal = l.id, l.sess.agentID, l.bytesDone, l.bytesTotal
		if el := ev.Time.Sub(l.leasedAt).Seconds(); el > 0 {
			ev.BytesPerSecond = float64(l.bytesDone) / el
		}
	}
	switch {
	case o != nil:
		ev.BytesDone = o.BytesTransferred
		if o.Status != leasev1.Status_STATUS_SUCCEEDED {
			ev.ErrorCode, ev.ErrorMsg = failure.Name(o.ErrorCode), o.ErrorMessage
		}
	case kind == EventRetry:
		ev.ErrorCode, ev.ErrorMsg = failure.Name(t.lastCode), t.lastMsg
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for sub := range e.subs {
		if (sub.taskID != "" && sub.taskID != t.ID) || (sub.skipProgress && kind == EventProgress) {
			continue
		}
		select {
		case sub.C <- ev:
		default:
			sub.dropped.Add(1)
		}
	}
}
