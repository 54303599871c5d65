package lease

import (
	"slices"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// TaskState is a task's state as operators see it.
type TaskState int

// The states shown by the admin API.
const (
	TaskQueued TaskState = iota + 1
	TaskLeased
	TaskDone
)

func stateOf(t *Task) TaskState {
	switch t.state {
	case stateQueued, stateDelayed:
		return TaskQueued
	case stateLeased:
		return TaskLeased
	}
	return TaskDone
}

// AgentView is a session as the admin API shows it.
type AgentView struct {
	AgentID, Address, Version, Hostname string
	Slots, Window, InFlight             uint32
	ConnectedSince                      time.Time
	Draining                            bool
}

// Agents lists the sessions, oldest first.
func (a *Admin) Agents() []AgentView {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AgentView, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, AgentView{
			AgentID: sess.agentID, Address: sess.addr, Version: sess.version, Hostname: sess.hostname,
			Slots: sess.slots, Window: sess.window, InFlight: uint32(len(sess.leases)),
			ConnectedSince: sess.connectedAt, Draining: sess.draining,
		})
	}
	return out
}

// AgentCount reports connected sessions.
func (a *Admin) AgentCount() int {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return len(a.s.sessions)
}

// LeaseView is a lease as the admin API shows it.
type LeaseView struct {
	LeaseID, TaskID, AgentID string
	Token                    uint64
	Attempt                  uint32
	BytesDone, BytesTotal    int64
	LeasedAt                 time.Time
	BytesPerSecond           float64
	Spec                     *leasev1.TransferSpec
}

// Leases lists the leases in flight, oldest first.
func (a *Admin) Leases() []LeaseView {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	out := make([]LeaseView, 0, len(s.ledger.leases))
	for _, l := range s.ledger.leases {
		v := LeaseView{
			LeaseID: l.id, TaskID: l.task.ID, AgentID: l.sess.agentID, Token: l.token, Attempt: l.task.attempt,
			BytesDone: l.bytesDone, BytesTotal: l.bytesTotal, LeasedAt: l.leasedAt, Spec: l.task.Spec,
		}
		if el := now.Sub(l.leasedAt).Seconds(); el > 0 {
			v.BytesPerSecond = float64(l.bytesDone) / el
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b LeaseView) int { return a.LeasedAt.Compare(b.LeasedAt) })
	return out
}

// TaskView is everything known about one task.
type TaskView struct {
	ID                    string
	State                 TaskState
	Key                   Key
	Attempt               uint32
	AgentID               string
	BytesDone, BytesTotal int64
	LastCode              string
	LastMessage           string
	OutcomeStatus         string
	ReceivedAt            time.Time
	Spec                  *leasev1.TransferSpec
}

// TaskInfo finds a task by id among the live and the recently finished.
func (a *Admin) TaskInfo(id string) (TaskView, bool) {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.ledger.byID[id]; t != nil {
		v := TaskView{ID: t.ID, State: stateOf(t), Key: t.Key, Attempt: t.attempt, BytesTotal: -1,
			ReceivedAt: t.ReceivedAt, Spec: t.Spec, LastMessage: t.lastMsg}
		if t.lastCode != 0 {
			v.LastCode = failure.Name(t.lastCode)
		}
		if l := t.lease; l != nil {
			v.AgentID, v.BytesDone, v.BytesTotal = l.sess.agentID, l.bytesDone, l.bytesTotal
		}
		return v, true
	}
	return s.ledger.recent.get(id)
}

// OldestQueuedAge is the age of the oldest task waiting for an agent.
func (a *Admin) OldestQueuedAge() time.Duration {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest time.Time
	s.ledger.queue.each(func(t *Task) {
		if oldest.IsZero() || t.ReceivedAt.Before(oldest) {
			oldest = t.ReceivedAt
		}
	})
	if oldest.IsZero() {
		return 0
	}
	return s.clock.Now().Sub(oldest)
}

// recentTasks remembers the last finished tasks for GetTask.
type recentTasks struct {
	ring []recentSlot
	next int
	seq  uint64
	byID map[string]recentEntry
}

type recentSlot struct {
	id  string
	seq uint64
}

type recentEntry struct {
	view TaskView
	seq  uint64
}

func newRecentTasks(n int) *recentTasks {
	return &recentTasks{ring: make([]recentSlot, n), byID: map[string]recentEntry{}}
}

func (r *recentTasks) add(t *Task, o *leasev1.Outcome, agentID string) {
	// Evict the oldest slot, unless its id was finished again since.
	if old := r.ring[r.next]; old.id != "" && r.byID[old.id].seq == old.seq {
		delete(r.byID, old.id)
	}
	r.seq++
	r.ring[r.next] = recentSlot{id: t.ID, seq: r.seq}
	r.next = (r.next + 1) % len(r.ring)
	v := TaskView{ID: t.ID, State: TaskDone, Key: t.Key, Attempt: t.attempt, AgentID: agentID,
		BytesDone: o.BytesTransferred, BytesTotal: o.SourceSize, ReceivedAt: t.ReceivedAt, Spec: t.Spec}
	if o.Status == leasev1.Status_STATUS_SUCCEEDED {
		v.OutcomeStatus = "success"
	} else {
		v.OutcomeStatus = "failed"
		v.LastCode, v.LastMessage = failure.Name(o.ErrorCode), o.ErrorMessage
	}
	r.byID[t.ID] = recentEntry{view: v, seq: r.seq}
}

func (r *recentTasks) get(id string) (TaskView, bool) {
	e, ok := r.byID[id]
	return e.view, ok
}
