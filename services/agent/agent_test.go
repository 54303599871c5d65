package agent

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	err = Run(t.Context(), t.Context(), c, cn, discardLogger())
	if err == nil || !strings.Contains(err.Error(), "not-mounted") || !strings.Contains(err.Error(), "[local]") {
		t.Fatalf("Run with a missing base_path: %v", err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
