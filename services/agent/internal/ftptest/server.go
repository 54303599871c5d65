// Package ftptest runs an FTP server for the agent's tests, instrumented
// for what pool and transfer tests need to observe: how many logins it
// served, and a way to drop every connection as a failing server would.
package ftptest

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	ftpserver "goftp.io/server/v2"
	"goftp.io/server/v2/driver/file"

	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
)

// Server serves a directory to user "u" with password "p".
type Server struct {
	Root     string
	Endpoint *config.Endpoint
	logins   atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
	// StallAfter, when positive, makes downloads stop sending after that
	// many bytes without closing, as a hung server does.
	StallAfter atomic.Int64
	stopped    chan struct{}
}

// stallingDriver serves files through readers that may stall.
type stallingDriver struct {
	ftpserver.Driver
	s *Server
}

func (d *stallingDriver) GetFile(ctx *ftpserver.Context, path string, offset int64) (int64, io.ReadCloser, error) {
	n, rc, err := d.Driver.GetFile(ctx, path, offset)
	if err != nil || d.s.StallAfter.Load() <= 0 {
		return n, rc, err
	}
	return n, &stallingReader{ReadCloser: rc, left: d.s.StallAfter.Load(), stop: d.s.stopped}, nil
}

// stallingReader stops delivering after left bytes, until the server stops.
type stallingReader struct {
	io.ReadCloser
	left int64
	stop chan struct{}
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		<-r.stop
		return 0, io.ErrClosedPipe
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.ReadCloser.Read(p)
	r.left -= int64(n)
	return n, err
}

// StartSilent listens on loopback and accepts connections without ever
// answering, like a hung server. It returns the port.
func StartSilent(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().(*net.TCPAddr).Port
}

type countingAuth struct {
	ftpserver.SimpleAuth
	s *Server
}

func (a *countingAuth) CheckPasswd(ctx *ftpserver.Context, user, pass string) (bool, error) {
	ok, err := a.SimpleAuth.CheckPasswd(ctx, user, pass)
	if ok {
		a.s.logins.Add(1)
	}
	return ok, err
}

type trackingListener struct {
	net.Listener
	s *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns = append(l.s.conns, c)
		l.s.mu.Unlock()
	}
	return c, err
}

// Start serves t.TempDir() until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{Root: t.TempDir(), stopped: make(chan struct{})}
	drv, err := file.NewDriver(s.Root)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	srv, err := ftpserver.NewServer(&ftpserver.Options{
		Driver:   &stallingDriver{Driver: drv, s: s},
		Auth:     &countingAuth{SimpleAuth: ftpserver.SimpleAuth{Name: "u", Password: "p"}, s: s},
		Perm:     ftpserver.NewSimplePerm("u", "u"),
		Hostname: "127.0.0.1",
		Port:     port,
		PublicIP: "127.0.0.1",
		Logger:   &ftpserver.DiscardLogger{},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(&trackingListener{Listener: l, s: s})
	}()
	t.Cleanup(func() {
		// Closing our listener stops Serve; goftp's Shutdown races with a
		// Serve that has only just started.
		_ = l.Close()
		<-done
		close(s.stopped)
		s.DropAll()
	})
	ep, err := config.ParseConnections([]byte("[srv]\ntype = ftp\nhost = 127.0.0.1\nport = "+strconv.Itoa(port)+"\nuser = u\npass = p\n"), "", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoint = ep.Endpoints["srv"]
	return s
}

// Logins counts successful logins so far.
func (s *Server) Logins() int64 { return s.logins.Load() }

// DropAll closes every control connection, as a server restart would.
func (s *Server) DropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}
