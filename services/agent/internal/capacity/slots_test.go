package capacity

import (
	"context"
	"testing"
	"time"
)

// windows takes each share's newest window; 999 where none was sent.
func windows(shares ...*Share) []uint32 {
	out := make([]uint32, len(shares))
	for i, sh := range shares {
		select {
		case w := <-sh.Window():
			out[i] = w
		default:
			out[i] = 999
		}
	}
	return out
}

func TestSlotsSplitBetweenDispatchers(t *testing.T) {
	t.Parallel()
	s := NewSlots(5)
	a := s.Join()
	if got := windows(a); got[0] != 5 {
		t.Fatalf("one dispatcher: window %v, want 5", got)
	}
	b := s.Join()
	if got := windows(a, b); got[0]+got[1] != 5 || got[0] != 3 {
		t.Fatalf("two dispatchers: windows %v, want 3 and 2", got)
	}
	c := s.Join()
	if got := windows(a, b, c); got[0]+got[1]+got[2] != 5 {
		t.Fatalf("three dispatchers: windows %v must sum to 5", got)
	}
	if s.Connected() != 3 {
		t.Fatalf("connected = %d, want 3", s.Connected())
	}
	b.Leave()
	if got := windows(a, c); got[0] != 3 || got[1] != 2 {
		t.Fatalf("after one left: windows %v, want 3 and 2", got)
	}
	s.Drain()
	if got := windows(a, c); got[0] != 0 || got[1] != 0 {
		t.Fatalf("draining: windows %v, want 0", got)
	}
	if d := s.Join(); windows(d)[0] != 0 {
		t.Fatal("a stream joining a draining agent got a window")
	}
}

// A window not taken before the next change is replaced: the sender sees
// only the newest, and a change never blocks on a slow sender.
func TestShareKeepsTheNewestWindow(t *testing.T) {
	t.Parallel()
	s := NewSlots(4)
	a := s.Join()
	s.Join()
	s.Join() // a's window went 4, 2, 2 without a being read
	if got := windows(a); got[0] != 2 {
		t.Fatalf("window %v, want the newest, 2", got)
	}
	if got := windows(a); got[0] != 999 {
		t.Fatalf("a second window %v after one change", got)
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
