package intake

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Membership tracks how many dispatchers share the consumer group and this
// one's rank among them, so each can take its part of every endpoint's
// fleet-wide connection limit without talking to the others.
type Membership struct {
	admin    *kafka.AdminClient
	consumer *kafka.Consumer
	topic    string
	group    string
	clientID string
	onChange func(members, rank int)
	logger   *slog.Logger
	kick     chan struct{}
	last     [2]int
	known    atomic.Bool
}

// NewMembership reads the group through an admin client sharing the
// consumer's connection.
func NewMembership(c *kafka.Consumer, topic, group, clientID string, onChange func(members, rank int), logger *slog.Logger) (*Membership, error) {
	admin, err := kafka.NewAdminClientFromConsumer(c)
	if err != nil {
		return nil, err
	}
	return &Membership{admin: admin, consumer: c, topic: topic, group: group, clientID: clientID, onChange: onChange,
		logger: logger.With("component", "membership"), kick: make(chan struct{}, 1), last: [2]int{-1, -1}}, nil
}

// Refresh asks for a new reading soon (after a rebalance).
func (m *Membership) Refresh() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run reads the group after every rebalance and every 15 s until ctx ends.
func (m *Membership) Run(ctx context.Context) error {
	defer m.admin.Close()
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
		case <-t.C:
		}
		m.read(ctx)
	}
}

func (m *Membership) read(ctx context.Context) {
	// librdkafka aborts the whole process when a DescribeConsumerGroups
	// request times out while brokers come and go (librdkafka issue 4605,
	// seen here on every broker restart). Ask only when a plain metadata
	// request gets through, and give the request time to be answered
	// rather than to time out.
	if _, err := m.consumer.GetMetadata(&m.topic, false, 5000); err != nil {
		m.failed(err)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res, err := m.admin.DescribeConsumerGroups(rctx, []string{m.group})
	var desc *kafka.ConsumerGroupDescription
	if err == nil && len(res.ConsumerGroupDescriptions) == 1 {
		desc = &res.ConsumerGroupDescriptions[0]
		if desc.Error.Code() != kafka.ErrNoError {
			err = desc.Error
		}
	}
	if ctx.Err() != nil {
		return // shutting down: the consumer may be closed already
	}
	if err != nil || desc == nil {
		m.failed(err)
		return
	}
	ids := make([]string, 0, len(desc.Members))
	for _, mem := range desc.Members {
		ids = append(ids, mem.ClientID)
	}
	slices.Sort(ids)
	rank := slices.Index(ids, m.clientID)
	if rank < 0 {
		return // not (yet) a member: keep the last reading
	}
	m.apply(len(ids), rank)
}

// failed handles a reading that could not be made. The last reading stays:
// the group rarely changes while the brokers are away, and acting alone then
// would let every dispatcher take the whole limit. Only a dispatcher that
// never read its group acts alone, so a cluster that refuses DescribeGroups
// (an ACL) does not stop it; its shares are then not enforced.
func (m *Membership) failed(err error) {
	if m.last[0] > 0 {
		m.logger.Warn("cannot describe the consumer group; keeping the last reading", "group", m.group,
			"dispatchers", m.last[0], "rank", m.last[1], "error", err)
		return
	}
	m.logger.Warn("cannot describe the consumer group; assuming this dispatcher is alone", "group", m.group, "error", err)
	m.apply(1, 0)
}

func (m *Membership) apply(members, rank int) {
	if m.last == [2]int{members, rank} {
		return
	}
	m.last = [2]int{members, rank}
	m.logger.Info("consumer group membership", "dispatchers", members, "rank", rank)
	m.onChange(members, rank)
	m.known.Store(true)
}

// Known reports whether the group was read once (or given up on): until
// then this dispatcher's share of every endpoint's connection limit is
// zero and it leases nothing.
func (m *Membership) Known() bool { return m.known.Load() }
