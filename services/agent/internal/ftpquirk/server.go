// Package ftpquirk is a scriptable FTP server for unit tests of FTP
// clients. It serves a directory on disk to user "u" with password "p" and
// can be switched, option by option, into the habits of real servers that
// clients trip over: no EPSV, a PASV reply with a private address, no SIZE,
// multi-line replies, a slow banner, a control connection closed after each
// transfer, 226 before the last data bytes, Latin-1 names, active mode
// only, connection limits, stalled transfers, and FTPS (explicit and
// implicit) that insists on TLS session reuse.
//
// It listens on 127.0.0.1 only and runs one goroutine per control
// connection; Close, which the test's cleanup calls, waits for all of them.
package ftpquirk

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The only account.
const (
	User     = "u"
	Password = "p"
)

// Timeouts for the server's side of a conversation: generous, since a
// client under test may be slow, yet short enough that a test whose client
// never connects fails instead of hanging.
const (
	dataTimeout  = 5 * time.Second // accept or dial a data connection, TLS handshake
	writeTimeout = 10 * time.Second
)

// Command is one command line the server received.
type Command struct {
	// Conn numbers control connections from 1 in the order accepted.
	Conn int
	// Verb is upper case; Arg is the rest of the line (PASS's is hidden).
	Verb, Arg string
}

// Server is a running quirky FTP server.
type Server struct {
	q       quirks
	dir     string
	root    *os.Root
	tlsConf *tls.Config
	caPEM   []byte
	caFile  string
	l       net.Listener
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	logins  atomic.Int64

	mu       sync.Mutex
	closers  map[io.Closer]struct{} // every socket a session holds, for Close
	commands []Command
	accepted int
	open     int // control connections now open
	loggedIn int // sessions now logged in
}

// Start serves a fresh t.TempDir() until the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	q := quirks{stallUpload: -1, stallDownload: -1}
	for _, o := range opts {
		o(&q)
	}
	if q.requireReuse && q.tls == tlsNone {
		q.tls = tlsExplicit
	}
	s := &Server{q: q, dir: t.TempDir(), closed: make(chan struct{}), closers: map[io.Closer]struct{}{}}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	s.root = root
	if q.tls != tlsNone {
		// The CA file lives outside the served directory so it never shows
		// up in listings.
		if err := s.setupTLS(t.TempDir()); err != nil {
			root.Close()
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		root.Close()
		t.Fatal(err)
	}
	s.l = l
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Addr is host:port of the control port.
func (s *Server) Addr() string { return s.l.Addr().String() }

// Host is the address the server listens on, 127.0.0.1.
func (s *Server) Host() string { return s.l.Addr().(*net.TCPAddr).IP.String() }

// Port is the control port.
func (s *Server) Port() int { return s.l.Addr().(*net.TCPAddr).Port }

// Root is the directory served as "/".
func (s *Server) Root() string { return s.dir }

// CAFile is a PEM file with the certificate to trust for FTPS (it is its
// own CA), or "" without TLS.
func (s *Server) CAFile() string { return s.caFile }

// CAPEM is the content of CAFile.
func (s *Server) CAPEM() []byte { return s.caPEM }

// Logins counts successful logins.
func (s *Server) Logins() int64 { return s.logins.Load() }

// Connections is the number of control connections open now. A session
// leaves the count before its socket closes, so a client that has seen the
// server close sees the count already lowered.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// Accepted is the number of control connections accepted so far.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Commands returns the commands received so far, in order.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Command(nil), s.commands...)
}

// CommandCount counts the commands received with this verb (any case).
func (s *Server) CommandCount(verb string) int {
	n := 0
	for _, c := range s.Commands() {
		if strings.EqualFold(c.Verb, verb) {
			n++
		}
	}
	return n
}

// Close stops the server, drops every connection and waits for the
// sessions to end. Tests need not call it: Start registers it as cleanup.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closed)
		_ = s.l.Close()
		s.mu.Lock()
		for c := range s.closers {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		_ = s.root.Close()
	})
}

// track registers a socket for Close; a socket opened while Close runs is
// closed at once, so no session outlives the server waiting on it.
func (s *Server) track(c io.Closer) (untrack func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		_ = c.Close()
	default:
		s.closers[c] = struct{}{}
	}
	return func() {
		s.mu.Lock()
		delete(s.closers, c)
		s.mu.Unlock()
	}
}

// sleep waits d, or less if the server closes; it reports whether the
// server is still running.
func (s *Server) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closed:
		return false
	}
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *Server) handle(raw net.Conn) {
	untrack := s.track(raw)
	defer untrack()
	defer raw.Close()

	s.mu.Lock()
	s.accepted++
	s.open++
	ss := &session{s: s, id: s.accepted, raw: raw, ctrl: raw, cwd: "/", ascii: true}
	full := s.q.maxConns > 0 && s.q.refusal == RefuseAtBanner && s.open > s.q.maxConns
	s.mu.Unlock()
	// Runs before raw.Close (defers unwind in reverse): see Connections.
	defer func() {
		s.mu.Lock()
		s.open--
		if ss.loggedIn {
			s.loggedIn--
		}
		s.mu.Unlock()
	}()
	defer ss.closeData()

	if s.q.tls == tlsImplicit {
		tc := tls.Server(raw, s.tlsConf)
		_ = tc.SetDeadline(time.Now().Add(dataTimeout))
		if tc.Handshake() != nil {
			return
		}
		_ = tc.SetDeadline(time.Time{})
		ss.ctrl, ss.secure = tc, true
	}
	ss.setReader()
	if !s.sleep(s.q.bannerDelay) {
		return
	}
	if full {
		ss.reply(421, "Too many users, please try later.")
		return
	}
	ss.reply(220, "ftpquirk ready.")
	ss.serve()
}

func (s *Server) record(c Command) {
	s.mu.Lock()
	s.commands = append(s.commands, c)
	s.mu.Unlock()
}

// pasvNumbers formats an address for PASV: four decimal bytes, then the
// port as two.
func pasvNumbers(ip net.IP, port int) string {
	v4 := ip.To4()
	if v4 == nil {
		v4 = net.IPv4(127, 0, 0, 1).To4()
	}
	return strconv.Itoa(int(v4[0])) + "," + strconv.Itoa(int(v4[1])) + "," + strconv.Itoa(int(v4[2])) + "," +
		strconv.Itoa(int(v4[3])) + "," + strconv.Itoa(port>>8) + "," + strconv.Itoa(port&0xff)
}
