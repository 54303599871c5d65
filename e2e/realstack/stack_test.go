//go:build e2e

package realstack

// A Stack is one dispatcher and its agents, as separate processes of the
// real binaries, with config.yaml and connections.ini written into the
// test's directory (<state>/realstack/<test>, kept after the run for the
// logs). Each test gets its own consumer group, instance and agent ids.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// StackOptions shape a Stack; the zero value is two agents with 8 slots
// over the four standard endpoints.
type StackOptions struct {
	// Agents is how many agents to start (default 2; -1 for none).
	Agents int
	// Slots per agent (default 8).
	Slots int
	// ConfigYAML, when set, is config.yaml verbatim (the original service's
	// file): kafka and listen addresses then come only from the command
	// line. Otherwise the file is written from Config.
	ConfigYAML string
	// Config overrides keys of the default config, by section:
	// {"retry": {"max_attempts": 3}}.
	Config map[string]map[string]any
	// ConnectionsINI, when set, is connections.ini verbatim.
	ConnectionsINI string
	// ExtraConnections are sections appended to the default connections.ini.
	ExtraConnections string
	// Endpoint overrides keys of the standard endpoints, by id:
	// {"vsftps": {"max_connections": "4"}}.
	Endpoint map[string]map[string]string
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
	T      *testing.T
	Name   string // the test's name as a file name
	Dir    string
	Base   string // the local endpoint's base_path
	Group  string
	Config string // config.yaml path
	Conns  string // connections.ini path
	// Suffix makes task ids and directories unique: the run id and this
	// stack's number in the run (go test -count=N repeats tests).
	Suffix string
	// Since is when the stack was made: outcomes older than that are not
	// this test's (the seed's fixed task id may have run before).
	Since time.Time

	Dispatcher *Proc
	Agents     []*Proc

	LeaseAddr, AdminAddr, HTTPAddr string
	// AgentHTTP is each agent's --http-listen address, as it logged it.
	AgentHTTP []string
	Admin     adminv1.AdminServiceClient

	opts      StackOptions
	adminConn *grpc.ClientConn
	fixed     struct{ lease, admin, http string }
	stopOnce  sync.Once
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
	s := &Stack{T: t, Name: name, Dir: filepath.Join(env.WorkDir, name), opts: opts, Since: time.Now().Add(-time.Second),
		Suffix: fmt.Sprintf("%s%d", runID, stacks.Add(1))}
	must(t, os.RemoveAll(s.Dir))
	must(t, os.MkdirAll(s.Dir, 0o755))
	s.Base = opts.LocalBase
	if s.Base == "" {
		s.Base = filepath.Join(s.Dir, "base")
	}
	must(t, os.MkdirAll(s.Base, 0o755))
	s.Group = opts.Group
	if s.Group == "" {
		s.Group = "realstack-" + s.Suffix + "-" + name
	}
	if opts.StablePorts {
		s.fixed.lease, s.fixed.admin, s.fixed.http = freeAddr(t), freeAddr(t), freeAddr(t)
	}
	s.Config = filepath.Join(s.Dir, "config.yaml")
	s.Conns = filepath.Join(s.Dir, "connections.ini")
	cfg := opts.ConfigYAML
	if cfg == "" {
		cfg = s.defaultConfig()
	}
	must(t, os.WriteFile(s.Config, []byte(cfg), 0o644))
	conns := opts.ConnectionsINI
	if conns == "" {
		conns = s.defaultConnections() + opts.ExtraConnections
	}
	must(t, os.WriteFile(s.Conns, []byte(conns), 0o600))

	s.Dispatcher = NewProc("dispatcher", filepath.Join(env.BinDir, "dispatcher"), filepath.Join(s.Dir, "dispatcher.log"))
	for i := 0; i < opts.Agents; i++ {
		n := fmt.Sprintf("agent-%d", i+1)
		s.Agents = append(s.Agents, NewProc(n, filepath.Join(env.BinDir, "agent"), filepath.Join(s.Dir, n+".log")))
		s.AgentHTTP = append(s.AgentHTTP, "")
	}
	SeekGroupToEnd(t, s.Group, TasksTopic)
	t.Cleanup(s.cleanup)
	return s
}

func (s *Stack) defaultConfig() string {
	cfg := map[string]map[string]any{
		"kafka": {
			"bootstrap_servers": strings.Split(env.KafkaBrokers, ","),
			"consumer_group":    s.Group,
			"commit_interval":   "20ms",
		},
		"pool":     {"max_sessions_per_connection": 10},
		"transfer": {"connect_timeout_seconds": 10, "idle_timeout": "30s"},
		"retry":    {"max_attempts": 3, "base_backoff": "200ms", "max_backoff": "1s"},
		"lease":    {"ttl": "15s", "heartbeat_interval": "2s"},
		"logging":  {"level": "INFO", "format": "text"},
		"dispatcher": {
			"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0",
			"drain_timeout": "20s",
		},
		"agent": {"drain_timeout": "20s", "reconnect_max_backoff": "1s"},
	}
	for sec, kv := range s.opts.Config {
		if cfg[sec] == nil {
			cfg[sec] = map[string]any{}
		}
		for k, v := range kv {
			cfg[sec][k] = v
		}
	}
	// JSON is YAML.
	b, err := json.MarshalIndent(cfg, "", "  ")
	must(s.T, err)
	return "# Written by e2e/realstack for " + s.T.Name() + ".\n" + string(b) + "\n"
}

