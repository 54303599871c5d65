package dispatcher

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadLayersFileEnvFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := write(t, dir, "config.yaml", "kafka:\n  bootstrap_servers: [file:9092]\ndispatcher:\n  listen: :1\n  instance_id: from-file\n")
	conns := write(t, dir, "connections.ini", "[local]\ntype = local\nbase_path = /tmp\n")
	env := map[string]string{"FTP_POOLER_CONFIG": cfg, "FTP_POOLER_CONNECTIONS": conns, "FTP_POOLER_KAFKA_BOOTSTRAP_SERVERS": "env:9092"}
	getenv := func(k string) string { return env[k] }

	opts, err := ParseFlags([]string{"--listen", "127.0.0.1:7000"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if opts.ConfigPath != cfg || opts.ConnectionsPath != conns {
		t.Fatalf("env did not stand in for the file flags: %+v", opts)
	}
	c, _, err := Load(opts, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.BootstrapServers.String() != "env:9092" {
		t.Errorf("env did not override the file: %v", c.Kafka.BootstrapServers)
	}
	if c.Dispatcher.Listen != "127.0.0.1:7000" || c.Dispatcher.InstanceID != "from-file" {
		t.Errorf("flags/file: listen %q instance %q", c.Dispatcher.Listen, c.Dispatcher.InstanceID)
	}
	if c.Dispatcher.HTTPListen != "0.0.0.0:8080" {
		t.Errorf("http listen should default to api.host:api.port, got %q", c.Dispatcher.HTTPListen)
	}
}

func TestLoadErrorsNameFileAndKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := write(t, dir, "good.yaml", "kafka:\n  bootstrap_servers: [k:9092]\n")
	conns := write(t, dir, "connections.ini", "[local]\ntype = local\nbase_path = /tmp\n")
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"no config", Options{ConnectionsPath: conns}, []string{"--config", "FTP_POOLER_CONFIG"}},
		{"no connections", Options{ConfigPath: good}, []string{"--connections", "FTP_POOLER_CONNECTIONS"}},
		{"unreadable config", Options{ConfigPath: filepath.Join(dir, "missing.yaml"), ConnectionsPath: conns}, []string{"missing.yaml"}},
		{"missing key", Options{ConfigPath: write(t, dir, "nobroker.yaml", "kafka:\n  consumer_group: g\n"), ConnectionsPath: conns}, []string{"nobroker.yaml", "kafka.bootstrap_servers"}},
		{"unknown key", Options{ConfigPath: write(t, dir, "typo.yaml", "kafka:\n  bootstrap_servers: [k:1]\n  consumer_grup: g\n"), ConnectionsPath: conns}, []string{"typo.yaml", "kafka.consumer_grup"}},
		{"unknown endpoint type", Options{ConfigPath: good, ConnectionsPath: write(t, dir, "bad.ini", "[x]\ntype = scp\n")}, []string{"bad.ini", "[x]", `"type"`, "scp"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := Load(tc.opts, func(string) string { return "" })
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseFlagsRejectsStrayArguments(t *testing.T) {
	t.Parallel()
	if _, err := ParseFlags([]string{"config.yaml"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("a positional argument was accepted")
	}
}

// New undoes what it built when a later step fails: here the admin
// listener's address is taken, after the Kafka clients, the scheduler and
// the lease listener were made. The lease port is free again, and the
// goroutines New started (the clients' log forwarding and their own) end.
func TestNewUndoesWhatItBuiltOnError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leaseAddr := free.Addr().String()
	free.Close()
	dir := t.TempDir()
	cfgPath := write(t, dir, "config.yaml", "kafka:\n  bootstrap_servers: [127.0.0.1:1]\ndispatcher:\n  instance_id: undo-test\n  listen: "+leaseAddr+
		"\n  admin_listen: "+taken.Addr().String()+"\n  http_listen: 127.0.0.1:0\n")
	connsPath := write(t, dir, "connections.ini", "[local]\ntype = local\nbase_path = "+dir+"\n")
	cfg, conns, err := Load(Options{ConfigPath: cfgPath, ConnectionsPath: connsPath}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	d, err := New(context.Background(), cfg, conns, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || d != nil || !strings.Contains(err.Error(), "dispatcher.admin_listen") {
		t.Fatalf("New with the admin address taken: %v, %v", d, err)
	}
	l, err := net.Listen("tcp", leaseAddr)
	if err != nil {
		t.Fatalf("the lease listener New bound is still open: %v", err)
	}
	l.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after the failed New, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
