package lease

import (
	"fmt"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// Learned connection limits.
//
// Servers cap connections whatever max_connections says: per user
// (ProFTPD MaxClientsPerUser, pure-ftpd -y), per address (vsftpd
// max_per_ip, pyftpdlib max_cons_per_ip) or in all, and other clients of
// the same account use some of it. A login refused for that reason
// (Outcome.endpoint_full) teaches the budget the limit the server really
// has: the connections the fleet held when it refused. The limit then
// climbs back by one per Config.LimitRecovery without another refusal, up
// to max_connections, so a cap that was only another client passing does
// not stay for ever. Refusals only ever lower it.

// group is the consumer group as SetGroup last gave it: shares are
// recomputed from it when a learned limit changes.
type group struct {
	known       bool
	dispatchers int
	rank        int
}

// applyShares splits every endpoint's limit in force between the
// group's dispatchers; until the group is known this dispatcher has it all
// (as New starts it).
func (c *connections) applyShares() {
	if c.group.known {
		c.setShares(c.group.dispatchers, c.group.rank)
		return
	}
	for _, b := range c.budgets {
		b.share = b.limit
	}
	c.shrink()
}

// serverFull learns from a login refused for being full. The fleet's
// connections then are what the refusing agent held (counted once its
// racing logins ended) plus, for each other agent, the larger of what it
// last reported open and what its leases in flight need: reports lag, and
// counting other agents' fresh logins as none taught limits far below the
// server's (a cap of 4 learned as 1, seen in the matrix). Too high a guess
// costs another refusal, which lowers it again; too low a one holds the
// endpoint back for a recovery interval per missing connection. A refusal
// with fewer than the limit in force lowers it to that (at least 1, so the
// endpoint is still tried).
func (c *connections) serverFull(sess *Session, o *leasev1.Outcome, now time.Time) {
	id := o.FailedEndpoint
	b := c.budgets[id]
	if b == nil {
		return
	}
	b.lastFull = now
	accepted := int(o.EndpointAccepted)
	for _, other := range *c.sessions {
		if other == sess {
			continue
		}
		open := int(c.connectionsFor(id, other.busy[id]))
		if p := other.pool[id]; p != nil {
			open = max(open, int(p.Open))
		}
		accepted += open
	}
	limit := max(accepted, 1)
	if limit >= b.limit {
		return
	}
	c.setLimit(id, b, limit, fmt.Sprintf("the server refused a login with %d connection(s) of ours open: %s", accepted, o.ErrorMessage), now)
}

// recoverLimits raises each learned limit by one once it has held for
// LimitRecovery without a refusal.
func (c *connections) recoverLimits(now time.Time) {
	every := c.limitRecovery
	if every <= 0 {
		every = time.Minute
	}
	for id, b := range c.budgets {
		if b.limit >= b.configured || now.Sub(b.lastFull) < every || now.Sub(b.limitChangedAt) < every {
			continue
		}
		c.setLimit(id, b, b.limit+1, b.limitReason, now)
	}
}

func (c *connections) setLimit(id string, b *budget, limit int, reason string, now time.Time) {
	was := b.limit
	b.limit, b.limitReason, b.limitChangedAt = min(limit, b.configured), reason, now
	if b.limit == b.configured {
		b.limitReason, b.limitChangedAt = "", time.Time{}
		c.logger.Info("connection limit restored", "endpoint", id, "limit", b.limit, "was", was)
	} else if b.limit < was {
		c.logger.Info("connection limit learned", "endpoint", id, "limit", b.limit, "was", was,
			"max_connections", b.configured, "reason", reason)
	} else {
		c.logger.Info("connection limit raised", "endpoint", id, "limit", b.limit, "was", was,
			"max_connections", b.configured, "quiet_for", c.limitRecovery)
	}
	c.metrics.ConnectionLimit.WithLabelValues(id).Set(float64(b.limit))
	c.applyShares()
}

// ownConnection makes a task that waited on its agent behind busy
// connections (Release.connection_busy) need whole connections from now
// on: leased again, it raises its agent's quota (or goes to another agent)
// instead of queueing behind a transfer that may be stalled.
func (c *connections) ownConnection(t *Task) {
	for i := range t.needs {
		t.needs[i].units = t.needs[i].n * c.unitsPerConnection(t.needs[i].endpoint)
	}
}
