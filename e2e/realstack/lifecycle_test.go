//go:build e2e

package realstack

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// TestLifecycle checks the harness on the real binaries, the part a chaos
// suite builds on: both binaries serve health on their --http-listen
// address, ListAgents names the agents, an agent killed with SIGKILL
// leaves the dispatcher's list and comes back when restarted, a dispatcher
// restarted with SIGTERM on the same ports gets its agents back, and tasks
// run after each step. Cleanup checks the SIGTERM exits.
func TestLifecycle(t *testing.T) {
	s := NewStack(t, StackOptions{StablePorts: true})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir))
	content := []byte("lifecycle\n")
	PutFile(t, env.VSFTPD.Path(dir+"/l.txt"), content)
	run := func(step string) {
		t.Helper()
		tk := Task{TaskID: s.ID("lifecycle-" + step), SrcID: "vsftpd", SrcPath: dir + "/l.txt", DstID: "local", DstPath: "l-" + step + ".txt"}
		s.CheckSuccess(t, s.Run(t, 60*time.Second, tk)[tk.TaskID], tk, int64(len(content)))
	}

	addrs := []string{s.Dispatcher.HTTP}
	for _, a := range s.Agents {
		addrs = append(addrs, a.HTTP)
	}
	for i, addr := range addrs {
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if code, err := stack.HTTPStatus("http://" + addr + p); err != nil || code != http.StatusOK {
				t.Errorf("process %d: GET %s%s = %d %v", i, addr, p, code, err)
			}
		}
	}
	ctx := context.Background()
	agents, err := s.Dispatcher.API().ListAgents(ctx, &adminv1.ListAgentsRequest{})
	must(t, err)
	var ids []string
	for _, a := range agents.Agents {
		ids = append(ids, a.AgentId)
		if a.Slots != 8 {
			t.Errorf("agent %s: %d slots, want 8", a.AgentId, a.Slots)
		}
	}
	sort.Strings(ids)
	if len(ids) != 2 || ids[0] != s.AgentID(0) || ids[1] != s.AgentID(1) {
		t.Errorf("ListAgents = %v, want %s and %s", ids, s.AgentID(0), s.AgentID(1))
	}
	run("start")

	// SIGKILL an agent: the dispatcher drops it; a restart brings it back.
	s.Agents[1].Kill()
	if err := s.Agents[1].Wait(0); err == nil {
		t.Errorf("a SIGKILLed agent exited 0")
	}
	s.WaitReady(1, 30*time.Second)
	run("one-agent")
	s.StartAgent(1)
	s.WaitReady(2, 30*time.Second)

	// SIGTERM the dispatcher, start it again on the same ports: the agents
	// reconnect by themselves.
	if err := s.Dispatcher.Stop(60 * time.Second); err != nil {
		t.Fatalf("dispatcher SIGTERM: %v", err)
	}
	s.StartDispatcher()
	s.WaitReady(2, 60*time.Second)
	run("restarted")
	for _, p := range s.Procs() {
		t.Logf("%s: pid %d, started %d times", p.Name, p.Pid(), p.Starts())
	}
}

// TestAgentShutdownLogsNoSecondSignal: an agent given one SIGTERM must not
// log "second signal: releasing transfers still running" or drain after
// "agent stopped". It used to, now and then: agent.Run did not wait for its
// drain goroutine, whose selects could pick ctx.Done() after the sessions
// had ended and then force.Done(), which main's deferred forceNow() closes
// on the way out.
func TestAgentShutdownLogsNoSecondSignal(t *testing.T) {
	s := NewStack(t, StackOptions{Agents: 1})
	const rounds = 20
	bad := 0
	for i := 0; i < rounds; i++ {
		if i > 0 {
			s.StartAgent(0)
			s.WaitReady(1, 30*time.Second)
		}
		a := s.Agents[0]
		if err := a.Stop(30 * time.Second); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		log := a.Log()
		if strings.Contains(log, "second signal") || strings.Index(log, "shutting down") > strings.Index(log, "agent stopped") {
			bad++
			if bad == 1 {
				t.Logf("round %d, one SIGTERM:\n%s", i, proc.LastLines([]byte(log), 5))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d clean shutdowns (one SIGTERM each) logged a second signal or drained after \"agent stopped\"", bad, rounds)
	}
}
