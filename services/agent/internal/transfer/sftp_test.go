package transfer

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftptest"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/pool"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/remote"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/sftpremote"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/sftptest"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// sftpEnv is env with an SFTP endpoint "sftp" beside the local and FTP
// ones. pkg/sftp's test server serves the real file system, so SFTP paths
// are absolute paths under sftpRoot.
type sftpEnv struct {
	*env
	sftp     *sftptest.Server
	sftpRoot string
}

func newSFTPEnv(t *testing.T) *sftpEnv {
	t.Helper()
	e := &sftpEnv{env: &env{srcDir: t.TempDir(), dstDir: t.TempDir(), ftp: ftptest.Start(t)}, sftp: sftptest.Start(t), sftpRoot: t.TempDir()}
	sftpEP := &config.Endpoint{ID: "sftp", Type: config.TypeSFTP, Host: "127.0.0.1", Port: e.sftp.Port(), User: sftptest.User,
		Password: sftptest.Password, MaxConnections: 2,
		SFTP: config.SFTPOptions{HostKeyFingerprints: []string{e.sftp.Fingerprint(0)}, MaxSessionsPerConnection: 2}}
	conns := &config.Connections{Path: "connections.ini", Endpoints: map[string]*config.Endpoint{
		"src": {ID: "src", Type: config.TypeLocal, BasePath: e.srcDir},
		"dst": {ID: "dst", Type: config.TypeLocal, BasePath: e.dstDir},
		"srv": e.ftp.Endpoint, "sftp": sftpEP,
	}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	pools := pool.NewSet(pool.Config{MaxTotal: 10, DefaultMax: 4, IdleTimeout: time.Minute, CheckAfter: time.Minute},
		[]*config.Endpoint{e.ftp.Endpoint}, func(ep *config.Endpoint) pool.Dialer {
			return &remote.Dialer{Endpoint: ep, ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second, BufferSize: 64 << 10}
		}, pool.Hooks{}, logger)
	d, err := sftpremote.NewDialer(sftpremote.Options{Endpoint: "sftp", Addr: sftpEP.Address(), User: sftpEP.User,
		Password: sftpEP.Password.Reveal(), HostKeys: sftpremote.HostKeys{Fingerprints: sftpEP.SFTP.HostKeyFingerprints},
		Timeout: 2 * time.Second, MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	pool.Add(pools, sftpEP, sftpremote.NewMux(d), 2)
	cfg := config.Default().Transfer
	cfg.BufferSize = 64 << 10
	eng, err := NewEngine(conns, pools, cfg, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	e.engine = eng
	t.Cleanup(func() {
		eng.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = pools.Run(ctx)
	})
	return e
}

func (e *sftpEnv) remote(p string) string { return filepath.Join(e.sftpRoot, p) }

func TestSFTPDirections(t *testing.T) {
	e := newSFTPEnv(t)
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: many buffers and concurrent requests
	write(t, filepath.Join(e.srcDir, "a.txt"), big)
	write(t, e.remote("remote.txt"), "from sftp")
	large := strings.Repeat("fedcba9876543210", 3<<16) // 3 MiB: the pipelined download
	write(t, e.remote("large.bin"), large)
	write(t, filepath.Join(e.ftp.Root, "ftp.txt"), "from ftp")
	write(t, filepath.Join(e.srcDir, "empty"), "")
	tests := []struct {
		name, src, srcPath, dst, dstPath string
		check, want                      string
	}{
		{"local to sftp", "src", "a.txt", "sftp", e.remote("up/dir/a.txt"), e.remote("up/dir/a.txt"), big},
		{"empty local to sftp", "src", "empty", "sftp", e.remote("empty"), e.remote("empty"), ""},
		{"sftp to local", "sftp", e.remote("remote.txt"), "dst", "r/remote.txt", filepath.Join(e.dstDir, "r/remote.txt"), "from sftp"},
		{"large sftp to local", "sftp", e.remote("large.bin"), "dst", "r/large.bin", filepath.Join(e.dstDir, "r/large.bin"), large},
		{"sftp to sftp", "sftp", e.remote("up/dir/a.txt"), "sftp", e.remote("copy/a.txt"), e.remote("copy/a.txt"), big},
		{"ftp to sftp", "srv", "/ftp.txt", "sftp", e.remote("from-ftp.txt"), e.remote("from-ftp.txt"), "from ftp"},
		{"sftp to ftp", "sftp", e.remote("remote.txt"), "srv", "/in/from-sftp.txt", filepath.Join(e.ftp.Root, "in/from-sftp.txt"), "from sftp"},
		{"names with spaces and Unicode", "sftp", e.remote("remote.txt"), "sftp", e.remote("dir ü/ファイル 1.txt"), e.remote("dir ü/ファイル 1.txt"), "from sftp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := e.job(tc.src, tc.srcPath, tc.dst, tc.dstPath, true)
			o := e.engine.Run(context.Background(), j)
			if o.Status != leasev1.Status_STATUS_SUCCEEDED {
				t.Fatalf("%s %s", o.ErrorCode, o.ErrorMessage)
			}
			if o.BytesTransferred != int64(len(tc.want)) || o.SourceSize != int64(len(tc.want)) {
				t.Errorf("bytes %d, source size %d; want %d", o.BytesTransferred, o.SourceSize, len(tc.want))
			}
			if done := j.Done.Load(); done != int64(len(tc.want)) {
				t.Errorf("progress counted %d bytes, want %d", done, len(tc.want))
			}
			got, err := os.ReadFile(tc.check)
			if err != nil || string(got) != tc.want {
				t.Errorf("destination holds %d bytes (%v), want %d", len(got), err, len(tc.want))
			}
		})
	}
	noTemps(t, e.dstDir, e.ftp.Root, e.sftpRoot)
}

func TestSFTPFailures(t *testing.T) {
	e := newSFTPEnv(t)
	write(t, filepath.Join(e.srcDir, "a.txt"), "new")
	write(t, e.remote("exists.txt"), "old")

	o := e.engine.Run(context.Background(), e.job("sftp", e.remote("missing.txt"), "dst", "m.txt", true))
	if o.ErrorCode != failure.FileNotFound || o.Retryable {
		t.Errorf("missing source: %s %s", o.ErrorCode, o.ErrorMessage)
	}

	j := e.job("src", "a.txt", "sftp", e.remote("exists.txt"), true)
	j.Lease.Transfer.Overwrite = leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL
	o = e.engine.Run(context.Background(), j)
	if o.ErrorCode != failure.DestinationExists {
		t.Errorf("overwrite = fail: %s %s", o.ErrorCode, o.ErrorMessage)
	}
	if b, _ := os.ReadFile(e.remote("exists.txt")); string(b) != "old" {
		t.Errorf("refused upload changed the file: %q", b)
	}

	// Refused commit: nothing replaces the file, no temporary file stays.
	o = e.engine.Run(context.Background(), e.job("src", "a.txt", "sftp", e.remote("exists.txt"), false))
	if o.Status == leasev1.Status_STATUS_SUCCEEDED {
		t.Error("refused commit succeeded")
	}
	if b, _ := os.ReadFile(e.remote("exists.txt")); string(b) != "old" {
		t.Errorf("refused commit changed the file: %q", b)
	}
	noTemps(t, e.sftpRoot)

	// Overwrite allowed: replaced atomically (posix-rename).
	o = e.engine.Run(context.Background(), e.job("src", "a.txt", "sftp", e.remote("exists.txt"), true))
	if o.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("overwrite: %s %s", o.ErrorCode, o.ErrorMessage)
	}
	if b, _ := os.ReadFile(e.remote("exists.txt")); string(b) != "new" {
		t.Errorf("after overwrite: %q", b)
	}
}

// A redelivery after an approved commit finds the file in place and moves
// nothing.
func TestSFTPAlreadyDone(t *testing.T) {
	e := newSFTPEnv(t)
	write(t, filepath.Join(e.srcDir, "a.txt"), "abc")
	first := e.job("src", "a.txt", "sftp", e.remote("a.txt"), true)
	if o := e.engine.Run(context.Background(), first); o.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("%s %s", o.ErrorCode, o.ErrorMessage)
	}
	again := e.job("src", "a.txt", "sftp", e.remote("a.txt"), true)
	again.Lease.Attempt = 2
	again.Lease.Token = 43
	again.Lease.PriorCommit = &leasev1.PriorCommit{Token: 42, Bytes: 3}
	o := e.engine.Run(context.Background(), again)
	if o.Status != leasev1.Status_STATUS_SUCCEEDED || !o.AlreadyDone {
		t.Fatalf("redelivery: %v", o)
	}
	// The earlier delivery's temporary file still there: its rename did
	// not happen, so transfer again.
	write(t, tempName(e.remote("a.txt"), 42, "part"), "abc")
	o = e.engine.Run(context.Background(), again)
	if o.AlreadyDone || o.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("a prior commit whose rename did not happen was trusted: %v", o)
	}
}

