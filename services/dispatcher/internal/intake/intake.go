// Package intake consumes the input topic: it reads records in a consumer
// group, tracks their offsets, and hands each one on, to the scheduler as a
// task or straight to the publisher when it cannot run. It pauses the
// partitions while too many records wait, so memory stays bounded whatever
// the backlog, and hands partitions over cleanly on rebalances.
package intake

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/metrics"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/task"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher/internal/watermark"
)

// Handler receives consumed records, on the intake goroutine.
type Handler interface {
	// Handle processes one tracked record; it must not block for long.
	Handle(rec *task.Record)
	// Revoke gives up partitions: stop their work, publish and commit what
	// finished. It returns once that is done.
	Revoke(ctx context.Context, partitions []int32)
}

// Consumer is the part of *kafka.Consumer the intake drives, so tests can
// script records and rebalances. The rebalance callback's own consumer
// argument is not used: it is the same client.
type Consumer interface {
	SubscribeTopics(topics []string, rebalanceCb kafka.RebalanceCb) error
	Poll(timeoutMs int) kafka.Event
	Seek(partition kafka.TopicPartition, ignoredTimeoutMs int) error
	Committed(partitions []kafka.TopicPartition, timeoutMs int) ([]kafka.TopicPartition, error)
	GetRebalanceProtocol() string
	AssignmentLost() bool
	Assign(partitions []kafka.TopicPartition) error
	IncrementalAssign(partitions []kafka.TopicPartition) error
	Unassign() error
	IncrementalUnassign(partitions []kafka.TopicPartition) error
	Pause(partitions []kafka.TopicPartition) error
	Resume(partitions []kafka.TopicPartition) error
	GetWatermarkOffsets(topic string, partition int32) (low, high int64, err error)
	Close() error
}

var _ Consumer = (*kafka.Consumer)(nil)

// Config tunes the intake.
type Config struct {
	Topic string
	// MaxBuffered pauses consumption while this many records are tracked
	// but uncommitted; it resumes at three quarters.
	MaxBuffered int
	// CommittedTimeout bounds the fetch of committed offsets on assignment.
	CommittedTimeout time.Duration
}

// Intake owns the consumer; only Run's goroutine touches it.
type Intake struct {
	cfg      Config
	consumer Consumer
	tracker  *watermark.Tracker
	handler  Handler
	metrics  *metrics.Metrics
	logger   *slog.Logger

	operatorPaused atomic.Bool
	stopped        atomic.Bool
	ready          atomic.Bool

	assigned map[int32]bool
	// rewind holds, per partition, the first record read while intake was
	// paused by the operator, which the consumer was sent back to.
	rewind     map[int32]int64
	paused     bool
	lastLagRun time.Time
	lagMu      sync.Mutex
	lag        map[int32]int64
	// OnRebalance, if set, is called after every assignment change.
	OnRebalance func()
}

// New returns an intake; Run subscribes.
func New(cfg Config, consumer Consumer, tracker *watermark.Tracker, handler Handler,
	m *metrics.Metrics, logger *slog.Logger) *Intake {
	return &Intake{
		cfg: cfg, consumer: consumer, tracker: tracker, handler: handler, metrics: m,
		logger: logger.With("component", "intake"), assigned: map[int32]bool{}, rewind: map[int32]int64{},
	}
}

// Pause stops reading new records (operator request); queued ones still run.
func (in *Intake) Pause() { in.operatorPaused.Store(true) }

// Resume undoes Pause.
func (in *Intake) Resume() { in.operatorPaused.Store(false) }

// Paused reports whether an operator paused intake.
func (in *Intake) Paused() bool { return in.operatorPaused.Load() }

// Stop stops taking records for good, for shutdown; Run keeps serving
// rebalances until its context ends.
func (in *Intake) Stop() { in.stopped.Store(true) }

// Ready reports whether the consumer has joined its group.
func (in *Intake) Ready() bool { return in.ready.Load() }

// Run consumes until ctx ends, then closes the consumer, which gives up its
// partitions through the same revoke path as a rebalance.
func (in *Intake) Run(ctx context.Context) error {
	onRebalance := func(_ *kafka.Consumer, ev kafka.Event) error { return in.rebalance(ev) }
	if err := in.consumer.SubscribeTopics([]string{in.cfg.Topic}, onRebalance); err != nil {
		return fmt.Errorf("subscribe to %s: %w", in.cfg.Topic, err)
	}
	defer in.close()
	for ctx.Err() == nil {
		in.flowControl()
		switch ev := in.consumer.Poll(100).(type) {
		case *kafka.Message:
			in.handle(ev)
		case kafka.Error:
			if ev.IsFatal() {
				return fmt.Errorf("kafka consumer: %w", ev)
			}
			in.logger.Warn("kafka consumer error", "error", ev, "code", ev.Code().String())
		}
		in.updateLag()
	}
	return nil
}

