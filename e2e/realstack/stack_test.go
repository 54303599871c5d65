//go:build e2e

package realstack

// A Stack is one dispatcher and its agents, as separate processes of the
// real binaries, with config.yaml and connections.ini written into the
// test's directory (<state>/realstack/<test>, kept after the run for the
// logs). Each test gets its own consumer group, instance and agent ids.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// StackOptions shape a Stack; the zero value is two agents with 8 slots
// over the four standard endpoints.
type StackOptions struct {
	// Agents is how many agents to start (default 2; -1 for none).
	Agents int
	// Slots per agent (default 8).
	Slots int
	// Config changes the suite's config.yaml (suiteConfig) before it is
	// written.
	Config func(*config.Config)
	// Endpoints are added to the standard endpoints of connections.ini.
	Endpoints []config.Endpoint
	// Connections changes connections.ini (the standard endpoints and
	// Endpoints) before it is written.
	Connections func(config.Connections)
	// Original, when set, are the original service's config.yaml and
	// connections.ini, used as they are: kafka and listen addresses then
	// come only from the command line.
	Original *stack.Files
	// LocalBase is the local endpoint's base_path (default <dir>/base).
	LocalBase string
	// StablePorts picks the dispatcher's ports before it starts, so a
	// restarted dispatcher listens where its agents reconnect to.
	StablePorts bool
	// Group is the consumer group (default realstack-<run>-<test>).
	Group string
}

