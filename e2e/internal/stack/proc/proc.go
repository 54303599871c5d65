// Package proc runs the binaries under test as child processes: start,
// signal, stop, kill and restart them, wait for what they log, and read
// what /proc says about them (memory, CPU). It knows nothing about
// dispatchers or agents; package stack builds on it, and a chaos suite can
// kill, restart and signal at any moment.
package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process. Its stdout and stderr go to LogPath, which
// every (re)start appends to after a "=== start" line.
type Proc struct {
	Name    string
	Bin     string
	Args    []string
	LogPath string
	// Env is added to the child's environment. That is the caller's without
	// FTP_POOLER_* and OTEL_*, so that only the files the harness wrote
	// configure the binaries and no telemetry goes anywhere by accident,
	// unless Inherit is set.
	Env []string
	// Inherit passes the caller's environment on whole (the demo: the
	// user's OTEL_* and FTP_POOLER_LOG_LEVEL reach the binaries).
	Inherit bool

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current run exited
	state    *os.ProcessState
	waitErr  error
	logStart int64 // log offset where the current run's output begins
	starts   int
}

// New describes a process; Start runs it.
func New(name, bin, logPath string, args ...string) *Proc {
	return &Proc{Name: name, Bin: bin, Args: args, LogPath: logPath}
}

func (p *Proc) environ() []string {
	if p.Inherit {
		return append(os.Environ(), p.Env...)
	}
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FTP_POOLER_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, p.Env...)
}

// Start runs the process (again, after it exited).
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		return fmt.Errorf("%s is already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s start #%d: %s %s\n", time.Now().Format(time.RFC3339Nano), p.starts+1, p.Bin, strings.Join(p.Args, " "))
	off, _ := f.Seek(0, 2)
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = p.environ()
	// Die with the caller (a test's timeout panic, a kill): no orphan keeps
	// a consumer group or FTP sessions.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.logStart, p.state, p.waitErr = cmd, off, nil, nil
	p.starts++
	done := make(chan struct{})
	p.done = done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.state, p.waitErr = cmd.ProcessState, err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *Proc) exitedLocked() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the current run's process id (0 before Start).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the current run has not exited.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.exitedLocked()
}

// Starts counts the runs so far.
func (p *Proc) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Signal sends sig to the running process.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exitedLocked() {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// ExitError is how a run ended when it did not exit 0.
type ExitError struct {
	Name   string
	Code   int    // -1 when killed by a signal
	Signal string // the signal, if any
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return fmt.Sprintf("%s was killed by %s", e.Name, e.Signal)
	}
	return fmt.Sprintf("%s exited with status %d", e.Name, e.Code)
}

// Wait waits up to timeout for the current run to exit: nil for exit 0,
// an *ExitError otherwise, or a timeout error (the process keeps running).
func (p *Proc) Wait(timeout time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return fmt.Errorf("%s was never started", p.Name)
	}
	select {
	case <-done:
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s", p.Name, p.Pid(), timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return exitResult(p.Name, p.state, p.waitErr)
}

func exitResult(name string, st *os.ProcessState, waitErr error) error {
	if st == nil {
		return fmt.Errorf("%s: %v", name, waitErr)
	}
	if st.Success() {
		return nil
	}
	e := &ExitError{Name: name, Code: st.ExitCode()}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = ws.Signal().String()
	}
	return e
}

// Stop sends SIGTERM and waits up to timeout; nil means it exited 0. After
// the timeout the process is killed and an error says so.
func (p *Proc) Stop(timeout time.Duration) error {
	if !p.Running() {
		return p.Wait(0)
	}
	_ = p.Signal(syscall.SIGTERM)
	err := p.Wait(timeout)
	var exit *ExitError
	if err != nil && !errors.As(err, &exit) {
		p.Kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM: killed", p.Name, timeout)
	}
	return err
}

// Kill sends SIGKILL (a crash) and waits for the exit.
func (p *Proc) Kill() {
	if p.Running() {
		_ = p.Signal(syscall.SIGKILL)
	}
	_ = p.Wait(30 * time.Second)
}

// Restart stops the process (SIGTERM, then SIGKILL after timeout) if it
// runs, and starts it again with the same arguments.
func (p *Proc) Restart(timeout time.Duration) error {
	if p.Running() {
		_ = p.Stop(timeout)
	}
	return p.Start()
}

// Log is the current run's output so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	off := p.logStart
	p.mu.Unlock()
	b, _ := os.ReadFile(p.LogPath)
	if off > int64(len(b)) {
		off = 0
	}
	return string(b[off:])
}

// Tail is the last n lines of the whole log (all runs).
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	return LastLines(b, n)
}

// LastLines is the last n lines of b.
func LastLines(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WaitLog waits until the current run logs a line matching re and returns
// that line. It fails early when the process exits.
func (p *Proc) WaitLog(re *regexp.Regexp, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		sc := bufio.NewScanner(strings.NewReader(p.Log()))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			if re.MatchString(sc.Text()) {
				return sc.Text(), nil
			}
		}
		if !p.Running() {
			return "", fmt.Errorf("%s exited (%v) before logging %q", p.Name, p.Wait(0), re)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not log %q within %s", p.Name, re, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitLogValue waits for key=value (text log) or "key":"value" (JSON log)
// and returns value.
func (p *Proc) WaitLogValue(key string, timeout time.Duration) (string, error) {
	re := regexp.MustCompile(`(?:\b` + regexp.QuoteMeta(key) + `=("[^"]*"|\S+))|(?:"` + regexp.QuoteMeta(key) + `":"([^"]*)")`)
	line, err := p.WaitLog(re, timeout)
	if err != nil {
		return "", err
	}
	m := re.FindStringSubmatch(line)
	if m[1] != "" {
		return strings.Trim(m[1], `"`), nil
	}
	return m[2], nil
}

// CountLog counts the current run's lines matching re.
func (p *Proc) CountLog(re *regexp.Regexp) int {
	n := 0
	for _, l := range strings.Split(p.Log(), "\n") {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}
