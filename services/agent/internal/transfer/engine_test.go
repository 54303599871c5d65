package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftptest"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/pool"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/remote"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	engine    *Engine
	srcDir    string
	dstDir    string
	ftp       *ftptest.Server
	committed []int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{srcDir: t.TempDir(), dstDir: t.TempDir(), ftp: ftptest.Start(t)}
	conns := &config.Connections{Path: "connections.ini", Endpoints: map[string]*config.Endpoint{
		"src": {ID: "src", Type: config.TypeLocal, BasePath: e.srcDir},
		"dst": {ID: "dst", Type: config.TypeLocal, BasePath: e.dstDir},
		"srv": e.ftp.Endpoint,
	}}
	e.startEngine(t, conns, e.ftp.Endpoint)
	return e
}

// startEngine gives e an engine over conns, pooling the connections of
// the remote endpoints eps.
func (e *env) startEngine(t *testing.T, conns *config.Connections, eps ...*config.Endpoint) {
	t.Helper()
	pools := pool.NewSet(pool.Config{MaxTotal: 10, DefaultMax: 4, IdleTimeout: time.Minute, CheckAfter: time.Minute},
		eps, func(ep *config.Endpoint) pool.Dialer {
			return &remote.Dialer{Endpoint: ep, ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second, BufferSize: 64 << 10}
		}, pool.Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	cfg := config.Default().Transfer
	cfg.BufferSize = 64 << 10
	eng, err := NewEngine(conns, pools, cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e.engine = eng
	t.Cleanup(func() {
		eng.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = pools.Run(ctx) // closes idle connections
	})
}

func (e *env) job(src, srcPath, dst, dstPath string, approve bool) *Job {
	j := &Job{Lease: &leasev1.Lease{LeaseId: "l1", Token: 42, Attempt: 1, Transfer: &leasev1.TransferSpec{
		TaskId: "t", SrcId: src, SrcPath: srcPath, DstId: dst, DstPath: dstPath,
	}}}
	j.Commit = func(_ context.Context, n int64) (bool, string, error) {
		e.committed = append(e.committed, n)
		return approve, "lease moved on", nil
	}
	return j
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func noTemps(t *testing.T, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.Contains(d.Name(), ".ftp-pooler.") {
				t.Errorf("temporary file left: %s", p)
			}
			return nil
		})
	}
}

func TestDirections(t *testing.T) {
	e := newEnv(t)
	big := strings.Repeat("0123456789abcdef", 1<<14) // 256 KiB: several buffers
	write(t, filepath.Join(e.srcDir, "a.txt"), big)
	write(t, filepath.Join(e.ftp.Root, "remote.txt"), "from the server")
	tests := []struct {
		name, src, srcPath, dst, dstPath string
		check                            string // file that must hold want
		want                             string
	}{
		{"copy", "src", "a.txt", "dst", "/x/y/a.txt", filepath.Join(e.dstDir, "x/y/a.txt"), big},
		{"upload", "src", "a.txt", "srv", "/up/dir/a.txt", filepath.Join(e.ftp.Root, "up/dir/a.txt"), big},
		{"download", "srv", "/remote.txt", "dst", "remote.txt", filepath.Join(e.dstDir, "remote.txt"), "from the server"},
		{"relay", "srv", "/remote.txt", "srv", "/copy/remote.txt", filepath.Join(e.ftp.Root, "copy/remote.txt"), "from the server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := e.job(tc.src, tc.srcPath, tc.dst, tc.dstPath, true)
			o := e.engine.Run(context.Background(), j)
			if o.Status != leasev1.Status_STATUS_SUCCEEDED {
				t.Fatalf("%s: %s %s", tc.name, o.ErrorCode, o.ErrorMessage)
			}
			if o.BytesTransferred != int64(len(tc.want)) || o.SourceSize != int64(len(tc.want)) || j.Done.Load() != int64(len(tc.want)) {
				t.Errorf("bytes %d, source size %d, progress %d; want %d", o.BytesTransferred, o.SourceSize, j.Done.Load(), len(tc.want))
			}
			got, err := os.ReadFile(tc.check)
			if err != nil || string(got) != tc.want {
				t.Errorf("destination holds %d bytes (%v)", len(got), err)
			}
		})
	}
	noTemps(t, e.dstDir, e.ftp.Root)
}

