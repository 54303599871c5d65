package transfer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftpquirk"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// newQuirkEnv is newEnv with an ftpquirk server as "srv".
func newQuirkEnv(t *testing.T, opts ...ftpquirk.Option) (*env, *ftpquirk.Server) {
	t.Helper()
	s := ftpquirk.Start(t, opts...)
	ep := &config.Endpoint{ID: "srv", Type: config.TypeFTP, Host: s.Host(), Port: s.Port(),
		User: ftpquirk.User, Password: config.Secret(ftpquirk.Password), TLS: config.TLSNone, MaxConnections: 1}
	e := &env{srcDir: t.TempDir(), dstDir: t.TempDir()}
	conns := &config.Connections{Path: "connections.ini", Endpoints: map[string]*config.Endpoint{
		"dst": {ID: "dst", Type: config.TypeLocal, BasePath: e.dstDir},
		"srv": ep,
	}}
	e.startEngine(t, conns, ep)
	return e, s
}

// A server whose RETR replies give the size (vsftpd, ProFTPD): after the
// first download has shown it, downloads send no SIZE, and the size they
// announce is still the one reported and verified. One that does not say
// gets a SIZE before every download.
func TestDownloadsSkipSizeTheServerAnnounces(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		opts      []ftpquirk.Option
		wantSizes int
	}{
		{"announces", nil, 1},
		{"announces in a multi-line reply", []ftpquirk.Option{ftpquirk.MultiLineReplies()}, 1},
		{"does not announce", []ftpquirk.Option{ftpquirk.NoRETRSize()}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, s := newQuirkEnv(t, tc.opts...)
			content := strings.Repeat("announced", 1000)
			if err := os.WriteFile(filepath.Join(s.Root(), "f"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				dst := filepath.Join("out", string(rune('a'+i)))
				o := e.engine.Run(context.Background(), e.job("srv", "/f", "dst", dst, true))
				if o.Status != leasev1.Status_STATUS_SUCCEEDED || o.SourceSize != int64(len(content)) || o.BytesTransferred != int64(len(content)) {
					t.Fatalf("download %d: %v %s, source size %d, bytes %d; want %d", i+1, o.Status, o.ErrorMessage, o.SourceSize, o.BytesTransferred, len(content))
				}
				if got, err := os.ReadFile(filepath.Join(e.dstDir, dst)); err != nil || string(got) != content {
					t.Fatalf("download %d: %d bytes on disk, %v", i+1, len(got), err)
				}
			}
			if n := s.CommandCount("SIZE"); n != tc.wantSizes {
				t.Errorf("%d SIZE commands for 3 downloads, want %d", n, tc.wantSizes)
			}
			noTemps(t, e.dstDir)
		})
	}
}

// A download whose source is missing is still FILE_NOT_FOUND when no SIZE
// precedes the RETR.
func TestDownloadWithoutSizeOfAMissingFile(t *testing.T) {
	t.Parallel()
	e, s := newQuirkEnv(t)
	if err := os.WriteFile(filepath.Join(s.Root(), "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if o := e.engine.Run(context.Background(), e.job("srv", "/f", "dst", "f", true)); o.Status != leasev1.Status_STATUS_SUCCEEDED {
		t.Fatalf("first download: %v %s", o.Status, o.ErrorMessage)
	}
	sizes := s.CommandCount("SIZE")
	o := e.engine.Run(context.Background(), e.job("srv", "/missing", "dst", "missing", true))
	if o.ErrorCode != failure.FileNotFound || o.Retryable {
		t.Fatalf("missing file: %v %s (retryable %v)", o.ErrorCode, o.ErrorMessage, o.Retryable)
	}
	if s.CommandCount("SIZE") != sizes {
		t.Error("the missing file's download sent a SIZE")
	}
	noTemps(t, e.dstDir)
}
