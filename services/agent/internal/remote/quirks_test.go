package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftpquirk"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// These tests run the client against ftpquirk servers that each behave like
// some real server in one way that clients trip over, and check every
// transferred byte on the server's disk.

// quirkDialer dials s with the given TLS mode (trusting s's certificate).
func quirkDialer(s *ftpquirk.Server, mode config.TLSMode) *Dialer {
	ep := &config.Endpoint{
		ID: "quirk", Type: config.TypeFTP, Host: s.Host(), Port: s.Port(),
		User: ftpquirk.User, Password: config.Secret(ftpquirk.Password),
		TLS: mode, TLSCAFile: s.CAFile(),
	}
	return &Dialer{Endpoint: ep, ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second, BufferSize: 64 << 10}
}

func quirkDial(t *testing.T, d *Dialer) *Conn {
	t.Helper()
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// onDisk reads a file of s's directory, by its path on the server.
func onDisk(t *testing.T, s *ftpquirk.Server, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Root(), filepath.FromSlash(p)))
	if err != nil {
		t.Fatalf("%s on the server: %v", p, err)
	}
	return b
}

func download(t *testing.T, c *Conn, p string) []byte {
	t.Helper()
	ctx := context.Background()
	r, err := c.Retr(ctx, p, 0)
	if err != nil {
		t.Fatalf("Retr %s: %v", p, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		_ = r.Close()
		t.Fatalf("reading %s: %v", p, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("closing the download of %s: %v", p, err)
	}
	return b
}

// roundTrip is what a transfer does to a destination and then a source:
// make the directory, upload under a temporary name, check the size,
// rename, list, download, delete, with n random bytes. sized says whether
// the server has SIZE (without, Size must say -1).
func roundTrip(t *testing.T, s *ftpquirk.Server, c *Conn, dir string, n int, sized bool) {
	t.Helper()
	ctx := context.Background()
	content := randomBytes(t, n)
	part, final := dir+"/f.part", dir+"/f"
	if err := c.MkdirAll(ctx, dir); err != nil {
		t.Fatalf("MkdirAll %s: %v", dir, err)
	}
	if err := c.Stor(ctx, part, bytes.NewReader(content), 0); err != nil {
		t.Fatalf("Stor %s: %v", part, err)
	}
	if !bytes.Equal(onDisk(t, s, part), content) {
		t.Fatalf("%s on the server differs from what was uploaded", part)
	}
	want := int64(n)
	if !sized {
		want = -1
	}
	if size, err := c.Size(ctx, part); err != nil || size != want {
		t.Fatalf("Size %s = %d, %v; want %d", part, size, err, want)
	}
	if err := c.Rename(ctx, part, final); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if names, err := c.NameList(ctx, dir); err != nil || !slices.Equal(names, []string{"f"}) {
		t.Fatalf("NameList %s = %q, %v", dir, names, err)
	}
	if got := download(t, c, final); !bytes.Equal(got, content) {
		t.Fatalf("downloaded %d bytes that differ from the %d uploaded", len(got), n)
	}
	if err := c.Delete(ctx, final); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if names, err := c.NameList(ctx, dir); err != nil || len(names) != 0 {
		t.Fatalf("NameList %s after Delete = %q, %v", dir, names, err)
	}
	if c.Broken() {
		t.Fatal("the connection is broken after a clean round trip")
	}
}

// Without EPSV the client falls back to PASV, and remembers it for the
// endpoint: the first connection tries EPSV once, later ones not at all.
func TestQuirkNoEPSV(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.NoEPSV())
	d := quirkDialer(s, config.TLSNone)
	if q := d.Quirks(); q != 0 {
		t.Fatalf("quirks before any connection: %v", q.Names())
	}
	roundTrip(t, s, quirkDial(t, d), "/a", 100<<10, true)
	if q := d.Quirks(); q != QuirkNoEPSV {
		t.Fatalf("quirks after EPSV was refused: %v", q.Names())
	}
	roundTrip(t, s, quirkDial(t, d), "/b", 1, true)
	roundTrip(t, s, quirkDial(t, d), "/c", 1, true)
	if n := s.CommandCount("EPSV"); n != 1 {
		t.Errorf("EPSV tried %d times over three connections, want once", n)
	}
	if n := s.CommandCount("PASV"); n != 12 {
		t.Errorf("%d PASV for 12 data connections", n)
	}

	// A server with EPSV learns nothing.
	ok := ftpquirk.Start(t)
	d = quirkDialer(ok, config.TLSNone)
	roundTrip(t, ok, quirkDial(t, d), "/a", 1, true)
	if q := d.Quirks(); q != 0 || ok.CommandCount("PASV") != 0 {
		t.Fatalf("EPSV server: quirks %v, %d PASV", q.Names(), ok.CommandCount("PASV"))
	}
}

// A PASV reply naming a private address the client cannot reach (a server
// behind NAT): the client connects to the control connection's address.
func TestQuirkWrongPASVAddress(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.NoEPSV(), ftpquirk.PASVAddress("10.255.255.1"))
	roundTrip(t, s, quirkDial(t, quirkDialer(s, config.TLSNone)), "/in", 64<<10, true)
	if s.CommandCount("PASV") == 0 {
		t.Fatal("the test never made the client use PASV")
	}
}

