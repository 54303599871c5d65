package stack

// The two binaries as processes, with the flags an operator gives them.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// Files are the configuration files a process reads.
type Files struct {
	Config      string // config.yaml
	Connections string // connections.ini
}

func (f Files) args() []string {
	return []string{"--config", f.Config, "--connections", f.Connections}
}

// Addrs are a dispatcher's listen addresses: lease stream, admin API,
// /metrics, /healthz and /readyz.
type Addrs struct{ Lease, Admin, HTTP string }

// FreeAddrs picks three loopback addresses nothing listens on, so a
// dispatcher started again listens where its agents reconnect to.
func FreeAddrs() (Addrs, error) {
	var a Addrs
	for _, p := range []*string{&a.Lease, &a.Admin, &a.HTTP} {
		var err error
		if *p, err = FreeAddr(); err != nil {
			return a, err
		}
	}
	return a, nil
}

// Dispatcher is one bin/dispatcher process.
type Dispatcher struct {
	*proc.Proc
	ID    string // --instance-id
	Files Files
	// Addrs are where it listens: the fixed addresses it was given, or
	// those it logged at its last start (it is given port 0).
	Addrs
	fixed Addrs

	mu   sync.Mutex
	conn *grpc.ClientConn
	api  adminv1.AdminServiceClient
}

// NewDispatcher describes a dispatcher logging to logPath; addresses left
// empty in at are chosen by the dispatcher at each start.
func NewDispatcher(name, bin, logPath, id string, files Files, at Addrs) *Dispatcher {
	d := &Dispatcher{Proc: proc.New(name, bin, logPath), ID: id, Files: files, Addrs: at, fixed: at}
	if at.Admin != "" {
		// Before the first start too: a supervisor may ask at any time.
		_ = d.dial(at.Admin)
	}
	return d
}

func orAnyPort(addr string) string {
	if addr == "" {
		return "127.0.0.1:0"
	}
	return addr
}

// Start starts (or restarts, after it exited) the dispatcher and waits up
// to timeout until it listens, reading its addresses from its start-up
// log line; API then talks to this run.
func (d *Dispatcher) Start(timeout time.Duration) error {
	d.Proc.Args = append(d.Files.args(), "--listen", orAnyPort(d.fixed.Lease), "--admin-listen", orAnyPort(d.fixed.Admin),
		"--http-listen", orAnyPort(d.fixed.HTTP), "--instance-id", d.ID)
	if err := d.Proc.Start(); err != nil {
		return err
	}
	lease, err := d.WaitLogValue("lease_address", timeout)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, d.Tail(40))
	}
	admin, _ := d.WaitLogValue("admin_address", time.Second)
	httpAddr, _ := d.WaitLogValue("http_address", time.Second)
	// Fixed addresses stay as they are: other goroutines read them while
	// a chaos supervisor restarts the dispatcher.
	logged := func(dst *string, fixed, value string) {
		if fixed == "" {
			*dst = value
		}
	}
	logged(&d.Lease, d.fixed.Lease, lease)
	logged(&d.Admin, d.fixed.Admin, admin)
	logged(&d.HTTP, d.fixed.HTTP, httpAddr)
	return d.dial(d.Admin)
}

// dial points API at addr with a new connection: one that saw the last
// run go away may be backing off before it tries again.
func (d *Dispatcher) dial(addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("admin API of %s at %q: %w", d.Name, addr, err)
	}
	d.mu.Lock()
	old := d.conn
	d.conn, d.api = conn, adminv1.NewAdminServiceClient(conn)
	d.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// API is the admin API of the current run.
func (d *Dispatcher) API() adminv1.AdminServiceClient {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.api
}

// Ready reports whether /readyz answers 200: the dispatcher joined its
// consumer group.
func (d *Dispatcher) Ready() error {
	code, err := HTTPStatus("http://" + d.HTTP + "/readyz")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("/readyz: %d", code)
	}
	return err
}

// WaitReadyz waits up to timeout for Ready, failing early when the
// dispatcher exits.
func (d *Dispatcher) WaitReadyz(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if !d.Running() {
			return fmt.Errorf("%s exited (%v) while starting\n%s", d.Name, d.Wait(0), d.Tail(40))
		}
		err := d.Ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s (%v)\n%s", d.Name, timeout, err, d.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ListAgents asks the dispatcher which agents it holds streams from.
func (d *Dispatcher) ListAgents() ([]*adminv1.Agent, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := d.API().ListAgents(ctx, &adminv1.ListAgentsRequest{})
	if err != nil {
		return nil, err
	}
	return r.Agents, nil
}

// Close drops the admin connection.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
	}
}

// Agent is one bin/agent process.
type Agent struct {
	*proc.Proc
	ID    string // --agent-id
	Files Files
	// Dispatchers are the lease stream addresses it connects to.
	Dispatchers []string
	// Slots is --slots (0 leaves it to agent.slots).
	Slots int
	// HTTPListen is --http-listen ("" leaves it to agent.http_listen);
	// HTTP is the address the agent logged for it.
	HTTPListen string
	HTTP       string
}

// NewAgent describes an agent logging to logPath.
func NewAgent(name, bin, logPath, id string, files Files) *Agent {
	return &Agent{Proc: proc.New(name, bin, logPath), ID: id, Files: files}
}

// Start starts (or restarts) the agent and, when it serves HTTP, waits up
// to timeout until it does.
func (a *Agent) Start(timeout time.Duration) error {
	args := append(a.Files.args(), "--dispatcher", strings.Join(a.Dispatchers, ","))
	if a.Slots != 0 {
		args = append(args, "--slots", fmt.Sprint(a.Slots))
	}
	args = append(args, "--agent-id", a.ID)
	if a.HTTPListen != "" {
		args = append(args, "--http-listen", a.HTTPListen)
	}
	a.Proc.Args = args
	if err := a.Proc.Start(); err != nil {
		return err
	}
	if a.HTTPListen == "" {
		return nil
	}
	addr, err := a.WaitLogValue("http_address", timeout)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, a.Tail(40))
	}
	a.HTTP = addr
	return nil
}
