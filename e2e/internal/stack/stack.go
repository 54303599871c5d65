package stack

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

// Options shape a Stack.
type Options struct {
	// Dir holds the files and the logs (dispatcher.log, agent-N.log).
	Dir string
	// Bin holds the dispatcher and agent binaries.
	Bin         string
	Config      config.Config
	Connections config.Connections
	// AgentConnections, when set, is what the agents read instead of
	// Connections (agent-connections.ini).
	AgentConnections config.Connections
	// Files, when set, are used as they are instead of writing Config and
	// Connections (the original service's files, verbatim).
	Files *Files
	// Comment is the first line of the files written ("Written by ...").
	Comment string
	// InstanceID is the dispatcher's --instance-id.
	InstanceID string
	// Addrs fixes the dispatcher's addresses; those left empty it chooses
	// at each start.
	Addrs Addrs
	// Agents is how many agents there are; Slots is each one's --slots.
	Agents int
	Slots  int
	// AgentID names agent i (from 0); default <InstanceID>-agent-<i+1>.
	AgentID func(i int) string
	// AgentHTTP is the agents' --http-listen ("" leaves it to the config).
	AgentHTTP string
}

// Stack is one dispatcher and its agents, as an operator runs them.
type Stack struct {
	Dir string
	// Config and Connections are what the files hold (zero for Files given
	// as they are).
	Config      config.Config
	Connections config.Connections
	Files       Files
	Dispatcher  *Dispatcher
	Agents      []*Agent
}

// New writes the files and describes the processes; it starts nothing.
func New(o Options) (*Stack, error) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{Dir: o.Dir, Config: o.Config, Connections: o.Connections}
	if o.Files != nil {
		s.Files = *o.Files
	} else {
		s.Files = Files{Config: filepath.Join(o.Dir, "config.yaml"), Connections: filepath.Join(o.Dir, "connections.ini")}
		if err := o.Config.Write(s.Files.Config, o.Comment); err != nil {
			return nil, err
		}
		if err := o.Connections.Write(s.Files.Connections, o.Comment); err != nil {
			return nil, err
		}
	}
	agentFiles := s.Files
	if o.AgentConnections != nil {
		agentFiles.Connections = filepath.Join(o.Dir, "agent-connections.ini")
		if err := o.AgentConnections.Write(agentFiles.Connections, o.Comment); err != nil {
			return nil, err
		}
	}
	s.Dispatcher = NewDispatcher("dispatcher", filepath.Join(o.Bin, "dispatcher"), filepath.Join(o.Dir, "dispatcher.log"), o.InstanceID, s.Files, o.Addrs)
	if o.AgentID == nil {
		o.AgentID = func(i int) string { return fmt.Sprintf("%s-agent-%d", o.InstanceID, i+1) }
	}
	for i := range o.Agents {
		name := fmt.Sprintf("agent-%d", i+1)
		a := NewAgent(name, filepath.Join(o.Bin, "agent"), filepath.Join(o.Dir, name+".log"), o.AgentID(i), agentFiles)
		a.Slots, a.HTTPListen = o.Slots, o.AgentHTTP
		s.Agents = append(s.Agents, a)
	}
	return s, nil
}

// Start starts the dispatcher, then the agents, and waits until they are
// ready.
func (s *Stack) Start() error {
	if err := s.StartDispatcher(60 * time.Second); err != nil {
		return err
	}
	for i := range s.Agents {
		if err := s.StartAgent(i, 30*time.Second); err != nil {
			return err
		}
	}
	return s.WaitReady(len(s.Agents), 60*time.Second)
}

// StartDispatcher starts (or restarts) the dispatcher.
func (s *Stack) StartDispatcher(timeout time.Duration) error {
	if err := s.Dispatcher.Start(timeout); err != nil {
		return fmt.Errorf("dispatcher did not start: %w", err)
	}
	return nil
}

// StartAgent starts (or restarts) agent i, connected to the dispatcher.
func (s *Stack) StartAgent(i int, timeout time.Duration) error {
	a := s.Agents[i]
	a.Dispatchers = []string{s.Dispatcher.Lease}
	if err := a.Start(timeout); err != nil {
		return fmt.Errorf("%s did not start: %w", a.Name, err)
	}
	return nil
}

// WaitReady waits until the dispatcher's /readyz answers 200 and it holds
// streams from n agents, each with a credit window and not draining.
func (s *Stack) WaitReady(n int, timeout time.Duration) error {
	d := s.Dispatcher
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if !d.Running() {
			return fmt.Errorf("dispatcher exited (%v) before it was ready\n%s", d.Wait(0), d.Tail(60))
		}
		if err := d.Ready(); err != nil {
			last = err.Error()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		agents, err := d.ListAgents()
		if err != nil {
			last = fmt.Sprintf("ListAgents: %v", err)
		} else {
			ready := 0
			for _, a := range agents {
				if a.Window > 0 && !a.Draining {
					ready++
				}
			}
			if ready == n && len(agents) == n {
				return nil
			}
			last = fmt.Sprintf("ListAgents: %d agents, %d with a window: %v", len(agents), ready, agents)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %s: %s", timeout, last)
}

// Procs are the dispatcher and the agents.
func (s *Stack) Procs() []*proc.Proc {
	out := []*proc.Proc{s.Dispatcher.Proc}
	for _, a := range s.Agents {
		out = append(out, a.Proc)
	}
	return out
}

// WriteConfig writes c as <dir>/<name>.yaml, for a process that should
// read a variant of the stack's config.
func (s *Stack) WriteConfig(name string, c config.Config) (string, error) {
	path := filepath.Join(s.Dir, name+".yaml")
	return path, c.Write(path, name)
}

// Close drops the admin connection; the processes are the caller's to stop.
func (s *Stack) Close() { s.Dispatcher.Close() }