// TestSymlinkEscapeRejected also pins the os.Root error text isEscape matches.
func TestSymlinkEscapeRejected(t *testing.T) {
	e := newEnv(t)
	outside := t.TempDir()
	write(t, filepath.Join(outside, "secret"), "secret")
	if err := os.Symlink(outside, filepath.Join(e.dstDir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(e.srcDir, "secret-link")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(e.srcDir, "a.txt"), "a")
	for _, j := range []*Job{
		e.job("src", "a.txt", "dst", "link/a.txt", true),
		e.job("src", "secret-link", "dst", "stolen.txt", true),
	} {
		o := e.engine.Run(context.Background(), j)
		if o.ErrorCode != failure.PathRejected || o.Retryable {
			t.Errorf("%s -> %s: %v %s, want PATH_REJECTED", j.Lease.Transfer.SrcPath, j.Lease.Transfer.DstPath, o.ErrorCode, o.ErrorMessage)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("written outside the base: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(e.dstDir, "stolen.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a file outside the source base was copied")
	}
}

func TestCommitRefusedLeavesNothing(t *testing.T) {
	e := newEnv(t)
	write(t, filepath.Join(e.srcDir, "a.txt"), "a")
	write(t, filepath.Join(e.ftp.Root, "r.txt"), "r")
	for _, j := range []*Job{
		e.job("src", "a.txt", "dst", "a.txt", false),
		e.job("srv", "/r.txt", "srv", "/r2.txt", false),
	} {
		o := e.engine.Run(context.Background(), j)
		if o.ErrorCode != failure.Cancelled || !strings.Contains(o.ErrorMessage, "lease moved on") {
			t.Errorf("refused commit: %v %s", o.ErrorCode, o.ErrorMessage)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dstDir, "a.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a refused commit left the file in place")
	}
	if _, err := os.Stat(filepath.Join(e.ftp.Root, "r2.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a refused commit left the remote file in place")
	}
	noTemps(t, e.dstDir, e.ftp.Root)
	if len(e.committed) != 2 || e.committed[0] != 1 {
		t.Errorf("commit asked with %v, want the verified sizes", e.committed)
	}
}

func TestFailuresBeforeWriting(t *testing.T) {
	e := newEnv(t)
	write(t, filepath.Join(e.dstDir, "exists.txt"), "old")
	write(t, filepath.Join(e.srcDir, "a.txt"), "new")
	if err := os.MkdirAll(filepath.Join(e.srcDir, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	keep := e.job("src", "a.txt", "dst", "exists.txt", true)
	keep.Lease.Transfer.Overwrite = leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL
	tests := []struct {
		name string
		job  *Job
		want failure.Code
	}{
		{"missing local", e.job("src", "nope.txt", "dst", "x", true), failure.FileNotFound},
		{"missing remote", e.job("srv", "/nope.txt", "dst", "x", true), failure.FileNotFound},
		{"directory source", e.job("src", "dir", "dst", "x", true), failure.InvalidTask},
		{"unknown endpoint", e.job("nope", "a", "dst", "x", true), failure.UnknownEndpoint},
		{"keep existing", keep, failure.DestinationExists},
		{"traversal", e.job("src", "a.txt", "dst", "../x", true), failure.PathRejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := e.engine.Run(context.Background(), tc.job)
			if o.ErrorCode != tc.want || o.Retryable != failure.Retryable(tc.want) {
				t.Fatalf("%v (retryable %v) %s, want %v", o.ErrorCode, o.Retryable, o.ErrorMessage, tc.want)
			}
		})
	}
	if got, _ := os.ReadFile(filepath.Join(e.dstDir, "exists.txt")); string(got) != "old" {
		t.Errorf("kept file overwritten: %q", got)
	}
	noTemps(t, e.dstDir)
}

func TestCancelReachesTheCopy(t *testing.T) {
	e := newEnv(t)
	write(t, filepath.Join(e.ftp.Root, "big.bin"), strings.Repeat("x", 64<<20))
	ctx, cancel := context.WithCancelCause(context.Background())
	j := e.job("srv", "/big.bin", "dst", "big.bin", true)
	j.Commit = func(context.Context, int64) (bool, string, error) {
		t.Error("a cancelled transfer asked to commit")
		return false, "", nil
	}
	go func() {
		for j.Done.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel(failure.New(failure.Cancelled, "operator"))
	}()
	o := e.engine.Run(ctx, j)
	if o.ErrorCode != failure.Cancelled {
		t.Fatalf("cancelled mid-copy: %v %s", o.ErrorCode, o.ErrorMessage)
	}
	noTemps(t, e.dstDir)
}

func TestTempNameFitsAndIsUnique(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	name := tempName("dir/"+long, 7, "tmp")
	if !strings.HasPrefix(path.Base(name), tempPrefix("dir/"+long)) {
		t.Fatalf("temp name %q does not start with the shared prefix", name)
	}
	if len(filepath.Base(name)) > 255 {
		t.Fatalf("temp name of %d bytes", len(filepath.Base(name)))
	}
	if !strings.HasPrefix(name, "dir/.") || !strings.HasSuffix(name, ".7.ftp-pooler.tmp") {
		t.Fatalf("temp name %q", name)
	}
	if tempName("a/b.txt", 1, "tmp") == tempName("a/b.txt", 2, "tmp") {
		t.Fatal("two deliveries share a temporary name")
	}
}

func TestResumeTakesOverTheEarlierFile(t *testing.T) {
	e := newEnv(t)
	content := strings.Repeat("abcdefghij", 100_000) // 1,000,000 bytes
	write(t, filepath.Join(e.ftp.Root, "big.txt"), content)
	// An earlier delivery (token 7) died after writing 300,000 bytes.
	write(t, filepath.Join(e.dstDir, tempName("big.txt", 7, "tmp")), content[:300_000])
	j := e.job("srv", "/big.txt", "dst", "big.txt", true)
	j.Lease.Attempt, j.Lease.ResumeToken, j.Lease.ResumeOffset = 2, 7, 250_000
	o := e.engine.Run(context.Background(), j)
	if o.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("%v %s", o.ErrorCode, o.ErrorMessage)
	}
	if o.ResumedFrom != 300_000 || o.BytesTransferred != 700_000 {
		t.Fatalf("resumed from %d, moved %d; want 300000 and 700000", o.ResumedFrom, o.BytesTransferred)
	}
	if got, _ := os.ReadFile(filepath.Join(e.dstDir, "big.txt")); string(got) != content {
		t.Fatalf("resumed file differs (%d bytes)", len(got))
	}
	noTemps(t, e.dstDir)

	// Upload resume: the earlier .part on the server is continued with REST.
	write(t, filepath.Join(e.srcDir, "up.txt"), content)
	write(t, filepath.Join(e.ftp.Root, tempName("up.txt", 9, "part")), content[:123_456])
	j = e.job("src", "up.txt", "srv", "/up.txt", true)
	j.Lease.Attempt, j.Lease.ResumeToken = 2, 9
	o = e.engine.Run(context.Background(), j)
	if o.Status != leasev1.Status_STATUS_SUCCEEDED || o.ResumedFrom != 123_456 {
		t.Fatalf("upload resume: %v %s resumed from %d", o.ErrorCode, o.ErrorMessage, o.ResumedFrom)
	}
	if got, _ := os.ReadFile(filepath.Join(e.ftp.Root, "up.txt")); string(got) != content {
		t.Fatalf("resumed upload differs (%d bytes)", len(got))
	}
	noTemps(t, e.ftp.Root)
}

func TestRedeliveryAfterCommitMovesNothing(t *testing.T) {
	e := newEnv(t)
	write(t, filepath.Join(e.srcDir, "a.txt"), "payload")
	j := e.job("src", "a.txt", "dst", "a.txt", true)
	j.Lease.Transfer.Origin = "ftp-tasks/2/17"
	if o := e.engine.Run(context.Background(), j); o.Status != leasev1.Status_STATUS_SUCCEEDED || o.AlreadyDone {
		t.Fatalf("first delivery: %v", o)
	}
	// The same record delivered again (the outcome was lost with its
	// dispatcher): the result is recognised, nothing is asked or moved.
	write(t, filepath.Join(e.srcDir, "a.txt"), "changed since")
	j2 := e.job("src", "a.txt", "dst", "a.txt", true)
	j2.Lease.Transfer.Origin = "ftp-tasks/2/17"
	j2.Commit = func(context.Context, int64) (bool, string, error) {
		t.Error("a redelivery of a committed record asked to commit")
		return false, "", nil
	}
	o := e.engine.Run(context.Background(), j2)
	if o.Status != leasev1.Status_STATUS_SUCCEEDED || !o.AlreadyDone || o.BytesTransferred != 7 {
		t.Fatalf("redelivery: %v", o)
	}
	if got, _ := os.ReadFile(filepath.Join(e.dstDir, "a.txt")); string(got) != "payload" {
		t.Fatalf("destination rewritten: %q", got)
	}
	// Another record for the same destination is transferred normally.
	j3 := e.job("src", "a.txt", "dst", "a.txt", true)
	j3.Lease.Transfer.Origin = "ftp-tasks/2/18"
	if o := e.engine.Run(context.Background(), j3); o.AlreadyDone || o.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("a different record was skipped: %v", o)
	}

	// FTP destination: the dispatcher tells of the approved commit.
	write(t, filepath.Join(e.ftp.Root, "done.txt"), "payload")
	j4 := e.job("src", "a.txt", "srv", "/done.txt", true)
	j4.Lease.PriorCommit = &leasev1.PriorCommit{Token: 3, Bytes: 7}
	if o := e.engine.Run(context.Background(), j4); !o.AlreadyDone {
		t.Fatalf("prior commit not recognised: %v", o)
	}
	// If the earlier delivery's temporary file is still there, its rename
	// did not happen: transfer again.
	write(t, filepath.Join(e.ftp.Root, tempName("/done.txt", 3, "part")), "payload")
	j5 := e.job("src", "a.txt", "srv", "/done.txt", true)
	j5.Lease.PriorCommit = &leasev1.PriorCommit{Token: 3, Bytes: 7}
	if o := e.engine.Run(context.Background(), j5); o.AlreadyDone || o.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("a prior commit whose rename did not happen was trusted: %v", o)
	}
}

func TestRetryRemovesStaleTemporaryFiles(t *testing.T) {
	e := newEnv(t)
	e.engine.StaleAfter = 0
	write(t, filepath.Join(e.srcDir, "a.txt"), "a")
	stale := filepath.Join(e.dstDir, tempName("a.txt", 3, "tmp"))
	other := filepath.Join(e.dstDir, tempName("b.txt", 3, "tmp"))
	write(t, stale, "crashed agent's leftovers")
	write(t, other, "another file's")
	j := e.job("src", "a.txt", "dst", "a.txt", true)
	j.Lease.Attempt = 2
	if o := e.engine.Run(context.Background(), j); o.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("%v", o)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a stale temporary file of the same destination survived the retry")
	}
	if _, err := os.Stat(other); err != nil {
		t.Error("another destination's temporary file was removed")
	}
}