func (in *Intake) close() {
	// Close revokes every partition through the rebalance callback, which
	// publishes and commits what finished.
	if err := in.consumer.Close(); err != nil {
		in.logger.Warn("closing consumer", "error", err)
	}
}

func (in *Intake) handle(m *kafka.Message) {
	p, off := m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
	if in.stopped.Load() {
		return // Not tracked, so never committed: the next owner reads it.
	}
	if in.operatorPaused.Load() {
		// Fetched before the pause reached the consumer: read it again
		// after ResumeIntake, from the first record held back.
		if first, ok := in.rewind[p]; !ok || off < first {
			in.rewind[p] = off
			if err := in.consumer.Seek(m.TopicPartition, 0); err != nil {
				in.logger.Warn("rewinding a record read while intake is paused", "partition", p, "offset", off, "error", err)
			}
		}
		return
	}
	clear(in.rewind)
	verdict, epoch := in.tracker.Track(p, off)
	switch verdict {
	case watermark.Ignore:
		in.logger.Warn("ignoring a record already read in this assignment", "partition", p, "offset", off)
		return
	case watermark.AlreadyDone:
		in.logger.Info("skipping a record whose outcome the partition's previous owner published",
			"partition", p, "offset", off)
		in.metrics.TasksSkipped.Inc()
		return
	}
	in.metrics.TasksReceived.Inc()
	rec := &task.Record{
		Topic:     *m.TopicPartition.Topic,
		Partition: p,
		Offset:    off,
		Epoch:     epoch,
		Key:       m.Key,
		Value:     m.Value,
		Timestamp: m.Timestamp,
	}
	for _, h := range m.Headers {
		rec.Headers = append(rec.Headers, task.Header{Key: h.Key, Value: h.Value})
	}
	in.handler.Handle(rec)
}

// rebalance runs on the Run goroutine, inside Poll.
func (in *Intake) rebalance(ev kafka.Event) error {
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		defer in.rebalanced()
		committed := in.committed(e.Partitions)
		for _, tp := range e.Partitions {
			in.assigned[tp.Partition] = true
			cp := committed[tp.Partition]
			md := ""
			if cp.Metadata != nil {
				md = *cp.Metadata
			}
			in.tracker.Assign(tp.Partition, int64(cp.Offset), md)
		}
		in.logger.Info("partitions assigned", "partitions", partitionList(e.Partitions), "protocol", in.consumer.GetRebalanceProtocol())
		in.ready.Store(true)
		if err := in.assign(e.Partitions); err != nil {
			return err
		}
		// librdkafka keeps a partition's pause through revocations and
		// assignments, and a cooperative rebalance leaves the partitions
		// kept as they were: give the new ones flow control's state, so
		// that it holds for the whole assignment and its next change
		// reaches every partition.
		_ = in.setPaused(e.Partitions, in.paused)
	case kafka.RevokedPartitions:
		defer in.rebalanced()
		parts := make([]int32, 0, len(e.Partitions))
		for _, tp := range e.Partitions {
			parts = append(parts, tp.Partition)
		}
		lost := in.consumer.AssignmentLost()
		in.logger.Info("partitions revoked", "partitions", parts, "lost", lost)
		// When the assignment is lost the group already gave the partitions
		// away; committing would fail, so only stop their work.
		revokeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		in.handler.Revoke(revokeCtx, parts)
		cancel()
		for _, p := range parts {
			delete(in.assigned, p)
			in.tracker.Revoke(p)
			in.metrics.ConsumerLag.DeleteLabelValues(strconv.Itoa(int(p)))
		}
		if err := in.unassign(e.Partitions); err != nil {
			return err
		}
	}
	return nil
}

