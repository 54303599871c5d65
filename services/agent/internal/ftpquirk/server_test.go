package ftpquirk

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The commands a transfer client needs, against the well-behaved server.
func TestQuirkServerServesTheBasics(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := dial(t, s)
	c.cmd(530, "PWD")
	c.login()
	c.cmd(215, "SYST")
	if feat := c.cmd(211, "FEAT"); !strings.Contains(feat, "\n EPSV\n") || !strings.Contains(feat, "\n SIZE\n") || !strings.Contains(feat, "\n UTF8\n") {
		t.Errorf("FEAT = %q", feat)
	}
	c.cmd(200, "OPTS UTF8 ON")
	c.cmd(200, "TYPE I")
	if got := c.cmd(257, "PWD"); got != `"/" is the current directory` {
		t.Errorf("PWD = %q", got)
	}
	c.cmd(257, "MKD dir")
	c.cmd(550, "MKD dir")
	c.cmd(250, "CWD dir")
	c.stor("STOR", "a.txt", "hello")
	c.stor("APPE", "a.txt", " world")
	c.stor("STOR", ".hidden", "h")
	if got := file(t, s, "dir/a.txt"); got != "hello world" {
		t.Errorf("after STOR and APPE the file holds %q", got)
	}
	if got := c.cmd(213, "SIZE a.txt"); got != "11" {
		t.Errorf("SIZE = %q", got)
	}
	if got := c.cmd(213, "MDTM /dir/a.txt"); len(got) != 14 {
		t.Errorf("MDTM = %q", got)
	}
	c.cmd(550, "SIZE nope")
	c.cmd(350, "REST 6")
	if got := string(c.retr("a.txt")); got != "world" {
		t.Errorf("RETR after REST 6 = %q", got)
	}
	c.cmd(350, "REST 5")
	c.stor("STOR", "a.txt", "!")
	if got := file(t, s, "dir/a.txt"); got != "hello!" {
		t.Errorf("STOR after REST 5 left %q", got)
	}
	if got := c.list("NLST"); !slices.Equal(got, []string{"a.txt"}) {
		t.Errorf("NLST = %q", got)
	}
	if got := c.list("NLST -a"); !slices.Equal(got, []string{".hidden", "a.txt"}) {
		t.Errorf("NLST -a = %q", got)
	}
	if got := c.list("LIST /dir"); len(got) != 1 || !strings.HasPrefix(got[0], "-rw") || !strings.HasSuffix(got[0], " a.txt") {
		t.Errorf("LIST = %q", got)
	}
	if got := c.list("MLSD"); len(got) != 2 || !strings.HasPrefix(got[1], "type=file;size=6;") || !strings.HasSuffix(got[1], "; a.txt") {
		t.Errorf("MLSD = %q", got)
	}
	c.cmd(350, "RNFR a.txt")
	c.cmd(250, "RNTO b.txt")
	c.cmd(550, "RNFR a.txt")
	c.cmd(250, "DELE b.txt")
	c.cmd(550, "DELE b.txt")
	c.cmd(250, "DELE .hidden")
	c.cmd(250, "CDUP")
	c.cmd(250, "RMD dir")
	c.cmd(200, "NOOP")
	c.cmd(221, "QUIT")
	if s.Logins() != 1 || s.CommandCount("stor") != 3 {
		t.Errorf("logins %d, STOR commands %d", s.Logins(), s.CommandCount("STOR"))
	}
	eventually(t, "connection count back to 0", func() bool { return s.Connections() == 0 })
}

