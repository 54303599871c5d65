// Package capacity shares what one agent can take on between its
// dispatcher streams: its transfer slots, and the FTP connections the
// dispatchers' quotas allow.
package capacity

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
	shares   []*Share
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

// Join gives a newly connected stream its share, moving the others'.
func (s *Slots) Join() *Share {
	sh := &Share{slots: s, window: make(chan uint32, 1)}
	s.mu.Lock()
	s.shares = append(s.shares, sh)
	s.rebalanceLocked()
	s.mu.Unlock()
	return sh
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
	return len(s.shares)
}

func (s *Slots) leave(sh *Share) {
	s.mu.Lock()
	for i, x := range s.shares {
		if x == sh {
			s.shares = append(s.shares[:i], s.shares[i+1:]...)
			break
		}
	}
	s.rebalanceLocked()
	s.mu.Unlock()
}

func (s *Slots) rebalanceLocked() {
	k := len(s.shares)
	for i, sh := range s.shares {
		w := 0
		if !s.draining {
			w = s.total / k
			if i < s.total%k {
				w++
			}
		}
		sh.set(uint32(w))
	}
}

// Share is one stream's part of the slots: the credit window it offers
// its dispatcher.
type Share struct {
	slots  *Slots
	window chan uint32 // the newest window not yet taken
}

// Window delivers the stream's window whenever it changes; a window not
// taken before the next change is replaced by it.
func (sh *Share) Window() <-chan uint32 { return sh.window }

// Leave gives the share back when its stream ends.
func (sh *Share) Leave() { sh.slots.leave(sh) }

// set runs under Slots.mu, so it is the only writer: once the stale
// window is taken out, the send cannot block.
func (sh *Share) set(w uint32) {
	select {
	case <-sh.window:
	default:
	}
	sh.window <- w
}