// Without SIZE, Size says -1 and the connection stays usable.
func TestQuirkNoSize(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.NoSize())
	d := quirkDialer(s, config.TLSNone)
	roundTrip(t, s, quirkDial(t, d), "/in", 10<<10, false)
	if q := d.Quirks(); q != QuirkNoSize {
		t.Fatalf("quirks of a server without SIZE: %v", q.Names())
	}
}

// Exists is built on SIZE; on a server without it a missing file must not
// be reported as existing (OVERWRITE_POLICY_FAIL would refuse every upload).
func TestQuirkNoSizeExistsOfAMissingFile(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.NoSize())
	c := quirkDial(t, quirkDialer(s, config.TLSNone))
	ctx := context.Background()
	for _, p := range []string{"/missing", "/no/such/dir/missing"} {
		if exists, err := c.Exists(ctx, p); err != nil || exists {
			t.Fatalf("Exists(%s) without SIZE = %v, %v", p, exists, err)
		}
	}
	if err := c.MkdirAll(ctx, "/in"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stor(ctx, "/in/present", strings.NewReader("here"), 0); err != nil {
		t.Fatal(err)
	}
	if exists, err := c.Exists(ctx, "/in/present"); err != nil || !exists {
		t.Fatalf("Exists of a file there without SIZE = %v, %v", exists, err)
	}
}

// ProFTPD and vsftpd refuse SIZE in ASCII mode: the client must be in
// binary mode before its first SIZE.
func TestQuirkSizeRefusedInASCII(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.SizeRefusedInASCII())
	roundTrip(t, s, quirkDial(t, quirkDialer(s, config.TLSNone)), "/in", 1000, true)
	binary := false
	for _, c := range s.Commands() {
		switch {
		case c.Verb == "TYPE":
			binary = strings.EqualFold(c.Arg, "I")
		case c.Verb == "SIZE" && !binary:
			t.Fatalf("SIZE sent outside TYPE I: %v", s.Commands())
		}
	}
}

func TestQuirkMultiLineReplies(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.MultiLineReplies())
	roundTrip(t, s, quirkDial(t, quirkDialer(s, config.TLSNone)), "/a/b", 200<<10, true)
}

// A banner slower than the connect timeout is a connection failure (the
// endpoint's), not a wrong password or a transfer timeout.
func TestQuirkSlowBanner(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.BannerDelay(300*time.Millisecond))
	d := quirkDialer(s, config.TLSNone)
	roundTrip(t, s, quirkDial(t, d), "/in", 10, true)

	d.ConnectTimeout = 100 * time.Millisecond
	start := time.Now()
	c, err := d.Dial(context.Background())
	if err == nil {
		_ = c.Close()
		t.Fatal("Dial succeeded though the banner came after the connect timeout")
	}
	if code := failure.CodeOf(err); code != failure.ConnectionError {
		t.Errorf("a slow banner failed as %s: %v", failure.Name(code), err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Dial gave up after %s, connect timeout %s", took, d.ConnectTimeout)
	}
}

