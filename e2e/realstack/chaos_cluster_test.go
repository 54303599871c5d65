//go:build e2e && chaos

package realstack

// The chaos suite's fleet: two dispatchers in one consumer group and three
// agents, each a process of the real binaries, sharing one config.yaml and
// connections.ini. Dispatchers listen on fixed ports so a restarted one is
// found again; the zombie agent reaches both dispatchers through proxies
// the test can stall or cut (chaos_proxy_test.go).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// chaosAgent is one agent process.
type chaosAgent struct {
	*stack.Agent
	// Proxies stand between this agent and each dispatcher (the zombie);
	// nil when it dials them directly.
	Proxies []*chaosProxy
}

// chaosCluster is the fleet under test.
type chaosCluster struct {
	t     *testing.T
	Dir   string
	Base  string // the local endpoint's base_path
	Group string
	Files stack.Files
	Slots int
	// Limits is each FTP endpoint's max_connections.
	Limits      map[string]int
	Dispatchers []*stack.Dispatcher
	Agents      []*chaosAgent

	// The supervisor restarts processes that exit outside a fault (as
	// Kubernetes would) and records them: a crash fails the run.
	supMu    sync.Mutex
	expected map[*Proc]bool // down on purpose (a fault is at work)
	crashes  []string
	supStop  chan struct{}
	supDone  chan struct{}
}

// chaosConfig is config.yaml for every process of the fleet: short leases
// and breakers so faults heal within the run, a consumer session timeout
// that hands a crashed dispatcher's partitions over in seconds.
func chaosConfig(group string) config.Config {
	c := config.Default()
	c.Kafka.BootstrapServers, c.Kafka.ConsumerGroup, c.Kafka.CommitInterval = env.Brokers(), group, 20*time.Millisecond
	c.Kafka.Client = map[string]string{"session.timeout.ms": "10000", "heartbeat.interval.ms": "1000"}
	c.Pool.MaxSessionsPerConnection, c.Pool.SessionTimeoutSeconds = 10, 60
	c.Transfer.ConnectTimeoutSeconds, c.Transfer.IdleTimeout = 5, 20*time.Second
	c.Retry.MaxAttempts, c.Retry.BaseBackoff, c.Retry.MaxBackoff = 4, 300*time.Millisecond, 3*time.Second
	c.Lease.TTL, c.Lease.HeartbeatInterval, c.Lease.CommitTimeout = 8*time.Second, time.Second, 20*time.Second
	c.CircuitBreaker = config.CircuitBreaker{FailureThreshold: 5, SuccessThreshold: 2, TimeoutSeconds: 3, HalfOpenMaxCalls: 1}
	c.Logging.Level, c.Logging.Format = "INFO", "text"
	c.Dispatcher.DrainTimeout = 20 * time.Second
	c.Agent.DrainTimeout, c.Agent.ReconnectMaxBackoff = 15*time.Second, time.Second
	return c
}

// newChaosCluster writes the files; start starts the processes.
// chaosSFTPSessions is how many SFTP sessions each SSH connection to
// OpenSSH carries in the chaos suite.
const chaosSFTPSessions = 2