// An upload resumes from a partial file an earlier delivery left, trusting
// it only up to sftpUntrusted before its end, and the result is whole.
func TestSFTPResumeUpload(t *testing.T) {
	e := newSFTPEnv(t)
	data := make([]byte, 3*sftpUntrusted+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(e.srcDir, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	final := e.remote("big")
	// The earlier delivery (token 41) wrote 2.5 × sftpUntrusted, the last part
	// with a hole, as writes in flight leave after a failure.
	partial := append([]byte(nil), data[:5*sftpUntrusted/2]...)
	clear(partial[2*sftpUntrusted : 2*sftpUntrusted+4096])
	if err := os.WriteFile(tempName(final, 41, "part"), partial, 0o644); err != nil {
		t.Fatal(err)
	}
	j := e.job("src", "big", "sftp", final, true)
	j.Lease.Attempt, j.Lease.ResumeToken = 2, 41
	o := e.engine.Run(context.Background(), j)
	if o.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("%s %s", o.ErrorCode, o.ErrorMessage)
	}
	if want := int64(len(partial) - sftpUntrusted); o.ResumedFrom != want {
		t.Errorf("resumed from %d, want %d", o.ResumedFrom, want)
	}
	got, _ := os.ReadFile(final)
	if string(got) != string(data) {
		t.Fatalf("resumed upload differs from the source (%d of %d bytes)", len(got), len(data))
	}
	noTemps(t, e.sftpRoot)
}
