//go:build e2e

package realstack

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// TestFTPS moves files over explicit FTPS with the vsftpd that requires
// TLS session reuse on data connections: 20 downloads and 20 uploads at
// once over up to 4 connections, with the endpoint's default TLS settings
// (the agent caps FTPS at TLS 1.2), and checks every file.
func TestFTPS(t *testing.T) {
	const n, size, limit = 20, 256 << 10, 4
	s := NewStack(t, StackOptions{Connections: func(c config.Connections) { c.Endpoint("vsftps").MaxConnections = limit }})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPS.Path(dir))
	var tasks []Task
	want := map[string][2]string{} // task id → where, sha256
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%02d.bin", i)
		sum := PutRandomFile(t, env.VSFTPS.Path(dir+"/out/"+name), size, uint64(2000+i))
		tk := Task{TaskID: s.ID(fmt.Sprintf("ftps-download-%02d", i)), SrcID: "vsftps", SrcPath: dir + "/out/" + name, DstID: "local", DstPath: "ftps/" + name}
		tasks = append(tasks, tk)
		want[tk.TaskID] = [2]string{filepath.Join(s.Base, tk.DstPath), sum}
		sum = PutRandomFile(t, filepath.Join(s.Base, "outbox", name), size, uint64(3000+i))
		tk = Task{TaskID: s.ID(fmt.Sprintf("ftps-upload-%02d", i)), SrcID: "local", SrcPath: "outbox/" + name, DstID: "vsftps", DstPath: dir + "/in/" + name}
		tasks = append(tasks, tk)
		want[tk.TaskID] = [2]string{env.VSFTPS.Path(tk.DstPath), sum}
	}
	busy := watchEndpoint(s, "vsftps")
	got := s.Run(t, 2*time.Minute, tasks...)
	maxBusy := busy()
	for _, tk := range tasks {
		s.CheckSuccess(t, got[tk.TaskID], tk, size)
		CheckFile(t, want[tk.TaskID][0], want[tk.TaskID][1], size)
	}
	t.Logf("vsftps: at most %d connections busy at once (max_connections %d)", maxBusy, limit)
	if maxBusy > limit {
		t.Errorf("%d connections busy at once, over max_connections %d", maxBusy, limit)
	}
	if maxBusy < 2 {
		t.Logf("note: the sampling never saw two vsftps connections busy at once")
	}
	if tmp := TempFiles(env.VSFTPS.Path(dir)); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// vsftpsTLS13 is the FTPS server again, allowed TLS 1.3.
func vsftpsTLS13() config.Endpoint {
	e := env.VSFTPS.Endpoint("vsftps-tls13")
	e.TLS, e.TLSCAFile, e.TLSMaxVersion = "explicit", env.VSFTPSCA, "1.3"
	return e
}

// TestFTPSTLS13 uploads and downloads over TLS 1.3 with vsftpd 3.0.3, one
// attempt per task. vsftpd sends TLS 1.3 session tickets on each data
// connection; an upload closed with them unread made the agent's kernel
// reset the connection and vsftpd cut the file short ("426 Failure reading
// network stream") on most uploads, which is why FTPS defaulted to TLS
// 1.2. The agent now ends uploads with close_notify and FIN and reads the
// server's side out before closing: all 10 uploads of 1 MiB must arrive
// whole, beside 10 through the default (TLS 1.2) endpoint and a TLS 1.3
// download.
func TestFTPSTLS13(t *testing.T) {
	if env.VSFTPSTLSMax != "1.3" {
		t.Skipf("the FTPS server is capped at TLS %s (VSFTPS_TLS_MAX): nothing to show", env.VSFTPSTLSMax)
	}
	const n, size = 10, 1 << 20
	// One attempt per task, and a breaker that does not open: each upload
	// is one try, and a failure is final.
	s := NewStack(t, StackOptions{Endpoints: []config.Endpoint{vsftpsTLS13()}, Config: func(c *config.Config) {
		c.Retry.MaxAttempts = 1
		c.CircuitBreaker.FailureThreshold = 1000
	}})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPS.Path(dir))
	upSum := PutRandomFile(t, filepath.Join(s.Base, "outbox/up.bin"), size, 4000)
	downSum := PutRandomFile(t, env.VSFTPS.Path(dir+"/out/down.bin"), size, 4001)
	var up13, up12 []Task
	for i := 0; i < n; i++ {
		up13 = append(up13, Task{TaskID: s.ID(fmt.Sprintf("tls13-upload-%d", i)), SrcID: "local", SrcPath: "outbox/up.bin", DstID: "vsftps-tls13", DstPath: fmt.Sprintf("%s/tls13/up-%d.bin", dir, i)})
		up12 = append(up12, Task{TaskID: s.ID(fmt.Sprintf("tls12-upload-%d", i)), SrcID: "local", SrcPath: "outbox/up.bin", DstID: "vsftps", DstPath: fmt.Sprintf("%s/tls12/up-%d.bin", dir, i)})
	}
	down13 := Task{TaskID: s.ID("tls13-download"), SrcID: "vsftps-tls13", SrcPath: dir + "/out/down.bin", DstID: "local", DstPath: "tls13/down.bin"}
	got := s.Run(t, 2*time.Minute, append(append(append([]Task{}, up13...), up12...), down13)...)

	for _, tk := range append(append([]Task{}, up12...), up13...) {
		s.CheckSuccess(t, got[tk.TaskID], tk, size)
		CheckFile(t, env.VSFTPS.Path(tk.DstPath), upSum, size)
	}
	s.CheckSuccess(t, got[down13.TaskID], down13, size)
	CheckFile(t, filepath.Join(s.Base, down13.DstPath), downSum, size)
	if tmp := TempFiles(env.VSFTPS.Path(dir)); len(tmp) > 0 {
		t.Errorf("uploads left temporary files on the server: %v", tmp)
	}
}

