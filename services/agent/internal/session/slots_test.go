package session

import (
	"context"
	"testing"
	"time"
)

func windows(ss ...*Session) []uint32 {
	out := make([]uint32, len(ss))
	for i, s := range ss {
		select {
		case w := <-s.window:
			out[i] = w
		default:
			out[i] = 999 // no update sent
		}
	}
	return out
}

func newTestSession() *Session { return &Session{window: make(chan uint32, 1)} }

func TestSlotsSplitBetweenDispatchers(t *testing.T) {
	t.Parallel()
	s := NewSlots(5)
	a, b, c := newTestSession(), newTestSession(), newTestSession()
	s.join(a)
	if got := windows(a); got[0] != 5 {
		t.Fatalf("one dispatcher: window %v, want 5", got)
	}
	s.join(b)
	if got := windows(a, b); got[0]+got[1] != 5 || got[0] != 3 {
		t.Fatalf("two dispatchers: windows %v, want 3 and 2", got)
	}
	s.join(c)
	if got := windows(a, b, c); got[0]+got[1]+got[2] != 5 {
		t.Fatalf("three dispatchers: windows %v must sum to 5", got)
	}
	s.leave(b)
	if got := windows(a, c); got[0] != 3 || got[1] != 2 {
		t.Fatalf("after one left: windows %v, want 3 and 2", got)
	}
	s.Drain()
	if got := windows(a, c); got[0] != 0 || got[1] != 0 {
		t.Fatalf("draining: windows %v, want 0", got)
	}
}

func TestSlotsBoundRunningTransfers(t *testing.T) {
	t.Parallel()
	s := NewSlots(2)
	ctx := context.Background()
	for range 2 {
		if err := s.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := s.Acquire(short); err == nil {
		t.Fatal("a third transfer started on two slots")
	}
	s.Release()
	if err := s.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Busy() != 2 {
		t.Fatalf("busy = %d", s.Busy())
	}
}