// Some servers end the session after each transfer (226, then 421). The
// transfer counts; the connection is then broken, and says so.
func TestQuirkCloseAfterTransfer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := ftpquirk.Start(t, ftpquirk.CloseAfterTransfer())
	d := quirkDialer(s, config.TLSNone)
	content := randomBytes(t, 300<<10)

	c := quirkDial(t, d)
	if err := c.Stor(ctx, "/f", bytes.NewReader(content), 0); err != nil {
		t.Fatalf("Stor: %v", err)
	}
	if !bytes.Equal(onDisk(t, s, "/f"), content) {
		t.Fatal("the uploaded file differs")
	}
	checkBrokenAfterTransfer(t, c, c.NoOp(ctx))

	c = quirkDial(t, d)
	if got := download(t, c, "/f"); !bytes.Equal(got, content) {
		t.Fatal("the downloaded file differs")
	}
	_, err := c.Size(ctx, "/f")
	checkBrokenAfterTransfer(t, c, err)

	// A pool asks before reuse: the server's goodbye is seen without
	// spending a command on it.
	c = quirkDial(t, d)
	if c.PeerClosed() {
		t.Fatal("a fresh connection looks closed")
	}
	if got := download(t, c, "/f"); !bytes.Equal(got, content) {
		t.Fatal("the downloaded file differs")
	}
	deadline := time.Now().Add(2 * time.Second)
	for !c.PeerClosed() {
		if time.Now().After(deadline) {
			t.Fatal("PeerClosed did not see the server hang up after the transfer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !c.Broken() {
		t.Fatal("a connection whose server hung up is not Broken")
	}
}

func checkBrokenAfterTransfer(t *testing.T, c *Conn, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("an operation after the server closed the session succeeded")
	}
	if code := failure.CodeOf(err); code != failure.ConnectionError {
		t.Errorf("the closed session failed the next operation as %s: %v", failure.Name(code), err)
	}
	if !c.Broken() {
		t.Error("Broken() is false after the server closed the session")
	}
}

// The 226 of a download arrives before its last bytes: the download is
// still complete.
func TestQuirkEarlyTransferComplete(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.EarlyTransferComplete())
	content := randomBytes(t, 1<<20+123)
	if err := os.WriteFile(filepath.Join(s.Root(), "f"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	c := quirkDial(t, quirkDialer(s, config.TLSNone))
	for range 3 {
		if got, want := sha256.Sum256(download(t, c, "/f")), sha256.Sum256(content); got != want {
			t.Fatalf("sha256 %x, want %x", got, want)
		}
	}
}

// FTPS whose data connections must resume the control connection's TLS
// session (vsftpd require_ssl_reuse, ProFTPD): transfers work, including
// an empty upload, which is nothing but a TLS handshake and a close.
func TestQuirkEmptyUploadOverExplicitFTPSWithSessionReuse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := ftpquirk.Start(t, ftpquirk.ExplicitTLS(), ftpquirk.RequireTLSReuse())
	c := quirkDial(t, quirkDialer(s, config.TLSExplicit))
	roundTrip(t, s, c, "/in", 100<<10, true)
	if err := c.Stor(ctx, "/empty", bytes.NewReader(nil), 0); err != nil {
		t.Fatalf("empty Stor over FTPS: %v", err)
	}
	if got := onDisk(t, s, "/empty"); len(got) != 0 {
		t.Fatalf("the empty upload left %d bytes", len(got))
	}
	if size, err := c.Size(ctx, "/empty"); err != nil || size != 0 {
		t.Fatalf("Size of the empty upload = %d, %v", size, err)
	}
}

