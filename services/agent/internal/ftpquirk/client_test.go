package ftpquirk

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// client is a bare FTP client over net/textproto: it says exactly what a
// test tells it to, so the server's answers are seen unfiltered.
type client struct {
	t     testing.TB
	s     *Server
	raw   net.Conn
	conn  net.Conn // raw, or TLS over it
	text  *textproto.Conn
	tls   *tls.Config
	protP bool
}

// dial connects and reads the banner, which must be 220.
func dial(t testing.TB, s *Server) *client {
	t.Helper()
	c := connect(t, s)
	c.expect(220)
	return c
}

// connect connects without reading anything.
func connect(t testing.TB, s *Server) *client {
	t.Helper()
	raw, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := &client{t: t, s: s, raw: raw, conn: raw, text: textproto.NewConn(raw)}
	if s.CAFile() != "" {
		c.tls = clientTLS(t, s)
	}
	t.Cleanup(func() { raw.Close() })
	return c
}

// clientTLS trusts the server's CA file, as a client given tls_ca_file
// would, with a session cache so data connections can resume.
func clientTLS(t testing.TB, s *Server) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file holds no certificate")
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", ClientSessionCache: tls.NewLRUClientSessionCache(4), MinVersion: tls.VersionTLS12}
}

// send writes a command line and returns the reply, whatever its code.
func (c *client) send(line string) (int, string) {
	c.t.Helper()
	if err := c.text.PrintfLine("%s", line); err != nil {
		c.t.Fatalf("%s: %v", line, err)
	}
	return c.read()
}

func (c *client) read() (int, string) {
	c.t.Helper()
	code, msg, err := c.text.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("reading a reply: %v", err)
	}
	return code, msg
}

// expect reads a reply and fails the test unless it has this code.
func (c *client) expect(want int) string {
	c.t.Helper()
	code, msg := c.read()
	if code != want {
		c.t.Fatalf("got %d %q, want %d", code, msg, want)
	}
	return msg
}

// cmd sends a command and fails the test unless the reply has code want.
func (c *client) cmd(want int, line string) string {
	c.t.Helper()
	code, msg := c.send(line)
	if code != want {
		c.t.Fatalf("%s: got %d %q, want %d", line, code, msg, want)
	}
	return msg
}

func (c *client) login() {
	c.t.Helper()
	c.cmd(331, "USER "+User)
	c.cmd(230, "PASS "+Password)
}

// startTLS upgrades the control connection with AUTH TLS.
func (c *client) startTLS() {
	c.t.Helper()
	c.cmd(234, "AUTH TLS")
	tc := tls.Client(c.raw, c.tls)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.text = tc, textproto.NewConn(tc)
}

// private sets PBSZ 0 and PROT P.
func (c *client) private() {
	c.t.Helper()
	c.cmd(200, "PBSZ 0")
	c.cmd(200, "PROT P")
	c.protP = true
}

// epsv asks for a passive port with EPSV and connects to it.
func (c *client) epsv() net.Conn {
	c.t.Helper()
	msg := c.cmd(229, "EPSV")
	i, j := strings.Index(msg, "(|||"), strings.LastIndex(msg, "|)")
	if i < 0 || j < i {
		c.t.Fatalf("EPSV reply %q", msg)
	}
	port, err := strconv.Atoi(msg[i+4 : j])
	if err != nil {
		c.t.Fatalf("EPSV reply %q", msg)
	}
	return c.dialData(port)
}

// pasv asks for a passive port with PASV and connects to it on the control
// connection's address, whatever address the reply names; it returns the
// connection and the reply's address.
func (c *client) pasv() (net.Conn, string) {
	c.t.Helper()
	msg := c.cmd(227, "PASV")
	i, j := strings.Index(msg, "("), strings.LastIndex(msg, ")")
	if i < 0 || j < i {
		c.t.Fatalf("PASV reply %q", msg)
	}
	f := strings.Split(msg[i+1:j], ",")
	if len(f) != 6 {
		c.t.Fatalf("PASV reply %q", msg)
	}
	hi, _ := strconv.Atoi(f[4])
	lo, _ := strconv.Atoi(f[5])
	return c.dialData(hi<<8 | lo), strings.Join(f[:4], ".")
}

func (c *client) dialData(port int) net.Conn {
	c.t.Helper()
	d, err := net.DialTimeout("tcp", net.JoinHostPort(c.s.Host(), strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	_ = d.SetDeadline(time.Now().Add(5 * time.Second))
	c.t.Cleanup(func() { d.Close() })
	if c.protP {
		return tls.Client(d, c.tls)
	}
	return d
}

// retr downloads a file over a fresh EPSV data connection.
func (c *client) retr(name string) []byte {
	c.t.Helper()
	d := c.epsv()
	c.cmd(150, "RETR "+name)
	b, err := io.ReadAll(d)
	if err != nil {
		c.t.Fatal(err)
	}
	d.Close()
	c.expect(226)
	return b
}

// stor uploads data with verb (STOR, APPE) over a fresh EPSV connection.
func (c *client) stor(verb, name, data string) {
	c.t.Helper()
	d := c.epsv()
	c.cmd(150, verb+" "+name)
	if _, err := io.WriteString(d, data); err != nil {
		c.t.Fatal(err)
	}
	d.Close()
	c.expect(226)
}

// list runs a listing command and returns its lines.
func (c *client) list(line string) []string {
	c.t.Helper()
	d := c.epsv()
	c.cmd(150, line)
	b, err := io.ReadAll(d)
	if err != nil {
		c.t.Fatal(err)
	}
	d.Close()
	c.expect(226)
	return strings.Split(strings.TrimSuffix(string(b), "\r\n"), "\r\n")
}

// file reads a file of the served directory; missing is "<missing>".
func file(t testing.TB, s *Server, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Root(), name))
	if os.IsNotExist(err) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// eventually waits up to a second for cond: the server's side of a hang-up
// runs on its own goroutine.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("%s: not within a second", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
