package lease

import (
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// BreakerConfig is the circuit_breaker section.
type BreakerConfig struct {
	// FailureThreshold consecutive connection failures open the breaker.
	FailureThreshold int
	// SuccessThreshold successful probes close it again.
	SuccessThreshold int
	// OpenFor is how long it stays open before probing.
	OpenFor time.Duration
	// HalfOpenMax is how many probe leases may run at once.
	HalfOpenMax int
}

// BreakerState is an endpoint breaker's state.
type BreakerState int

// The breaker states; the numbers are the metric's values.
const (
	BreakerClosed   BreakerState = 0
	BreakerHalfOpen BreakerState = 1
	BreakerOpen     BreakerState = 2
)

func (b BreakerState) String() string {
	switch b {
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half_open"
	}
	return "closed"
}

// breaker stops leasing tasks of an endpoint that keeps failing to connect.
// While it is open the endpoint's tasks wait without using their attempts;
// after OpenFor a few probe leases go out, and enough successes close it.
type breaker struct {
	state     BreakerState
	failures  int // consecutive connection failures
	successes int // successful probes while half-open
	probes    int // probe leases in flight
	openedAt  time.Time
	lastError string
	lastAt    time.Time
}

// connectionFailure reports whether a failure is the endpoint's fault in a
// way a breaker should count: it could not be reached or did not answer.
func connectionFailure(o *leasev1.Outcome) bool {
	return o.FailedEndpoint != "" && (o.ErrorCode == failure.ConnectionError || o.ErrorCode == failure.TransferTimeout)
}

// allowLocked reports whether a task with these needs may be leased now,
// moving open breakers whose time is up to half-open.
func (s *Scheduler) allowLocked(needs []need, now time.Time) bool {
	for _, nd := range needs {
		b := s.breakers[nd.endpoint]
		if b == nil {
			continue
		}
		if b.state == BreakerOpen && now.Sub(b.openedAt) >= s.cfg.Breaker.OpenFor {
			s.setBreakerLocked(nd.endpoint, b, BreakerHalfOpen)
		}
		switch {
		case b.state == BreakerOpen:
			return false
		case b.state == BreakerHalfOpen && b.probes >= s.cfg.Breaker.HalfOpenMax:
			return false
		}
	}
	return true
}

// leasedLocked counts probes going out.
func (s *Scheduler) breakerLeasedLocked(needs []need) (probe bool) {
	for _, nd := range needs {
		if b := s.breakers[nd.endpoint]; b != nil && b.state == BreakerHalfOpen {
			b.probes++
			probe = true
		}
	}
	return probe
}

// breakerResultLocked feeds a lease's outcome to the breakers of its
// endpoints. It returns true when the failure is to wait, not to count
// against the task: its endpoint's breaker is open.
func (s *Scheduler) breakerResultLocked(needs []need, probe bool, o *leasev1.Outcome, now time.Time) (wait bool) {
	for _, nd := range needs {
		b := s.breakers[nd.endpoint]
		if b == nil {
			continue
		}
		if probe && b.probes > 0 {
			b.probes--
		}
		if o != nil && connectionFailure(o) && o.FailedEndpoint == nd.endpoint {
			b.failures++
			b.lastError, b.lastAt = o.ErrorMessage, now
			switch {
			case b.state == BreakerHalfOpen:
				b.openedAt = now
				s.setBreakerLocked(nd.endpoint, b, BreakerOpen)
			case b.state == BreakerClosed && b.failures >= s.cfg.Breaker.FailureThreshold:
				b.openedAt = now
				s.setBreakerLocked(nd.endpoint, b, BreakerOpen)
			}
			if b.state == BreakerOpen {
				wait = true
			}
			continue
		}
		if o != nil && (o.Status == leasev1.Status_STATUS_SUCCEEDED || o.FailedEndpoint != nd.endpoint) {
			// The endpoint answered: any outcome not blamed on it counts as success.
			b.failures = 0
			if b.state == BreakerHalfOpen {
				b.successes++
				if b.successes >= s.cfg.Breaker.SuccessThreshold {
					s.setBreakerLocked(nd.endpoint, b, BreakerClosed)
				}
			}
		}
	}
	return wait
}

func (s *Scheduler) setBreakerLocked(endpoint string, b *breaker, st BreakerState) {
	if b.state == st {
		return
	}
	s.logger.Warn("circuit breaker", "endpoint", endpoint, "from", b.state.String(), "to", st.String(),
		"consecutive_failures", b.failures, "last_error", b.lastError)
	b.state = st
	b.successes, b.probes = 0, 0
	if st == BreakerClosed {
		b.failures = 0
	}
	s.metrics.BreakerState.WithLabelValues(endpoint).Set(float64(st))
}

// breakerWaitLocked is how long a task held back by open breakers waits
// before it is looked at again.
func (s *Scheduler) breakerWaitLocked(needs []need, now time.Time) time.Duration {
	wait := time.Duration(0)
	for _, nd := range needs {
		if b := s.breakers[nd.endpoint]; b != nil && b.state == BreakerOpen {
			wait = max(wait, s.cfg.Breaker.OpenFor-now.Sub(b.openedAt))
		}
	}
	return max(wait, 10*time.Millisecond)
}
