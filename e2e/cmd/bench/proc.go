package main

// Child processes (the real binaries) and what /proc says about them.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stackenv"
)

// proc is one child process; its output goes to logPath.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// startProc runs bin with args, logging to logPath. The child dies with us.
func startProc(name, bin, logPath string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FTP_POOLER_") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits, then SIGKILL.
func (p *proc) stop(timeout time.Duration) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitLogValue waits for key=value or "key":"value" in the log.
func (p *proc) waitLogValue(key string, timeout time.Duration) (string, error) {
	re := regexp.MustCompile(`(?:\b` + regexp.QuoteMeta(key) + `=("[^"]*"|\S+))|(?:"` + regexp.QuoteMeta(key) + `":"([^"]*)")`)
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p.logPath)
		if m := re.FindStringSubmatch(string(b)); m != nil {
			if m[1] != "" {
				return strings.Trim(m[1], `"`), nil
			}
			return m[2], nil
		}
		if !p.running() {
			return "", fmt.Errorf("%s exited (%v) before logging %s:\n%s", p.name, p.err, key, tail(p.logPath, 20))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not log %s within %s:\n%s", p.name, key, timeout, tail(p.logPath, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// cpuSeconds is a process's user plus system time so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// After the command: field 3 is f[0]; utime is field 14, stime 15.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clockTicks
}

// rssBytes is a process's resident set size now.
func rssBytes(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fs := strings.Fields(v)
			if len(fs) > 0 {
				n, _ := strconv.ParseInt(fs[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// sampler records the largest RSS of some processes until stopped.
type sampler struct {
	pids []int
	stop chan struct{}
	done <-chan struct{}
	mu   sync.Mutex
	peak map[int]int64
}

func sampleRSS(interval time.Duration, pids ...int) *sampler {
	s := &sampler{pids: pids, stop: make(chan struct{}), peak: map[int]int64{}}
	s.done = stackenv.Poll(interval, s.stop, true, s.sample)
	return s
}

func (s *sampler) sample() {
	for _, pid := range s.pids {
		r := rssBytes(pid)
		s.mu.Lock()
		if r > s.peak[pid] {
			s.peak[pid] = r
		}
		s.mu.Unlock()
	}
}

// end stops sampling and returns the peak per pid.
func (s *sampler) end() map[int]int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// treeCPU is the CPU seconds of pid and its descendants so far, including
// descendants that exited and were reaped inside the tree (cutime, cstime):
// vsftpd runs a process per session, Kafka is one JVM.
func treeCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	cpu := map[int]float64{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		st := string(b)
		i := strings.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(st[i+1:])
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
		var sum float64
		for _, k := range f[11:15] { // utime, stime, cutime, cstime
			v, _ := strconv.ParseFloat(k, 64)
			sum += v
		}
		cpu[p] = sum / clockTicks
	}
	total := 0.0
	seen := map[int]bool{}
	var walk func(int)
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		total += cpu[p]
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return total
}

// pidFile reads <state>/<name>.pid, or 0.
func pidFile(state, name string) int {
	b, err := os.ReadFile(state + "/" + name + ".pid")
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}
