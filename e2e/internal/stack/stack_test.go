package stack

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	"github.com/ftp-pooler/ftp-pooler/services/agent"
	"github.com/ftp-pooler/ftp-pooler/services/dispatcher"
)

// fakeBin is a directory with dispatcher and agent scripts that log their
// arguments and the start-up lines the real binaries log, then wait.
func fakeBin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, script := range map[string]string{
		"dispatcher": `echo "args: $*"; echo 'level=INFO msg=listening lease_address=127.0.0.1:17070 admin_address=127.0.0.1:17071 http_address=127.0.0.1:17072'; exec sleep 30`,
		"agent":      `echo "args: $*"; echo '{"level":"INFO","http_address":"127.0.0.1:17080"}'; exec sleep 30`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestStackWritesFilesAndStartsWithAnOperatorsFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Kafka.BootstrapServers = []string{"127.0.0.1:9092"}
	cfg.Lease.TTL = 12 * time.Second
	s, err := New(Options{
		Dir: dir, Bin: fakeBin(t), Config: cfg, Comment: "test",
		Connections:      config.Connections{config.FTP("ftp", "127.0.0.1", 2121, "u", "p;w"), config.Local("local", dir)},
		AgentConnections: config.Connections{config.Local("local", dir)},
		InstanceID:       "d-1", Agents: 2, Slots: 3, AgentHTTP: "127.0.0.1:0",
		AgentID: func(i int) string { return []string{"a-1", "a-2"}[i] },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range s.Procs() {
			p.Kill()
		}
		s.Close()
	})

	// What was written is what the services read.
	loaded, conns, err := dispatcher.Load(dispatcher.Options{ConfigPath: s.Files.Config, ConnectionsPath: s.Files.Connections}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Lease.TTL.D() != 12*time.Second || len(conns.Endpoints) != 2 {
		t.Errorf("the services read ttl %s and %d endpoints", loaded.Lease.TTL, len(conns.Endpoints))
	}
	if ep, _ := conns.Endpoint("ftp"); ep == nil || ep.Password.Reveal() != "p;w" {
		t.Errorf("endpoint ftp: %+v", ep)
	}
	if _, aconns, err := agent.Load(agent.Options{ConfigPath: s.Agents[0].Files.Config, ConnectionsPath: s.Agents[0].Files.Connections,
		Dispatchers: []string{"127.0.0.1:1"}}, func(string) string { return "" }); err != nil || len(aconns.Endpoints) != 1 {
		t.Errorf("the agents' own connections.ini: %v, %v", aconns, err)
	}

	if err := s.StartDispatcher(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	d := s.Dispatcher
	if d.Lease != "127.0.0.1:17070" || d.Admin != "127.0.0.1:17071" || d.HTTP != "127.0.0.1:17072" || d.API() == nil {
		t.Errorf("dispatcher addresses %+v", d.Addrs)
	}
	wantArgs := "args: --config " + s.Files.Config + " --connections " + s.Files.Connections +
		" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --instance-id d-1"
	if _, err := d.WaitLog(regexp.MustCompile("^"+regexp.QuoteMeta(wantArgs)+"$"), time.Second); err != nil {
		t.Errorf("dispatcher flags: %v\n%s", err, d.Log())
	}
	for i, a := range s.Agents {
		if err := s.StartAgent(i, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if a.HTTP != "127.0.0.1:17080" {
			t.Errorf("%s: http %q", a.Name, a.HTTP)
		}
		want := "args: --config " + s.Files.Config + " --connections " + filepath.Join(dir, "agent-connections.ini") +
			" --dispatcher 127.0.0.1:17070 --slots 3 --agent-id " + a.ID + " --http-listen 127.0.0.1:0"
		if !strings.Contains(a.Log(), want+"\n") {
			t.Errorf("%s flags:\n%s\nwant %s", a.Name, a.Log(), want)
		}
	}
	if err := s.WaitReady(2, 300*time.Millisecond); err == nil {
		t.Error("ready without /readyz")
	}
	if names := []string{s.Procs()[0].Name, s.Procs()[1].Name, s.Procs()[2].Name}; strings.Join(names, ",") != "dispatcher,agent-1,agent-2" {
		t.Errorf("Procs = %v", names)
	}
}

func TestFixedAddressesStay(t *testing.T) {
	at, err := FreeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher("d", filepath.Join(fakeBin(t), "dispatcher"), filepath.Join(t.TempDir(), "d.log"), "d-1", Files{"c.yaml", "c.ini"}, at)
	t.Cleanup(d.Kill)
	if d.API() == nil {
		t.Error("no admin client before the first start")
	}
	if err := d.Start(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d.Addrs != at {
		t.Errorf("addresses %+v, want the fixed %+v", d.Addrs, at)
	}
	if !strings.Contains(d.Log(), "--listen "+at.Lease+" --admin-listen "+at.Admin+" --http-listen "+at.HTTP+" ") {
		t.Errorf("flags:\n%s", d.Log())
	}
}

func TestFTPServerFrom(t *testing.T) {
	kv := map[string]string{"FTP_X_ADDR": "127.0.0.1:2121", "FTP_X_USER": "u", "FTP_X_HOME": "/srv/x"}
	s, missing := FTPServerFrom(kv, "x", "FTP_X")
	if s.Host != "127.0.0.1" || s.Port != 2121 || s.User != "u" || strings.Join(missing, ",") != "FTP_X_PASS" {
		t.Errorf("FTPServerFrom = %+v, missing %v", s, missing)
	}
	if p := s.Path("/a/b.txt"); p != "/srv/x/a/b.txt" {
		t.Errorf("Path = %s", p)
	}
	if e := s.Endpoint("x"); e.Host != "127.0.0.1" || e.Port != 2121 || e.Type != "ftp" {
		t.Errorf("Endpoint = %+v", e)
	}
}
