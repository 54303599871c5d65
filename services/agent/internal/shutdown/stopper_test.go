package shutdown

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// stage is what a stopper's channels and cause say at one moment.
type stage struct {
	stopping, abort bool
	cause           error
}

func stageOf(s *Stopper) stage {
	return stage{stopping: closed(s.Stopping()), abort: closed(s.Abort()), cause: s.Cause()}
}

func expect(t *testing.T, when string, s *Stopper, want stage) {
	t.Helper()
	if got := stageOf(s); got != want {
		t.Fatalf("%s: stopping=%v abort=%v cause=%v, want stopping=%v abort=%v cause=%v",
			when, got.stopping, got.abort, got.cause, want.stopping, want.abort, want.cause)
	}
}

var (
	running   = stage{}
	draining  = stage{stopping: true}
	timedOut  = stage{stopping: true, abort: true, cause: ErrDrainTimeout}
	stoppedAt = stage{stopping: true, abort: true, cause: ErrNow}
)

// The stages run on the bubble's clock: the drain timeout is a minute and
// the test takes none of it.
func TestStopper(t *testing.T) {
	const drain = time.Minute
	tests := []struct {
		name string
		run  func(t *testing.T, s *Stopper)
	}{
		{"graceful then timeout", func(t *testing.T, s *Stopper) {
			s.Graceful()
			expect(t, "after Graceful", s, draining)
			time.Sleep(drain - time.Nanosecond)
			synctest.Wait()
			expect(t, "just before the drain timeout", s, draining)
			time.Sleep(time.Nanosecond)
			synctest.Wait()
			expect(t, "at the drain timeout", s, timedOut)
			s.Now() // a second signal after the timeout changes nothing
			expect(t, "Now after the timeout", s, timedOut)
		}},
		{"graceful then now", func(t *testing.T, s *Stopper) {
			s.Graceful()
			time.Sleep(drain / 2)
			s.Now()
			expect(t, "Now during the drain", s, stoppedAt)
			time.Sleep(drain)
			synctest.Wait()
			expect(t, "past the drain timeout", s, stoppedAt)
		}},
		{"now directly", func(t *testing.T, s *Stopper) {
			s.Now()
			expect(t, "Now", s, stoppedAt)
			s.Graceful() // a graceful stop cannot undo it, nor start a timer
			time.Sleep(2 * drain)
			synctest.Wait()
			expect(t, "Graceful after Now", s, stoppedAt)
		}},
		{"repeated calls", func(t *testing.T, s *Stopper) {
			s.Graceful()
			time.Sleep(drain / 2)
			s.Graceful() // does not restart the drain timeout
			time.Sleep(drain / 2)
			synctest.Wait()
			expect(t, "the first Graceful's timeout", s, timedOut)
			s.Graceful()
			s.Now()
			s.Now()
			expect(t, "every call again", s, timedOut)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				s := New(drain)
				expect(t, "new", s, running)
				tc.run(t, s)
			})
		})
	}
}

// Stops from many goroutines at once close each channel once (a second
// close panics) and agree on one cause.
func TestStopperConcurrentStops(t *testing.T) {
	t.Parallel()
	s := New(0)
	done := make(chan struct{})
	for i := range 16 {
		go func() {
			defer func() { done <- struct{}{} }()
			if i%2 == 0 {
				s.Graceful()
			} else {
				s.Now()
			}
		}()
	}
	for range 16 {
		<-done
	}
	select {
	case <-s.Abort():
	case <-time.After(5 * time.Second):
		t.Fatal("Abort did not close")
	}
	if c := s.Cause(); !errors.Is(c, ErrNow) && !errors.Is(c, ErrDrainTimeout) {
		t.Fatalf("cause %v", c)
	}
	if !closed(s.Stopping()) {
		t.Fatal("aborted without stopping")
	}
}
