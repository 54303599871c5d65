package main

// A stack is one bin/dispatcher and its bin/agent processes with config
// files of their own, as an operator would run them.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

type stackOpts struct {
	name     string
	delivery string // exactly_once or at_least_once
	agents   int
	conns    int // max_connections of each FTP endpoint (fleet-wide)
	// agentConns, when set, is the agents' own max_connections, so the
	// dispatcher leases conns tasks per endpoint while agents open at most
	// agentConns connections (an experiment: leases prefetched ahead of
	// free connections).
	agentConns int
	slots      int
	// extra overrides config keys by section.
	extra map[string]map[string]any
}

type stack struct {
	opts       stackOpts
	dir, base  string
	group      string
	disp       *proc
	agents     []*proc
	leaseAddr  string
	adminAddr  string
	httpAddr   string
	agentHTTP  []string
	adminConn  *grpc.ClientConn
	admin      adminv1.AdminServiceClient
	configPath string
}

var stackSeq int

// active are the stacks running, stopped on an interrupt.
var (
	activeMu sync.Mutex
	active   = map[*stack]bool{}
)

func (b *bench) startStack(o stackOpts) (*stack, error) {
	stackSeq++
	if o.slots == 0 {
		o.slots = 16
	}
	s := &stack{opts: o, dir: filepath.Join(b.env.Work, "stacks", fmt.Sprintf("%02d-%s", stackSeq, o.name)),
		base: b.localBase, group: fmt.Sprintf("bench-%s-%d-%s", b.runID, stackSeq, o.name)}
	if err := os.RemoveAll(s.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	cfg := map[string]map[string]any{
		"kafka": {
			"bootstrap_servers": strings.Split(b.env.Kafka, ","),
			"consumer_group":    s.group,
			"delivery":          o.delivery,
		},
		"pool":    {"max_sessions_per_connection": o.conns},
		"logging": {"level": b.logLevel, "format": "json"},
		"dispatcher": {
			"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", "http_listen": "127.0.0.1:0",
			"instance_id": s.group, "drain_timeout": "10s",
		},
		"agent": {"drain_timeout": "10s", "reconnect_max_backoff": "1s"},
	}
	set := func(section, key string, value any) {
		if cfg[section] == nil {
			cfg[section] = map[string]any{}
		}
		cfg[section][key] = value
	}
	if b.opts.pprofDir != "" {
		set("metrics", "pprof", true)
	}
	for _, kv := range b.opts.set {
		set(kv.section, kv.key, kv.value)
	}
	for sec, kv := range o.extra {
		for k, v := range kv {
			set(sec, k, v)
		}
	}
	js, _ := json.MarshalIndent(cfg, "", "  ")
	s.configPath = filepath.Join(s.dir, "config.yaml")
	if err := os.WriteFile(s.configPath, append([]byte("# Written by e2e/cmd/bench.\n"), js...), 0o644); err != nil {
		return nil, err
	}
	writeINI := func(name string, limit int) (string, error) {
		var ini strings.Builder
		ini.WriteString("; Written by e2e/cmd/bench.\n")
		for _, srv := range []ftpServer{b.env.VSFTPD, b.env.PureFTPD} {
			if srv.Addr == "" {
				continue
			}
			fmt.Fprintf(&ini, "\n[%s]\ntype = ftp\nhost = %s\nport = %d\nuser = %s\npass = %s\nmax_connections = %d\n",
				srv.Name, srv.Host, srv.Port, srv.User, srv.Pass, limit)
		}
		fmt.Fprintf(&ini, "\n[local]\ntype = local\nbase_path = %s\n", s.base)
		p := filepath.Join(s.dir, name)
		return p, os.WriteFile(p, []byte(ini.String()), 0o600)
	}
	conns, err := writeINI("connections.ini", o.conns)
	if err != nil {
		return nil, err
	}
	agentINI := conns
	if o.agentConns > 0 {
		if agentINI, err = writeINI("agent-connections.ini", o.agentConns); err != nil {
			return nil, err
		}
	}
	if err := b.kafka.seekGroupToEnd(s.group); err != nil {
		return nil, err
	}
	activeMu.Lock()
	active[s] = true
	activeMu.Unlock()
	s.disp, err = startProc("dispatcher", filepath.Join(b.env.Bin, "dispatcher"), filepath.Join(s.dir, "dispatcher.log"),
		"--config", s.configPath, "--connections", conns)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*stack, error) { s.stop(); return nil, err }
	if s.leaseAddr, err = s.disp.waitLogValue("lease_address", 60*time.Second); err != nil {
		return fail(err)
	}
	s.adminAddr, _ = s.disp.waitLogValue("admin_address", time.Second)
	s.httpAddr, _ = s.disp.waitLogValue("http_address", time.Second)
	if s.adminConn, err = grpc.NewClient(s.adminAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return fail(err)
	}
	s.admin = adminv1.NewAdminServiceClient(s.adminConn)
	for i := 0; i < o.agents; i++ {
		name := fmt.Sprintf("agent-%d", i+1)
		a, err := startProc(name, filepath.Join(b.env.Bin, "agent"), filepath.Join(s.dir, name+".log"),
			"--config", s.configPath, "--connections", agentINI, "--dispatcher", s.leaseAddr,
			"--slots", fmt.Sprint(o.slots), "--agent-id", s.group+"-"+name, "--http-listen", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		s.agents = append(s.agents, a)
		addr, err := a.waitLogValue("http_address", 30*time.Second)
		if err != nil {
			return fail(err)
		}
		s.agentHTTP = append(s.agentHTTP, addr)
	}
	if err := s.waitReady(60 * time.Second); err != nil {
		return fail(err)
	}
	return s, nil
}

// waitReady waits for /readyz and every agent with a credit window.
func (s *stack) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if !s.disp.running() {
			return fmt.Errorf("dispatcher exited: %v\n%s", s.disp.err, tail(s.disp.logPath, 30))
		}
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://" + s.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != 200 {
			last = fmt.Sprintf("/readyz: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		r, err := s.admin.ListAgents(ctx, &adminv1.ListAgentsRequest{})
		cancel()
		if err == nil {
			ready := 0
			for _, a := range r.Agents {
				if a.Window > 0 {
					ready++
				}
			}
			if ready == len(s.agents) {
				return nil
			}
			last = fmt.Sprintf("%d of %d agents ready", ready, len(s.agents))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("stack %s not ready within %s: %s", s.opts.name, timeout, last)
}

func (s *stack) pids() []int {
	out := []int{s.disp.pid()}
	for _, a := range s.agents {
		out = append(out, a.pid())
	}
	return out
}

func (s *stack) stop() {
	activeMu.Lock()
	delete(active, s)
	activeMu.Unlock()
	for _, a := range s.agents {
		a.stop(20 * time.Second)
	}
	if s.disp != nil {
		s.disp.stop(20 * time.Second)
	}
	if s.adminConn != nil {
		s.adminConn.Close()
	}
}

// stats asks the dispatcher for its counters.
func (s *stack) stats() (*adminv1.GetStatsResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return s.admin.GetStats(ctx, &adminv1.GetStatsRequest{})
}

// configSets are -set flags: config keys every stack overrides (a stack's
// own settings, such as smoke mode's transfer.fsync, still win).
type configSets []configSet

type configSet struct {
	section, key string
	value        any
}

func (c *configSets) String() string { return fmt.Sprint(*c) }

func (c *configSets) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	section, key, dotted := strings.Cut(name, ".")
	if !ok || !dotted || section == "" || key == "" {
		return fmt.Errorf("%q: want section.key=value", v)
	}
	// Numbers, booleans and JSON stay typed; anything else is a string.
	var parsed any
	if json.Unmarshal([]byte(value), &parsed) != nil {
		parsed = value
	}
	*c = append(*c, configSet{section, key, parsed})
	return nil
}