// A zombie delivery (its stream cut, still writing) creates or grows its
// temporary file after the retry started. The retry's approved commit fences
// it, so the retry removes such files after its rename, young as they are,
// locally and on FTP servers, where temporary names are dot-files.
func TestCommitRemovesFilesOfFencedDeliveries(t *testing.T) {
	e := newEnv(t)
	write(t, filepath.Join(e.srcDir, "z.txt"), "zzz")
	for _, c := range []struct {
		dst, path, zombie string
	}{
		{"dst", "z.txt", filepath.Join(e.dstDir, tempName("z.txt", 7, "tmp"))},
		{"srv", "/up/z.txt", filepath.Join(e.ftp.Root, "up", tempName("z.txt", 7, "part"))},
	} {
		j := e.job("src", "z.txt", c.dst, c.path, true)
		j.Lease.Attempt = 2
		approve := j.Commit
		j.Commit = func(ctx context.Context, n int64) (bool, string, error) {
			write(t, c.zombie, "a zombie's bytes")
			return approve(ctx, n)
		}
		if o := e.engine.Run(context.Background(), j); o.Status != leasev1.Status_STATUS_SUCCEEDED {
			t.Fatalf("%s: %v", c.dst, o)
		}
		if _, err := os.Stat(c.zombie); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a fenced delivery's temporary file survived the commit", c.dst)
		}
	}
}

