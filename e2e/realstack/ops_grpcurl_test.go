//go:build e2e

package realstack

// The dispatcher's admin API driven by the real grpcurl binary, exactly as
// the README's "Admin API (grpcurl)" section shows it: server reflection
// (no proto files), grpcurl's JSON output, its error reports, and the
// bearer token. scripts/e2e/install.sh builds grpcurl with scripts/go-tool.sh
// into .bin/grpcurl (E2E_GRPCURL names another binary).
//
// grpcurl prints responses as protobuf JSON: lowerCamelCase field names,
// enums by name, 64-bit integers as strings, fields at their zero value left
// out. The structs below read that.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

const adminService = "ftppooler.admin.v1.AdminService"

// grpcurlPath finds the grpcurl binary.
func grpcurlPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("E2E_GRPCURL"); p != "" {
		return p
	}
	p := filepath.Join(env.RepoRoot, ".bin", "grpcurl")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if lp, err := exec.LookPath("grpcurl"); err == nil {
		return lp
	}
	t.Fatalf("grpcurl not found at %s or on PATH: run scripts/e2e/install.sh (it builds grpcurl with scripts/go-tool.sh)", p)
	return ""
}

// GrpcurlResult is one grpcurl run.
type GrpcurlResult struct {
	Cmd            string
	Stdout, Stderr string
	Exit           int
}

// Code is the gRPC code name grpcurl reported on stderr ("ERROR:\n  Code:
// NotFound\n  Message: ..."), or "" when it reported none.
func (r GrpcurlResult) Code() string {
	if m := regexp.MustCompile(`(?m)^\s*Code: (\w+)$`).FindStringSubmatch(r.Stderr); m != nil {
		return m[1]
	}
	if m := regexp.MustCompile(`code = (\w+) desc`).FindStringSubmatch(r.Stderr); m != nil {
		return m[1]
	}
	return ""
}

// Message is the status message grpcurl reported.
func (r GrpcurlResult) Message() string {
	if m := regexp.MustCompile(`(?m)^\s*Message: (.*)$`).FindStringSubmatch(r.Stderr); m != nil {
		return m[1]
	}
	return ""
}

func (r GrpcurlResult) String() string {
	return fmt.Sprintf("$ %s\nexit %d\nstdout: %s\nstderr: %s", r.Cmd, r.Exit, r.Stdout, r.Stderr)
}

// Grpcurl runs grpcurl with args, as a shell user would type them.
func Grpcurl(t testing.TB, args ...string) GrpcurlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, grpcurlPath(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := GrpcurlResult{Cmd: shellQuote(append([]string{"grpcurl"}, args...)), Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Exit = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", r.Cmd, err)
	}
	return r
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \"'{}$*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// admin calls ftppooler.admin.v1.AdminService/method the README's way:
//
//	grpcurl [opts] -plaintext [-d DATA] ADDR ftppooler.admin.v1.AdminService/Method
func admin(t testing.TB, addr, method, data string, opts ...string) GrpcurlResult {
	t.Helper()
	args := append(append([]string(nil), opts...), "-plaintext")
	if data != "" {
		args = append(args, "-d", data)
	}
	return Grpcurl(t, append(args, addr, adminService+"/"+method)...)
}

// ok fails the test unless the call succeeded, and decodes its JSON into v
// (nil to skip), returning the top-level keys too.
func (r GrpcurlResult) ok(t testing.TB, v any) map[string]json.RawMessage {
	t.Helper()
	if r.Exit != 0 {
		t.Fatalf("grpcurl failed:\n%s", r)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.Stdout), &keys); err != nil {
		t.Fatalf("grpcurl printed no JSON object (%v):\n%s", err, r)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
			t.Fatalf("grpcurl's JSON does not decode into %T (%v):\n%s", v, err, r)
		}
	}
	return keys
}

// wantError fails the test unless the call failed with the gRPC code and a
// message matching re, and grpcurl exited with 64 + the code's number (its
// convention for RPC errors).
func (r GrpcurlResult) wantError(t testing.TB, code string, re string) {
	t.Helper()
	codes := map[string]int{"InvalidArgument": 3, "NotFound": 5, "FailedPrecondition": 9, "Unauthenticated": 16}
	if r.Code() != code {
		t.Errorf("want gRPC code %s, got %q:\n%s", code, r.Code(), r)
		return
	}
	if !regexp.MustCompile(re).MatchString(r.Message()) {
		t.Errorf("message %q does not match %q:\n%s", r.Message(), re, r)
	}
	if want := 64 + codes[code]; r.Exit != want {
		t.Errorf("grpcurl exit status %d, want %d (64 + %s):\n%s", r.Exit, want, code, r)
	}
	if r.Stdout != "" {
		t.Errorf("an error printed on stdout:\n%s", r)
	}
}

// i64 is a protobuf JSON 64-bit integer: a string ("42"), or a number.
type i64 int64

func (v *i64) UnmarshalJSON(b []byte) error {
	n, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	*v = i64(n)
	return err
}

