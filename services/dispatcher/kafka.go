package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
)

// clientConfig is what consumer and producer share: brokers, identity,
// logging through slog, and the operator's pass-through properties (TLS,
// SASL, tuning), which win over our defaults.
func clientConfig(k config.Kafka, clientID string, own kafka.ConfigMap) (*kafka.ConfigMap, error) {
	cm := kafka.ConfigMap{
		"bootstrap.servers":      strings.Join(k.BootstrapServers, ","),
		"client.id":              clientID,
		"go.logs.channel.enable": true,
		// KIP-714 telemetry pushes are noise for us.
		"enable.metrics.push": false,
	}
	for key, v := range own {
		cm[key] = v
	}
	for key, v := range k.Client {
		if err := cm.SetKey(key, v); err != nil {
			return nil, fmt.Errorf("kafka.client.%s: %w", key, err)
		}
	}
	return &cm, nil
}

func newConsumer(k config.Kafka, instanceID string) (*kafka.Consumer, error) {
	cm, err := clientConfig(k, clientID(instanceID), kafka.ConfigMap{
		"group.id":                      k.ConsumerGroup,
		"enable.auto.commit":            false,
		"enable.auto.offset.store":      false,
		"auto.offset.reset":             "earliest",
		"partition.assignment.strategy": "cooperative-sticky",
		// A dispatcher that dies without leaving (kill -9, a lost node)
		// holds its partitions until the broker gives up on it: 10 s, not
		// librdkafka's 45. Heartbeats come from librdkafka's own thread, so a
		// busy process does not miss them. kafka.client can override both.
		"session.timeout.ms":    10000,
		"heartbeat.interval.ms": 2000,
		// Tasks produced in a producer's aborted transaction are not tasks.
		"isolation.level": "read_committed",
	})
	if err != nil {
		return nil, err
	}
	c, err := kafka.NewConsumer(cm)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	return c, nil
}

func newProducer(k config.Kafka, instanceID string) (*kafka.Producer, error) {
	own := kafka.ConfigMap{
		"enable.idempotence":   true,
		"acks":                 "all",
		"linger.ms":            1,
		"retries":              k.MaxRetries,
		"retry.backoff.ms":     k.BaseBackoffMS,
		"retry.backoff.max.ms": k.MaxBackoffMS,
		// Dead letters carry whole records; leave room for large ones.
		"message.max.bytes": 16 << 20,
	}
	if k.Delivery == config.DeliveryExactlyOnce {
		own["transactional.id"] = transactionalID(k, instanceID)
		// A transaction open while the brokers restart must outlive the
		// restart: one that times out is aborted with a new producer epoch,
		// which fences this producer for good (seen at 57 s with 60). A
		// dispatcher that dies mid-transaction and comes back aborts it at
		// once; only one that never returns holds read_committed readers
		// back this long.
		own["transaction.timeout.ms"] = 180000
	}
	if k.MaxRetries == 0 {
		// Idempotence needs retries; 0 meant "no app-level retries" to the
		// original, which librdkafka would reject.
		own["retries"] = 1
	}
	cm, err := clientConfig(k, clientID(instanceID), own)
	if err != nil {
		return nil, err
	}
	p, err := kafka.NewProducer(cm)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return p, nil
}

// clientID names this dispatcher's Kafka clients; group members are told
// apart by it, so it must be unique per dispatcher.
func clientID(instanceID string) string { return "ftp-pooler-dispatcher-" + instanceID }

func transactionalID(k config.Kafka, instanceID string) string {
	if k.TransactionalID != "" {
		return k.TransactionalID
	}
	return k.ConsumerGroup + "-" + instanceID
}

// forwardLogs sends librdkafka's log lines to slog until ctx ends.
func forwardLogs(ctx context.Context, logs chan kafka.LogEvent, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-logs:
			if !ok {
				return
			}
			level := slog.LevelDebug
			switch {
			case ev.Level <= 3:
				level = slog.LevelError
			case ev.Level == 4:
				level = slog.LevelWarn
			case ev.Level <= 6:
				level = slog.LevelInfo
			}
			logger.Log(ctx, level, ev.Message, "librdkafka_tag", ev.Tag, "client", ev.Name)
		}
	}
}
