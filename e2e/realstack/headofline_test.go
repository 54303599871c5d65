//go:build e2e

package realstack

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

// TestStalledTransferDoesNotHoldUpOthers: one upload crawls at 512 B/s
// through a throttling proxy in front of vsftpd, holding its connection
// for half an hour; a small download and a small upload to the same
// endpoint (max_connections 10, mostly unused) must run at once on
// connections of their own, not queue behind it on its agent (issue 10:
// they waited for the stalled one's idle timeout, 60 s).
func TestStalledTransferDoesNotHoldUpOthers(t *testing.T) {
	// E2E_CONNECTION_WAIT=1h shows the test fails without the bound.
	connectionWait := time.Second
	if v := os.Getenv("E2E_CONNECTION_WAIT"); v != "" {
		var err error
		connectionWait, err = time.ParseDuration(v)
		must(t, err)
	}
	proxy := NewThrottledFTP(t, env.VSFTPD.Addr, 512)
	s := NewStack(t, StackOptions{
		// One agent: the stalled upload's, where the others would queue.
		Agents:    1,
		Endpoints: []config.Endpoint{ftpSection("stally", proxy.Host(), proxy.Port(), env.VSFTPD, 10)},
		Config: func(c *config.Config) {
			c.Lease.HeartbeatInterval, c.Lease.ConnectionWait = 500*time.Millisecond, connectionWait
		},
	})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir))
	PutRandomFile(t, filepath.Join(s.Base, "outbox/stalled.bin"), 1<<20, 10)
	PutFile(t, filepath.Join(s.Base, "outbox/small.txt"), []byte("twenty bytes, almost"))
	PutFile(t, env.VSFTPD.Path(dir+"/small.txt"), []byte("twenty bytes, again!"))

	stalled := Task{TaskID: s.ID("stalled"), SrcID: "local", SrcPath: "outbox/stalled.bin", DstID: "stally", DstPath: dir + "/stalled.bin"}
	SubmitTasks(t, stalled)
	// Its temporary file growing on the server: the upload is under way.
	waitFor(t, 30*time.Second, "the stalled upload's temporary file", func() bool {
		parts, _ := filepath.Glob(env.VSFTPD.Path(dir + "/.stalled.bin.*.ftp-pooler.part"))
		for _, p := range parts {
			if st, err := os.Stat(p); err == nil && st.Size() > 0 {
				return true
			}
		}
		return false
	})

	// One at a time: a lone task behind the stalled one is what shared its
	// connection (two leases to a connection) and waited.
	behind := []Task{
		{TaskID: s.ID("download"), SrcID: "stally", SrcPath: dir + "/small.txt", DstID: "local", DstPath: "in/small.txt"},
		{TaskID: s.ID("upload"), SrcID: "local", SrcPath: "outbox/small.txt", DstID: "stally", DstPath: dir + "/up/small.txt"},
	}
	for _, tk := range behind {
		start := time.Now()
		m := s.Run(t, 30*time.Second, tk)[tk.TaskID]
		s.CheckSuccess(t, m, tk, 20)
		took := time.Since(start)
		if took > 10*time.Second {
			t.Fatalf("%s behind a stalled transfer took %s", tk.TaskID, took)
		}
		t.Logf("%s behind a stalled upload finished in %s", tk.TaskID, took.Round(time.Millisecond))
	}
	t.Logf("stally: %s", stallyConnections(t, s))
	// The stalled upload would hold shutdown for its drain timeout.
	_, err := s.Dispatcher.API().CancelTask(context.Background(), &adminv1.CancelTaskRequest{TaskId: stalled.TaskID, Reason: "test over"})
	must(t, err)
	s.CheckFailure(t, s.Outcome(t, stalled.TaskID, 30*time.Second), stalled, "CANCELLED")
}

// waitFor polls cond every 100 ms until it holds, failing the test after
// timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stallyConnections(t testing.TB, s *Stack) string {
	r, err := s.Dispatcher.API().ListEndpoints(context.Background(), &adminv1.ListEndpointsRequest{})
	must(t, err)
	for _, e := range r.Endpoints {
		if e.EndpointId == "stally" {
			return prototext.Format(e)
		}
	}
	return ""
}