type jAgent struct {
	AgentID        string `json:"agentId"`
	Address        string `json:"address"`
	Version        string `json:"version"`
	Hostname       string `json:"hostname"`
	Slots          uint32 `json:"slots"`
	Window         uint32 `json:"window"`
	InFlight       uint32 `json:"inFlight"`
	ConnectedSince string `json:"connectedSince"`
	Draining       bool   `json:"draining"`
}

type jLease struct {
	LeaseID        string  `json:"leaseId"`
	Token          i64     `json:"token"`
	TaskID         string  `json:"taskId"`
	AgentID        string  `json:"agentId"`
	Attempt        uint32  `json:"attempt"`
	BytesDone      i64     `json:"bytesDone"`
	BytesTotal     i64     `json:"bytesTotal"`
	BytesPerSecond float64 `json:"bytesPerSecond"`
	LeasedAt       string  `json:"leasedAt"`
	Src            string  `json:"src"`
	Dst            string  `json:"dst"`
}

type jTask struct {
	TaskID           string `json:"taskId"`
	State            string `json:"state"`
	Partition        int32  `json:"partition"`
	Offset           i64    `json:"offset"`
	Attempt          uint32 `json:"attempt"`
	AgentID          string `json:"agentId"`
	BytesDone        i64    `json:"bytesDone"`
	BytesTotal       i64    `json:"bytesTotal"`
	LastErrorCode    string `json:"lastErrorCode"`
	LastErrorMessage string `json:"lastErrorMessage"`
	OutcomeStatus    string `json:"outcomeStatus"`
	ReceivedAt       string `json:"receivedAt"`
	Src              string `json:"src"`
	Dst              string `json:"dst"`
}

type jStats struct {
	Queued          uint32 `json:"queued"`
	Leased          uint32 `json:"leased"`
	Publishing      uint32 `json:"publishing"`
	OldestQueuedAge string `json:"oldestQueuedAge"`
	IntakePaused    bool   `json:"intakePaused"`
	Partitions      []struct {
		Partition       int32  `json:"partition"`
		Outstanding     uint32 `json:"outstanding"`
		CommittedOffset i64    `json:"committedOffset"`
		Lag             i64    `json:"lag"`
	} `json:"partitions"`
	OutcomesByCode    map[string]i64     `json:"outcomesByCode"`
	Agents            uint32             `json:"agents"`
	OutcomesPerSecond map[string]float64 `json:"outcomesPerSecond"`
}

type jEndpoint struct {
	EndpointID          string `json:"endpointId"`
	Type                string `json:"type"`
	Address             string `json:"address"`
	Limit               uint32 `json:"limit"`
	Share               uint32 `json:"share"`
	Granted             uint32 `json:"granted"`
	Busy                uint32 `json:"busy"`
	Idle                uint32 `json:"idle"`
	Breaker             string `json:"breaker"`
	ConsecutiveFailures uint32 `json:"consecutiveFailures"`
	LastError           string `json:"lastError"`
	Paused              bool   `json:"paused"`
	Queued              uint32 `json:"queued"`
	Agents              []struct {
		AgentID string `json:"agentId"`
		Quota   uint32 `json:"quota"`
		Busy    uint32 `json:"busy"`
		Open    uint32 `json:"open"`
		Idle    uint32 `json:"idle"`
	} `json:"agents"`
}

type jEvent struct {
	Kind           string  `json:"kind"`
	Time           string  `json:"time"`
	TaskID         string  `json:"taskId"`
	LeaseID        string  `json:"leaseId"`
	Attempt        uint32  `json:"attempt"`
	AgentID        string  `json:"agentId"`
	BytesDone      i64     `json:"bytesDone"`
	BytesTotal     i64     `json:"bytesTotal"`
	BytesPerSecond float64 `json:"bytesPerSecond"`
	ErrorCode      string  `json:"errorCode"`
	ErrorMessage   string  `json:"errorMessage"`
	Dropped        i64     `json:"dropped"`
}

func getTask(t testing.TB, addr, id string) (jTask, GrpcurlResult) {
	t.Helper()
	r := admin(t, addr, "GetTask", fmt.Sprintf(`{"task_id":%q}`, id))
	var resp struct{ Task jTask }
	if r.Exit == 0 {
		r.ok(t, &resp)
	}
	return resp.Task, r
}

