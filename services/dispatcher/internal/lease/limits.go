package lease

import (
	"fmt"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
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

// applySharesLocked splits every endpoint's limit in force between the
// group's dispatchers; until the group is known this dispatcher has it all
// (as New starts it).
func (s *Scheduler) applySharesLocked() {
	if s.group.known {
		s.setSharesLocked(s.group.dispatchers, s.group.rank)
		return
	}
	for _, b := range s.budgets {
		b.share = b.limit
	}
	s.shrinkLocked()
}

// serverFullLocked learns from a login refused for being full. The fleet's
// connections then are what the refusing agent held (counted once its
// racing logins ended) plus, for each other agent, the larger of what it
// last reported open and what its leases in flight need: reports lag, and
// counting other agents' fresh logins as none taught limits far below the
// server's (a cap of 4 learned as 1, seen in the matrix). Too high a guess
// costs another refusal, which lowers it again; too low a one holds the
// endpoint back for a recovery interval per missing connection. A refusal
// with fewer than the limit in force lowers it to that (at least 1, so the
// endpoint is still tried).
func (s *Scheduler) serverFullLocked(sess *Session, o *leasev1.Outcome, now time.Time) {
	id := o.FailedEndpoint
	b := s.budgets[id]
	if b == nil {
		return
	}
	b.lastFull = now
	accepted := int(o.EndpointAccepted)
	for _, other := range s.sessions {
		if other == sess {
			continue
		}
		open := int(s.connectionsFor(other.busy[id]))
		if p := other.pool[id]; p != nil {
			open = max(open, int(p.Open))
		}
		accepted += open
	}
	limit := max(accepted, 1)
	if limit >= b.limit {
		return
	}
	s.setLimitLocked(id, b, limit, fmt.Sprintf("the server refused a login with %d connection(s) of ours open: %s", accepted, o.ErrorMessage), now)
}

// recoverLimitsLocked raises each learned limit by one once it has held for
// LimitRecovery without a refusal.
func (s *Scheduler) recoverLimitsLocked(now time.Time) {
	every := s.cfg.LimitRecovery
	if every <= 0 {
		every = time.Minute
	}
	for id, b := range s.budgets {
		if b.limit >= b.configured || now.Sub(b.lastFull) < every || now.Sub(b.limitChangedAt) < every {
			continue
		}
		s.setLimitLocked(id, b, b.limit+1, b.limitReason, now)
	}
}

func (s *Scheduler) setLimitLocked(id string, b *budget, limit int, reason string, now time.Time) {
	was := b.limit
	b.limit, b.limitReason, b.limitChangedAt = min(limit, b.configured), reason, now
	if b.limit == b.configured {
		b.limitReason, b.limitChangedAt = "", time.Time{}
		s.logger.Info("connection limit restored", "endpoint", id, "limit", b.limit, "was", was)
	} else if b.limit < was {
		s.logger.Info("connection limit learned", "endpoint", id, "limit", b.limit, "was", was,
			"max_connections", b.configured, "reason", reason)
	} else {
		s.logger.Info("connection limit raised", "endpoint", id, "limit", b.limit, "was", was,
			"max_connections", b.configured, "quiet_for", s.cfg.LimitRecovery)
	}
	s.metrics.ConnectionLimit.WithLabelValues(id).Set(float64(b.limit))
	s.applySharesLocked()
}

// waitForRoomLocked queues a task whose login the server refused for being
// full again, without counting the attempt or telling the breaker: the
// server is up and the task fine. The limit just learned keeps the retry
// within what the server accepts.
func (s *Scheduler) waitForRoomLocked(t *Task, o *leasev1.Outcome) {
	t.lastCode, t.lastMsg = o.ErrorCode, o.ErrorMessage
	s.metrics.Retries.WithLabelValues(failure.Name(o.ErrorCode)).Inc()
	s.requeueLocked(t, s.backoff(1))
}

// ownConnectionLocked makes a task that waited on its agent behind busy
// connections (Release.connection_busy) need whole connections from now
// on: leased again, it raises its agent's quota (or goes to another agent)
// instead of queueing behind a transfer that may be stalled.
func (s *Scheduler) ownConnectionLocked(t *Task) {
	for i := range t.needs {
		t.needs[i].units = t.needs[i].n * s.perConn
	}
}
