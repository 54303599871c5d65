// Package sftpremote speaks SFTP to one server: logged-in SSH connections
// that carry several SFTP sessions each, with a deadline on every
// operation. pkg/sftp takes no context, so a hung server would hang the
// caller for good; here every call runs under a watchdog that closes the
// SSH connection when the server stops answering, which unblocks it.
package sftpremote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Options is how to reach and log in to one SFTP server.
type Options struct {
	// Endpoint is the endpoint's id, carried by failures (breakers count
	// them per endpoint).
	Endpoint string
	// Addr is host:port.
	Addr string
	User string
	// Password, when set, is offered (also as keyboard-interactive, which
	// many servers use for passwords).
	Password string
	// Signer, when set, is offered as public-key authentication first.
	Signer   ssh.Signer
	HostKeys HostKeys
	// Timeout bounds every operation that waits on the server: a server
	// silent that long is hung.
	Timeout time.Duration
	// ConnectTimeout bounds connect, handshake and login; zero means
	// Timeout.
	ConnectTimeout time.Duration
	// MaxSessions is how many SFTP sessions one SSH connection carries at
	// once (OpenSSH's MaxSessions is 10).
	MaxSessions int
	// Logger notes what the dialer learns of the server; nil discards.
	Logger *slog.Logger
}

// DefaultTimeout applies when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Conn is one logged-in SSH connection and the SFTP sessions it carries.
type Conn struct {
	opts    Options
	ssh     *ssh.Client
	ext     extensions
	created time.Time
	// maxSessions is Options.MaxSessions, or 1 on a server that mixes up
	// concurrent sessions (oneSessionServer).
	maxSessions int

	mu       sync.Mutex
	inUse    int // sessions open
	lastUsed time.Time
	// readers is how many large files are being read (Reader.pipelined),
	// which share the connection's read budget.
	readers atomic.Int32

	closed   atomic.Bool
	closeErr atomic.Pointer[error] // why the connection ended, when we ended it
	done     chan struct{}         // closed when the SSH connection ends
}

// extensions are the SFTP extensions the server announced, read once from
// the first session.
type extensions struct {
	once        sync.Once
	posixRename bool
}

// Dialer opens connections to one server. Its host key check is built
// once, so a bad known_hosts file or fingerprint fails at start-up, not at
// the first transfer.
type Dialer struct {
	opts Options
	keys *verifier
	// algorithms, once a handshake matched, is the host key algorithm that
	// did: later dials ask for it first and skip the search.
	algorithms atomic.Pointer[[]string]
	// oneSession is set once a connection found a server that carries one
	// session per connection.
	oneSession atomic.Bool

	// mu guards hostKey: dials set it while the pool's reports read it.
	mu sync.Mutex
	// hostKey is the key the server offered on the last handshake that
	// made a connection (OfferedKey.String); empty before the first.
	hostKey string
}

// oneSessionServer reports whether a server, by the version it announces,
// corrupts SFTP requests when one connection carries several sessions:
// ProFTPD's mod_sftp reassembles requests split across SSH packets in one
// buffer per connection, not per channel, so two sessions writing at once
// interleave into garbage: "Invalid handle", then a dropped connection
// (proftpd/proftpd#1897; seen here with ProFTPD 1.3.8).
func oneSessionServer(version string) bool {
	return strings.HasPrefix(version, "SSH-2.0-mod_sftp")
}

// SessionsPerConnection is how many sessions a connection carries:
// Options.MaxSessions, or 1 once a server that mixes up concurrent
// sessions was met.
func (d *Dialer) SessionsPerConnection() int {
	if d.oneSession.Load() {
		return 1
	}
	return d.opts.MaxSessions
}

// HostKey is the key the server offered on the last connection Dial made,
// its type and SHA256 fingerprint as ssh-keygen -l prints it
// ("ssh-ed25519 SHA256:..."); empty before the first. A failed handshake
// (a key that matched none known) leaves it as it was. The pool's reports
// carry it to ListEndpoints.
func (d *Dialer) HostKey() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hostKey
}

func (d *Dialer) setHostKey(k OfferedKey) {
	d.mu.Lock()
	d.hostKey = k.String()
	d.mu.Unlock()
}

