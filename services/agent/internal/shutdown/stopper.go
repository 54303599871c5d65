// Package shutdown is the agent's way out, in two stages: a graceful stop
// takes no new leases and gives transfers in flight until the drain
// timeout, a stop now releases them at once.
package shutdown

import (
	"errors"
	"sync"
	"time"
)

// ErrDrainTimeout is why Abort closed after a graceful stop: the drain
// timeout passed with transfers still running.
var ErrDrainTimeout = errors.New("drain timeout")

// ErrNow is why Abort closed when Now was called.
var ErrNow = errors.New("stopped now")

// Stopper is one agent's shutdown. Stopping closes on the first stop of
// either kind; Abort closes at the drain timeout after Graceful, or at once
// on Now, and never before Stopping. Every method is safe to call from any
// goroutine, any number of times.
type Stopper struct {
	drainTimeout time.Duration

	stopOnce sync.Once
	stopping chan struct{}
	// grace ends the graceful stage; set by Graceful inside stopOnce, so
	// whoever returns from stopOnce.Do may read it.
	grace *time.Timer

	abortOnce sync.Once
	abort     chan struct{}
	cause     error // written before abort closes
}

// New returns a stopper whose graceful stage lasts drainTimeout.
func New(drainTimeout time.Duration) *Stopper {
	return &Stopper{drainTimeout: drainTimeout, stopping: make(chan struct{}), abort: make(chan struct{})}
}

// Graceful stops taking leases and starts the drain timeout. It does
// nothing once the agent is stopping.
func (s *Stopper) Graceful() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.grace = time.AfterFunc(s.drainTimeout, func() { s.abortWith(ErrDrainTimeout) })
	})
}

// Now stops taking leases and releases transfers in flight at once,
// cutting a graceful stop's drain timeout short.
func (s *Stopper) Now() {
	s.stopOnce.Do(func() { close(s.stopping) })
	if s.grace != nil {
		s.grace.Stop()
	}
	s.abortWith(ErrNow)
}

func (s *Stopper) abortWith(cause error) {
	s.abortOnce.Do(func() {
		s.cause = cause
		close(s.abort)
	})
}

// Stopping is closed once no new leases may be taken.
func (s *Stopper) Stopping() <-chan struct{} { return s.stopping }

// Abort is closed once transfers still running are to be released.
func (s *Stopper) Abort() <-chan struct{} { return s.abort }

// Cause is why Abort closed (ErrDrainTimeout or ErrNow); nil while it is
// open.
func (s *Stopper) Cause() error {
	select {
	case <-s.abort:
		return s.cause
	default:
		return nil
	}
}

// DrainTimeout is how long a graceful stop waits for transfers in flight.
func (s *Stopper) DrainTimeout() time.Duration { return s.drainTimeout }
