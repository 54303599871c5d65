package sftpremote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/sftptest"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

func options(srv *sftptest.Server) Options {
	return Options{
		Endpoint: "sftp1", Addr: srv.Addr, User: sftptest.User, Password: sftptest.Password,
		HostKeys: HostKeys{Fingerprints: []string{srv.Fingerprint(0)}}, Timeout: 2 * time.Second, MaxSessions: 2,
	}
}

func dial(t *testing.T, o Options) *Conn {
	t.Helper()
	c, err := dialOnce(o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func dialOnce(o Options) (*Conn, error) {
	d, err := NewDialer(o)
	if err != nil {
		return nil, err
	}
	return d.Dial(context.Background())
}

func session(t *testing.T, c *Conn) *Session {
	t.Helper()
	s, err := c.Session(context.Background())
	if err != nil {
		t.Fatalf("Session: %v", err)
	}
	return s
}

func wantCode(t *testing.T, err error, code failure.Code) *failure.Error {
	t.Helper()
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Code != code {
		t.Fatalf("error %v: want %s", err, failure.Name(code))
	}
	return fe
}

func TestHostKeyChecks(t *testing.T) {
	srv := sftptest.Start(t)
	other := sftptest.Start(t)
	cases := []struct {
		name string
		keys HostKeys
		ok   bool
		// all: the error names every key the server has (it was asked
		// for each in turn), not only the one it prefers.
		all bool
	}{
		{"fingerprint", HostKeys{Fingerprints: []string{srv.Fingerprint(0)}}, true, false},
		{"fingerprint of the other key type", HostKeys{Fingerprints: []string{srv.Fingerprint(1)}}, true, false},
		{"known_hosts with both keys", HostKeys{KnownHostsFile: srv.KnownHosts(t)}, true, false},
		// The server prefers ed25519; only its RSA key is known: asking for
		// RSA finds the match instead of reporting a mismatch.
		{"known_hosts with the RSA key only", HostKeys{KnownHostsFile: srv.KnownHosts(t, 1)}, true, false},
		{"insecure", HostKeys{Insecure: true}, true, false},
		{"wrong fingerprint", HostKeys{Fingerprints: []string{other.Fingerprint(0)}}, false, true},
		{"known_hosts of another server", HostKeys{KnownHostsFile: other.KnownHosts(t)}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := options(srv)
			o.HostKeys = tc.keys
			c, err := dialOnce(o)
			if tc.ok {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				_ = c.Close()
				return
			}
			fe := wantCode(t, err, failure.InvalidConfig)
			named := 0
			for i := range srv.HostKeys {
				if strings.Contains(fe.Error(), srv.Fingerprint(i)) {
					named++
				}
			}
			if named == 0 || tc.all && named != len(srv.HostKeys) {
				t.Errorf("%v: names %d of the server's %d keys", fe, named, len(srv.HostKeys))
			}
			if fe.Unreachable {
				t.Errorf("a host key mismatch must not be retried as an outage")
			}
		})
	}
}

// The dialer reports the key the server offered on its last connection,
// as ssh-keygen -l prints it with the key type, and none before: the one
// the server prefers, or the one known when only that is.
func TestDialerReportsHostKey(t *testing.T) {
	srv := sftptest.Start(t)
	other := sftptest.Start(t)
	cases := []struct {
		name string
		keys HostKeys
		want int // index of the server's key reported; -1: either
	}{
		{"fingerprint", HostKeys{Fingerprints: []string{srv.Fingerprint(0)}}, 0},
		{"known_hosts with both keys", HostKeys{KnownHostsFile: srv.KnownHosts(t)}, 0},
		{"known_hosts with the RSA key only", HostKeys{KnownHostsFile: srv.KnownHosts(t, 1)}, 1},
		{"fingerprint of the RSA key", HostKeys{Fingerprints: []string{srv.Fingerprint(1)}}, 1},
		// The client's default order picks the key.
		{"insecure", HostKeys{Insecure: true}, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := options(srv)
			o.HostKeys = tc.keys
			d, err := NewDialer(o)
			if err != nil {
				t.Fatal(err)
			}
			if k := d.HostKey(); k != "" {
				t.Fatalf("HostKey before any connection = %q, want none", k)
			}
			c, err := d.Dial(context.Background())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			_ = c.Close()
			var want []string
			for i, k := range srv.HostKeys {
				if tc.want < 0 || i == tc.want {
					want = append(want, k.PublicKey().Type()+" "+srv.Fingerprint(i))
				}
			}
			if k := d.HostKey(); !slices.Contains(want, k) {
				t.Errorf("HostKey = %q, want %q", k, want)
			}
			if k := NewMux(d).HostKey(); k != d.HostKey() {
				t.Errorf("Mux HostKey = %q, want the dialer's %q", k, d.HostKey())
			}
		})
	}

	// A handshake whose key matches none known records nothing: neither
	// before a good connection nor after one.
	o := options(srv)
	o.HostKeys = HostKeys{Fingerprints: []string{other.Fingerprint(0)}}
	d, err := NewDialer(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dial(context.Background()); err == nil {
		t.Fatal("Dial with another server's key succeeded")
	}
	if k := d.HostKey(); k != "" {
		t.Errorf("HostKey after a mismatch = %q, want none", k)
	}
	o = options(other)
	d, err = NewDialer(o)
	if err != nil {
		t.Fatal(err)
	}
	dialAndClose := func() {
		t.Helper()
		c, err := d.Dial(context.Background())
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		_ = c.Close()
	}
	dialAndClose()
	want := other.HostKeys[0].PublicKey().Type() + " " + other.Fingerprint(0)
	// Another server answers at the address now, with a key not known.
	d.opts.Addr = srv.Addr
	if _, err := d.Dial(context.Background()); err == nil {
		t.Fatal("Dial of a server with an unknown key succeeded")
	}
	if k := d.HostKey(); k != want {
		t.Errorf("HostKey after a later mismatch = %q, want the last good connection's %q", k, want)
	}
}

func TestHostKeysRequired(t *testing.T) {
	srv := sftptest.Start(t)
	o := options(srv)
	o.HostKeys = HostKeys{}
	_, err := dialOnce(o)
	fe := wantCode(t, err, failure.InvalidConfig)
	if !strings.Contains(fe.Error(), "known_hosts_file or host_key_fingerprint") {
		t.Errorf("%v: does not say what to set", fe)
	}
	if srv.Logins() != 0 {
		t.Errorf("logged in without a host key check")
	}
}

func TestLogin(t *testing.T) {
	srv := sftptest.Start(t)
	o := options(srv)
	o.Password = "wrong"
	_, err := dialOnce(o)
	if fe := wantCode(t, err, failure.AuthFailed); fe.Unreachable || fe.Endpoint != "sftp1" {
		t.Errorf("wrong password: %+v", fe)
	}

	o = options(srv)
	o.User, o.Password, o.Signer = sftptest.KeyUser, "", srv.Key
	dial(t, o)

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	_ = ln.Close()
	o = options(srv)
	o.Addr = addr
	_, err = dialOnce(o)
	if fe := wantCode(t, err, failure.ConnectionError); !fe.Unreachable {
		t.Errorf("connection refused must be an outage (no attempt used): %+v", fe)
	}
}

// A server that accepts TCP and then says nothing (MaxStartups-style
// drops, or a hung sshd) fails the dial within the timeout as an outage.
func TestDialSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	o := Options{Addr: ln.Addr().String(), User: "u", Password: "p", HostKeys: HostKeys{Insecure: true}, Timeout: 300 * time.Millisecond}
	start := time.Now()
	_, err = dialOnce(o)
	if fe := wantCode(t, err, failure.ConnectionError); !fe.Unreachable {
		t.Errorf("%+v: want unreachable", fe)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dial took %s with a 300ms timeout", d)
	}
}

