package publish

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// runAtLeastOnce produces records as they come, marks their offsets done
// when Kafka acknowledges them, and commits the offset watermark on a timer.
// Commits run on their own goroutine: each waits for the broker, and
// producing must not stall behind it.
func (p *Publisher) runAtLeastOnce(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.deliveryLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		p.commitLoop(ctx)
	}()
	defer wg.Wait()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.wake:
			for _, r := range p.take(p.cfg.MaxBatch) {
				p.produceUntilQueued(ctx, r)
			}
			if p.pendingLen() > 0 {
				p.poke()
			}
		}
	}
}

// commitLoop commits the offset watermark every Linger until ctx ends.
func (p *Publisher) commitLoop(ctx context.Context) {
	commit := time.NewTicker(p.cfg.Linger)
	defer commit.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-commit.C:
			if err := p.commitOffsets(); err != nil {
				p.logger.Warn("offset commit failed; retrying on the next tick", "error", err)
			}
		}
	}
}

// produceUntilQueued waits out a full local queue instead of failing.
func (p *Publisher) produceUntilQueued(ctx context.Context, r *Record) {
	for {
		err := p.produce(r)
		if err == nil {
			return
		}
		var ke kafka.Error
		if !errors.As(err, &ke) || ke.Code() != kafka.ErrQueueFull {
			p.logger.Error("produce failed; will retry", "topic", r.Topic, "error", err)
		}
		if ctx.Err() != nil {
			return
		}
		sleep(ctx, p.cfg.RetryBackoff)
	}
}

// deliveryLoop settles each record when its delivery report arrives. A
// failed delivery is submitted again: at-least-once never drops.
func (p *Publisher) deliveryLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-p.deliveries:
			m, ok := ev.(*kafka.Message)
			if !ok {
				continue
			}
			r := m.Opaque.(*Record)
			if err := m.TopicPartition.Error; err != nil {
				if isTooLarge(err) && r.Shrink != nil {
					p.shrink(r)
				} else {
					p.logger.Warn("outcome delivery failed; retrying", "topic", r.Topic, "error", err)
				}
				time.AfterFunc(p.cfg.RetryBackoff, func() { p.resubmit(r) })
				continue
			}
			p.tracker.Done(r.Partition, r.Epoch, r.Offset)
			p.markPublished([]*Record{r})
		}
	}
}

// resubmit queues a record again without counting it as newly submitted.
func (p *Publisher) resubmit(r *Record) {
	p.mu.Lock()
	p.pending = append(p.pending, r)
	p.mu.Unlock()
	p.poke()
}

// commitOffsets commits the watermark of every partition that moved. A
// failure mid-rebalance is expected and retried by the next call.
func (p *Publisher) commitOffsets() error {
	// The commit loop and Flush may both commit; one at a time keeps the
	// watermark's committed marks in order.
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	offs := p.tracker.Committable()
	if len(offs) == 0 {
		return nil
	}
	start := time.Now()
	if _, err := p.consumer.CommitOffsets(p.offsetsFor(offs)); err != nil {
		var ke kafka.Error
		if errors.As(err, &ke) && ke.Code() == kafka.ErrNoOffset {
			return nil
		}
		p.metrics.TxnCommits.WithLabelValues("failed").Inc()
		return err
	}
	p.metrics.TxnCommits.WithLabelValues("committed").Inc()
	p.metrics.TxnCommitTime.Observe(time.Since(start).Seconds())
	p.tracker.MarkCommitted(offs)
	return nil
}