// committed fetches the group's committed offsets of newly assigned
// partitions with their metadata: the offsets beyond them whose outcomes the
// previous owner already published, which must not be done again. With
// read_committed, librdkafka asks for stable offsets, so a transaction the
// previous owner left open is settled first. On failure the records are
// processed again (at least once) rather than stalling the assignment.
func (in *Intake) committed(parts []kafka.TopicPartition) map[int32]kafka.TopicPartition {
	out := make(map[int32]kafka.TopicPartition, len(parts))
	for _, tp := range parts {
		out[tp.Partition] = kafka.TopicPartition{Partition: tp.Partition, Offset: kafka.OffsetInvalid}
	}
	got, err := in.consumer.Committed(parts, int(in.cfg.CommittedTimeout.Milliseconds()))
	if err != nil {
		in.logger.Warn("reading committed offsets of assigned partitions: tasks finished by their previous owner may be done again",
			"partitions", partitionList(parts), "error", err)
		return out
	}
	for _, tp := range got {
		if tp.Error == nil {
			out[tp.Partition] = tp
		}
	}
	return out
}

func (in *Intake) rebalanced() {
	if in.OnRebalance != nil {
		in.OnRebalance()
	}
}

func (in *Intake) assign(parts []kafka.TopicPartition) error {
	if in.consumer.GetRebalanceProtocol() == "COOPERATIVE" {
		return in.consumer.IncrementalAssign(parts)
	}
	return in.consumer.Assign(parts)
}

func (in *Intake) unassign(parts []kafka.TopicPartition) error {
	if in.consumer.GetRebalanceProtocol() == "COOPERATIVE" {
		return in.consumer.IncrementalUnassign(parts)
	}
	return in.consumer.Unassign()
}

// flowControl pauses every assigned partition while the buffer is full,
// an operator paused intake, or the dispatcher is stopping.
func (in *Intake) flowControl() {
	out := in.tracker.Outstanding()
	want := in.paused
	switch {
	case in.operatorPaused.Load() || in.stopped.Load():
		want = true
	case out >= in.cfg.MaxBuffered:
		want = true
	case out <= in.cfg.MaxBuffered*3/4:
		want = false
	}
	if want == in.paused || len(in.assigned) == 0 {
		return
	}
	if err := in.setPaused(in.assignment(), want); err != nil {
		return
	}
	in.paused = want
	if want {
		in.metrics.IntakePaused.Set(1)
	} else {
		in.metrics.IntakePaused.Set(0)
	}
	in.logger.Debug("intake flow control", "paused", want, "buffered", out)
}

func (in *Intake) setPaused(parts []kafka.TopicPartition, pause bool) error {
	var err error
	if pause {
		err = in.consumer.Pause(parts)
	} else {
		err = in.consumer.Resume(parts)
	}
	if err != nil {
		in.logger.Warn("pause/resume failed", "pause", pause, "partitions", partitionList(parts), "error", err)
	}
	return err
}

func (in *Intake) assignment() []kafka.TopicPartition {
	parts := make([]kafka.TopicPartition, 0, len(in.assigned))
	for p := range in.assigned {
		parts = append(parts, kafka.TopicPartition{Topic: &in.cfg.Topic, Partition: p})
	}
	return parts
}

// updateLag refreshes consumer lag from the client's cached high
// watermarks (no broker round trip) every few seconds.
func (in *Intake) updateLag() {
	if time.Since(in.lastLagRun) < 5*time.Second {
		return
	}
	in.lastLagRun = time.Now()
	committed := map[int32]int64{}
	for _, s := range in.tracker.Snapshot() {
		committed[s.Partition] = s.Committed
	}
	lags := make(map[int32]int64, len(in.assigned))
	defer func() {
		in.lagMu.Lock()
		in.lag = lags
		in.lagMu.Unlock()
	}()
	for p := range in.assigned {
		low, high, err := in.consumer.GetWatermarkOffsets(in.cfg.Topic, p)
		if err != nil || high < 0 {
			continue
		}
		from := low
		if c, ok := committed[p]; ok && c >= 0 {
			from = c
		}
		lag := high - from
		lags[p] = max(lag, 0)
		in.metrics.ConsumerLag.WithLabelValues(strconv.Itoa(int(p))).Set(float64(max(lag, 0)))
	}
}

// Lag returns each assigned partition's lag as last measured.
func (in *Intake) Lag() map[int32]int64 {
	in.lagMu.Lock()
	defer in.lagMu.Unlock()
	out := make(map[int32]int64, len(in.lag))
	for p, l := range in.lag {
		out[p] = l
	}
	return out
}

func partitionList(tps []kafka.TopicPartition) []int32 {
	out := make([]int32, len(tps))
	for i, tp := range tps {
		out[i] = tp.Partition
	}
	return out
}