// waitTask polls GetTask until cond holds.
func waitTask(t testing.TB, addr, id string, timeout time.Duration, what string, cond func(jTask) bool) jTask {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last GrpcurlResult
	for time.Now().Before(deadline) {
		tk, r := getTask(t, addr, id)
		last = r
		if r.Exit == 0 && cond(tk) {
			return tk
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("task %s: not %s within %s; last GetTask:\n%s", id, what, timeout, last)
	return jTask{}
}

func listEndpoints(t testing.TB, addr string) map[string]jEndpoint {
	t.Helper()
	var resp struct{ Endpoints []jEndpoint }
	admin(t, addr, "ListEndpoints", "").ok(t, &resp)
	out := map[string]jEndpoint{}
	for _, e := range resp.Endpoints {
		out[e.EndpointID] = e
	}
	return out
}

func listAgents(t testing.TB, addr string) map[string]jAgent {
	t.Helper()
	var resp struct{ Agents []jAgent }
	admin(t, addr, "ListAgents", "").ok(t, &resp)
	out := map[string]jAgent{}
	for _, a := range resp.Agents {
		out[a.AgentID] = a
	}
	return out
}

func getStats(t testing.TB, addr string) (jStats, map[string]json.RawMessage) {
	t.Helper()
	var st jStats
	keys := admin(t, addr, "GetStats", "").ok(t, &st)
	return st, keys
}

// Watcher is a running `grpcurl ... AdminService/Watch`, its events decoded
// as they are printed.
type Watcher struct {
	cmd    *exec.Cmd
	stderr proc.Capture
	mu     sync.Mutex
	events []jEvent
	raw    []string
	err    error
	more   chan struct{}
	done   chan struct{}
}

// StartWatch runs grpcurl -plaintext -d DATA ADDR .../Watch in the background.
func StartWatch(t testing.TB, addr, data string) *Watcher {
	t.Helper()
	w := &Watcher{more: make(chan struct{}, 1), done: make(chan struct{})}
	args := []string{"-plaintext", "-d", data, addr, adminService + "/Watch"}
	w.cmd = exec.Command(grpcurlPath(t), args...)
	w.cmd.Stderr = &w.stderr
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := w.cmd.StdoutPipe()
	must(t, err)
	t.Logf("$ %s &", shellQuote(append([]string{"grpcurl"}, args...)))
	must(t, w.cmd.Start())
	go w.read(out)
	t.Cleanup(w.Stop)
	return w
}

func (w *Watcher) read(r io.Reader) {
	defer close(w.done)
	dec := json.NewDecoder(bufio.NewReader(r))
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		w.mu.Lock()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				w.err = err
			}
			w.mu.Unlock()
			return
		}
		var resp struct{ Event jEvent }
		if jerr := json.Unmarshal(raw, &resp); jerr != nil {
			w.err = fmt.Errorf("Watch printed %s: %w", raw, jerr)
		}
		w.events = append(w.events, resp.Event)
		w.raw = append(w.raw, string(raw))
		w.mu.Unlock()
		select {
		case w.more <- struct{}{}:
		default:
		}
	}
}

// Events is what arrived so far.
func (w *Watcher) Events() []jEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]jEvent(nil), w.events...)
}

// WaitFor waits until an event satisfies cond and returns it.
func (w *Watcher) WaitFor(t testing.TB, timeout time.Duration, what string, cond func(jEvent) bool) jEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, ev := range w.Events() {
			if cond(ev) {
				return ev
			}
		}
		select {
		case <-w.more:
		case <-w.done:
			for _, ev := range w.Events() {
				if cond(ev) {
					return ev
				}
			}
			t.Fatalf("grpcurl Watch ended (%v) before %s; stderr: %s", w.err, what, w.stderr.String())
		case <-deadline:
			t.Fatalf("no Watch event %s within %s; events so far:\n%s", what, timeout, strings.Join(w.Raw(), "\n"))
		}
	}
}

// WaitConnected waits until grpcurl holds a connection to addr (it then
// resolves the method by reflection and opens the stream at once).
func (w *Watcher) WaitConnected(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, err := exec.Command("ss", "-Htnp", "state", "established", "dst", addr).Output()
		must(t, err)
		if strings.Contains(string(out), "pid="+strconv.Itoa(w.cmd.Process.Pid)+",") {
			return
		}
		select {
		case <-w.done:
			t.Fatalf("grpcurl Watch ended (%v): %s", w.err, w.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("grpcurl Watch did not connect to %s within %s", addr, timeout)
}

// Raw is the JSON objects grpcurl printed.
func (w *Watcher) Raw() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.raw...)
}