// No path, however written, reaches outside the served directory.
func TestQuirkServerKeepsPathsInsideTheRoot(t *testing.T) {
	t.Parallel()
	s := Start(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.Root(), "link")); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(s.Root(), filepath.Join(outside, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	c.login()
	c.cmd(250, "CWD ../../..")
	if got := c.cmd(257, "PWD"); got != `"/" is the current directory` {
		t.Errorf("PWD after climbing = %q", got)
	}
	c.cmd(550, "SIZE "+filepath.ToSlash(rel))
	c.cmd(550, "SIZE link/secret")
	c.epsv()
	c.cmd(550, "RETR link/secret")
	c.cmd(257, "MKD ../../escaped")
	if _, err := os.Stat(filepath.Join(s.Root(), "escaped")); err != nil {
		t.Errorf("MKD ../../escaped did not land in the root: %v", err)
	}
}

func TestQuirkServerRefusesBadLogins(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := dial(t, s)
	c.cmd(503, "PASS "+Password)
	c.cmd(331, "USER "+User)
	c.cmd(530, "PASS wrong")
	c.cmd(530, "EPSV")
	c.login()
	if s.Logins() != 1 {
		t.Errorf("Logins = %d", s.Logins())
	}
	for _, cmd := range s.Commands() {
		if cmd.Verb == "PASS" && cmd.Arg != "****" {
			t.Errorf("the command log shows a password: %+v", cmd)
		}
	}
}

func TestQuirkServerNoEPSV(t *testing.T) {
	t.Parallel()
	s := Start(t, NoEPSV())
	c := dial(t, s)
	c.login()
	if feat := c.cmd(211, "FEAT"); strings.Contains(feat, "EPSV") {
		t.Errorf("FEAT advertises EPSV: %q", feat)
	}
	c.cmd(500, "EPSV")
	d, _ := c.pasv()
	c.cmd(150, "NLST")
	_, _ = io.ReadAll(d)
	c.expect(226)
}

func TestQuirkServerPASVAddress(t *testing.T) {
	t.Parallel()
	s := Start(t, PASVAddress("10.255.255.1"))
	c := dial(t, s)
	c.login()
	c.stor("STOR", "f", "data")
	d, advertised := c.pasv()
	if advertised != "10.255.255.1" {
		t.Errorf("PASV advertised %s", advertised)
	}
	c.cmd(150, "RETR f")
	if b, _ := io.ReadAll(d); string(b) != "data" {
		t.Errorf("RETR over the real address = %q", b)
	}
	c.expect(226)
}

func TestQuirkServerSize(t *testing.T) {
	t.Parallel()
	t.Run("NoSize", func(t *testing.T) {
		t.Parallel()
		s := Start(t, NoSize())
		c := dial(t, s)
		c.login()
		c.stor("STOR", "f", "12345")
		if feat := c.cmd(211, "FEAT"); strings.Contains(feat, "SIZE") {
			t.Errorf("FEAT advertises SIZE: %q", feat)
		}
		c.cmd(502, "SIZE f")
	})
	t.Run("RefusedInASCII", func(t *testing.T) {
		t.Parallel()
		s := Start(t, SizeRefusedInASCII())
		c := dial(t, s)
		c.login()
		c.stor("STOR", "f", "12345")
		if got := c.cmd(550, "SIZE f"); got != "SIZE not allowed in ASCII mode" {
			t.Errorf("SIZE in the initial TYPE A = %q", got)
		}
		c.cmd(200, "TYPE I")
		if got := c.cmd(213, "SIZE f"); got != "5" {
			t.Errorf("SIZE in TYPE I = %q", got)
		}
		c.cmd(200, "TYPE A")
		c.cmd(550, "SIZE f")
	})
}

func TestQuirkServerMultiLineReplies(t *testing.T) {
	t.Parallel()
	s := Start(t, MultiLineReplies())
	c := connect(t, s)
	if banner := c.expect(220); !strings.Contains(banner, "\n") || !strings.HasSuffix(banner, "ftpquirk ready.") {
		t.Errorf("banner = %q", banner)
	}
	if got := c.cmd(331, "USER "+User); strings.Count(got, "\n") != 2 {
		t.Errorf("USER reply = %q", got)
	}
	c.cmd(230, "PASS "+Password)
	if feat := c.cmd(211, "FEAT"); !strings.Contains(feat, "\n SIZE\n") {
		t.Errorf("FEAT = %q", feat)
	}
	c.stor("STOR", "f", "abc")
	if got := c.cmd(213, "SIZE f"); got != "3" {
		t.Errorf("SIZE = %q: a value must stay on one line", got)
	}
	d, _ := c.pasv()
	c.cmd(150, "RETR f")
	if b, _ := io.ReadAll(d); string(b) != "abc" {
		t.Errorf("RETR = %q", b)
	}
	c.expect(226)
}

func TestQuirkServerBannerDelay(t *testing.T) {
	t.Parallel()
	s := Start(t, BannerDelay(150*time.Millisecond))
	start := time.Now()
	dial(t, s)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("banner after %s", d)
	}
}

