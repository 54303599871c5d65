package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/capacity"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/shutdown"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	conns := filepath.Join(dir, "connections.ini")
	if err := os.WriteFile(cfg, []byte("agent:\n  slots: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conns, []byte("[local]\ntype = local\nbase_path = /tmp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }

	opts, err := ParseFlags([]string{"--config", cfg, "--connections", conns}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(opts, noEnv); err == nil || !strings.Contains(err.Error(), "agent.dispatchers") {
		t.Fatalf("no dispatcher: %v", err)
	}

	opts, err = ParseFlags([]string{"--config", cfg, "--connections", conns, "--dispatcher", "d1:7070,d2:7070", "--slots", "8"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := Load(opts, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Agent.Dispatchers.String() != "d1:7070,d2:7070" || c.Agent.Slots != 8 || c.Agent.AgentID == "" {
		t.Fatalf("agent config = %+v", c.Agent)
	}
}

func TestRunRefusesMissingBasePath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	conns := filepath.Join(dir, "connections.ini")
	_ = os.WriteFile(cfg, []byte("agent:\n  dispatchers: [127.0.0.1:1]\nlogging:\n  format: text\n"), 0o600)
	_ = os.WriteFile(conns, []byte("[local]\ntype = local\nbase_path = "+filepath.Join(dir, "not-mounted")+"\n"), 0o600)
	noEnv := func(string) string { return "" }
	opts, _ := ParseFlags([]string{"--config", cfg, "--connections", conns}, noEnv, io.Discard)
	c, cn, err := Load(opts, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	err = Run(NewStopper(c.Agent), c, cn, discardLogger())
	if err == nil || !strings.Contains(err.Error(), "not-mounted") || !strings.Contains(err.Error(), "[local]") {
		t.Fatalf("Run with a missing base_path: %v", err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// New undoes what it built when a later step fails: here agent.http_listen
// is taken, after the pools, the engine (a local root) and a client per
// dispatcher were made. New returns the error and its goroutines end.
func TestNewUndoesWhatItBuiltOnError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	connsPath := filepath.Join(dir, "connections.ini")
	if err := os.WriteFile(cfgPath, []byte("agent:\n  dispatchers: [127.0.0.1:1, 127.0.0.1:2]\n  http_listen: "+taken.Addr().String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(connsPath, []byte("[local]\ntype = local\nbase_path = "+dir+"\n[ftp]\ntype = ftp\nhost = 127.0.0.1\nport = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, conns, err := Load(Options{ConfigPath: cfgPath, ConnectionsPath: connsPath}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	a, err := New(context.Background(), cfg, conns, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || a != nil || !strings.Contains(err.Error(), "agent.http_listen") {
		t.Fatalf("New with agent.http_listen taken: %v, %v", a, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after the failed New, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// messages records what is logged.
type messages struct {
	mu   sync.Mutex
	msgs []string
}

func (m *messages) Enabled(context.Context, slog.Level) bool { return true }
func (m *messages) WithAttrs([]slog.Attr) slog.Handler       { return m }
func (m *messages) WithGroup(string) slog.Handler            { return m }
func (m *messages) Handle(_ context.Context, r slog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, r.Message)
	return nil
}

func (m *messages) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.msgs)
}

const (
	logShuttingDown = "shutting down: no new leases; waiting for transfers in flight"
	logDrainTimeout = "drain timeout: releasing transfers still running"
	logSecondSignal = "second signal: releasing transfers still running"
)

// drainOnStop closes the credit windows on a graceful stop and says why
// transfers still running are released; once the sessions have ended it
// says nothing more. Timers run on the bubble's clock.
func TestDrainOnStop(t *testing.T) {
	const drain = 30 * time.Second
	tests := []struct {
		name string
		// stop drives the stopper; it closes sessionsDone when the
		// sessions end.
		stop    func(s *shutdown.Stopper, sessionsDone chan struct{})
		want    []string
		drained bool
	}{
		{"graceful then drain timeout", func(s *shutdown.Stopper, done chan struct{}) {
			s.Graceful()
			time.Sleep(drain)
			synctest.Wait()
			close(done)
		}, []string{logShuttingDown, logDrainTimeout}, true},
		{"graceful then second signal", func(s *shutdown.Stopper, done chan struct{}) {
			s.Graceful()
			time.Sleep(drain / 2)
			s.Now()
			synctest.Wait()
			close(done)
		}, []string{logShuttingDown, logSecondSignal}, true},
		{"now directly", func(s *shutdown.Stopper, done chan struct{}) {
			s.Now()
			synctest.Wait()
			close(done)
		}, []string{logShuttingDown, logSecondSignal}, true},
		{"transfers finish within the drain timeout", func(s *shutdown.Stopper, done chan struct{}) {
			s.Graceful()
			time.Sleep(drain / 2)
			close(done)
			synctest.Wait()
			time.Sleep(drain)
		}, []string{logShuttingDown}, true},
		{"sessions end before any stop", func(s *shutdown.Stopper, done chan struct{}) {
			close(done)
			synctest.Wait()
			s.Now()
		}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				logs := &messages{}
				a := &Agent{slots: capacity.NewSlots(4), logger: slog.New(logs)}
				share := a.slots.Join()
				<-share.Window() // the window the stream joined with
				stop := shutdown.New(drain)
				sessionsDone, returned := make(chan struct{}), make(chan struct{})
				go func() {
					defer close(returned)
					a.drainOnStop(stop, sessionsDone)
				}()
				tc.stop(stop, sessionsDone)
				<-returned
				if got := logs.all(); !slices.Equal(got, tc.want) {
					t.Errorf("logged %q, want %q", got, tc.want)
				}
				select {
				case w := <-share.Window():
					if !tc.drained || w != 0 {
						t.Errorf("window %d sent; drained=%v expected", w, tc.drained)
					}
				default:
					if tc.drained {
						t.Error("the windows were not closed")
					}
				}
			})
		})
	}
}