// FileSumExists is nil error when path exists.
func FileSumExists(path string) (string, error) {
	sum, _, err := FileSum(path)
	return sum, err
}

// watchEndpoint samples ListEndpoints every 20 ms and returns a function
// that stops it and returns the most connections seen busy at once.
func watchEndpoint(s *Stack, id string) func() uint32 {
	var mu sync.Mutex
	var max uint32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			c, cc := context.WithTimeout(ctx, 2*time.Second)
			r, err := s.Dispatcher.API().ListEndpoints(c, &adminv1.ListEndpointsRequest{})
			cc()
			if err == nil {
				for _, e := range r.Endpoints {
					if e.EndpointId == id {
						mu.Lock()
						if e.Busy > max {
							max = e.Busy
						}
						mu.Unlock()
					}
				}
			} else if !strings.Contains(err.Error(), "context canceled") {
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() uint32 {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return max
	}
}

// TestFailuresAfterLoginUseUpAttempts: tasks whose every delivery fails
// with a retryable code against a server that is up (uploads over TLS 1.3 to
// vsftpd 3.0.3: "426 Failure reading network stream" after a successful
// login and STOR) are attempts, not an outage: the endpoint's breaker stays
// closed and each task fails after retry.max_attempts. (They used to open
// the breaker and then wait for it forever, past max_attempts, with no
// outcome and their partition's offset stuck behind them.)
//
// vsftpd's failure is a race at the end of the upload, not a rule: CI once
// saw 2 of 3 such uploads succeed at their first attempt. A success is
// therefore allowed; what must hold is that every task gets its outcome and
// every failed one failed exactly retry.max_attempts times. The test needs
// more failed deliveries than the breaker's threshold to mean anything, and
// skips (saying why) when the server let too many through.
func TestFailuresAfterLoginUseUpAttempts(t *testing.T) {
	if env.VSFTPSTLSMax != "1.3" {
		t.Skip("needs the FTPS server to offer TLS 1.3")
	}
	const threshold, attempts = 5, 3
	s := NewStack(t, StackOptions{Endpoints: []config.Endpoint{vsftpsTLS13()}, Config: func(c *config.Config) {
		c.CircuitBreaker.FailureThreshold, c.CircuitBreaker.TimeoutSeconds = threshold, 2
	}})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPS.Path(dir))
	PutRandomFile(t, filepath.Join(s.Base, "outbox/up.bin"), 1<<20, 5000)
	var tasks []Task
	var ids []string
	for i := 0; i < 6; i++ { // 6 tasks × 3 attempts = 18 failures when vsftpd fails them all
		tk := Task{TaskID: s.ID(fmt.Sprintf("poison-%d", i)), SrcID: "local", SrcPath: "outbox/up.bin", DstID: "vsftps-tls13", DstPath: fmt.Sprintf("%s/up-%d.bin", dir, i)}
		tasks = append(tasks, tk)
		ids = append(ids, tk.TaskID)
	}
	SubmitTasks(t, tasks...)
	// 3 attempts with 200 ms–1 s backoff take a few seconds; give it 30.
	got, missing := collector.Await(ids, "", s.Since, 30*time.Second)
	for _, id := range missing {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		r, err := s.Dispatcher.API().GetTask(ctx, &adminv1.GetTaskRequest{TaskId: id})
		cancel()
		if err != nil {
			t.Errorf("%s: no outcome after 30 s; GetTask: %v", id, err)
			continue
		}
		t.Errorf("%s: no outcome after 30 s though retry.max_attempts is 3: state %s, attempt %d, last error %s: %s",
			id, r.Task.State, r.Task.Attempt, r.Task.LastErrorCode, r.Task.LastErrorMessage)
	}
	failedDeliveries := 0
	for id, m := range got {
		a, _ := m.Num("attempts")
		switch {
		case m.Str("status") == "success":
			// vsftpd did not hit its TLS 1.3 race this time; the earlier
			// attempts of this task, if any, still count.
			t.Logf("%s: vsftpd accepted this TLS 1.3 upload (attempt %v)", id, a)
			failedDeliveries += int(a) - 1
		case a != attempts || m.Str("status") != "failed" || m.Str("error_code") != "CONNECTION_ERROR":
			t.Errorf("%s: want failed with CONNECTION_ERROR after exactly retry.max_attempts %d: %s", id, attempts, m.Value)
		default:
			failedDeliveries += attempts
		}
	}
	if !t.Failed() && failedDeliveries <= threshold {
		t.Skipf("vsftpd failed only %d deliveries, not more than the breaker's threshold %d: nothing shown about the breaker", failedDeliveries, threshold)
	}
}