func TestUploadRenameDownload(t *testing.T) {
	srv := sftptest.Start(t)
	c := dial(t, options(srv))
	s := session(t, c)
	defer s.Close()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := s.MkdirAll(ctx, dir); err != nil {
		t.Fatal(err)
	}
	tmp, final := filepath.Join(dir, ".f.part"), filepath.Join(dir, "f")
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: concurrent writes
	w, err := s.Create(ctx, tmp, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Size(ctx, tmp); err != nil || n != int64(len(data)) {
		t.Fatalf("Size = %d, %v", n, err)
	}
	if err := os.WriteFile(final, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// (Plain rename over an existing file: OpenSSH refuses it, pkg/sftp's
	// server does not; callers must not rely on either.)
	if !s.AtomicReplace() {
		t.Fatal("pkg/sftp's server offers posix-rename@openssh.com")
	}
	if err := s.Rename(ctx, tmp, final, true); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, final, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r.Size != int64(len(data)) || !bytes.Equal(got, data[100:]) {
		t.Fatalf("read %d bytes from offset 100 of %d (size %d)", len(got), len(data), r.Size)
	}
	names, err := s.List(ctx, dir)
	if err != nil || len(names) != 1 || names[0] != "f" {
		t.Fatalf("List = %v, %v", names, err)
	}

	// Writing at an offset truncates there: what followed is gone.
	w, err = s.Create(ctx, final, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("XY")); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	if b, _ := os.ReadFile(final); string(b) != string(data[:10])+"XY" {
		t.Fatalf("after writing at 10: %q", b)
	}
}

func TestMissingFiles(t *testing.T) {
	srv := sftptest.Start(t)
	s := session(t, dial(t, options(srv)))
	defer s.Close()
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := s.Size(ctx, missing)
	wantCode(t, err, failure.FileNotFound)
	_, err = s.Open(ctx, missing, 0)
	wantCode(t, err, failure.FileNotFound)
	if ok, err := s.Exists(ctx, missing); ok || err != nil {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	if s.Broken() {
		t.Fatal("a missing file broke the session")
	}
}

func TestSessionsPerConnection(t *testing.T) {
	srv := sftptest.Start(t)
	c := dial(t, options(srv))
	a, b := session(t, c), session(t, c)
	if c.InUse() != 2 {
		t.Fatalf("%d sessions open, want 2", c.InUse())
	}
	if _, err := c.Session(context.Background()); err == nil {
		t.Fatal("third session opened")
	}
	a.Close()
	if c.InUse() != 1 {
		t.Fatalf("after a close: %d in use", c.InUse())
	}
	again := session(t, c)
	again.Close()
	b.Close()
	if c.InUse() != 0 {
		t.Fatalf("%d sessions open after closing all", c.InUse())
	}
	if srv.Logins() != 1 {
		t.Fatalf("%d logins for one connection", srv.Logins())
	}
}

// A server that stops answering fails the call within the timeout and
// breaks the connection (so the pool replaces it), instead of hanging the
// caller: pkg/sftp itself would wait for ever.
func TestHungServer(t *testing.T) {
	srv := sftptest.Start(t)
	o := options(srv)
	o.Timeout = 300 * time.Millisecond
	c := dial(t, o)
	s := session(t, c)
	defer s.Close()
	srv.Hang.Store(true)
	start := time.Now()
	_, err := s.Size(context.Background(), "/")
	wantCode(t, err, failure.TransferTimeout)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("hung call returned after %s with a 300ms timeout", d)
	}
	if !c.Broken() {
		t.Error("connection not broken after the server hung")
	}
}

// A hung download fails once no bytes moved for the timeout, however long
// it ran before.
func TestHungDownload(t *testing.T) {
	srv := sftptest.Start(t)
	o := options(srv)
	o.Timeout = 300 * time.Millisecond
	s := session(t, dial(t, o))
	defer s.Close()
	f := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(f, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(context.Background(), f, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	srv.Hang.Store(true)
	start := time.Now()
	_, err = io.Copy(io.Discard, r)
	wantCode(t, err, failure.TransferTimeout)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("hung download returned after %s", d)
	}
	_ = r.Close()
}

// Cancelling one caller ends its session only: the connection's other
// sessions carry on.
func TestCancelEndsOnlyItsSession(t *testing.T) {
	srv := sftptest.Start(t)
	o := options(srv)
	o.Timeout = 5 * time.Second
	c := dial(t, o)
	a, b := session(t, c), session(t, c)
	defer b.Close()
	srv.Hang.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := a.Size(ctx, "/")
	wantCode(t, err, failure.Cancelled)
	a.Close()
	srv.Hang.Store(false)
	if c.Broken() {
		t.Fatal("cancelling one call broke the connection")
	}
	if _, err := b.Size(context.Background(), "/"); err == nil {
		t.Fatal("stat of a directory as a file succeeded")
	} else if failure.CodeOf(err) == failure.ConnectionError {
		t.Fatalf("the other session failed: %v", err)
	}
	if err := c.NoOp(context.Background()); err != nil {
		t.Fatalf("keepalive after the cancel: %v", err)
	}
}

func TestServerGoneBreaksConnection(t *testing.T) {
	srv := sftptest.Start(t)
	c := dial(t, options(srv))
	if err := c.NoOp(context.Background()); err != nil {
		t.Fatalf("keepalive: %v", err)
	}
	srv.DropAll()
	deadline := time.Now().Add(2 * time.Second)
	for !c.PeerClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !c.PeerClosed() {
		t.Fatal("dropped connection not noticed")
	}
	if _, err := c.Session(context.Background()); err == nil {
		t.Fatal("session opened on a dropped connection")
	}
}

// WriteTo copies the rest of a file from where it was opened, with
// pipelined reads for a large rest and one read for a small one, and hands
// back its writer's error untouched.
func TestWriteTo(t *testing.T) {
	srv := sftptest.Start(t)
	s := session(t, dial(t, options(srv)))
	defer s.Close()
	ctx := context.Background()
	data := pattern(3<<20 + 17)
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, offset := range []int64{0, 1<<20 + 5, int64(len(data)) - 100<<10, int64(len(data))} {
		r, err := s.Open(ctx, f, offset)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		n, err := r.WriteTo(&got)
		if err != nil || n != int64(len(data))-offset || !bytes.Equal(got.Bytes(), data[offset:]) {
			t.Errorf("from %d: WriteTo = %d, %v; content equal: %v", offset, n, err, bytes.Equal(got.Bytes(), data[offset:]))
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// After Reads, WriteTo goes on from where they stopped.
	r, err := s.Open(ctx, f, 0)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 100<<10+3)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	if n, err := r.WriteTo(&rest); err != nil || !bytes.Equal(append(head, rest.Bytes()...), data) {
		t.Errorf("Read then WriteTo: %d bytes, %v; content equal: %v", n, err, bytes.Equal(append(head, rest.Bytes()...), data))
	}
	_ = r.Close()

	diskFull := errors.New("disk full")
	for _, offset := range []int64{0, int64(len(data)) - 100<<10} {
		r, err := s.Open(ctx, f, offset)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.WriteTo(failingWriter{err: diskFull})
		var fe *failure.Error
		if !errors.Is(err, diskFull) || errors.As(err, &fe) {
			t.Errorf("from %d: WriteTo returned %v, want the writer's own error", offset, err)
		}
		_ = r.Close()
	}
}

// WriteTo reads to the end of the file as it is, not as it was opened: a
// file that grew is read whole (the caller's size check then fails it, as
// for RETR) and one that shrank ends where it ends now, never with a gap.
func TestWriteToReadsToEOF(t *testing.T) {
	srv := sftptest.Start(t)
	s := session(t, dial(t, options(srv)))
	defer s.Close()
	ctx := context.Background()
	data := pattern(5<<20 + 999)
	for _, tc := range []struct {
		name   string
		change func(path string) error
		want   []byte
	}{
		{"grew", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.Write(data[:3<<20])
			return errors.Join(err, f.Close())
		}, append(slices.Clone(data), data[:3<<20]...)},
		{"grew by a chunk", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.Write(data[:readChunk])
			return errors.Join(err, f.Close())
		}, append(slices.Clone(data), data[:readChunk]...)},
		{"shrank", func(p string) error { return os.Truncate(p, 2<<20+1) }, data[:2<<20+1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := s.Open(ctx, f, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := tc.change(f); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			n, err := r.WriteTo(&got)
			if err != nil || n != int64(len(tc.want)) || !bytes.Equal(got.Bytes(), tc.want) {
				t.Errorf("WriteTo = %d, %v, want %d bytes; content equal: %v", n, err, len(tc.want), bytes.Equal(got.Bytes(), tc.want))
			}
		})
	}
}

// A file alone on its connection keeps as many reads in flight as
// OpenSSH's sftp client (64 × 32 KiB); files sharing one split the
// connection's budget, down to two chunks each.
func TestReadWindowSharesTheConnection(t *testing.T) {
	for readers, want := range map[int32]int{0: 8, 1: 8, 2: 8, 4: 4, 8: 2, 16: 2} {
		if got := readWindow(readers); got != want {
			t.Errorf("readWindow(%d) = %d chunks, want %d", readers, got, want)
		}
	}
	if got := maxReadWindow * readChunk / PacketSize; got != 64 {
		t.Errorf("a file alone keeps %d requests in flight, want 64", got)
	}
}

// pattern is n bytes in which a chunk or packet read from the wrong offset
// cannot go unnoticed (Knuth's multiplicative hash of the offset).
func pattern(n int) []byte {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(uint32(i) * 2654435761 >> 24)
	}
	return data
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// ReadFrom writes a source from where the file was created, in one write
// for a small one and with writes in flight for a large one, and hands back
// the source's error untouched.
func TestReadFrom(t *testing.T) {
	srv := sftptest.Start(t)
	s := session(t, dial(t, options(srv)))
	defer s.Close()
	ctx := context.Background()
	data := pattern(5<<20 + 17)
	f := filepath.Join(t.TempDir(), "f")
	for _, tc := range []struct{ offset, size int64 }{{0, int64(len(data))}, {1<<20 + 5, int64(len(data))}, {0, 20}, {0, 5}, {7, 7}} {
		prefix := data[:tc.offset]
		if err := os.WriteFile(f, append(append([]byte(nil), prefix...), "to be truncated"...), 0o644); err != nil {
			t.Fatal(err)
		}
		w, err := s.Create(ctx, f, tc.offset)
		if err != nil {
			t.Fatal(err)
		}
		n, err := w.ReadFrom(bytes.NewReader(data[tc.offset:tc.size]))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		got, _ := os.ReadFile(f)
		if err != nil || n != tc.size-tc.offset || !bytes.Equal(got, data[:tc.size]) {
			t.Errorf("offset %d size %d: ReadFrom = %d, %v; file holds %d bytes, equal %v", tc.offset, tc.size, n, err, len(got), bytes.Equal(got, data[:tc.size]))
		}
	}
	sourceGone := errors.New("source gone")
	w, err := s.Create(ctx, f, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.ReadFrom(io.MultiReader(bytes.NewReader(data[:3<<20]), failingReader{sourceGone}))
	var fe *failure.Error
	if !errors.Is(err, sourceGone) || errors.As(err, &fe) {
		t.Errorf("ReadFrom returned %v, want the source's own error", err)
	}
	_ = w.Close()
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

// A directory made once is not asked for again on the session: the
// second MkdirAll, of it or of a parent, sends nothing (the hung server
// would fail it).
func TestMkdirAllRemembers(t *testing.T) {
	srv := sftptest.Start(t)
	o := options(srv)
	o.Timeout = 300 * time.Millisecond
	s := session(t, dial(t, o))
	defer s.Close()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a", "b", "c")
	if err := s.MkdirAll(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("%s not made: %v", dir, err)
	}
	srv.Hang.Store(true)
	for _, d := range []string{dir, dir + "/", filepath.Dir(dir)} {
		if err := s.MkdirAll(ctx, d); err != nil {
			t.Errorf("MkdirAll(%s) again: %v", d, err)
		}
	}
	if err := s.MkdirAll(ctx, filepath.Join(dir, "new")); err == nil {
		t.Error("a new directory on a hung server was not asked for")
	}
}