// Stop ends grpcurl (the stream never ends by itself).
func (w *Watcher) Stop() {
	if w.cmd.Process != nil {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	_ = w.cmd.Wait()
}

// TestOpsGrpcurl drives a dispatcher with two agents through every admin
// call of the README with grpcurl and checks the JSON it prints: reflection
// (list, describe), the health check, ListAgents, ListEndpoints, the error
// codes, PauseEndpoint/ResumeEndpoint and CancelTask on queued tasks,
// PauseIntake/ResumeIntake, and one long transfer (12 MiB through a proxy
// that throttles the FTP data to 1 MiB/s) followed with Watch, ListLeases
// and GetTask while DrainAgent drains its agent; then CancelTask on a
// leased transfer and GetStats' counters.
func TestOpsGrpcurl(t *testing.T) {
	grpcurlPath(t)
	const rate, bigSize = 1 << 20, 12 << 20
	proxy := NewThrottledFTP(t, env.VSFTPD.Addr, rate)
	s := NewStack(t, StackOptions{
		Endpoints: []config.Endpoint{ftpSection("slowftp", proxy.Host(), proxy.Port(), env.VSFTPD, 0)},
		Config:    func(c *config.Config) { c.Lease.HeartbeatInterval = 500 * time.Millisecond },
	})
	addr := s.Dispatcher.Admin
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir))
	small := []byte("ops via grpcurl\n")
	PutFile(t, env.VSFTPD.Path(dir+"/small.txt"), small)
	bigSum := PutRandomFile(t, env.VSFTPD.Path(dir+"/big.bin"), bigSize, 77)
	smallTask := func(name string) Task {
		return Task{TaskID: s.ID("ops-" + name), SrcID: "vsftpd", SrcPath: dir + "/small.txt", DstID: "local", DstPath: "ops/" + name + ".txt"}
	}

	// grpcurl -plaintext localhost:7071 list
	r := Grpcurl(t, "-plaintext", addr, "list")
	if r.Exit != 0 {
		t.Fatalf("list:\n%s", r)
	}
	t.Logf("$ %s\n%s", r.Cmd, r.Stdout)
	services := strings.Fields(r.Stdout)
	for _, want := range []string{adminService, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !contains(services, want) {
			t.Errorf("list does not name %s:\n%s", want, r)
		}
	}

	// grpcurl -plaintext localhost:7071 describe ftppooler.admin.v1.AdminService
	r = Grpcurl(t, "-plaintext", addr, "describe", adminService)
	if r.Exit != 0 || !strings.Contains(r.Stdout, adminService+" is a service:") {
		t.Fatalf("describe:\n%s", r)
	}
	for _, m := range []string{"ListAgents", "ListLeases", "GetTask", "CancelTask", "DrainAgent", "PauseIntake", "ResumeIntake",
		"GetStats", "ListEndpoints", "PauseEndpoint", "ResumeEndpoint"} {
		want := fmt.Sprintf("rpc %s ( .ftppooler.admin.v1.%sRequest ) returns ( .ftppooler.admin.v1.%sResponse );", m, m, m)
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("describe lacks %q:\n%s", want, r.Stdout)
		}
	}
	if want := "rpc Watch ( .ftppooler.admin.v1.WatchRequest ) returns ( stream .ftppooler.admin.v1.WatchResponse );"; !strings.Contains(r.Stdout, want) {
		t.Errorf("describe lacks %q:\n%s", want, r.Stdout)
	}

	// grpcurl -plaintext localhost:7071 grpc.health.v1.Health/Check
	var health struct{ Status string }
	Grpcurl(t, "-plaintext", addr, "grpc.health.v1.Health/Check").ok(t, &health)
	if health.Status != "SERVING" {
		t.Errorf("health: status %q, want SERVING", health.Status)
	}

	// ListAgents: both agents, with their slots and credit windows.
	var agentsResp struct{ Agents []jAgent }
	keys := admin(t, addr, "ListAgents", "").ok(t, &agentsResp)
	if _, ok := keys["agents"]; !ok {
		t.Errorf("ListAgents printed no \"agents\": %v", keys)
	}
	agents := map[string]jAgent{}
	for _, a := range agentsResp.Agents {
		agents[a.AgentID] = a
	}
	for i := range s.Agents {
		a, ok := agents[s.AgentID(i)]
		switch {
		case !ok:
			t.Errorf("ListAgents lacks %s: %+v", s.AgentID(i), agentsResp.Agents)
		case a.Slots != 8 || a.Window == 0 || a.Draining || a.Version == "" || a.Hostname == "" ||
			!strings.HasPrefix(a.Address, "127.0.0.1:") || !isTimestamp(a.ConnectedSince):
			t.Errorf("ListAgents: %+v", a)
		}
	}

	// ListEndpoints: the connections file, with limits and breakers.
	eps := listEndpoints(t, addr)
	if len(eps) != 5 {
		t.Errorf("ListEndpoints: %d endpoints, want 5: %v", len(eps), eps)
	}
	if e := eps["vsftpd"]; e.Type != "ftp" || e.Address != env.VSFTPD.Addr || e.Limit != 10 || e.Breaker != "BREAKER_STATE_CLOSED" || e.Paused {
		t.Errorf("ListEndpoints vsftpd: %+v", e)
	}
	if e := eps["local"]; e.Type != "local" || e.Address != s.Base || e.Breaker != "" {
		t.Errorf("ListEndpoints local: %+v", e)
	}

	// Errors: NotFound for unknown ids, InvalidArgument naming the field.
	unknown := s.ID("ops-no-such-task")
	_, r = getTask(t, addr, unknown)
	r.wantError(t, "NotFound", `^task_id "`+regexp.QuoteMeta(unknown)+`": no such task`)
	admin(t, addr, "GetTask", "").wantError(t, "InvalidArgument", `^task_id is required$`)
	admin(t, addr, "CancelTask", `{"reason":"no id"}`).wantError(t, "InvalidArgument", `^task_id is required$`)
	admin(t, addr, "DrainAgent", `{}`).wantError(t, "InvalidArgument", `^agent_id is required$`)
	admin(t, addr, "DrainAgent", `{"agent_id":"no-such-agent"}`).wantError(t, "NotFound", `^agent_id "no-such-agent": no such agent`)
	admin(t, addr, "PauseEndpoint", `{}`).wantError(t, "InvalidArgument", `^endpoint_id is required$`)
	admin(t, addr, "ResumeEndpoint", `{"endpoint_id":" "}`).wantError(t, "InvalidArgument", `^endpoint_id is required$`)
	admin(t, addr, "PauseEndpoint", `{"endpoint_id":"remote-ftp"}`).wantError(t, "NotFound", `^endpoint_id "remote-ftp": no such endpoint`)
	admin(t, addr, "CancelTask", fmt.Sprintf(`{"task_id":%q,"reason":"wrong file"}`, unknown)).wantError(t, "NotFound", `no such task`)
	// A misspelt field is grpcurl's own error, before any call.
	if r := admin(t, addr, "GetTask", `{"taskid":"x"}`); r.Exit == 0 || !strings.Contains(r.Stderr, "taskid") {
		t.Errorf("a misspelt field was not refused:\n%s", r)
	}

	// PauseEndpoint holds tasks back; CancelTask cancels a queued one;
	// ResumeEndpoint lets the rest run.
	admin(t, addr, "PauseEndpoint", `{"endpoint_id":"vsftpd"}`).ok(t, nil)
	held, doomed := smallTask("held"), smallTask("cancelled-queued")
	SubmitTasks(t, held, doomed)
	for _, tk := range []Task{held, doomed} {
		got := waitTask(t, addr, tk.TaskID, 60*time.Second, "queued", func(j jTask) bool { return j.State == "TASK_STATE_QUEUED" })
		if got.Src != "vsftpd:"+tk.SrcPath || got.Dst != "local:"+tk.DstPath || !isTimestamp(got.ReceivedAt) || got.AgentID != "" {
			t.Errorf("GetTask of a queued task: %+v", got)
		}
	}
	if e := listEndpoints(t, addr)["vsftpd"]; !e.Paused || e.Queued != 2 {
		t.Errorf("ListEndpoints of the paused vsftpd: paused %v, queued %d, want true, 2", e.Paused, e.Queued)
	}
	if st, _ := getStats(t, addr); st.Queued != 2 || !isDuration(st.OldestQueuedAge) {
		t.Errorf("GetStats with 2 held tasks: %+v", st)
	}
	// A second pause reports what is held back.
	var paused struct{ Queued uint32 }
	admin(t, addr, "PauseEndpoint", `{"endpoint_id":"vsftpd"}`).ok(t, &paused)
	if paused.Queued != 2 {
		t.Errorf("PauseEndpoint: queued %d, want 2", paused.Queued)
	}
	var cancelled struct{ PreviousState string }
	admin(t, addr, "CancelTask", fmt.Sprintf(`{"task_id":%q,"reason":"wrong file"}`, doomed.TaskID)).ok(t, &cancelled)
	if cancelled.PreviousState != "TASK_STATE_QUEUED" {
		t.Errorf("CancelTask of a queued task: previousState %q", cancelled.PreviousState)
	}
	m := s.Outcome(t, doomed.TaskID, 60*time.Second)
	s.CheckFailure(t, m, doomed, "CANCELLED")
	if !strings.Contains(m.Str("error_message"), "wrong file") {
		t.Errorf("the cancellation's reason is not in the outcome: %s", m.Value)
	}
	admin(t, addr, "CancelTask", fmt.Sprintf(`{"task_id":%q}`, doomed.TaskID)).wantError(t, "FailedPrecondition", `already finished`)
	if r := admin(t, addr, "ResumeEndpoint", `{"endpoint_id":"vsftpd"}`); r.ok(t, nil) != nil && strings.TrimSpace(r.Stdout) != "{}" {
		t.Errorf("ResumeEndpoint printed %q, want {}", r.Stdout)
	}
	s.CheckSuccess(t, s.Outcome(t, held.TaskID, 60*time.Second), held, int64(len(small)))
	done := waitTask(t, addr, held.TaskID, 30*time.Second, "done", func(j jTask) bool { return j.State == "TASK_STATE_DONE" })
	if done.OutcomeStatus != "success" || done.Attempt != 1 {
		t.Errorf("GetTask of a finished task: %+v", done)
	}
	if got, _ := getTask(t, addr, doomed.TaskID); got.State != "TASK_STATE_DONE" || got.OutcomeStatus != "failed" || got.LastErrorCode != "CANCELLED" {
		t.Errorf("GetTask of a cancelled task: %+v", got)
	}

	// PauseIntake: nothing is read from Kafka until ResumeIntake.
	if r := admin(t, addr, "PauseIntake", ""); r.ok(t, nil) != nil && strings.TrimSpace(r.Stdout) != "{}" {
		t.Errorf("PauseIntake printed %q, want {}", r.Stdout)
	}
	if st, _ := getStats(t, addr); !st.IntakePaused {
		t.Errorf("GetStats after PauseIntake: intakePaused false")
	}
	late := smallTask("late")
	SubmitTasks(t, late)
	time.Sleep(3 * time.Second)
	_, r = getTask(t, addr, late.TaskID)
	r.wantError(t, "NotFound", "no such task")
	if ms := collector.Messages(late.TaskID, "", s.Since); len(ms) > 0 {
		t.Errorf("a task ran while intake was paused: %v", ms)
	}
	admin(t, addr, "ResumeIntake", "").ok(t, nil)
	if _, keys := getStats(t, addr); keys["intakePaused"] != nil {
		t.Errorf("GetStats after ResumeIntake still shows intakePaused")
	}
	s.CheckSuccess(t, s.Outcome(t, late.TaskID, 60*time.Second), late, int64(len(small)))

	// A long transfer, watched. The watch is subscribed before the task is
	// produced, so it sees the task from the start.
	big := Task{TaskID: s.ID("ops-big"), SrcID: "slowftp", SrcPath: dir + "/big.bin", DstID: "local", DstPath: "ops/big.bin"}
	w := StartWatch(t, addr, fmt.Sprintf(`{"task_id":%q}`, big.TaskID))
	w.WaitConnected(t, addr, 30*time.Second)
	time.Sleep(time.Second) // grpcurl's reflection round trips, then the stream
	start := time.Now()
	SubmitTasks(t, big)
	leased := w.WaitFor(t, 60*time.Second, "LEASED", func(e jEvent) bool { return e.Kind == "TASK_EVENT_KIND_LEASED" })
	holder := leased.AgentID
	other := s.AgentID(0)
	if holder == other {
		other = s.AgentID(1)
	}
	w.WaitFor(t, 30*time.Second, "PROGRESS with bytes", func(e jEvent) bool {
		return e.Kind == "TASK_EVENT_KIND_PROGRESS" && e.BytesDone > 0
	})

	// While it runs: ListLeases, GetTask, ListEndpoints and GetStats show it.
	var leases struct{ Leases []jLease }
	admin(t, addr, "ListLeases", "").ok(t, &leases)
	if len(leases.Leases) != 1 {
		t.Fatalf("ListLeases during the transfer: %+v", leases.Leases)
	}
	l := leases.Leases[0]
	if l.TaskID != big.TaskID || l.AgentID != holder || l.Attempt != 1 || l.Token <= 0 || l.LeaseID == "" ||
		l.BytesTotal != bigSize || l.BytesDone <= 0 || l.BytesDone >= bigSize || l.BytesPerSecond <= 0 || l.BytesPerSecond > 3*rate ||
		!isTimestamp(l.LeasedAt) || l.Src != "slowftp:"+big.SrcPath || l.Dst != "local:"+big.DstPath {
		t.Errorf("ListLeases: %+v", l)
	}
	if got, _ := getTask(t, addr, big.TaskID); got.State != "TASK_STATE_LEASED" || got.AgentID != holder || got.BytesTotal != bigSize || got.Attempt != 1 {
		t.Errorf("GetTask of the leased task: %+v", got)
	}
	if e := listEndpoints(t, addr)["slowftp"]; e.Busy != 1 || e.Address != fmt.Sprintf("127.0.0.1:%d", proxy.Port()) {
		t.Errorf("ListEndpoints slowftp during the transfer: %+v", e)
	}
	if st, _ := getStats(t, addr); st.Leased != 1 || st.Agents != 2 {
		t.Errorf("GetStats during the transfer: %+v", st)
	}

	// DrainAgent: the holder takes no new lease, its transfer finishes.
	var drained struct{ InFlight uint32 }
	admin(t, addr, "DrainAgent", fmt.Sprintf(`{"agent_id":%q}`, holder)).ok(t, &drained)
	if drained.InFlight != 1 {
		t.Errorf("DrainAgent %s: inFlight %d, want 1", holder, drained.InFlight)
	}
	ag := listAgents(t, addr)
	if !ag[holder].Draining || ag[other].Draining || ag[holder].InFlight != 1 {
		t.Errorf("ListAgents after DrainAgent %s: %+v", holder, ag)
	}
	during := smallTask("during-drain")
	m = s.Run(t, 60*time.Second, during)[during.TaskID]
	s.CheckSuccess(t, m, during, int64(len(small)))
	if m.Str("agent") != other {
		t.Errorf("a task ran on the drained agent %s: %s", holder, m.Value)
	}

	succeeded := w.WaitFor(t, 120*time.Second, "SUCCEEDED", func(e jEvent) bool { return e.Kind == "TASK_EVENT_KIND_SUCCEEDED" })
	elapsed := time.Since(start)
	m = s.Outcome(t, big.TaskID, 30*time.Second)
	s.CheckSuccess(t, m, big, bigSize)
	CheckFile(t, filepath.Join(s.Base, big.DstPath), bigSum, bigSize)
	if m.Str("agent") != holder {
		t.Errorf("the big transfer finished on %s, not on its drained holder %s", m.Str("agent"), holder)
	}
	if floor := time.Duration(bigSize / rate * int64(time.Second) * 8 / 10); elapsed < floor {
		t.Errorf("the throttled transfer took %s, under %s: the proxy did not throttle", elapsed, floor)
	}
	// The SUCCEEDED event has the bytes, but neither agent nor lease id nor
	// size (the scheduler emits it after the lease is gone).
	if succeeded.TaskID != big.TaskID || succeeded.BytesDone != bigSize {
		t.Errorf("SUCCEEDED event: %+v", succeeded)
	}
	// The events: QUEUED, LEASED, PROGRESS (advancing), COMMITTED, SUCCEEDED.
	w.Stop()
	events := w.Events()
	var kinds []string
	var progress []jEvent
	for _, e := range events {
		if len(kinds) == 0 || kinds[len(kinds)-1] != e.Kind {
			kinds = append(kinds, e.Kind)
		}
		if e.TaskID != big.TaskID || !isTimestamp(e.Time) {
			t.Errorf("Watch event: %+v", e)
		}
		if e.Kind == "TASK_EVENT_KIND_PROGRESS" {
			progress = append(progress, e)
		}
	}
	want := []string{"TASK_EVENT_KIND_QUEUED", "TASK_EVENT_KIND_LEASED", "TASK_EVENT_KIND_PROGRESS", "TASK_EVENT_KIND_COMMITTED", "TASK_EVENT_KIND_SUCCEEDED"}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("Watch event kinds %v, want %v", kinds, want)
	}
	advances := 0
	for i, e := range progress {
		// The size is unknown (-1) until the agent's first report.
		if (e.BytesTotal != bigSize && e.BytesTotal != -1) || e.AgentID != holder || e.LeaseID == "" || e.Attempt != 1 || e.BytesDone > bigSize {
			t.Errorf("PROGRESS event: %+v", e)
		}
		if i > 0 {
			switch {
			case e.BytesDone < progress[i-1].BytesDone:
				t.Errorf("progress went back: %d after %d", e.BytesDone, progress[i-1].BytesDone)
			case e.BytesDone > progress[i-1].BytesDone:
				advances++
			}
		}
	}
	if len(progress) > 0 && progress[len(progress)-1].BytesTotal != bigSize {
		t.Errorf("the last PROGRESS event does not know the size: %+v", progress[len(progress)-1])
	}
	if advances < 5 {
		t.Errorf("the watched transfer advanced %d times in %d PROGRESS events, want at least 5", advances, len(progress))
	}
	t.Logf("Watch: %d events (%d PROGRESS, %d advancing) over %s; first and last:\n%s\n%s", len(events), len(progress), advances,
		elapsed.Round(time.Millisecond), w.Raw()[0], w.Raw()[len(events)-1])

	// CancelTask on a leased transfer: the agent stops, nothing is written.
	big2 := Task{TaskID: s.ID("ops-big-cancelled"), SrcID: "slowftp", SrcPath: dir + "/big.bin", DstID: "local", DstPath: "ops/big-cancelled.bin"}
	SubmitTasks(t, big2)
	waitTask(t, addr, big2.TaskID, 60*time.Second, "leased with progress", func(j jTask) bool {
		return j.State == "TASK_STATE_LEASED" && j.BytesDone > 0
	})
	admin(t, addr, "CancelTask", fmt.Sprintf(`{"task_id":%q,"reason":"wrong file"}`, big2.TaskID)).ok(t, &cancelled)
	if cancelled.PreviousState != "TASK_STATE_LEASED" {
		t.Errorf("CancelTask of a leased task: previousState %q", cancelled.PreviousState)
	}
	m = s.Outcome(t, big2.TaskID, 60*time.Second)
	s.CheckFailure(t, m, big2, "CANCELLED")
	if _, err := os.Stat(filepath.Join(s.Base, big2.DstPath)); err == nil {
		t.Errorf("a cancelled transfer left its destination file")
	}

	// GetStats: the outcomes by code.
	st, keys := getStats(t, addr)
	for _, k := range []string{"outcomesByCode", "outcomesPerSecond", "partitions", "agents", "oldestQueuedAge"} {
		if keys[k] == nil {
			t.Errorf("GetStats printed no %q: %s", k, keys)
		}
	}
	if st.OutcomesByCode["success"] != 4 || st.OutcomesByCode["CANCELLED"] != 2 || st.OutcomesPerSecond["success"] <= 0 || st.Agents != 2 || st.Leased != 0 {
		t.Errorf("GetStats at the end: %+v", st)
	}
	if len(st.Partitions) != 6 {
		t.Errorf("GetStats: %d partitions, want the 6 of %s: %+v", len(st.Partitions), TasksTopic, st.Partitions)
	}
	deadline := time.Now().Add(30 * time.Second)
	for lag := i64(-1); lag != 0 && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		st, _ = getStats(t, addr)
		lag = 0
		for _, p := range st.Partitions {
			lag += p.Lag + i64(p.Outstanding)
		}
		if lag != 0 && !time.Now().Before(deadline) {
			t.Errorf("GetStats: lag or outstanding records left after every task finished: %+v", st.Partitions)
		}
	}
	if tmp := TempFiles(s.Base); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// TestOpsGrpcurlToken: with dispatcher.admin.token_file set, grpcurl calls