func TestQuirkImplicitFTPSWithSessionReuse(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.ImplicitTLS(), ftpquirk.RequireTLSReuse())
	roundTrip(t, s, quirkDial(t, quirkDialer(s, config.TLSImplicit)), "/in", 100<<10, true)
}

// A server that does not speak UTF-8 gets names as the bytes the caller
// gives: UTF-8 text stays UTF-8 on its disk, and a Latin-1 string (a Go
// string holding byte e9) reaches it unchanged.
func TestQuirkNoUTF8(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := ftpquirk.Start(t, ftpquirk.NoUTF8())
	c := quirkDial(t, quirkDialer(s, config.TLSNone))
	for _, name := range []string{"café.txt", "caf\xe9.txt"} {
		if err := c.Stor(ctx, "/"+name, strings.NewReader(name), 0); err != nil {
			t.Fatalf("Stor %q: %v", name, err)
		}
		if got := onDisk(t, s, name); string(got) != name {
			t.Errorf("the file named % x holds %q", name, got)
		}
		if got := download(t, c, "/"+name); string(got) != name {
			t.Errorf("Retr %q = %q", name, got)
		}
	}
	if names, err := c.NameList(ctx, "/"); err != nil || !slices.Equal(names, []string{"caf\xc3\xa9.txt", "caf\xe9.txt"}) {
		t.Errorf("NameList = %q, %v", names, err)
	}
	if n := s.CommandCount("OPTS"); n != 0 {
		t.Errorf("OPTS UTF8 sent to a server that does not advertise UTF8 (%d times)", n)
	}
}

// A server refusing at the banner for being full: a connection error.
// (That it is also marked as "server full" is in quirks_pending_test.go.)
func TestQuirkServerFullAtBannerIsAConnectionError(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.MaxConnections(1, ftpquirk.RefuseAtBanner))
	d := quirkDialer(s, config.TLSNone)
	quirkDial(t, d)
	c, err := d.Dial(context.Background())
	if err == nil {
		_ = c.Close()
		t.Fatal("Dial to a full server succeeded")
	}
	if code := failure.CodeOf(err); code != failure.ConnectionError {
		t.Errorf("421 at the banner failed as %s: %v", failure.Name(code), err)
	}
}

// A download that stops: the idle timeout fails it as a timeout and the
// connection is discarded.
func TestQuirkStallDownload(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.StallDownload(100<<10))
	if err := os.WriteFile(filepath.Join(s.Root(), "f"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d := quirkDialer(s, config.TLSNone)
	d.IdleTimeout = 200 * time.Millisecond
	c := quirkDial(t, d)
	r, err := c.Retr(context.Background(), "/f", 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	_ = r.Close()
	if code := failure.CodeOf(err); code != failure.TransferTimeout || n != 100<<10 {
		t.Errorf("read %d bytes, then %s: %v; want %d, then TRANSFER_TIMEOUT", n, failure.Name(code), err, 100<<10)
	}
	if !c.Broken() {
		t.Error("a stalled download left the connection usable")
	}
}

// An upload the server stops reading: the same.
func TestQuirkStallUpload(t *testing.T) {
	t.Parallel()
	s := ftpquirk.Start(t, ftpquirk.StallUpload(100<<10))
	d := quirkDialer(s, config.TLSNone)
	d.IdleTimeout = 200 * time.Millisecond
	c := quirkDial(t, d)
	// More than the socket buffers on both sides hold.
	err := c.Stor(context.Background(), "/f", io.LimitReader(zeroReader{}, 64<<20), 0)
	if code := failure.CodeOf(err); code != failure.TransferTimeout {
		t.Errorf("a stalled upload failed as %s: %v", failure.Name(code), err)
	}
	if !c.Broken() {
		t.Error("a stalled upload left the connection usable")
	}
	var fe *failure.Error
	if errors.As(err, &fe) && !fe.Retryable() {
		t.Errorf("a stalled upload is not retryable: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }
