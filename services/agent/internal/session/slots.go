package session

import (
	"context"
	"sync"
)

// Slots shares an agent's transfer slots between its dispatcher streams.
// Each connected stream's credit window is an equal share of the total
// (dispatchers with nothing to do leave theirs idle; shares move as streams
// come and go). Running transfers are bounded by the total whatever the
// windows: a lease that arrives while shares are moving waits for a slot.
type Slots struct {
	total int
	sem   chan struct{}

	mu       sync.Mutex
	sessions []*Session
	draining bool
}

// NewSlots returns total slots.
func NewSlots(total int) *Slots {
	return &Slots{total: total, sem: make(chan struct{}, total)}
}

// Total is the number of slots.
func (s *Slots) Total() int { return s.total }

// Busy is the number of slots in use.
func (s *Slots) Busy() int { return len(s.sem) }

// Acquire takes a slot, waiting while all are busy.
func (s *Slots) Acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Release gives a slot back.
func (s *Slots) Release() { <-s.sem }

func (s *Slots) join(sess *Session) {
	s.mu.Lock()
	s.sessions = append(s.sessions, sess)
	s.rebalanceLocked()
	s.mu.Unlock()
}

func (s *Slots) leave(sess *Session) {
	s.mu.Lock()
	for i, x := range s.sessions {
		if x == sess {
			s.sessions = append(s.sessions[:i], s.sessions[i+1:]...)
			break
		}
	}
	s.rebalanceLocked()
	s.mu.Unlock()
}

// Drain sets every window to zero: no new leases from anyone.
func (s *Slots) Drain() {
	s.mu.Lock()
	s.draining = true
	s.rebalanceLocked()
	s.mu.Unlock()
}

// Connected reports how many streams are up.
func (s *Slots) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Slots) rebalanceLocked() {
	k := len(s.sessions)
	for i, sess := range s.sessions {
		w := 0
		if !s.draining {
			w = s.total / k
			if i < s.total%k {
				w++
			}
		}
		sess.setWindow(uint32(w))
	}
}
