// Package ftptest runs an FTP server for the agent's tests, instrumented
// for what pool and transfer tests need to observe: how many logins it
// served, and a way to drop every connection as a failing server would.
package ftptest

import (
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
func Start(t *testing.T) *Server {
	t.Helper()
	s := &Server{Root: t.TempDir()}
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
		Driver:   drv,
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