// NewDialer checks the options.
func NewDialer(opts Options) (*Dialer, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = opts.Timeout
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 1
	}
	hk, err := opts.HostKeys.forAddr(opts.Addr)
	if err != nil {
		return nil, invalidConfig(opts, err)
	}
	return &Dialer{opts: opts, keys: hk}, nil
}

// Dial connects, verifies the host key and logs in. Failures are
// classified (see classifyDial).
//
// A server with several host keys offers one, picked from the algorithms
// the client asks for; when the key offered is not the one known but
// fingerprints name keys of unknown type, Dial asks again without that
// type, until a known key is offered or no type is left, as ssh-keyscan
// goes through the types. The algorithm that matched is remembered.
func (d *Dialer) Dial(ctx context.Context) (*Conn, error) {
	algorithms := d.keys.algorithms
	if p := d.algorithms.Load(); p != nil {
		algorithms = *p
	}
	var excluded []string
	var mismatch *HostKeyError
	for {
		c, key, err := d.dial(ctx, algorithms)
		if err == nil {
			if d.algorithms.Load() == nil {
				d.algorithms.Store(&[]string{key.Type})
			}
			d.setHostKey(key)
			d.learn(c)
			return c, nil
		}
		var hke *HostKeyError
		if !errors.As(err, &hke) || !d.keys.search {
			if mismatch != nil && isNoCommonHostKey(err) {
				// Every key the server has was offered; none matched.
				return nil, classifyDial(d.opts, mismatch)
			}
			return nil, err
		}
		if mismatch == nil {
			mismatch = hke
		} else {
			mismatch.Offered = append(mismatch.Offered, hke.Offered...)
		}
		excluded = append(excluded, algorithmsFor(hke.Offered[0].Type)...)
		algorithms = slices.DeleteFunc(ssh.SupportedAlgorithms().HostKeys, func(a string) bool { return slices.Contains(excluded, a) })
		if len(algorithms) == 0 {
			return nil, classifyDial(d.opts, mismatch)
		}
	}
}

// learn remembers that the server carries one session per connection,
// saying so once when more were configured.
func (d *Dialer) learn(c *Conn) {
	if c.maxSessions >= d.opts.MaxSessions || !d.oneSession.CompareAndSwap(false, true) {
		return
	}
	if l := d.opts.Logger; l != nil {
		l.Warn("SFTP server mixes up concurrent sessions on one SSH connection (ProFTPD mod_sftp, proftpd/proftpd#1897): one session per connection from now on; set max_sessions_per_connection = 1 on the endpoint so the dispatchers plan for it",
			"endpoint", d.opts.Endpoint, "server_version", c.ServerVersion(), "max_sessions_per_connection", d.opts.MaxSessions)
	}
}

// dial makes one connection, returning the host key the server offered
// and the check accepted.
func (d *Dialer) dial(ctx context.Context, algorithms []string) (c *Conn, accepted OfferedKey, err error) {
	opts := d.opts
	cfg := &ssh.ClientConfig{
		User: opts.User,
		Auth: authMethods(opts),
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			if err := d.keys.callback(host, remote, key); err != nil {
				return err
			}
			accepted = offeredKey(key)
			return nil
		},
		HostKeyAlgorithms: algorithms,
		Timeout:           opts.ConnectTimeout,
	}
	nd := net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	nc, err := nd.DialContext(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, OfferedKey{}, classifyDial(opts, err)
	}
	// The handshake and login have no context of their own: a deadline on
	// the socket bounds them, and ctx ending closes it.
	_ = nc.SetDeadline(time.Now().Add(opts.ConnectTimeout))
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, opts.Addr, cfg)
	stopped := stop()
	if err != nil {
		_ = nc.Close()
		if !stopped && ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, OfferedKey{}, classifyDial(opts, err)
	}
	_ = nc.SetDeadline(time.Time{})
	c = &Conn{opts: opts, ssh: ssh.NewClient(sc, chans, reqs), created: time.Now(), lastUsed: time.Now(), done: make(chan struct{}), maxSessions: opts.MaxSessions}
	if oneSessionServer(c.ServerVersion()) {
		c.maxSessions = 1
	}
	go func() {
		_ = c.ssh.Wait()
		c.closed.Store(true)
		close(c.done)
	}()
	return c, accepted, nil
}

