package integration

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// TestAgentDrainReleasesWhatItCannotFinish stops an agent in the middle of
// a slow transfer: it takes no new lease, gives the transfer its drain
// period, then releases it; the other agent finishes it, and the release
// does not count as a failed attempt.
func TestAgentDrainReleasesWhatItCannotFinish(t *testing.T) {
	s := newStack(t, stackOptions{agents: 1, config: func(c *config.Config) { c.Agent.DrainTimeout = 500 * time.Millisecond }})
	// 8 MiB take two seconds: the drain timeout leaves more than the
	// 1 MiB below which a partial file is not worth keeping.
	s.ftpA.Throttle.Store(4 << 20)
	writeFile(t, filepath.Join(s.ftpA.Root, "slow.bin"), strings.Repeat("s", 8<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch, err := s.admin.Watch(ctx, &adminv1.WatchRequest{TaskId: "slow-1"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	s.submit(map[string]any{"task_id": "slow-1", "src_id": "remote-ftp", "src_path": "/slow.bin", "dst_id": "local", "dst_path": "slow.bin"})
	var first *adminv1.TaskEvent
	for first == nil {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Event.Kind == adminv1.TaskEventKind_TASK_EVENT_KIND_LEASED {
			first = ev.Event
		}
	}
	s.startAgent(4) // the one that will finish it
	s.waitAgents(2)
	s.agents[0].cancel() // SIGTERM to the agent holding the lease
	select {
	case err := <-s.agents[0].done:
		if err != nil {
			t.Fatalf("draining agent: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the draining agent did not stop within its drain timeout")
	}
	s.agents = s.agents[1:]
	m := s.outcome("slow-1")
	if m.Fields["status"] != "success" || m.Fields["attempts"] != float64(2) || m.Fields["agent"] != "agent-1" {
		t.Fatalf("after the release: %s", m.Value)
	}
	// The first agent left its partial file; the second continued it.
	if resumed, _ := m.Fields["resumed_from"].(float64); resumed <= 0 {
		t.Errorf("the second delivery started over instead of resuming: %s", m.Value)
	}
	if got := readFile(t, filepath.Join(s.base, "slow.bin")); len(got) != 8<<20 {
		t.Fatalf("destination holds %d bytes", len(got))
	}
	assertNoTempFiles(t, s.base)
	if first.AgentId != "agent-0" {
		t.Fatalf("first lease went to %s", first.AgentId)
	}
}
