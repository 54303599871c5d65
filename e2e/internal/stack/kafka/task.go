// Package kafka is the harness's side of Kafka: tasks as producers write
// them, outcomes as consumers read them back, and a store that waits for
// the outcomes of given task ids. Records come and go through kcat (the
// end-to-end suite, as an operator would) or franz-go (the benchmark, the
// in-process tests): independent clients, so what is checked is the wire
// contract, not the dispatcher's library's view of it.
package kafka

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Topics of the default configuration (scripts/e2e/kafka.sh and the
// embedded broker create them).
const (
	TasksTopic    = "ftp-tasks"
	ResultsTopic  = "ftp-results"
	FailuresTopic = "ftp-failures"
	DLQTopic      = "ftp-tasks-dlq"
)

// OutcomeTopics are the topics a task's outcome or dead letter lands on.
var OutcomeTopics = []string{ResultsTopic, FailuresTopic, DLQTopic}

// The original service's seed task, byte for byte, and what its source
// file holds: the first thing every suite runs.
const (
	SeedTask    = `{"task_id":"test-001","src_id":"remote-ftp","src_path":"/test1.txt","dst_id":"local","dst_path":"/data/storage/test1.txt"}`
	SeedContent = "Test file content 1\n"
)

// Task is a task message; Extra holds further fields (metadata, overwrite).
type Task struct {
	TaskID  string
	SrcID   string
	SrcPath string
	DstID   string
	DstPath string
	Extra   map[string]any
}

// JSON is the task as producers write it.
func (tk Task) JSON() []byte {
	m := map[string]any{"src_id": tk.SrcID, "src_path": tk.SrcPath, "dst_id": tk.DstID, "dst_path": tk.DstPath}
	if tk.TaskID != "" {
		m["task_id"] = tk.TaskID
	}
	for k, v := range tk.Extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // Extra holds something JSON cannot say: the caller's bug
	}
	return b
}

// Record is one record to produce.
type Record struct {
	Key     string
	Value   []byte
	Headers map[string]string
}

// Records are tasks keyed by their ids, as producers should key them.
func Records(tasks ...Task) []Record {
	recs := make([]Record, len(tasks))
	for i, tk := range tasks {
		recs[i] = Record{Key: tk.TaskID, Value: tk.JSON()}
	}
	return recs
}

// SeekGroupToEnd commits the end offsets of topic for group, so a
// dispatcher starting in that (new) group reads only what is produced from
// now on. The dispatcher's consumer starts a group without offsets at the
// earliest offset, which would replay every earlier run's tasks.
func SeekGroupToEnd(ctx context.Context, adm *kadm.Client, group, topic string) error {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := adm.CommitAllOffsets(ctx, group, ends.Offsets()); err != nil {
		return fmt.Errorf("commit end offsets of %s for group %s: %w", topic, group, err)
	}
	return nil
}