func authMethods(o Options) []ssh.AuthMethod {
	var m []ssh.AuthMethod
	if o.Signer != nil {
		m = append(m, ssh.PublicKeys(o.Signer))
	}
	if o.Password != "" {
		pw := o.Password
		m = append(m, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range answers {
				answers[i] = pw
			}
			return answers, nil
		}))
	}
	return m
}

// String names the server, for messages.
func (c *Conn) String() string { return "sftp://" + c.opts.Addr }

// ServerVersion is the version the server announced (SSH-2.0-OpenSSH_9.2p1).
func (c *Conn) ServerVersion() string { return string(c.ssh.ServerVersion()) }

// errConnFull is Session's error when the connection carries all the
// sessions it may.
var errConnFull = errors.New("all sessions of the connection are in use")

// Broken reports whether the connection has ended or been closed.
func (c *Conn) Broken() bool { return c.closed.Load() }

// PeerClosed reports whether the server hung up: the SSH layer notices at
// once, so this is Broken.
func (c *Conn) PeerClosed() bool { return c.Broken() }

// LastUsed is when a session last ended.
func (c *Conn) LastUsed() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastUsed
}

// NoOp checks the server still answers, with OpenSSH's keepalive request
// (any server answers it, if only with a failure reply).
func (c *Conn) NoOp(ctx context.Context) error {
	return c.guard(ctx, "keepalive", func() error {
		_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
		return err
	})
}

// Close ends the connection and its sessions.
func (c *Conn) Close() error {
	c.closed.Store(true)
	return c.ssh.Close()
}

// kill ends a connection whose server stopped answering, recording why for
// the calls it unblocks.
func (c *Conn) kill(why error) {
	c.closeErr.CompareAndSwap(nil, &why)
	_ = c.Close()
}

// InUse is how many sessions are open.
func (c *Conn) InUse() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inUse
}

// Session opens an SFTP session (a channel) on this connection; Close it
// when done.
func (c *Conn) Session(ctx context.Context) (*Session, error) {
	c.mu.Lock()
	if c.inUse >= c.maxSessions {
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: %w (%d)", c, errConnFull, c.maxSessions)
	}
	c.inUse++
	c.mu.Unlock()
	var cl *sftp.Client
	err := c.guard(ctx, "open an SFTP session", func() error {
		var err error
		cl, err = sftp.NewClient(c.ssh, clientOptions...)
		return err
	})
	if err != nil {
		c.sessionEnded()
		return nil, classifyOp(c, "open an SFTP session on", "", err)
	}
	c.ext.once.Do(func() {
		_, c.ext.posixRename = cl.HasExtension("posix-rename@openssh.com")
	})
	sess := &Session{conn: c, client: cl}
	sess.lastUsed.Store(time.Now().UnixNano())
	return sess, nil
}

func (c *Conn) sessionEnded() {
	c.mu.Lock()
	c.inUse--
	c.lastUsed = time.Now()
	c.mu.Unlock()
}

// errHung is the cause of a call the watchdog ended.
var errHung = errors.New("server stopped answering")

// guard runs a call on the connection (keepalive, opening a session),
// closing the connection if the server does not answer within the timeout:
// pkg/sftp's and x/crypto/ssh's calls then return. ctx is checked first
// but does not end the call: that would close the other sessions' shared
// connection for one caller's sake, and the timeout bounds the wait.
func (c *Conn) guard(ctx context.Context, what string, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	timer := time.AfterFunc(c.opts.Timeout, func() {
		c.kill(fmt.Errorf("%w: no reply to %s within %s", errHung, what, c.opts.Timeout))
	})
	err := fn()
	timer.Stop()
	return c.why(err)
}

// why prefers the reason the connection was ended to the error a call
// returned because of it ("use of closed network connection").
func (c *Conn) why(err error) error {
	if err == nil {
		return nil
	}
	if p := c.closeErr.Load(); p != nil {
		return *p
	}
	return err
}
