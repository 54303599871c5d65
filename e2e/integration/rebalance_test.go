package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
)

// TestRebalanceKeepsOneOutcomePerTask runs two dispatchers in one consumer
// group: the second joins mid-stream (cooperative rebalance hands it
// partitions), then the first shuts down (its partitions move back). With
// transactions, every task still has exactly one outcome.
func TestRebalanceKeepsOneOutcomePerTask(t *testing.T) {
	s := newStack(t, stackOptions{agents: 0})
	d1 := s.dispatchers[0]
	d2 := s.startDispatcher("d1")
	s.startAgent(4)
	s.startAgent(4)

	const n = 300
	for i := range n {
		writeFile(t, filepath.Join(s.ftpA.Root, "r", fmt.Sprint(i)), fmt.Sprint("file ", i))
	}
	submit := func(from, to int) {
		for i := from; i < to; i++ {
			s.submit(map[string]any{"task_id": fmt.Sprint("rb-", i), "src_id": "remote-ftp", "src_path": fmt.Sprint("/r/", i),
				"dst_id": "local", "dst_path": fmt.Sprint("rb/", i)})
		}
	}
	submit(0, 100)
	isRB := func(m kafka.Message) bool { return len(m.Key) > 3 && m.Key[:3] == "rb-" }
	s.await(50, 30*time.Second, isRB)
	s.stopDispatcher(d1) // graceful: drains, publishes, commits, leaves the group
	submit(100, 200)
	s.await(150, 30*time.Second, isRB)
	d3 := s.startDispatcher("d2") // joins: partitions move to it
	s.startAgent(4)               // an agent that knows d1 and d2 as well
	submit(200, n)
	got := s.await(n, 60*time.Second, isRB)
	time.Sleep(time.Second) // let any duplicate surface
	got = s.await(n, time.Second, isRB)

	count := map[string]int{}
	for _, m := range got {
		count[m.Key]++
		if m.Topic != "ftp-results" {
			t.Errorf("%s: %s", m.Key, m.Value)
		}
	}
	for i := range n {
		if c := count[fmt.Sprint("rb-", i)]; c != 1 {
			t.Errorf("task rb-%d has %d outcomes, want exactly 1", i, c)
		}
	}
	_, _ = d2, d3
}

// TestHandoverSkipsTasksFinishedOutOfOrder: in one partition, a slow task
// at offset k and a fast one at k+1. The fast one finishes first: its
// outcome is published while the committed offset must stay at k. The
// partition then moves to another dispatcher, which reads again from k. It
// must redo the slow task and skip the fast one, whose finished offset
// travelled in the commit's metadata; otherwise the fast task would get a
// second outcome.
func TestHandoverSkipsTasksFinishedOutOfOrder(t *testing.T) {
	s := newStack(t, stackOptions{})
	d0 := s.dispatchers[0]
	writeFile(t, filepath.Join(s.ftpB.Root, "slow.bin"), strings.Repeat("s", 2<<20))
	writeFile(t, filepath.Join(s.ftpA.Root, "fast.txt"), "fast")
	s.ftpB.Throttle.Store(128 << 10) // 16 s: longer than the 5 s drain
	t.Cleanup(func() { s.ftpB.Throttle.Store(0) })
	const key = "same-partition" // both records in one partition
	task := func(id, src, path string) []byte {
		b, _ := json.Marshal(map[string]any{"task_id": id, "src_id": src, "src_path": path, "dst_id": "local", "dst_path": "handover/" + id})
		return b
	}
	s.produce(key, task("ho-slow", "archive-ftp", "/slow.bin"), nil)
	s.produce(key, task("ho-fast", "remote-ftp", "/fast.txt"), nil)
	s.outcome("ho-fast")

	s.stopDispatcher(d0) // the slow task is released, the fast one published
	s.ftpB.Throttle.Store(0)
	d1 := s.startDispatcher("d1")
	s.startAgent(2) // the first agents knew only d0
	s.outcome("ho-slow")
	count := s.settle(2 * time.Second)
	if count["ho-fast"] != 1 || count["ho-slow"] != 1 {
		t.Fatalf("outcomes: ho-fast %d, ho-slow %d; want exactly one each", count["ho-fast"], count["ho-slow"])
	}
	if !s.logs.contains("skipping a record whose outcome the partition's previous owner published") {
		t.Error("the new owner did not say it skipped the finished task")
	}
	_ = d1
}
