//go:build e2e

package realstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// TestManyTasks produces 1,000 tasks of 100 KiB in one kcat run (half from
// vsftpd, half from pure-ftpd, to local storage) for two agents, and checks
// that every task has exactly one outcome, read with read_committed, that
// all succeeded, and every file's sha256. E2E_MANY replaces the count.
func TestManyTasks(t *testing.T) {
	n := 1000
	if v := os.Getenv("E2E_MANY"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		must(t, err)
	}
	const size = 100 << 10
	s := NewStack(t, StackOptions{})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir), env.PureFTPD.Path(dir))

	tasks := make([]Task, n)
	sums := make([]string, n)
	ids := make([]string, n)
	for i := range tasks {
		srv, id := env.VSFTPD, "vsftpd"
		if i%2 == 1 {
			srv, id = env.PureFTPD, "pureftpd"
		}
		name := fmt.Sprintf("%04d.bin", i)
		sums[i] = PutFile(t, srv.Path(dir+"/many/"+name), RandomBytes(size, uint64(1000+i)))
		tasks[i] = Task{TaskID: s.ID(fmt.Sprintf("many-%04d", i)), SrcID: id, SrcPath: dir + "/many/" + name, DstID: "local", DstPath: "many/" + id + "/" + name}
		ids[i] = tasks[i].TaskID
	}

	start := time.Now()
	SubmitTasks(t, tasks...)
	produced := time.Since(start)
	got := s.Await(t, ids, 5*time.Minute)
	took := time.Since(start)
	t.Logf("%d tasks: produced with one kcat in %s, all outcomes in %s (%.0f tasks/s, %.1f MiB/s)",
		n, produced.Round(time.Millisecond), took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(n*size)/(1<<20)/took.Seconds())

	// Let later transactions land: a duplicate would show up now.
	time.Sleep(3 * time.Second)
	byAgent := map[string]int{}
	dups := 0
	for i, tk := range tasks {
		if ms := collector.Messages(tk.TaskID, "", s.Since); len(ms) != 1 {
			dups++
			if dups <= 5 {
				t.Errorf("%s: %d outcomes, want exactly 1: %v", tk.TaskID, len(ms), ms)
			}
		}
		m := got[tk.TaskID]
		s.CheckSuccess(t, m, tk, size)
		byAgent[m.Str("agent")]++
		CheckFile(t, filepath.Join(s.Base, tk.DstPath), sums[i], size)
		if t.Failed() && i > 20 {
			t.Fatalf("stopping the checks at task %d", i)
		}
	}
	if dups > 0 {
		t.Errorf("%d tasks without exactly one outcome", dups)
	}
	agents := make([]string, 0, len(byAgent))
	for a := range byAgent {
		agents = append(agents, a)
	}
	sort.Strings(agents)
	for _, a := range agents {
		t.Logf("agent %s ran %d tasks", a, byAgent[a])
	}
	if len(byAgent) != 2 {
		t.Errorf("tasks ran on %d agents, want both: %v", len(byAgent), byAgent)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := s.Dispatcher.API().GetStats(ctx, &adminv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.OutcomesByCode["success"] != uint64(n) || len(stats.OutcomesByCode) != 1 {
		t.Errorf("GetStats outcomes = %v, want %d successes only", stats.OutcomesByCode, n)
	}
	if tmp := TempFiles(s.Base); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", first(tmp, 5))
	}
}
