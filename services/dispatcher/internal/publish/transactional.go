package publish

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// runTransactional publishes batches, each in its own transaction together
// with the input offsets it completes.
func (p *Publisher) runTransactional(ctx context.Context) error {
	for {
		if err := p.waitForWork(ctx); err != nil {
			return err
		}
		batch := p.take(p.cfg.MaxBatch)
		if err := p.commitBatch(ctx, batch); err != nil {
			return err
		}
	}
}

// commitBatch retries a batch until it is committed. Only a fatal error (the
// producer was fenced) or shutdown ends it otherwise; the batch's offsets
// are then uncommitted and its tasks are redone by the partition's next
// owner, with no outcome of this attempt visible.
func (p *Publisher) commitBatch(ctx context.Context, batch []*Record) error {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		// A partition given up while the batch waited or failed belongs to
		// another dispatcher now, or to this one afresh (lost, then
		// assigned again), and its tasks are redone from the committed
		// offset: their outcomes, published here, would be second ones.
		if batch = p.owned(batch); len(batch) == 0 {
			return nil
		}
		err := p.transaction(ctx, batch)
		if err == nil {
			p.metrics.TxnCommits.WithLabelValues("committed").Inc()
			p.metrics.TxnCommitTime.Observe(time.Since(start).Seconds())
			p.metrics.PublishBatch.Observe(float64(len(batch)))
			p.markPublished(batch)
			return nil
		}
		p.metrics.TxnCommits.WithLabelValues("aborted").Inc()
		var ke kafka.Error
		if errors.As(err, &ke) && ke.IsFatal() {
			return fmt.Errorf("transactional producer failed fatally (another dispatcher with the same transactional.id?): %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.logger.Warn("outcome transaction failed; retrying", "attempt", attempt, "outcomes", len(batch), "error", err)
		sleep(ctx, min(p.cfg.RetryBackoff*time.Duration(attempt), 10*time.Second))
	}
}

// owned drops the records of partitions this dispatcher no longer holds in
// the assignment they were read in.
// They count as settled, so a Flush waiting for them returns.
func (p *Publisher) owned(batch []*Record) []*Record {
	kept := batch[:0]
	defer func() {
		if dropped := len(batch) - len(kept); dropped > 0 {
			p.settled(dropped)
		}
	}()
	for _, r := range batch {
		if p.tracker.Owns(r.Partition, r.Epoch) {
			kept = append(kept, r)
			continue
		}
		p.metrics.OutcomesDropped.Inc()
		p.logger.Info("dropping an outcome of a partition given up before it was published: its next owner redoes the task",
			"partition", r.Partition, "offset", r.Offset, "topic", r.Topic)
		if r.Done != nil {
			r.Done()
		}
	}
	return kept
}

// transaction publishes one batch and its offsets atomically.
func (p *Publisher) transaction(ctx context.Context, batch []*Record) (err error) {
	if err := p.producer.BeginTransaction(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	produced := 0
	defer func() {
		if err == nil {
			return
		}
		err = p.abort(ctx, err)
		// Aborting purges what was produced; collect those reports so
		// none is mistaken for the next attempt's.
		p.awaitReports(produced)
	}()
	for _, r := range batch {
		if err := p.produce(r); err != nil {
			return fmt.Errorf("produce to %s: %w", r.Topic, err)
		}
		produced++
	}
	for _, r := range batch {
		p.tracker.Done(r.Partition, r.Epoch, r.Offset)
	}
	offs := p.tracker.Committable()
	if len(offs) > 0 {
		md, err := p.consumer.GetConsumerGroupMetadata()
		if err != nil {
			return fmt.Errorf("consumer group metadata: %w", err)
		}
		if err := p.producer.SendOffsetsToTransaction(ctx, p.offsetsFor(offs), md); err != nil {
			return fmt.Errorf("send offsets to transaction: %w", err)
		}
	}
	for {
		err := p.producer.CommitTransaction(ctx)
		if err == nil {
			break
		}
		var ke kafka.Error
		if errors.As(err, &ke) && ke.IsRetriable() && ctx.Err() == nil {
			continue
		}
		// A record the broker refused as too large fails the commit; shrink
		// it so the next attempt can pass.
		return fmt.Errorf("commit transaction: %w", err)
	}
	if failed := p.awaitReports(produced); failed > 0 {
		// Cannot happen after a successful commit, which waits for every
		// acknowledgement; say so loudly if a client version changes that.
		p.logger.Error("committed transaction reported failed deliveries", "failed", failed)
	}
	produced = 0
	p.tracker.MarkCommitted(offs)
	return nil
}

// abort rolls the transaction back where librdkafka says so.
func (p *Publisher) abort(ctx context.Context, cause error) error {
	var ke kafka.Error
	if errors.As(cause, &ke) && ke.IsFatal() {
		return cause
	}
	// An abort that timed out (the brokers are away) is still in progress
	// inside librdkafka: it must be called again until it completes, or the
	// next BeginTransaction fails with a conflicting-call error that ends
	// up fatal.
	for attempt := 1; ; attempt++ {
		abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := p.producer.AbortTransaction(abortCtx)
		cancel()
		if err == nil {
			return cause
		}
		if errors.As(err, &ke) && ke.IsFatal() || ctx.Err() != nil {
			return fmt.Errorf("%w (and abort failed: %v)", cause, err)
		}
		p.logger.Warn("aborting the outcome transaction failed; trying again", "attempt", attempt, "error", err)
		sleep(ctx, min(p.cfg.RetryBackoff*time.Duration(attempt), 5*time.Second))
	}
}

// awaitReports reads n delivery reports, shrinking records the broker
// refused as too large, and returns how many failed.
func (p *Publisher) awaitReports(n int) (failed int) {
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for ; n > 0; n-- {
		select {
		case ev := <-p.deliveries:
			m, ok := ev.(*kafka.Message)
			if !ok {
				n++ // not a delivery report
				continue
			}
			if m.TopicPartition.Error != nil {
				failed++
				if r, ok := m.Opaque.(*Record); ok && isTooLarge(m.TopicPartition.Error) && r.Shrink != nil {
					p.shrink(r)
				}
			}
		case <-timeout.C:
			p.logger.Error("delivery reports missing", "missing", n)
			return failed + n
		}
	}
	return failed
}
