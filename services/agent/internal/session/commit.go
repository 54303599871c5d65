package session

import (
	"context"
	"fmt"
	"sync"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/metrics"
)

// commits are one stream's commit requests in flight: before a job makes
// its transfer visible it asks the dispatcher whether its lease is still
// held, and waits for the decision.
type commits struct {
	out     *outbox
	timeout time.Duration
	metrics *metrics.Metrics
	mu      sync.Mutex
	// waiting is keyed by delivery, not lease: keyed by id, an old
	// delivery's refused commit reached the new delivery of the same
	// lease, which failed its task as CANCELLED (seen in make chaos).
	waiting map[delivery]chan *leasev1.CommitDecision
}

func newCommits(out *outbox, timeout time.Duration, m *metrics.Metrics) *commits {
	return &commits{out: out, timeout: timeout, metrics: m, waiting: map[delivery]chan *leasev1.CommitDecision{}}
}

// ask asks the dispatcher whether the lease is still ours, to commit bytes.
func (c *commits) ask(ctx context.Context, l *leasev1.Lease, bytes int64) (bool, string, error) {
	ch := make(chan *leasev1.CommitDecision, 1)
	c.mu.Lock()
	c.waiting[deliveryOf(l)] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, deliveryOf(l))
		c.mu.Unlock()
	}()
	c.out.send(&leasev1.ConnectRequest{Message: &leasev1.ConnectRequest_Commit{Commit: &leasev1.Commit{
		LeaseId: l.LeaseId, Token: l.Token, Bytes: bytes,
	}}})
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	select {
	case d := <-ch:
		if !d.Approved {
			c.metrics.CommitRefused.Inc()
		}
		return d.Approved, d.Reason, nil
	case <-t.C:
		return false, "", fmt.Errorf("no commit decision within %s", c.timeout)
	case <-ctx.Done():
		return false, "", context.Cause(ctx)
	}
}

// decide hands the dispatcher's decision to the delivery that asked.
func (c *commits) decide(d *leasev1.CommitDecision) {
	c.mu.Lock()
	ch := c.waiting[delivery{d.LeaseId, d.Token}]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- d:
		default:
		}
	}
}

// delivery is one delivery of a lease: its id and token.
type delivery struct {
	leaseID string
	token   uint64
}

func deliveryOf(l *leasev1.Lease) delivery { return delivery{l.LeaseId, l.Token} }