func newChaosCluster(t *testing.T, dispatchers, agents, slots int, limits map[string]int, zombie int) *chaosCluster {
	t.Helper()
	name := unsafeName.ReplaceAllString(t.Name(), "_")
	suffix := fmt.Sprintf("%s%d", runID, stacks.Add(1))
	c := &chaosCluster{t: t, Dir: filepath.Join(env.WorkDir, name), Group: "chaos-" + suffix, Slots: slots, Limits: limits,
		expected: map[*Proc]bool{}}
	must(t, os.RemoveAll(c.Dir))
	must(t, os.MkdirAll(c.Dir, 0o755))
	c.Base = filepath.Join(c.Dir, "base")
	must(t, os.MkdirAll(c.Base, 0o755))
	c.Files = stack.Files{Config: filepath.Join(c.Dir, "config.yaml"), Connections: filepath.Join(c.Dir, "connections.ini")}
	comment := "Written by e2e/realstack for " + t.Name() + "."
	must(t, chaosConfig(c.Group).Write(c.Files.Config, comment))
	var conns config.Connections
	for _, srv := range []FTPServer{env.VSFTPD, env.PureFTPD} {
		e := srv.Endpoint(srv.Name)
		e.MaxConnections = limits[srv.Name]
		conns = append(conns, e)
	}
	openssh, _, err := env.SFTPServers()
	must(t, err)
	sftp := openssh.Endpoint("openssh")
	sftp.MaxConnections, sftp.MaxSessionsPerConnection = limits["openssh"], chaosSFTPSessions
	conns = append(conns, sftp)
	must(t, append(conns, config.Local("local", c.Base)).Write(c.Files.Connections, comment))

	for i := 0; i < dispatchers; i++ {
		id := fmt.Sprintf("chaos-d%d", i+1)
		at, err := stack.FreeAddrs()
		must(t, err)
		c.Dispatchers = append(c.Dispatchers, stack.NewDispatcher(id, filepath.Join(env.BinDir, "dispatcher"), filepath.Join(c.Dir, id+".log"),
			c.Group+"-"+id, c.Files, at))
	}
	for i := 0; i < agents; i++ {
		id := fmt.Sprintf("chaos-a%d", i+1)
		a := &chaosAgent{Agent: stack.NewAgent(id, filepath.Join(env.BinDir, "agent"), filepath.Join(c.Dir, id+".log"),
			c.Group+"-a"+fmt.Sprint(i+1), c.Files)}
		for _, d := range c.Dispatchers {
			if i == zombie {
				p := newChaosProxy(t, d.Lease)
				a.Proxies = append(a.Proxies, p)
				a.Dispatchers = append(a.Dispatchers, p.Addr())
			} else {
				a.Dispatchers = append(a.Dispatchers, d.Lease)
			}
		}
		a.Slots, a.HTTPListen = slots, "127.0.0.1:0"
		c.Agents = append(c.Agents, a)
	}
	SeekGroupToEnd(t, c.Group, TasksTopic)
	t.Cleanup(c.cleanup)
	return c
}

// Expect marks p as taken down on purpose until Release.
func (c *chaosCluster) Expect(p *Proc) {
	c.supMu.Lock()
	c.expected[p] = true
	c.supMu.Unlock()
}

// Release ends Expect.
func (c *chaosCluster) Release(p *Proc) {
	c.supMu.Lock()
	delete(c.expected, p)
	c.supMu.Unlock()
}

// Supervise restarts, until StopSupervising, every process that exits
// while no fault expects it to, and records the crash.
func (c *chaosCluster) Supervise(logf func(string, ...any)) {
	c.supStop, c.supDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(c.supDone)
		for {
			select {
			case <-c.supStop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for i, d := range c.Dispatchers {
				if c.crashed(d.Proc) {
					logf("SUPERVISOR: %s exited by itself (%v); restarting it", d.ID, d.Proc.Wait(5*time.Second))
					c.recordCrash(d.Proc)
					if err := c.StartDispatcher(i, 120*time.Second); err != nil {
						logf("SUPERVISOR: restarting %s: %v", d.ID, err)
					}
					c.Release(d.Proc)
				}
			}
			for i, a := range c.Agents {
				if c.crashed(a.Proc) {
					logf("SUPERVISOR: %s exited by itself (%v); restarting it", a.Proc.Name, a.Proc.Wait(5*time.Second))
					c.recordCrash(a.Proc)
					if err := c.StartAgent(i); err != nil {
						logf("SUPERVISOR: restarting %s: %v", a.Proc.Name, err)
					}
					c.Release(a.Proc)
				}
			}
		}
	}()
}

// crashed reports (and marks expected, while it is being restarted) a
// process that exited outside a fault.
func (c *chaosCluster) crashed(p *Proc) bool {
	c.supMu.Lock()
	defer c.supMu.Unlock()
	if c.expected[p] || p.Starts() == 0 || p.Running() {
		return false
	}
	c.expected[p] = true
	return true
}

func (c *chaosCluster) recordCrash(p *Proc) {
	var last []string
	for _, l := range strings.Split(p.Tail(400), "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") || strings.Contains(l, "Assertion") || strings.Contains(l, "fatal") {
			last = append(last, l)
		}
	}
	c.supMu.Lock()
	c.crashes = append(c.crashes, fmt.Sprintf("%s at %s: %v; last error lines:\n    %s", p.Name, time.Now().Format("15:04:05.000"), p.Wait(5*time.Second), strings.Join(first(lastN(last, 3), 3), "\n    ")))
	c.supMu.Unlock()
}

