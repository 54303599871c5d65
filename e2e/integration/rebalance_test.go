package integration

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/devstack"
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
	isRB := func(m devstack.Message) bool { return len(m.Key) > 3 && m.Key[:3] == "rb-" }
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
