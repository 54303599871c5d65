// Package sftptest runs an SSH server with an SFTP subsystem (pkg/sftp's
// server over the real file system) for the agent's tests, instrumented
// for what they observe: logins and open connections, a way to hang the
// SFTP sessions as a stuck server does, and a way to drop every connection.
// The end-to-end suites test against OpenSSH's sshd instead.
package sftptest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// User and Password log in; KeyUser logs in with Key only.
const (
	User     = "u"
	Password = "p"
	KeyUser  = "k"
)

// Server is a running SSH server on loopback.
type Server struct {
	Addr string
	// HostKeys are the server's keys, ed25519 first (the type it prefers).
	HostKeys []ssh.Signer
	// Key is the private key KeyUser logs in with.
	Key ssh.Signer
	// Hang makes every SFTP session read the requests that follow and
	// never answer them, as a stuck server does.
	Hang atomic.Bool

	logins atomic.Int64
	ln     net.Listener
	cfg    *ssh.ServerConfig
	mu     sync.Mutex
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// Option changes how a server presents itself.
type Option func(*ssh.ServerConfig)

// Version makes the server announce version (SSH-2.0-mod_sftp) instead of
// x/crypto/ssh's.
func Version(v string) Option { return func(c *ssh.ServerConfig) { c.ServerVersion = v } }

// Start serves until the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, userKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, k := range []any{edKey, rsaKey} {
		sg, err := ssh.NewSignerFromKey(k)
		if err != nil {
			t.Fatal(err)
		}
		s.HostKeys = append(s.HostKeys, sg)
	}
	if s.Key, err = ssh.NewSignerFromKey(userKey); err != nil {
		t.Fatal(err)
	}
	s.cfg = &ssh.ServerConfig{
		PasswordCallback: func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if m.User() == User && string(pw) == Password {
				s.logins.Add(1)
				return nil, nil
			}
			return nil, fmt.Errorf("password rejected for %s", m.User())
		},
		PublicKeyCallback: func(m ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if m.User() == KeyUser && string(k.Marshal()) == string(s.Key.PublicKey().Marshal()) {
				s.logins.Add(1)
				return nil, nil
			}
			return nil, fmt.Errorf("key rejected for %s", m.User())
		},
	}
	for _, k := range s.HostKeys {
		s.cfg.AddHostKey(k)
	}
	for _, o := range opts {
		o(s.cfg)
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Port is the listening port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Fingerprint is the SHA256 fingerprint of host key i, as ssh-keygen -l
// prints it.
func (s *Server) Fingerprint(i int) string { return ssh.FingerprintSHA256(s.HostKeys[i].PublicKey()) }

// KnownHosts writes a known_hosts file holding host keys idx (all when
// none) for the server's address and returns its path.
func (s *Server) KnownHosts(t testing.TB, idx ...int) string {
	t.Helper()
	if len(idx) == 0 {
		for i := range s.HostKeys {
			idx = append(idx, i)
		}
	}
	var lines string
	for _, i := range idx {
		lines += knownHostsLine(s.Addr, s.HostKeys[i].PublicKey())
	}
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func knownHostsLine(addr string, k ssh.PublicKey) string {
	host, port, _ := net.SplitHostPort(addr)
	name := "[" + host + "]:" + port
	if port == "22" {
		name = host
	}
	return name + " " + string(ssh.MarshalAuthorizedKey(k))
}

// Logins is how many logins succeeded.
func (s *Server) Logins() int64 { return s.logins.Load() }

// Open is how many connections are open.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// DropAll closes every connection, as a restarting server does.
func (s *Server) DropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// Close stops the server.
func (s *Server) Close() {
	_ = s.ln.Close()
	s.DropAll()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[nc] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(nc)
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) serve(nc net.Conn) {
	defer nc.Close()
	_, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		return
	}
	go func() {
		for r := range reqs {
			// keepalive@openssh.com and the like: OpenSSH answers failure.
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	}()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "session channels only")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			return
		}
		go s.session(ch, creqs)
	}
}

func (s *Server) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for r := range reqs {
		ok := r.Type == "subsystem" && len(r.Payload) > 4 && string(r.Payload[4:]) == "sftp"
		if r.WantReply {
			_ = r.Reply(ok, nil)
		}
		if !ok {
			continue
		}
		go func() {
			for range reqs {
			}
		}()
		srv, err := sftp.NewServer(&hangable{Channel: ch, hang: &s.Hang})
		if err != nil {
			return
		}
		_ = srv.Serve()
		_ = srv.Close()
		return
	}
}

// hangable passes a session's requests to the SFTP server until hang is
// set; from then on it swallows them.
type hangable struct {
	ssh.Channel
	hang *atomic.Bool
}

func (h *hangable) Read(p []byte) (int, error) {
	n, err := h.Channel.Read(p)
	for h.hang.Load() && err == nil {
		n, err = h.Channel.Read(p)
	}
	return n, err
}