// Stack is a running dispatcher with its agents.
type Stack struct {
	*stack.Stack
	T    *testing.T
	Name string // the test's name as a file name
	Base string // the local endpoint's base_path
	// Group is the dispatcher's consumer group.
	Group string
	// Suffix makes task ids and directories unique: the run id and this
	// stack's number in the run (go test -count=N repeats tests).
	Suffix string
	// Since is when the stack was made: outcomes older than that are not
	// this test's (the seed's fixed task id may have run before).
	Since time.Time

	stopOnce sync.Once
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// stacks counts the stacks made in this run.
var stacks atomic.Int64

// NewStack writes the config files, starts the dispatcher and agents, and
// waits until they are ready. Cleanup stops them with SIGTERM and fails the
// test unless each exits 0; a failed test gets the tail of their logs.
func NewStack(t *testing.T, opts StackOptions) *Stack {
	t.Helper()
	s := PrepareStack(t, opts)
	s.StartDispatcher()
	for i := range s.Agents {
		s.StartAgent(i)
	}
	s.WaitReady(len(s.Agents), 60*time.Second)
	return s
}

// PrepareStack writes the files and registers cleanup, starting nothing.
func PrepareStack(t *testing.T, opts StackOptions) *Stack {
	t.Helper()
	if opts.Agents == 0 {
		opts.Agents = 2
	}
	if opts.Agents < 0 {
		opts.Agents = 0
	}
	if opts.Slots == 0 {
		opts.Slots = 8
	}
	name := unsafeName.ReplaceAllString(t.Name(), "_")
	s := &Stack{T: t, Name: name, Since: time.Now().Add(-time.Second), Suffix: fmt.Sprintf("%s%d", runID, stacks.Add(1))}
	dir := filepath.Join(env.WorkDir, name)
	must(t, os.RemoveAll(dir))
	must(t, os.MkdirAll(dir, 0o755))
	s.Base = opts.LocalBase
	if s.Base == "" {
		s.Base = filepath.Join(dir, "base")
	}
	must(t, os.MkdirAll(s.Base, 0o755))
	s.Group = opts.Group
	if s.Group == "" {
		s.Group = "realstack-" + s.Suffix + "-" + name
	}
	var addrs stack.Addrs
	if opts.StablePorts {
		var err error
		addrs, err = stack.FreeAddrs()
		must(t, err)
	}
	cfg := suiteConfig(s.Group)
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	conns := append(standardEndpoints(s.Base), opts.Endpoints...)
	if opts.Connections != nil {
		opts.Connections(conns)
	}
	var err error
	s.Stack, err = stack.New(stack.Options{
		Dir: dir, Bin: env.BinDir, Config: cfg, Connections: conns, Files: opts.Original,
		Comment: "Written by e2e/realstack for " + t.Name() + ".", InstanceID: name + "-d", Addrs: addrs,
		Agents: opts.Agents, Slots: opts.Slots, AgentID: s.AgentID, AgentHTTP: "127.0.0.1:0",
	})
	must(t, err)
	SeekGroupToEnd(t, s.Group, TasksTopic)
	t.Cleanup(s.cleanup)
	return s
}

// suiteConfig is the suite's config.yaml: quick retries and leases, text
// logs, every address on loopback.
func suiteConfig(group string) config.Config {
	c := config.Default()
	c.Kafka.BootstrapServers = env.Brokers()
	c.Kafka.ConsumerGroup = group
	c.Kafka.CommitInterval = 20 * time.Millisecond
	c.Pool.MaxSessionsPerConnection = 10
	c.Transfer.ConnectTimeoutSeconds = 10
	c.Transfer.IdleTimeout = 30 * time.Second
	c.Retry.MaxAttempts, c.Retry.BaseBackoff, c.Retry.MaxBackoff = 3, 200*time.Millisecond, time.Second
	c.Lease.TTL, c.Lease.HeartbeatInterval = 15*time.Second, 2*time.Second
	c.Logging.Level, c.Logging.Format = "INFO", "text"
	c.Dispatcher.Listen, c.Dispatcher.AdminListen, c.Dispatcher.HTTPListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.Dispatcher.DrainTimeout = 20 * time.Second
	c.Agent.DrainTimeout, c.Agent.ReconnectMaxBackoff = 20*time.Second, time.Second
	return c
}

// standardEndpoints are vsftpd, pureftpd, vsftps (explicit FTPS) and local.
func standardEndpoints(base string) config.Connections {
	vsftps := env.VSFTPS.Endpoint("vsftps")
	vsftps.TLS, vsftps.TLSCAFile = "explicit", env.VSFTPSCA
	return config.Connections{env.VSFTPD.Endpoint("vsftpd"), env.PureFTPD.Endpoint("pureftpd"), vsftps, config.Local("local", base)}
}

// StartDispatcher starts (or restarts, after it exited) the dispatcher.
func (s *Stack) StartDispatcher() {
	s.T.Helper()
	must(s.T, s.Stack.StartDispatcher(60*time.Second))
}

// StartAgent starts (or restarts) agent i, connected to the dispatcher.
func (s *Stack) StartAgent(i int) {
	s.T.Helper()
	must(s.T, s.Stack.StartAgent(i, 30*time.Second))
}

// AgentID is agent i's --agent-id.
func (s *Stack) AgentID(i int) string { return fmt.Sprintf("%s-a%d", s.Name, i+1) }

// WaitReady waits until the dispatcher's /readyz answers 200 and
// ListAgents shows n agents, each with a credit window.
func (s *Stack) WaitReady(n int, timeout time.Duration) {
	s.T.Helper()
	must(s.T, s.Stack.WaitReady(n, timeout))
}

// Stop sends SIGTERM to the dispatcher, then to the agents, and fails the
// test unless each exits 0 in time. Idempotent.
func (s *Stack) Stop() {
	s.stopOnce.Do(func() {
		for _, p := range s.Procs() {
			if p.Starts() == 0 || !p.Running() {
				continue
			}
			if err := p.Stop(60 * time.Second); err != nil {
				s.T.Errorf("SIGTERM: %v\n%s", err, p.Tail(30))
			}
		}
		s.Close()
	})
}

func (s *Stack) cleanup() {
	if s.T.Failed() {
		s.DumpLogs(80)
	}
	s.Stop()
	if !s.T.Failed() {
		// Keep the logs and configs; drop the data.
		_ = os.RemoveAll(filepath.Join(s.Dir, "base"))
	}
}

// DumpLogs logs the tail of every process's log.
func (s *Stack) DumpLogs(n int) {
	for _, p := range s.Procs() {
		if p.Starts() > 0 {
			s.T.Logf("----- %s (pid %d), last %d lines of %s -----\n%s", p.Name, p.Pid(), n, p.LogPath, p.Tail(n))
		}
	}
	if errs := collector.Errors(); len(errs) > 0 {
		s.T.Logf("outcome collector: %s", strings.Join(errs, "; "))
	}
}

// Await waits for one outcome (ftp-results or ftp-failures) per task id and
// fails the test, naming what is missing, when some do not arrive.
func (s *Stack) Await(t testing.TB, ids []string, timeout time.Duration) map[string]Message {
	t.Helper()
	got := map[string]Message{}
	all, missing := collector.Await(ids, "", s.Since, timeout)
	for k, m := range all {
		if m.Topic == DLQTopic {
			t.Errorf("task %s went to the DLQ: %s", k, m.Value)
		}
		got[k] = m
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d outcomes missing after %s (first: %v)%s", len(missing), len(ids), timeout, first(missing, 5), s.taskStates(first(missing, 5)))
	}
	return got
}

// Outcome waits for one task's outcome.
func (s *Stack) Outcome(t testing.TB, id string, timeout time.Duration) Message {
	t.Helper()
	return s.Await(t, []string{id}, timeout)[id]
}

// AwaitDLQ waits for a dead letter per key.
func (s *Stack) AwaitDLQ(t testing.TB, keys []string, timeout time.Duration) map[string]Message {
	t.Helper()
	got, missing := collector.Await(keys, DLQTopic, s.Since, timeout)
	if len(missing) > 0 {
		t.Fatalf("no dead letter for %v after %s", missing, timeout)
	}
	return got
}

func (s *Stack) taskStates(ids []string) string {
	api := s.Dispatcher.API()
	if api == nil {
		return ""
	}
	var b strings.Builder
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		r, err := api.GetTask(ctx, &adminv1.GetTaskRequest{TaskId: id})
		cancel()
		if err != nil {
			fmt.Fprintf(&b, "\n  %s: GetTask: %v", id, err)
		} else {
			fmt.Fprintf(&b, "\n  %s: %v", id, r.Task)
		}
	}
	return b.String()
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// timestampRE is the original's outcome timestamp: Python's isoformat() of
// an aware UTC datetime, 2025-11-25T19:00:03.045406+00:00.
var timestampRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$`)

// CheckOutcome checks the fields every outcome has, against the task.
func (s *Stack) CheckOutcome(t testing.TB, m Message, tk Task) {
	t.Helper()
	for k, want := range map[string]string{"task_id": tk.TaskID, "src_id": tk.SrcID, "src_path": tk.SrcPath, "dst_id": tk.DstID, "dst_path": tk.DstPath} {
		if got := m.Str(k); got != want {
			t.Errorf("%s: %s = %q, want %q (%s)", tk.TaskID, k, got, want, m.Value)
		}
	}
	if m.Key != tk.TaskID {
		t.Errorf("%s: record key %q, want the task id", tk.TaskID, m.Key)
	}
	ts := m.Str("timestamp")
	if !timestampRE.MatchString(ts) {
		t.Errorf("%s: timestamp %q is not like 2025-11-25T19:00:03.045406+00:00", tk.TaskID, ts)
	} else if pt, err := time.Parse("2006-01-02T15:04:05.000000-07:00", ts); err != nil || pt.Before(s.Since.Add(-time.Minute)) || pt.After(time.Now().Add(time.Minute)) {
		t.Errorf("%s: timestamp %s is not around now (%v)", tk.TaskID, ts, err)
	}
	if d, ok := m.Num("duration_ms"); !ok || d < 0 {
		t.Errorf("%s: duration_ms = %v", tk.TaskID, m.Fields["duration_ms"])
	}
	// 0 for a task refused before any delivery (unknown endpoint, bad path).
	if a, ok := m.Num("attempts"); !ok || a < 0 {
		t.Errorf("%s: attempts = %v", tk.TaskID, m.Fields["attempts"])
	}
}

// CheckSuccess checks a success outcome on ftp-results that moved size bytes.
func (s *Stack) CheckSuccess(t testing.TB, m Message, tk Task, size int64) {
	t.Helper()
	if m.Topic != ResultsTopic || m.Str("status") != "success" {
		t.Errorf("%s: want success on %s, got %s: %s", tk.TaskID, ResultsTopic, m.Topic, m.Value)
		return
	}
	s.CheckOutcome(t, m, tk)
	if b, ok := m.Num("bytes_transferred"); !ok || int64(b) != size {
		t.Errorf("%s: bytes_transferred = %v, want %d", tk.TaskID, m.Fields["bytes_transferred"], size)
	}
	if a, _ := m.Num("attempts"); a < 1 {
		t.Errorf("%s: a success with attempts %v", tk.TaskID, m.Fields["attempts"])
	}
	if _, has := m.Fields["error_code"]; has {
		t.Errorf("%s: a success with error_code: %s", tk.TaskID, m.Value)
	}
	agent := m.Str("agent")
	ok := false
	for i := range s.Agents {
		ok = ok || agent == s.AgentID(i)
	}
	if !ok {
		t.Errorf("%s: agent %q is none of this test's agents", tk.TaskID, agent)
	}
}

// CheckFailure checks a failure outcome on ftp-failures with code.
func (s *Stack) CheckFailure(t testing.TB, m Message, tk Task, code string) {
	t.Helper()
	if m.Topic != FailuresTopic || m.Str("status") != "failed" || m.Str("error_code") != code {
		t.Errorf("%s: want %s on %s, got %s: %s", tk.TaskID, code, FailuresTopic, m.Topic, m.Value)
		return
	}
	s.CheckOutcome(t, m, tk)
	if m.Str("error_message") == "" {
		t.Errorf("%s: empty error_message: %s", tk.TaskID, m.Value)
	}
}

// Run submits tasks with kcat and waits for their outcomes.
func (s *Stack) Run(t testing.TB, timeout time.Duration, tasks ...Task) map[string]Message {
	t.Helper()
	SubmitTasks(t, tasks...)
	ids := make([]string, len(tasks))
	for i, tk := range tasks {
		ids[i] = tk.TaskID
	}
	return s.Await(t, ids, timeout)
}

// ID is a task id unique to this stack: <prefix>-<run><stack number>.
func (s *Stack) ID(prefix string) string { return prefix + "-" + s.Suffix }

// FTPDir is a directory unique to this stack, for the FTP homes.
func (s *Stack) FTPDir() string { return "/rs-" + s.Suffix + "/" + s.Name }
