// Package integration runs the dispatcher and agents in-process against the
// embedded broker and FTP servers, over real sockets: Kafka protocol, gRPC
// streams and FTP all cross loopback exactly as in production.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ftp-pooler/ftp-pooler/e2e/devstack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/kafka"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher"
)

// stack is one dispatcher, its agents, a broker and two FTP servers.
type stack struct {
	t      *testing.T
	dir    string
	broker *devstack.Broker
	ftpA   *devstack.FTPServer // endpoint remote-ftp
	ftpB   *devstack.FTPServer // endpoint archive-ftp
	base   string              // local endpoint's base_path
	other  string              // second local endpoint's base_path
	// cfg is what cfgPath holds; agents read it too unless told otherwise.
	cfg     config.Config
	cfgPath string
	conns   string
	admin   adminv1.AdminServiceClient
	addrs   dispatcher.Addrs // the first dispatcher's

	prod *devstack.Producer
	cons *devstack.Consumer

	mu   sync.Mutex
	seen []kafka.Message

	dispatchers []*dispatcherProc
	agents      []agentProc
	logs        *syncBuffer
}

type dispatcherProc struct {
	id     string
	addrs  dispatcher.Addrs
	cancel context.CancelFunc
	done   chan error
}

type agentProc struct {
	cancel context.CancelFunc
	done   chan error
}

type stackOptions struct {
	agents   int
	slots    int
	delivery string
	// config changes the suite's config.yaml (suiteConfig) before it is
	// written.
	config func(*config.Config)
	// adminToken is sent with every admin call.
	adminToken string
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	return newStackWith(t, o, nil)
}

// newStackWith adds endpoints to connections.ini that may name the
// started FTP servers (their ports).
func newStackWith(t *testing.T, o stackOptions, endpoints func(*stack) []config.Endpoint) *stack {
	t.Helper()
	if o.agents == 0 {
		o.agents = 2
	}
	if o.slots == 0 {
		o.slots = 4
	}
	if o.delivery == "" {
		o.delivery = "exactly_once"
	}
	dir := t.TempDir()
	s := &stack{t: t, dir: dir, base: filepath.Join(dir, "storage"), other: filepath.Join(dir, "other"), logs: &syncBuffer{}}
	for _, d := range []string{s.base, s.other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if s.broker, err = devstack.StartBroker(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.broker.Close)
	if s.ftpA, err = devstack.StartFTP(filepath.Join(dir, "ftp-a"), "alice", "secret;with%chars"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ftpA.Close() })
	if s.ftpB, err = devstack.StartFTP(filepath.Join(dir, "ftp-b"), "bob", "hunter2"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ftpB.Close() })
	s.cfg = suiteConfig(s.broker.Addr, o.delivery)
	if o.config != nil {
		o.config(&s.cfg)
	}
	s.cfgPath = s.writeConfig("config", s.cfg)
	conns := config.Connections{
		config.FTP("remote-ftp", s.ftpA.Host, s.ftpA.Port, "alice", "secret;with%chars"),
		config.FTP("archive-ftp", s.ftpB.Host, s.ftpB.Port, "bob", "hunter2"),
		config.Local("local", s.base),
		config.Local("other-local", s.other),
	}
	if endpoints != nil {
		conns = append(conns, endpoints(s)...)
	}
	s.conns = filepath.Join(dir, "connections.ini")
	if err := conns.Write(s.conns, "Written by e2e/integration for "+t.Name()+"."); err != nil {
		t.Fatal(err)
	}

	s.addrs = s.startDispatcher("d0").addrs
	for range o.agents {
		s.startAgent(o.slots)
	}
	conn, err := grpc.NewClient(s.addrs.Admin.String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearerToken(o.adminToken)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.admin = adminv1.NewAdminServiceClient(conn)
	s.waitAgents(o.agents)

	if s.prod, err = devstack.NewProducer(s.broker.Addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.prod.Close)
	if s.cons, err = devstack.NewConsumer([]string{s.broker.Addr}, "ftp-results", "ftp-failures", "ftp-tasks-dlq"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cons.Close)
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("service logs:\n%s", s.logs.tail(200))
		}
	})
	return s
}

// suiteConfig is the suite's config.yaml: quick commits, retries and
// leases, every address on loopback with a port of its own.
func suiteConfig(broker, delivery string) config.Config {
	c := config.Default()
	c.Kafka.BootstrapServers, c.Kafka.Delivery, c.Kafka.CommitInterval = []string{broker}, delivery, 5*time.Millisecond
	c.Retry = config.Retry{MaxAttempts: 3, BaseBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxOutage: 4 * time.Second}
	c.Lease.TTL, c.Lease.HeartbeatInterval = 3*time.Second, 300*time.Millisecond
	c.Transfer.ConnectTimeoutSeconds, c.Transfer.Fsync = 3, false
	c.Logging.Level, c.Logging.Format = "DEBUG", "text"
	c.Dispatcher.Listen, c.Dispatcher.AdminListen, c.Dispatcher.HTTPListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.Dispatcher.DrainTimeout = 5 * time.Second
	c.Agent.ReconnectMaxBackoff, c.Agent.DrainTimeout = 500*time.Millisecond, 5*time.Second
	return c
}

// writeConfig writes c as <dir>/<name>.yaml and returns the path.
func (s *stack) writeConfig(name string, c config.Config) string {
	s.t.Helper()
	path := filepath.Join(s.dir, name+".yaml")
	if err := c.Write(path, "Written by e2e/integration for "+s.t.Name()+"."); err != nil {
		s.t.Fatal(err)
	}
	return path
}

func (s *stack) logger(name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("proc", name)
}