func TestHungServersDoNotHoldSlots(t *testing.T) {
	e := newEnv(t)
	// A server that accepts and never answers: connect times out.
	silent := *e.ftp.Endpoint
	silent.ID, silent.Port, silent.Timeout = "silent", ftptest.StartSilent(t), 300*time.Millisecond
	// A server that stops sending mid-file: the idle timeout fires.
	e.engine.conns.Endpoints["silent"] = &silent
	stalls := newEnvIdle(t, 300*time.Millisecond)
	write(t, filepath.Join(stalls.ftp.Root, "big.bin"), strings.Repeat("z", 1<<20))
	stalls.ftp.StallAfter.Store(64 << 10)

	pools := pool.NewSet(pool.Config{MaxTotal: 10, DefaultMax: 4, IdleTimeout: time.Minute, CheckAfter: time.Minute},
		[]*config.Endpoint{&silent}, func(ep *config.Endpoint) pool.Dialer {
			return &remote.Dialer{Endpoint: ep, ConnectTimeout: time.Second, IdleTimeout: time.Second, BufferSize: 64 << 10}
		}, pool.Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	e.engine.pools = pools

	start := time.Now()
	o := e.engine.Run(context.Background(), e.job("silent", "/x", "dst", "x", true))
	if o.ErrorCode != failure.ConnectionError || !o.Retryable || o.FailedEndpoint != "silent" || !o.EndpointUnreachable || time.Since(start) > 5*time.Second {
		t.Errorf("silent server: %v %s (failed endpoint %q, unreachable %v) after %s", o.ErrorCode, o.ErrorMessage, o.FailedEndpoint, o.EndpointUnreachable, time.Since(start))
	}

	start = time.Now()
	o = stalls.engine.Run(context.Background(), stalls.job("srv", "/big.bin", "dst", "big.bin", true))
	if o.ErrorCode != failure.TransferTimeout || !o.Retryable || o.EndpointUnreachable || time.Since(start) > 5*time.Second {
		t.Errorf("stalled download: %v %s (unreachable %v) after %s", o.ErrorCode, o.ErrorMessage, o.EndpointUnreachable, time.Since(start))
	}
	noTemps(t, stalls.dstDir)
}

// newEnvIdle is newEnv with a short idle timeout on FTP data and commands.
func newEnvIdle(t *testing.T, idle time.Duration) *env {
	t.Helper()
	e := newEnv(t)
	pools := pool.NewSet(pool.Config{MaxTotal: 10, DefaultMax: 4, IdleTimeout: time.Minute, CheckAfter: time.Minute},
		[]*config.Endpoint{e.ftp.Endpoint}, func(ep *config.Endpoint) pool.Dialer {
			return &remote.Dialer{Endpoint: ep, ConnectTimeout: 2 * time.Second, IdleTimeout: idle, BufferSize: 64 << 10}
		}, pool.Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	e.engine.pools = pools
	return e
}

// A delivery handed over (its stream lost, the agent draining) keeps its
// temporary file only when continuing from it is worth it: a small file is
// cheaper to send again than to leave behind when no delivery takes it
// over, as when a restarted dispatcher leases the task afresh.
func TestHandOverKeepsOnlyLargePartials(t *testing.T) {
	e := newEnv(t)
	write(t, filepath.Join(e.srcDir, "small.txt"), "twenty bytes exactly")
	write(t, filepath.Join(e.srcDir, "large.bin"), strings.Repeat("x", 2*resumeMinBytes))
	for _, c := range []struct {
		name string
		kept bool
	}{{"small.txt", false}, {"large.bin", true}} {
		ctx, cancel := context.WithCancelCause(context.Background())
		j := e.job("src", c.name, "dst", c.name, true)
		j.Commit = func(context.Context, int64) (bool, string, error) {
			cancel(fmt.Errorf("%w: stream lost", ErrHandOver)) // lost while asking
			return false, "", context.Canceled
		}
		e.engine.Run(ctx, j)
		_, err := os.Stat(filepath.Join(e.dstDir, tempName(c.name, 42, "tmp")))
		if kept := err == nil; kept != c.kept {
			t.Errorf("%s: temporary file kept=%v after the hand-over, want %v", c.name, kept, c.kept)
		}
	}
}

// A kept partial whose task is leased afresh (attempt 1, no resume token:
// its dispatcher died) is removed by the commit of the new delivery, on
// local disks and FTP servers alike.
func TestFirstAttemptCommitOfALargeFileRemovesKeptPartials(t *testing.T) {
	e := newEnv(t)
	write(t, filepath.Join(e.srcDir, "l.bin"), strings.Repeat("y", resumeMinBytes))
	for _, c := range []struct {
		dst, path, kept string
	}{
		{"dst", "l.bin", filepath.Join(e.dstDir, tempName("l.bin", 5, "tmp"))},
		{"srv", "/up/l.bin", filepath.Join(e.ftp.Root, "up", tempName("l.bin", 5, "part"))},
	} {
		write(t, c.kept, "half of it")
		j := e.job("src", "l.bin", c.dst, c.path, true)
		if o := e.engine.Run(context.Background(), j); o.Status != leasev1.Status_STATUS_SUCCEEDED {
			t.Fatalf("%s: %v", c.dst, o)
		}
		if _, err := os.Stat(c.kept); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a kept partial survived the first delivery's commit", c.dst)
		}
	}
}

// A job whose endpoint's only connection is held (a stalled transfer) is
// handed back after lease.connection_wait instead of waiting behind it, and
// leaves nothing behind.
func TestBusyConnectionHandsTheJobBack(t *testing.T) {
	e := newEnv(t)
	e.ftp.Endpoint.MaxConnections = 1
	pools := pool.NewSet(pool.Config{MaxTotal: 10, DefaultMax: 1, IdleTimeout: time.Minute, CheckAfter: time.Minute, BusyWait: 100 * time.Millisecond},
		[]*config.Endpoint{e.ftp.Endpoint}, func(ep *config.Endpoint) pool.Dialer {
			return &remote.Dialer{Endpoint: ep, ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second}
		}, pool.Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	e.engine.pools = pools
	p, _ := pools.Pool("srv")
	held, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(e.srcDir, "a.txt"), "payload")
	write(t, filepath.Join(e.ftp.Root, "remote.txt"), "from the server")
	for _, j := range []*Job{e.job("src", "a.txt", "srv", "/up/a.txt", true), e.job("srv", "/remote.txt", "dst", "remote.txt", true)} {
		start := time.Now()
		if o := e.engine.Run(context.Background(), j); o != nil {
			t.Fatalf("%s→%s behind a held connection: outcome %s %s, want none (hand back)", j.Lease.Transfer.SrcId, j.Lease.Transfer.DstId, o.ErrorCode, o.ErrorMessage)
		}
		if !j.ConnectionBusy {
			t.Fatal("job handed back without ConnectionBusy")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("hand-back took %s", d)
		}
	}
	p.Put(held)
	noTemps(t, e.dstDir, e.ftp.Root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = pools.Run(ctx)
}
