package session

import (
	"context"
	"testing"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/metrics"
)

// Two deliveries of one lease on one stream: the old one (its lease
// expired while its agent was cut off) and the new one the dispatcher sent
// under the same lease id with the next token. Each gets its own commit
// decision; the old delivery's refusal must not reach the new one (which
// then failed its task as CANCELLED in make chaos).
func TestCommitDecisionsReachTheirDelivery(t *testing.T) {
	out := newOutbox()
	c := newCommits(out, 5*time.Second, metrics.New())
	old := &leasev1.Lease{LeaseId: "d/0/390", Token: 1120}
	renewed := &leasev1.Lease{LeaseId: "d/0/390", Token: 1245}
	type answer struct {
		approved bool
		reason   string
	}
	answers := map[uint64]chan answer{old.Token: make(chan answer, 1), renewed.Token: make(chan answer, 1)}
	for _, l := range []*leasev1.Lease{old, renewed} {
		go func() {
			ok, reason, err := c.ask(context.Background(), l, 20)
			if err != nil {
				t.Error(err)
			}
			answers[l.Token] <- answer{ok, reason}
		}()
	}
	// Both commits go out before any decision comes back.
	for range 2 {
		select {
		case <-out.queue:
		case <-time.After(5 * time.Second):
			t.Fatal("a commit was not sent")
		}
	}
	c.decide(&leasev1.CommitDecision{LeaseId: old.LeaseId, Token: old.Token, Reason: "the lease is no longer held under this token"})
	c.decide(&leasev1.CommitDecision{LeaseId: renewed.LeaseId, Token: renewed.Token, Approved: true})
	if a := <-answers[renewed.Token]; !a.approved {
		t.Fatalf("the renewed delivery's commit was refused: %q", a.reason)
	}
	if a := <-answers[old.Token]; a.approved {
		t.Fatal("the expired delivery's commit was approved")
	}
}