func TestQuirkServerCloseAfterTransfer(t *testing.T) {
	t.Parallel()
	s := Start(t, CloseAfterTransfer())
	c := dial(t, s)
	c.login()
	c.stor("STOR", "f", "abc")
	c.expect(421)
	if _, _, err := c.text.ReadResponse(0); err == nil {
		t.Fatal("the control connection stayed open after 421")
	}
	c = dial(t, s)
	c.login()
	if got := c.retr("f"); string(got) != "abc" {
		t.Errorf("RETR = %q", got)
	}
	c.expect(421)
}

// The 226 arrives while data is still to come; the data is complete anyway.
func TestQuirkServerEarlyTransferComplete(t *testing.T) {
	t.Parallel()
	s := Start(t, EarlyTransferComplete())
	content := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	if err := os.WriteFile(filepath.Join(s.Root(), "f"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	c.login()
	d := c.epsv()
	c.cmd(150, "RETR f")
	c.expect(226)
	b, err := io.ReadAll(d)
	if err != nil || !bytes.Equal(b, content) {
		t.Errorf("read %d of %d bytes after the 226 (%v)", len(b), len(content), err)
	}
}

// Names are bytes: a Latin-1 "café" is stored under exactly those bytes.
func TestQuirkServerNoUTF8(t *testing.T) {
	t.Parallel()
	s := Start(t, NoUTF8())
	c := dial(t, s)
	c.login()
	if feat := c.cmd(211, "FEAT"); strings.Contains(feat, "UTF8") {
		t.Errorf("FEAT advertises UTF8: %q", feat)
	}
	c.cmd(501, "OPTS UTF8 ON")
	latin1 := "caf\xe9"
	c.stor("STOR", latin1, "x")
	if got := file(t, s, latin1); got != "x" {
		t.Errorf("the file named 63 61 66 e9 holds %q", got)
	}
	if got := c.list("NLST"); !slices.Equal(got, []string{latin1}) {
		t.Errorf("NLST = %q", got)
	}
}

func TestQuirkServerActiveOnly(t *testing.T) {
	t.Parallel()
	s := Start(t, ActiveOnly())
	c := dial(t, s)
	c.login()
	c.cmd(500, "PASV")
	c.cmd(500, "EPSV")
	c.cmd(500, "PORT 10,0,0,1,4,0")
	accept := func(l net.Listener) net.Conn {
		t.Helper()
		_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
		d, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	c.cmd(200, "PORT 127,0,0,1,"+strconv.Itoa(port>>8)+","+strconv.Itoa(port&0xff))
	_ = c.text.PrintfLine("STOR f")
	d := accept(l)
	c.expect(150)
	_, _ = io.WriteString(d, "active")
	d.Close()
	c.expect(226)
	c.cmd(200, "EPRT |1|127.0.0.1|"+strconv.Itoa(port)+"|")
	_ = c.text.PrintfLine("RETR f")
	d = accept(l)
	c.expect(150)
	if b, _ := io.ReadAll(d); string(b) != "active" {
		t.Errorf("RETR over EPRT = %q", b)
	}
	c.expect(226)
}

func TestQuirkServerMaxConnections(t *testing.T) {
	t.Parallel()
	t.Run("RefuseAtBanner", func(t *testing.T) {
		t.Parallel()
		s := Start(t, MaxConnections(2, RefuseAtBanner))
		a, _ := dial(t, s), dial(t, s)
		c := connect(t, s)
		if got := c.expect(421); got != "Too many users, please try later." {
			t.Errorf("421 %q", got)
		}
		a.cmd(221, "QUIT")
		eventually(t, "a slot freed", func() bool { return s.Connections() == 1 })
		dial(t, s)
	})
	t.Run("RefuseAtLogin", func(t *testing.T) {
		t.Parallel()
		s := Start(t, MaxConnections(3, RefuseAtLogin))
		for range 3 {
			dial(t, s).login()
		}
		c := dial(t, s)
		c.cmd(331, "USER "+User)
		if got := c.cmd(530, "PASS "+Password); got != "Sorry, the maximum number of clients (3) for this user are already connected." {
			t.Errorf("530 %q", got)
		}
		if _, _, err := c.text.ReadResponse(0); err == nil {
			t.Error("the refused connection stayed open")
		}
		if s.Logins() != 3 {
			t.Errorf("Logins = %d", s.Logins())
		}
	})
}

func TestQuirkServerStallDownload(t *testing.T) {
	t.Parallel()
	s := Start(t, StallDownload(1000))
	if err := os.WriteFile(filepath.Join(s.Root(), "f"), make([]byte, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	c.login()
	d := c.epsv()
	c.cmd(150, "RETR f")
	_ = d.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	b, err := io.ReadAll(d)
	if len(b) != 1000 || !os.IsTimeout(err) {
		t.Errorf("read %d bytes, then %v; want 1000, then a timeout", len(b), err)
	}
	d.Close()
	c.expect(426)
	c.cmd(200, "NOOP")
}

func TestQuirkServerStallUpload(t *testing.T) {
	t.Parallel()
	s := Start(t, StallUpload(1000))
	c := dial(t, s)
	c.login()
	d := c.epsv()
	c.cmd(150, "STOR f")
	// More than any socket buffers hold, so the writer must block.
	_ = d.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := io.Copy(d, io.LimitReader(zeros{}, 64<<20))
	if !os.IsTimeout(err) {
		t.Fatalf("wrote %d bytes, then %v; want a timeout", n, err)
	}
	eventually(t, "1000 bytes stored", func() bool { return len(file(t, s, "f")) == 1000 })
	c.raw.Close()
	eventually(t, "the stalled session ended", func() bool { return s.Connections() == 0 })
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func TestQuirkServerExplicitTLS(t *testing.T) {
	t.Parallel()
	s := Start(t, ExplicitTLS())
	c := dial(t, s)
	c.cmd(503, "PBSZ 0")
	if feat := c.cmd(211, "FEAT"); !strings.Contains(feat, " AUTH TLS") {
		t.Errorf("FEAT = %q", feat)
	}
	c.startTLS()
	c.login()
	c.private()
	c.stor("STOR", "f", "secret")
	if got := c.retr("f"); string(got) != "secret" {
		t.Errorf("RETR = %q", got)
	}
	if got := file(t, s, "f"); got != "secret" {
		t.Errorf("file = %q", got)
	}
}

// An empty upload over FTPS is a TLS handshake and a close. Without the
// handshake the server cannot tell the client from anyone who connected to
// the port, and refuses as ProFTPD does.
func TestQuirkServerEmptyUploadOverTLS(t *testing.T) {
	t.Parallel()
	s := Start(t, ExplicitTLS())
	c := dial(t, s)
	c.startTLS()
	c.login()
	c.private()

	d := c.epsv().(*tls.Conn)
	c.cmd(150, "STOR empty")
	if err := d.Handshake(); err != nil {
		t.Fatal(err)
	}
	d.Close()
	c.expect(226)
	if got := file(t, s, "empty"); got != "" {
		t.Errorf("after an empty upload the file is %q", got)
	}

	d = c.epsv().(*tls.Conn)
	c.cmd(150, "STOR never")
	d.NetConn().Close()
	if got := c.expect(425); !strings.HasPrefix(got, "Unable to build data connection") {
		t.Errorf("425 %q", got)
	}
	if got := file(t, s, "never"); got != "<missing>" {
		t.Errorf("a data connection closed before TLS left a file holding %q", got)
	}
}

func TestQuirkServerRequireTLSReuse(t *testing.T) {
	t.Parallel()
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			s := Start(t, RequireTLSReuse())
			c := dial(t, s)
			c.tls.MaxVersion = v
			c.startTLS()
			c.login()
			c.private()
			c.stor("STOR", "f", "resumed")
			if got := file(t, s, "f"); got != "resumed" {
				t.Errorf("with a resumed session the file is %q", got)
			}

			// A data connection with its own TLS session, as from a
			// client without a session cache.
			shared := c.tls
			c.tls = clientTLS(t, s)
			c.tls.ClientSessionCache = nil
			d := c.epsv()
			c.cmd(150, "STOR g")
			_, _ = io.WriteString(d, "fresh")
			d.Close()
			if got := c.expect(425); got != "Unable to build data connection: TLS session reuse required" {
				t.Errorf("425 %q", got)
			}
			c.tls = shared
			if got := c.retr("f"); string(got) != "resumed" {
				t.Errorf("RETR = %q", got)
			}
		})
	}
}

func TestQuirkServerImplicitTLS(t *testing.T) {
	t.Parallel()
	s := Start(t, ImplicitTLS())
	raw, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	conf := clientTLS(t, s)
	tc := tls.Client(raw, conf)
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	c := &client{t: t, s: s, raw: raw, conn: tc, tls: conf}
	c.text = textproto.NewConn(tc)
	c.expect(220)
	c.cmd(503, "AUTH TLS")
	c.login()
	c.private()
	c.stor("STOR", "f", "implicit")
	if got := c.retr("f"); string(got) != "implicit" {
		t.Errorf("RETR = %q", got)
	}
}

func TestQuirkServerCountsAndHooks(t *testing.T) {
	t.Parallel()
	var seen atomic.Int64
	s := Start(t, OnCommand(func(c Command) {
		if c.Verb == "NOOP" {
			seen.Add(1)
		}
	}))
	a := dial(t, s)
	b := dial(t, s)
	a.login()
	b.cmd(200, "NOOP")
	a.cmd(200, "noop")
	if seen.Load() != 2 || s.CommandCount("NOOP") != 2 {
		t.Errorf("hook saw %d NOOPs, log %d", seen.Load(), s.CommandCount("NOOP"))
	}
	var conns []int
	for _, c := range s.Commands() {
		conns = append(conns, c.Conn)
	}
	if !slices.Equal(conns, []int{1, 1, 2, 1}) {
		t.Errorf("commands by connection: %v", conns)
	}
	if s.Accepted() != 2 || s.Connections() != 2 {
		t.Errorf("accepted %d, open %d", s.Accepted(), s.Connections())
	}
}

// Close ends sessions wherever they are: in a stalled transfer, in the
// banner delay, waiting for a command.
func TestQuirkServerCloseIsPrompt(t *testing.T) {
	t.Parallel()
	s := Start(t, StallUpload(0), BannerDelay(time.Minute))
	connect(t, s)
	eventually(t, "connected", func() bool { return s.Connections() == 1 })
	s2 := Start(t, StallUpload(0))
	c := dial(t, s2)
	c.login()
	d := c.epsv()
	c.cmd(150, "STOR f")
	_, _ = io.WriteString(d, "x")
	start := time.Now()
	s.Close()
	s2.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s", d)
	}
}

// Close leaves no goroutine behind, wherever its sessions were: the pool and
// transfer tests check for leaks with goleak. Not parallel, so no other
// test's server is running.
func TestQuirkServerLeavesNoGoroutines(t *testing.T) {
	s := Start(t, StallDownload(10), ExplicitTLS())
	if err := os.WriteFile(filepath.Join(s.Root(), "f"), make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	c.startTLS()
	c.login()
	c.private()
	d := c.epsv()
	c.cmd(150, "RETR f")
	if _, err := io.ReadFull(d, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	connect(t, s)
	idle := dial(t, s)
	idle.login()
	idle.epsv()
	s.Close()
	// A goroutine past its wg.Done has yet to exit: give it a moment, as
	// goleak does.
	buf := make([]byte, 1<<20)
	for end := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		st := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(st, "ftpquirk.(*Server)") && !strings.Contains(st, "ftpquirk.(*session)") {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("a session goroutine outlived Close:\n%s", st)
		}
	}
}
