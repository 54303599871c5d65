package main

// A pooler is one bin/dispatcher and its bin/agent processes with config
// files of their own, as an operator would run them (e2e/internal/stack).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
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
	// remote is the endpoint the workloads download from and upload to:
	// vsftpd (the default) or openssh.
	remote string
	// sftpConns and sftpSessions are the openssh endpoint's
	// max_connections and max_sessions_per_connection (default 2 and 2:
	// the same 4 sessions as the FTP connections).
	sftpConns, sftpSessions int
	// extra changes the config last.
	extra func(*config.Config)
}

// noFsync is the extra of runs without transfer.fsync.
func noFsync(c *config.Config) { c.Transfer.Fsync = false }

// pooler is FTP Pooler running: a dispatcher and its agents.
type pooler struct {
	*stack.Stack
	opts stackOpts
}

var stackSeq int

// active are the poolers running, stopped on an interrupt.
var (
	activeMu sync.Mutex
	active   = map[*pooler]bool{}
)

func (b *bench) startStack(o stackOpts) (*pooler, error) {
	stackSeq++
	if o.slots == 0 {
		o.slots = 16
	}
	if o.remote == "" {
		o.remote = "vsftpd"
	}
	if o.sftpConns == 0 {
		o.sftpConns, o.sftpSessions = 2, 2
	}
	dir := filepath.Join(b.env.Work, "stacks", fmt.Sprintf("%02d-%s", stackSeq, o.name))
	group := fmt.Sprintf("bench-%s-%d-%s", b.runID, stackSeq, o.name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Kafka.BootstrapServers, cfg.Kafka.ConsumerGroup, cfg.Kafka.Delivery = strings.Split(b.env.Kafka, ","), group, o.delivery
	cfg.Pool.MaxSessionsPerConnection = o.conns
	cfg.Logging.Level, cfg.Logging.Format = b.logLevel, "json"
	cfg.Dispatcher.Listen, cfg.Dispatcher.AdminListen, cfg.Dispatcher.HTTPListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Dispatcher.InstanceID, cfg.Dispatcher.DrainTimeout = group, 10*time.Second
	cfg.Agent.DrainTimeout, cfg.Agent.ReconnectMaxBackoff = 10*time.Second, time.Second
	cfg.Metrics.Pprof = b.opts.pprofDir != ""
	for _, kv := range b.opts.set {
		if err := cfg.Set(kv.key, kv.value); err != nil {
			return nil, err
		}
	}
	if o.extra != nil {
		o.extra(&cfg)
	}
	so := stack.Options{Dir: dir, Bin: b.env.Bin, Config: cfg, Connections: b.endpoints(o.conns, o), Comment: "Written by e2e/cmd/bench.",
		InstanceID: group, Agents: o.agents, Slots: o.slots, AgentHTTP: "127.0.0.1:0"}
	if o.agentConns > 0 {
		so.AgentConnections = b.endpoints(o.agentConns, o)
	}
	st, err := stack.New(so)
	if err != nil {
		return nil, err
	}
	if err := b.kafka.seekGroupToEnd(group); err != nil {
		return nil, err
	}
	s := &pooler{Stack: st, opts: o}
	activeMu.Lock()
	active[s] = true
	activeMu.Unlock()
	if err := s.Start(); err != nil {
		s.stop()
		return nil, fmt.Errorf("stack %s: %w", o.name, err)
	}
	return s, nil
}

// endpoints are vsftpd and pure-ftpd (when it answers), each with
// max_connections limit, OpenSSH's sshd (when it runs) with o's limits,
// and the local endpoint.
func (b *bench) endpoints(limit int, o stackOpts) config.Connections {
	var c config.Connections
	for _, srv := range []stack.FTPServer{b.env.VSFTPD, b.env.PureFTPD} {
		if srv.Addr != "" {
			e := srv.Endpoint(srv.Name)
			e.MaxConnections = limit
			c = append(c, e)
		}
	}
	if b.env.SFTP.Addr != "" {
		e := b.env.SFTP.Endpoint(b.env.SFTP.Name)
		e.MaxConnections, e.MaxSessionsPerConnection = o.sftpConns, o.sftpSessions
		c = append(c, e)
	}
	return append(c, config.Local("local", b.localBase))
}

// stop sends SIGTERM to the agents, then to the dispatcher.
func (s *pooler) stop() {
	activeMu.Lock()
	delete(active, s)
	activeMu.Unlock()
	for _, a := range s.Agents {
		_ = a.Stop(20 * time.Second)
	}
	_ = s.Dispatcher.Stop(20 * time.Second)
	s.Close()
}

// stats asks the dispatcher for its counters.
func (s *pooler) stats() (*adminv1.GetStatsResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return s.Dispatcher.API().GetStats(ctx, &adminv1.GetStatsRequest{})
}

// configSets are -set flags: config keys every stack overrides (a stack's
// own settings, such as smoke mode's transfer.fsync, still win).
type configSets []configSet

type configSet struct{ key, value string }

func (c *configSets) String() string { return fmt.Sprint(*c) }

func (c *configSets) Set(v string) error {
	key, value, ok := strings.Cut(v, "=")
	if !ok || !strings.Contains(key, ".") {
		return fmt.Errorf("%q: want section.key=value", v)
	}
	// A misspelt key or a value of the wrong type fails here, not when
	// the first dispatcher refuses its file.
	probe := config.Default()
	if err := probe.Set(key, value); err != nil {
		return err
	}
	*c = append(*c, configSet{key, value})
	return nil
}