func (s *Stack) defaultConnections() string {
	sections := []struct {
		id   string
		keys [][2]string
	}{
		{"vsftpd", ftpKeys(env.VSFTPD)},
		{"pureftpd", ftpKeys(env.PureFTPD)},
		{"vsftps", append(ftpKeys(env.VSFTPS), [2]string{"tls", "explicit"}, [2]string{"tls_ca_file", env.VSFTPSCA})},
		{"local", [][2]string{{"type", "local"}, {"base_path", s.Base}}},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "; Written by e2e/realstack for %s.\n", s.T.Name())
	for _, sec := range sections {
		fmt.Fprintf(&b, "\n[%s]\n", sec.id)
		over := s.opts.Endpoint[sec.id]
		seen := map[string]bool{}
		for _, kv := range sec.keys {
			v := kv[1]
			if o, ok := over[kv[0]]; ok {
				v = o
			}
			seen[kv[0]] = true
			fmt.Fprintf(&b, "%s = %s\n", kv[0], v)
		}
		var extra []string
		for k := range over {
			if !seen[k] {
				extra = append(extra, k)
			}
		}
		sort.Strings(extra)
		for _, k := range extra {
			fmt.Fprintf(&b, "%s = %s\n", k, over[k])
		}
	}
	return b.String()
}

func ftpKeys(srv FTPServer) [][2]string {
	return [][2]string{{"type", "ftp"}, {"host", srv.Host}, {"port", fmt.Sprint(srv.Port)}, {"user", srv.User}, {"pass", srv.Pass}}
}

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

// StartDispatcher starts (or restarts, after it exited) the dispatcher and
// reads its addresses from its start-up log line.
func (s *Stack) StartDispatcher() {
	t := s.T
	t.Helper()
	d := s.Dispatcher
	if d.Starts() == 0 {
		lease, admin, httpAddr := "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		if s.opts.StablePorts {
			lease, admin, httpAddr = s.fixed.lease, s.fixed.admin, s.fixed.http
		}
		d.Args = []string{"--config", s.Config, "--connections", s.Conns,
			"--listen", lease, "--admin-listen", admin, "--http-listen", httpAddr,
			"--instance-id", s.Name + "-d"}
	}
	must(t, d.Start())
	var err error
	if s.LeaseAddr, err = d.WaitLogValue("lease_address", 60*time.Second); err != nil {
		t.Fatalf("dispatcher did not start: %v\n%s", err, d.Tail(40))
	}
	s.AdminAddr, _ = d.WaitLogValue("admin_address", time.Second)
	s.HTTPAddr, _ = d.WaitLogValue("http_address", time.Second)
	if s.adminConn != nil {
		s.adminConn.Close()
	}
	s.adminConn, err = grpc.NewClient(s.AdminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	s.Admin = adminv1.NewAdminServiceClient(s.adminConn)
}

// StartAgent starts (or restarts) agent i, connected to the dispatcher.
func (s *Stack) StartAgent(i int) {
	t := s.T
	t.Helper()
	a := s.Agents[i]
	a.Args = []string{"--config", s.Config, "--connections", s.Conns,
		"--dispatcher", s.LeaseAddr, "--slots", fmt.Sprint(s.opts.Slots),
		"--agent-id", s.AgentID(i), "--http-listen", "127.0.0.1:0"}
	must(t, a.Start())
	addr, err := a.WaitLogValue("http_address", 30*time.Second)
	if err != nil {
		t.Fatalf("%s did not start: %v\n%s", a.Name, err, a.Tail(40))
	}
	s.AgentHTTP[i] = addr
}

// AgentID is agent i's --agent-id.
func (s *Stack) AgentID(i int) string { return fmt.Sprintf("%s-a%d", s.Name, i+1) }

// WaitReady waits until the dispatcher's /readyz answers 200 and
// ListAgents shows n agents, each with a credit window.
func (s *Stack) WaitReady(n int, timeout time.Duration) {
	t := s.T
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if !s.Dispatcher.Running() {
			t.Fatalf("dispatcher exited (%v) before it was ready\n%s", s.Dispatcher.Wait(0), s.Dispatcher.Tail(60))
		}
		code, err := httpStatus("http://" + s.HTTPAddr + "/readyz")
		if err != nil || code != http.StatusOK {
			last = fmt.Sprintf("/readyz: %d %v", code, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := s.Admin.ListAgents(ctx, &adminv1.ListAgentsRequest{})
		cancel()
		if err != nil {
			last = fmt.Sprintf("ListAgents: %v", err)
		} else {
			ready := 0
			for _, a := range resp.Agents {
				if a.Window > 0 && !a.Draining {
					ready++
				}
			}
			if ready == n && len(resp.Agents) == n {
				return
			}
			last = fmt.Sprintf("ListAgents: %d agents, %d with a window: %v", len(resp.Agents), ready, resp.Agents)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not ready within %s: %s", timeout, last)
}

func httpStatus(url string) (int, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Procs are the dispatcher and the agents.
func (s *Stack) Procs() []*Proc { return append([]*Proc{s.Dispatcher}, s.Agents...) }

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
		if s.adminConn != nil {
			s.adminConn.Close()
		}
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
	if s.Admin == nil {
		return ""
	}
	var b strings.Builder
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		r, err := s.Admin.GetTask(ctx, &adminv1.GetTaskRequest{TaskId: id})
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

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
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
