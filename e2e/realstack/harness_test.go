//go:build e2e

package realstack

// The shared harness (e2e/internal/stack) as the tests use it: with a
// testing.T, failing the test where the harness returns an error.

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

type (
	// Proc is a process of the binaries under test.
	Proc = proc.Proc
	// FTPServer is one of the servers scripts/e2e/ftp.sh runs.
	FTPServer = stack.FTPServer
	// Task is a task message.
	Task = kafka.Task
	// Message is an outcome or dead letter read back.
	Message = kafka.Message
	// Record is one record to produce.
	Record = kafka.Record
)

// Topics of the default configuration (scripts/e2e/kafka.sh creates them).
const (
	TasksTopic    = kafka.TasksTopic
	ResultsTopic  = kafka.ResultsTopic
	FailuresTopic = kafka.FailuresTopic
	DLQTopic      = kafka.DLQTopic
)

// kcat produces to the run's broker; collector holds every outcome and
// dead letter read since the run began (TestMain starts both).
var (
	kcat      kafka.Kcat
	collector *kafka.Collector
)

// ProduceRaw writes one record with exactly the bytes given, as an
// operator would with kcat; partition < 0 lets kcat choose.
func ProduceRaw(t testing.TB, topic string, partition int, r Record) {
	t.Helper()
	must(t, kcat.Produce(topic, partition, r))
}

// ProduceLines writes many one-line records through one kcat.
func ProduceLines(t testing.TB, topic string, recs []Record) {
	t.Helper()
	must(t, kcat.ProduceLines(topic, recs))
}

// SubmitTasks produces tasks to ftp-tasks with kcat, keyed by task id.
func SubmitTasks(t testing.TB, tasks ...Task) {
	t.Helper()
	ProduceLines(t, TasksTopic, kafka.Records(tasks...))
}

// SeekGroupToEnd commits the end offsets of topic for a new group.
func SeekGroupToEnd(t testing.TB, group, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers()...))
	must(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, kafka.SeekGroupToEnd(ctx, kadm.NewClient(cl), group, topic))
}

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	a, err := stack.FreeAddr()
	must(t, err)
	return a
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