func (s *stack) startDispatcher(id string) *dispatcherProc {
	s.t.Helper()
	cfg, conns, err := dispatcher.Load(dispatcher.Options{ConfigPath: s.cfgPath, ConnectionsPath: s.conns, InstanceID: id}, noEnv)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan dispatcher.Addrs, 1)
	d := &dispatcherProc{id: id, cancel: cancel, done: make(chan error, 1)}
	go func() {
		d.done <- dispatcher.Run(ctx, cfg, conns, s.logger(id), func(a dispatcher.Addrs) { started <- a })
	}()
	select {
	case d.addrs = <-started:
	case err := <-d.done:
		cancel()
		s.t.Fatalf("dispatcher %s did not start: %v", id, err)
	}
	s.dispatchers = append(s.dispatchers, d)
	return d
}

// stopDispatcher shuts one dispatcher down gracefully and checks it exited cleanly.
func (s *stack) stopDispatcher(d *dispatcherProc) {
	s.t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			s.t.Errorf("dispatcher %s: %v", d.id, err)
		}
	case <-time.After(30 * time.Second):
		s.t.Errorf("dispatcher %s did not stop", d.id)
	}
	for i, x := range s.dispatchers {
		if x == d {
			s.dispatchers = append(s.dispatchers[:i], s.dispatchers[i+1:]...)
			break
		}
	}
}

func (s *stack) startAgent(slots int) {
	s.t.Helper()
	s.startAgentWith(slots, s.cfgPath)
}

// startAgentWith starts an agent reading its own config file.
func (s *stack) startAgentWith(slots int, cfgPath string) {
	s.t.Helper()
	n := len(s.agents)
	var leaseAddrs []string
	for _, d := range s.dispatchers {
		leaseAddrs = append(leaseAddrs, d.addrs.Lease.String())
	}
	cfg, conns, err := agent.Load(agent.Options{
		ConfigPath: cfgPath, ConnectionsPath: s.conns, Dispatchers: leaseAddrs,
		Slots: slots, AgentID: fmt.Sprintf("agent-%d", n),
	}, noEnv)
	if err != nil {
		s.t.Fatal(err)
	}
	stop := agent.NewStopper(cfg.Agent)
	done := make(chan error, 1)
	go func() { done <- agent.Run(stop, cfg, conns, s.logger(fmt.Sprintf("agent-%d", n))) }()
	s.agents = append(s.agents, agentProc{cancel: stop.Graceful, done: done})
}

func (s *stack) waitAgents(n int) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := s.admin.ListAgents(context.Background(), &adminv1.ListAgentsRequest{})
		if err == nil && len(resp.Agents) == n {
			ready := true
			for _, a := range resp.Agents {
				ready = ready && a.Window > 0
			}
			if ready {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("%d agents did not connect", n)
}

// stop shuts everything down gracefully and checks that it did.
func (s *stack) stop() {
	for _, a := range s.agents {
		a.cancel()
	}
	for i, a := range s.agents {
		select {
		case err := <-a.done:
			if err != nil {
				s.t.Errorf("agent %d: %v", i, err)
			}
		case <-time.After(15 * time.Second):
			s.t.Errorf("agent %d did not stop", i)
		}
	}
	s.agents = nil
	for len(s.dispatchers) > 0 {
		s.stopDispatcher(s.dispatchers[len(s.dispatchers)-1])
	}
}

// produce sends a raw record to the input topic.
func (s *stack) produce(key string, value []byte, headers map[string]string) {
	s.t.Helper()
	var k []byte
	if key != "" {
		k = []byte(key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.prod.Produce(ctx, "ftp-tasks", k, value, headers); err != nil {
		s.t.Fatal(err)
	}
}

// submit sends a task given as fields.
func (s *stack) submit(fields map[string]any) {
	s.t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		s.t.Fatal(err)
	}
	id, _ := fields["task_id"].(string)
	s.produce(id, b, nil)
}

// await reads outcomes until match has accepted want of them, and returns
// those; it fails the test after timeout.
func (s *stack) await(want int, timeout time.Duration, match func(kafka.Message) bool) []kafka.Message {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		s.mu.Lock()
		var got []kafka.Message
		for _, m := range s.seen {
			if match(m) {
				got = append(got, m)
			}
		}
		s.mu.Unlock()
		if len(got) >= want {
			return got
		}
		msgs, err := s.cons.Next(ctx)
		if err != nil {
			s.t.Fatalf("waiting for %d outcomes, have %d: %v", want, len(got), err)
		}
		s.mu.Lock()
		s.seen = append(s.seen, msgs...)
		s.mu.Unlock()
	}
}

// settle reads outcomes for d more, so late duplicates surface, and returns
// how many outcomes each task id has.
func (s *stack) settle(d time.Duration) map[string]int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		msgs, err := s.cons.Next(ctx)
		if err != nil && ctx.Err() == nil {
			s.t.Fatal(err)
		}
		s.mu.Lock()
		s.seen = append(s.seen, msgs...)
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	count := map[string]int{}
	for _, m := range s.seen {
		if m.Topic != "ftp-tasks-dlq" {
			count[m.Key]++
		}
	}
	return count
}

// outcome waits for the one outcome of a task id.
func (s *stack) outcome(taskID string) kafka.Message {
	s.t.Helper()
	return s.await(1, 20*time.Second, func(m kafka.Message) bool { return m.Key == taskID && m.Topic != "ftp-tasks-dlq" })[0]
}

func noEnv(string) string { return "" }

// bearerToken sends "authorization: Bearer <token>" with each call.
type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// syncBuffer collects logs from every goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) contains(sub string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Contains(b.buf.String(), sub)
}

func (b *syncBuffer) tail(lines int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	all := strings.Split(b.buf.String(), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