// without `-H "authorization: Bearer $TOKEN"` (or with another token) get
// Unauthenticated, with it they work; the health service stays open, which
// needs its descriptors from elsewhere, because reflection is behind the
// token too.
func TestOpsGrpcurlToken(t *testing.T) {
	grpcurlPath(t)
	const token = "s3cr3t-ops-token"
	dir := filepath.Join(env.WorkDir, unsafeName.ReplaceAllString(t.Name(), "_")) // the stack's
	tokenFile := filepath.Join(dir, "admin-token")
	s := PrepareStack(t, StackOptions{Agents: -1, Config: func(c *config.Config) { c.Dispatcher.Admin.TokenFile = tokenFile }})
	must(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	s.StartDispatcher()
	deadline := time.Now().Add(60 * time.Second)
	for code := 0; code != 200; {
		code, _ = stack.HTTPStatus("http://" + s.Dispatcher.HTTP + "/readyz")
		if time.Now().After(deadline) {
			t.Fatalf("dispatcher not ready (/readyz %d)\n%s", code, s.Dispatcher.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	addr := s.Dispatcher.Admin
	auth := []string{"-H", "authorization: Bearer " + token}
	needs := `^this admin API needs "authorization: Bearer <token>"$`

	// Without a token: reflection is refused, so grpcurl cannot even find
	// the method (its exit status is then 1, not 64 + the code).
	for _, r := range []GrpcurlResult{
		Grpcurl(t, "-plaintext", addr, "list"),
		admin(t, addr, "ListAgents", ""),
		Grpcurl(t, "-plaintext", addr, "grpc.health.v1.Health/Check"),
	} {
		if r.Exit == 0 || r.Code() != "Unauthenticated" || !strings.Contains(r.Stderr, `this admin API needs \"authorization: Bearer <token>\"`) &&
			!strings.Contains(r.Stderr, `this admin API needs "authorization: Bearer <token>"`) {
			t.Errorf("without a token:\n%s", r)
		}
	}
	// With it: everything works.
	r := Grpcurl(t, append(auth, "-plaintext", addr, "list")...)
	if r.Exit != 0 || !strings.Contains(r.Stdout, adminService) {
		t.Errorf("list with the token:\n%s", r)
	}
	if r := admin(t, addr, "ListAgents", "", auth...); r.ok(t, nil) != nil && strings.TrimSpace(r.Stdout) != "{}" {
		t.Errorf("ListAgents with the token and no agents printed %q, want {}", r.Stdout)
	}
	var st jStats
	admin(t, addr, "GetStats", "", auth...).ok(t, &st)
	if st.Agents != 0 || len(st.Partitions) != 6 {
		t.Errorf("GetStats with the token: %+v", st)
	}
	// A wrong token: refused.
	r = admin(t, addr, "ListAgents", "", "-H", "authorization: Bearer not-"+token)
	if r.Code() != "Unauthenticated" || !strings.Contains(r.Stderr, "invalid bearer token") {
		t.Errorf("a wrong token:\n%s", r)
	}

	// The RPCs themselves, with descriptors saved once (with the token)
	// to a protoset: no token → Unauthenticated from the admin service
	// itself, while the health check answers without one.
	protoset, healthset := filepath.Join(dir, "admin.protoset"), filepath.Join(dir, "health.protoset")
	for file, svc := range map[string]string{protoset: adminService, healthset: "grpc.health.v1.Health"} {
		if r := Grpcurl(t, append(auth, "-plaintext", "-protoset-out", file, addr, "describe", svc)...); r.Exit != 0 {
			t.Fatalf("saving a protoset:\n%s", r)
		}
	}
	admin(t, addr, "ListAgents", "", "-protoset", protoset).wantError(t, "Unauthenticated", needs)
	admin(t, addr, "GetStats", "", "-protoset", protoset, "-H", "authorization: Bearer wrong").wantError(t, "Unauthenticated", `^invalid bearer token$`)
	var health struct{ Status string }
	Grpcurl(t, "-protoset", healthset, "-plaintext", addr, "grpc.health.v1.Health/Check").ok(t, &health)
	if health.Status != "SERVING" {
		t.Errorf("health without a token: %q, want SERVING", health.Status)
	}
	if r := admin(t, addr, "ListAgents", "", "-protoset", protoset, "-H", "authorization: Bearer "+token); r.ok(t, nil) != nil && strings.TrimSpace(r.Stdout) != "{}" {
		t.Errorf("ListAgents via the protoset with the token: %q", r.Stdout)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// isTimestamp: protobuf JSON's RFC 3339 timestamp, around now.
func isTimestamp(s string) bool {
	ts, err := time.Parse(time.RFC3339Nano, s)
	return err == nil && time.Since(ts) < time.Hour && time.Until(ts) < time.Minute
}

// isDuration: protobuf JSON's duration, "1.5s".
func isDuration(s string) bool {
	_, err := time.ParseDuration(s)
	return err == nil && strings.HasSuffix(s, "s")
}