func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// StopSupervising ends the supervisor and returns the crashes it saw.
func (c *chaosCluster) StopSupervising() []string {
	if c.supStop != nil {
		close(c.supStop)
		<-c.supDone
		c.supStop = nil
	}
	c.supMu.Lock()
	defer c.supMu.Unlock()
	return append([]string(nil), c.crashes...)
}

// Procs are every process of the fleet.
func (c *chaosCluster) Procs() []*Proc {
	var out []*Proc
	for _, d := range c.Dispatchers {
		out = append(out, d.Proc)
	}
	for _, a := range c.Agents {
		out = append(out, a.Proc)
	}
	return out
}

// StartDispatcher starts dispatcher i and waits until it has joined the
// consumer group (/readyz).
func (c *chaosCluster) StartDispatcher(i int, timeout time.Duration) error {
	d := c.Dispatchers[i]
	if err := d.Start(timeout); err != nil {
		return err
	}
	return d.WaitReadyz(timeout)
}

// StartAgent starts agent i and waits until it serves HTTP.
func (c *chaosCluster) StartAgent(i int) error {
	return c.Agents[i].Start(30 * time.Second)
}

// Connected lists, per dispatcher, the agents it holds a stream from with
// a credit window, not draining.
func (c *chaosCluster) Connected() ([][]string, error) {
	var out [][]string
	for _, d := range c.Dispatchers {
		agents, err := d.ListAgents()
		if err != nil {
			return nil, fmt.Errorf("%s ListAgents: %w", d.ID, err)
		}
		var ids []string
		for _, a := range agents {
			if a.Window > 0 && !a.Draining {
				ids = append(ids, a.AgentId)
			}
		}
		sort.Strings(ids)
		out = append(out, ids)
	}
	return out, nil
}

// WaitConnected waits until every dispatcher holds a stream from every
// running agent.
func (c *chaosCluster) WaitConnected(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		var want []string
		for _, a := range c.Agents {
			if a.Proc.Running() {
				want = append(want, a.ID)
			}
		}
		sort.Strings(want)
		got, err := c.Connected()
		ok := err == nil
		for _, ids := range got {
			ok = ok && strings.Join(ids, ",") == strings.Join(want, ",")
		}
		if ok {
			return nil
		}
		last = fmt.Sprintf("want %v on each dispatcher, have %v (%v)", want, got, err)
		if time.Now().After(deadline) {
			return fmt.Errorf("agents not connected within %s: %s", timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Leases lists the leases in flight on every running dispatcher.
func (c *chaosCluster) Leases() []*adminv1.LeaseInfo {
	var out []*adminv1.LeaseInfo
	for _, d := range c.Dispatchers {
		if !d.Proc.Running() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		r, err := d.API().ListLeases(ctx, &adminv1.ListLeasesRequest{})
		cancel()
		if err == nil {
			out = append(out, r.Leases...)
		}
	}
	return out
}

// Stop ends every process with SIGTERM and reports those that did not
// exit 0.
func (c *chaosCluster) Stop() []string {
	var bad []string
	for _, p := range c.Procs() {
		if p.Starts() == 0 || !p.Running() {
			continue
		}
		if err := p.Stop(60 * time.Second); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", p.Name, err))
		}
	}
	return bad
}

func (c *chaosCluster) cleanup() {
	if c.t.Failed() {
		for _, p := range c.Procs() {
			if p.Starts() > 0 {
				c.t.Logf("----- %s (pid %d), last 60 lines of %s -----\n%s", p.Name, p.Pid(), p.LogPath, p.Tail(60))
			}
		}
	}
	for _, p := range c.Procs() {
		if p.Running() {
			p.Kill()
		}
	}
	for _, d := range c.Dispatchers {
		d.Close()
	}
	for _, a := range c.Agents {
		for _, p := range a.Proxies {
			p.Close()
		}
	}
	if !c.t.Failed() {
		_ = os.RemoveAll(c.Base)
	}
}
