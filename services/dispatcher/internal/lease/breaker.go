package lease

import (
	"fmt"
	"log/slog"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
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
	// MaxOutage is how long an endpoint may stay unreachable (its breaker
	// not closed since it opened) before its tasks fail; 0 is for ever.
	MaxOutage time.Duration
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

// breakers are the FTP endpoints' circuit breakers. The scheduler owns them
// and calls them under its lock.
type breakers struct {
	byEP    map[string]*breaker
	cfg     BreakerConfig
	clock   Clock
	logger  *slog.Logger
	metrics *metrics.Metrics
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
	downSince time.Time // when it last opened from closed; zero while closed
	lastError string
	lastAt    time.Time
}

// unreachable reports whether a failure is its endpoint's in a way a
// breaker should count: the agent could not connect or log in, and trying
// later may help. Failures after the endpoint accepted a session are the
// task's attempts, whatever their code: counting them here would hold a
// task that always fails mid-transfer (say, a 426) back forever.
func unreachable(o *leasev1.Outcome) bool {
	return o.EndpointUnreachable && o.FailedEndpoint != "" && o.Retryable
}

// allow reports whether a task with these needs may be leased now,
// moving open breakers whose time is up to half-open.
func (bs *breakers) allow(needs []need, now time.Time) bool {
	for _, nd := range needs {
		b := bs.byEP[nd.endpoint]
		if b == nil {
			continue
		}
		if b.state == BreakerOpen && now.Sub(b.openedAt) >= bs.cfg.OpenFor {
			bs.set(nd.endpoint, b, BreakerHalfOpen)
		}
		switch {
		case b.state == BreakerOpen:
			return false
		case b.state == BreakerHalfOpen && b.probes >= bs.cfg.HalfOpenMax:
			return false
		}
	}
	return true
}

// leased counts probes going out.
func (bs *breakers) leased(needs []need) (probe bool) {
	for _, nd := range needs {
		if b := bs.byEP[nd.endpoint]; b != nil && b.state == BreakerHalfOpen {
			b.probes++
			probe = true
		}
	}
	return probe
}

// result feeds a lease's outcome to the breakers of its
// endpoints.
func (bs *breakers) result(needs []need, probe bool, o *leasev1.Outcome, now time.Time) {
	for _, nd := range needs {
		b := bs.byEP[nd.endpoint]
		if b == nil {
			continue
		}
		if probe && b.probes > 0 {
			b.probes--
		}
		if o != nil && unreachable(o) && o.FailedEndpoint == nd.endpoint {
			b.failures++
			b.lastError, b.lastAt = o.ErrorMessage, now
			switch {
			case b.state == BreakerHalfOpen:
				b.openedAt = now
				bs.set(nd.endpoint, b, BreakerOpen)
			case b.state == BreakerClosed && b.failures >= bs.cfg.FailureThreshold:
				b.openedAt = now
				bs.set(nd.endpoint, b, BreakerOpen)
			}
			continue
		}
		if o != nil && (o.Status == leasev1.Status_STATUS_SUCCEEDED || o.FailedEndpoint != nd.endpoint) {
			// The endpoint answered: any outcome not blamed on it counts as success.
			b.failures = 0
			if b.state == BreakerHalfOpen {
				b.successes++
				if b.successes >= bs.cfg.SuccessThreshold {
					bs.set(nd.endpoint, b, BreakerClosed)
				}
			}
		}
	}
}

func (bs *breakers) set(endpoint string, b *breaker, st BreakerState) {
	if b.state == st {
		return
	}
	bs.logger.Warn("circuit breaker", "endpoint", endpoint, "from", b.state.String(), "to", st.String(),
		"consecutive_failures", b.failures, "last_error", b.lastError)
	if b.state == BreakerClosed && st == BreakerOpen {
		b.downSince = bs.clock.Now()
	}
	b.state = st
	b.successes, b.probes = 0, 0
	if st == BreakerClosed {
		b.failures = 0
		b.downSince = time.Time{}
	}
	bs.metrics.BreakerState.WithLabelValues(endpoint).Set(float64(st))
}

// outageOver returns the first of these endpoints that has been
// unreachable for longer than MaxOutage, with its breaker.
func (bs *breakers) outageOver(needs []need, now time.Time) (string, *breaker) {
	if bs.cfg.MaxOutage <= 0 {
		return "", nil
	}
	for _, nd := range needs {
		b := bs.byEP[nd.endpoint]
		if b != nil && !b.downSince.IsZero() && now.Sub(b.downSince) >= bs.cfg.MaxOutage {
			return nd.endpoint, b
		}
	}
	return "", nil
}

// outageOutcome is the failure of a task given up on because its endpoint
// stayed unreachable past MaxOutage.
func (bs *breakers) outageOutcome(endpoint string, b *breaker, now time.Time) *leasev1.Outcome {
	return &leasev1.Outcome{
		Status:    leasev1.Status_STATUS_FAILED,
		ErrorCode: failure.ConnectionError,
		ErrorMessage: fmt.Sprintf("endpoint %s unreachable for %s (retry.max_outage %s); last error: %s",
			endpoint, now.Sub(b.downSince).Round(time.Second), bs.cfg.MaxOutage, b.lastError),
		Retryable: true, FailedEndpoint: endpoint, EndpointUnreachable: true, SourceSize: -1,
	}
}

// wait is how long a task held back by open breakers waits
// before it is looked at again.
func (bs *breakers) wait(needs []need, now time.Time) time.Duration {
	wait := time.Duration(0)
	for _, nd := range needs {
		if b := bs.byEP[nd.endpoint]; b != nil && b.state == BreakerOpen {
			w := bs.cfg.OpenFor - now.Sub(b.openedAt)
			if bs.cfg.MaxOutage > 0 {
				// Look again when the outage runs out, to fail the task then.
				w = min(w, bs.cfg.MaxOutage-now.Sub(b.downSince))
			}
			wait = max(wait, w)
		}
	}
	return max(wait, 10*time.Millisecond)
}
