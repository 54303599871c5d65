package proc

// What /proc says about processes while they run: resident memory, CPU
// time, and the PID files the scripts write for the servers.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory is a process's resident set size from /proc/<pid>/status.
type Memory struct {
	RSS, HWM int64 // VmRSS and VmHWM (peak), bytes
}

// ReadMemory reads /proc/<pid>/status of the current run.
func (p *Proc) ReadMemory() (Memory, error) {
	pid := p.Pid()
	if pid == 0 {
		return Memory{}, fmt.Errorf("%s not started", p.Name)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = n << 10
		case "VmHWM":
			m.HWM = n << 10
		}
	}
	return m, nil
}

// MemorySampler polls processes' memory until Stop.
type MemorySampler struct {
	procs []*Proc
	stop  chan struct{}
	done  <-chan struct{}
	mu    sync.Mutex
	peak  map[string]Memory // largest VmRSS seen, and the last VmHWM
}

// SampleMemory polls procs' VmRSS and VmHWM every interval.
func SampleMemory(interval time.Duration, procs ...*Proc) *MemorySampler {
	s := &MemorySampler{procs: procs, stop: make(chan struct{}), peak: map[string]Memory{}}
	s.done = Poll(interval, s.stop, true, s.sample)
	return s
}

func (s *MemorySampler) sample() {
	for _, p := range s.procs {
		m, err := p.ReadMemory()
		if err != nil {
			continue
		}
		s.mu.Lock()
		old := s.peak[p.Name]
		if m.RSS < old.RSS {
			m.RSS = old.RSS
		}
		if m.HWM < old.HWM {
			m.HWM = old.HWM
		}
		s.peak[p.Name] = m
		s.mu.Unlock()
	}
}

// Peak is the largest sampled VmRSS and the VmHWM per process name so far.
func (s *MemorySampler) Peak() map[string]Memory {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Memory, len(s.peak))
	for k, v := range s.peak {
		out[k] = v
	}
	return out
}

// Stop ends the sampling and returns Peak.
func (s *MemorySampler) Stop() map[string]Memory {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.Peak()
}

// MiB formats bytes as mebibytes.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// statFields are the fields of /proc/<pid>/stat after the command name,
// which may hold spaces and parentheses: f[0] is field 3 (state).
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// ticks sums fields of statFields as seconds.
func ticks(f []string) float64 {
	var sum float64
	for _, k := range f {
		v, _ := strconv.ParseFloat(k, 64)
		sum += v
	}
	return sum / clockTicks
}

// CPUSeconds is a process's user plus system time so far (0 once it is gone).
func CPUSeconds(pid int) float64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	return ticks(f[11:13]) // utime, stime: fields 14 and 15
}

// TreeCPU is the CPU seconds of pid and its descendants so far, including
// descendants that exited and were reaped inside the tree (cutime, cstime):
// vsftpd runs a process per session, Kafka is one JVM.
func TreeCPU(pid int) float64 {
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
		f := statFields(p)
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
		cpu[p] = ticks(f[11:15]) // utime, stime, cutime, cstime
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

// PIDFile reads a PID file (the scripts' <state>/<name>.pid), or 0.
func PIDFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// Poll calls sample at once and then every interval until stop is closed,
// and once more then when last is set (a final reading of what ran up to
// the end). The returned channel closes when it has finished.
func Poll(interval time.Duration, stop <-chan struct{}, last bool, sample func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sample()
			select {
			case <-stop:
				if last {
					sample()
				}
				return
			case <-t.C:
			}
		}
	}()
	return done
}
