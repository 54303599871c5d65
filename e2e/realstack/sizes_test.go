//go:build e2e

package realstack

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

// agentRSSLimit bounds an agent's resident memory while it moves files of
// any size (its copy buffers are a few MiB; files are streamed).
const agentRSSLimit = 300 << 20

// TestSizes moves files of 0 B, 1 MiB, 100 MiB and 1 GiB, each through a
// chain: download (vsftpd → local), upload (local → pure-ftpd), relay
// (pure-ftpd → vsftpd). Each step runs the four sizes at once; the sha256
// is checked after every step and the agents' memory sampled throughout.
// E2E_SIZES (e.g. "0,1048576") replaces the sizes.
func TestSizes(t *testing.T) {
	sizes := []int64{0, 1 << 20, 100 << 20, 1 << 30}
	if v := os.Getenv("E2E_SIZES"); v != "" {
		sizes = nil
		for _, f := range splitComma(v) {
			n, err := strconv.ParseInt(f, 10, 64)
			must(t, err)
			sizes = append(sizes, n)
		}
	}
	s := NewStack(t, StackOptions{})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir), env.PureFTPD.Path(dir))

	type file struct {
		name string
		size int64
		sum  string
	}
	var files []file
	var total int64
	for i, size := range sizes {
		f := file{name: sizeName(size), size: size}
		start := time.Now()
		f.sum = PutRandomFile(t, env.VSFTPD.Path(dir+"/src/"+f.name+".bin"), size, uint64(100+i))
		t.Logf("made the %s source in %s", f.name, time.Since(start).Round(time.Millisecond))
		files = append(files, f)
		total += size
	}
	steps := []struct {
		name  string
		task  func(f file) Task
		where func(f file) string
	}{
		{"download",
			func(f file) Task {
				return Task{TaskID: s.ID("size-" + f.name + "-download"), SrcID: "vsftpd", SrcPath: dir + "/src/" + f.name + ".bin", DstID: "local", DstPath: "sizes/" + f.name + ".bin"}
			},
			func(f file) string { return filepath.Join(s.Base, "sizes", f.name+".bin") }},
		{"upload",
			func(f file) Task {
				return Task{TaskID: s.ID("size-" + f.name + "-upload"), SrcID: "local", SrcPath: "sizes/" + f.name + ".bin", DstID: "pureftpd", DstPath: dir + "/up/" + f.name + ".bin"}
			},
			func(f file) string { return env.PureFTPD.Path(dir + "/up/" + f.name + ".bin") }},
		{"relay",
			func(f file) Task {
				return Task{TaskID: s.ID("size-" + f.name + "-relay"), SrcID: "pureftpd", SrcPath: dir + "/up/" + f.name + ".bin", DstID: "vsftpd", DstPath: dir + "/back/" + f.name + ".bin"}
			},
			func(f file) string { return env.VSFTPD.Path(dir + "/back/" + f.name + ".bin") }},
	}

	mem := proc.SampleMemory(50*time.Millisecond, s.Procs()...)
	for _, step := range steps {
		var tasks []Task
		for _, f := range files {
			tasks = append(tasks, step.task(f))
		}
		start := time.Now()
		got := s.Run(t, 3*time.Minute+time.Duration(total/(4<<20))*time.Second, tasks...)
		took := time.Since(start)
		for i, f := range files {
			m := got[tasks[i].TaskID]
			s.CheckSuccess(t, m, tasks[i], f.size)
			CheckFile(t, step.where(f), f.sum, f.size)
			d, _ := m.Num("duration_ms")
			t.Logf("%-8s %-6s by %s: %6d ms on the agent (%.0f MiB/s)", step.name, f.name, m.Str("agent"), int64(d), float64(f.size)/(1<<20)/(d/1000+1e-3))
		}
		t.Logf("%s step: %d files, %s in %s", step.name, len(files), proc.MiB(total), took.Round(time.Millisecond))
		if t.Failed() {
			break
		}
	}
	peak := mem.Stop()
	for _, p := range s.Procs() {
		m := peak[p.Name]
		t.Logf("%s memory: peak VmRSS sampled %s, VmHWM %s", p.Name, proc.MiB(m.RSS), proc.MiB(m.HWM))
		if p != s.Dispatcher.Proc && (m.HWM > agentRSSLimit || m.RSS > agentRSSLimit) {
			t.Errorf("%s: peak RSS %s (VmHWM %s) over %s", p.Name, proc.MiB(m.RSS), proc.MiB(m.HWM), proc.MiB(agentRSSLimit))
		}
	}
	if tmp := append(TempFiles(s.Base), append(TempFiles(env.VSFTPD.Path(dir)), TempFiles(env.PureFTPD.Path(dir))...)...); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func sizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	default:
		return fmt.Sprintf("%dB", n)
	}
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
