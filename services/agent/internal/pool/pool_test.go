package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftpquirk"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/ftptest"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/remote"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/sftpremote"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/sftptest"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSet(t testing.TB, ep *config.Endpoint, cfg Config) *Set {
	t.Helper()
	if cfg.MaxTotal == 0 {
		cfg.MaxTotal = 100
	}
	if cfg.DefaultMax == 0 {
		cfg.DefaultMax = 10
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Minute
	}
	if cfg.CheckAfter == 0 {
		cfg.CheckAfter = time.Minute
	}
	s := NewSet(cfg, []*config.Endpoint{ep}, func(ep *config.Endpoint) Dialer {
		return &remote.Dialer{Endpoint: ep, ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second, BufferSize: 64 << 10}
	}, Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { s.closeIdle(0) })
	return s
}

func TestReuseLogsInOnce(t *testing.T) {
	srv := ftptest.Start(t)
	p, _ := newSet(t, srv.Endpoint, Config{}).Pool("srv")
	ctx := context.Background()
	for range 20 {
		c, err := p.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Size(ctx, "/nope"); failure.CodeOf(err) != failure.FileNotFound {
			t.Fatalf("SIZE of a missing file: %v", err)
		}
		p.Put(c) // an FTP error reply leaves the connection usable
	}
	if n := srv.Logins(); n != 1 {
		t.Fatalf("%d logins for 20 sequential uses, want 1", n)
	}
}

func TestLimitBlocksUntilPut(t *testing.T) {
	srv := ftptest.Start(t)
	srv.Endpoint.MaxConnections = 2
	p, _ := newSet(t, srv.Endpoint, Config{}).Pool("srv")
	ctx := context.Background()
	a, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := p.Get(short); err == nil {
		t.Fatal("a third connection beyond max_connections = 2")
	}
	got := make(chan *remote.Conn)
	go func() {
		c, err := p.Get(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	time.Sleep(50 * time.Millisecond)
	p.Put(a)
	select {
	case c := <-got:
		if c != a {
			t.Error("the waiter did not get the returned connection")
		}
		p.Put(c)
	case <-time.After(2 * time.Second):
		t.Fatal("the waiter was not woken by Put")
	}
	p.Put(b)
	if n := srv.Logins(); n != 2 {
		t.Fatalf("%d logins, want 2", n)
	}
}

func TestDroppedConnectionsReplaced(t *testing.T) {
	srv := ftptest.Start(t)
	// Check every idle connection before reuse, as one idle past the
	// server's timeout would be.
	p, _ := newSet(t, srv.Endpoint, Config{CheckAfter: time.Nanosecond}).Pool("srv")
	ctx := context.Background()
	c, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c)
	srv.DropAll() // the server went away and came back
	c, err = p.Get(ctx)
	if err != nil {
		t.Fatalf("Get after the server dropped its connections: %v", err)
	}
	if err := c.NoOp(ctx); err != nil {
		t.Fatalf("the replacement does not work: %v", err)
	}
	p.Put(c)
	if n := srv.Logins(); n != 2 {
		t.Fatalf("%d logins, want 2 (the dropped one replaced)", n)
	}
}

func TestBrokenConnectionsAreNotReturned(t *testing.T) {
	srv := ftptest.Start(t)
	s := newSet(t, srv.Endpoint, Config{})
	p, _ := s.Pool("srv")
	ctx, cancel := context.WithCancel(context.Background())
	c, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := c.NoOp(ctx); err == nil {
		t.Fatal("NoOp with a cancelled context succeeded")
	}
	if !c.Broken() {
		t.Fatal("an interrupted connection is not marked broken")
	}
	p.Put(c)
	if st := s.Stats()[0]; st.Idle != 0 || st.Busy != 0 {
		t.Fatalf("broken connection kept: %+v", st)
	}
}

func TestIdleEviction(t *testing.T) {
	srv := ftptest.Start(t)
	s := newSet(t, srv.Endpoint, Config{IdleTimeout: 50 * time.Millisecond})
	p, _ := s.Pool("srv")
	c, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c)
	time.Sleep(60 * time.Millisecond)
	s.closeIdle(s.cfg.IdleTimeout)
	if st := s.Stats()[0]; st.Idle != 0 {
		t.Fatalf("idle connection not evicted: %+v", st)
	}
	s.mu.Lock()
	total := s.total
	s.mu.Unlock()
	if total != 0 {
		t.Fatalf("agent-wide count %d after eviction", total)
	}
}

func TestWrongPasswordFailsFast(t *testing.T) {
	srv := ftptest.Start(t)
	ep := *srv.Endpoint
	ep.Password = "wrong"
	p, _ := newSet(t, &ep, Config{}).Pool("srv")
	_, err := p.Get(context.Background())
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Code != failure.AuthFailed || fe.Unreachable {
		t.Fatalf("wrong password: %v (a refused login is the task's failure, not an outage)", err)
	}
	if st := p.set.Stats()[0]; st.Busy != 0 {
		t.Fatalf("failed dial still counted: %+v", st)
	}
}

// A server that is down is unreachable: the dispatcher holds its tasks
// instead of using up their attempts.
func TestRefusedConnectionIsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := ftptest.Start(t)
	ep := *srv.Endpoint
	ep.Port = port
	p, _ := newSet(t, &ep, Config{}).Pool("srv")
	_, err = p.Get(context.Background())
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Code != failure.ConnectionError || !fe.Unreachable || fe.Endpoint != "srv" {
		t.Fatalf("connection refused: %v", err)
	}
}

func TestSetLimitClosesIdleAboveIt(t *testing.T) {
	srv := ftptest.Start(t)
	s := newSet(t, srv.Endpoint, Config{})
	p, _ := s.Pool("srv")
	ctx := context.Background()
	var conns []*remote.Conn
	for range 3 {
		c, err := p.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	p.Put(conns[0])
	p.Put(conns[1])
	s.SetLimit("srv", 1) // one busy, two idle: both idle ones must go
	if st := s.Stats()[0]; st.Open != 1 || st.Idle != 0 || st.Max != 1 {
		t.Fatalf("after SetLimit(1): %+v", st)
	}
	p.Put(conns[2])
	if st := s.Stats()[0]; st.Open != 1 || st.Idle != 1 {
		t.Fatalf("the busy one should come back as the one idle connection: %+v", st)
	}
	s.SetLimit("srv", 0)
	if st := s.Stats()[0]; st.Open != 0 {
		t.Fatalf("after SetLimit(0): %+v", st)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Get(short); err == nil {
		t.Fatal("dialed with a limit of 0")
	}
	s.SetLimit("srv", 100) // capped at the configured 10
	if st := s.Stats()[0]; st.Max != 10 {
		t.Fatalf("limit not capped by the configuration: %+v", st)
	}
}

func TestBusyWaitIsBounded(t *testing.T) {
	srv := ftptest.Start(t)
	srv.Endpoint.MaxConnections = 1
	p, _ := newSet(t, srv.Endpoint, Config{BusyWait: 200 * time.Millisecond}).Pool("srv")
	ctx := context.Background()
	held, err := p.Get(ctx) // a transfer that stalls
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := p.Get(ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("Get behind a held connection: %v, want ErrBusy", err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond || waited > 2*time.Second {
		t.Fatalf("gave up after %s, want about BusyWait (200ms)", waited)
	}
	// A connection that comes back within the wait is taken, not refused.
	go func() {
		time.Sleep(50 * time.Millisecond)
		p.Put(held)
	}()
	c, err := p.Get(ctx)
	if err != nil {
		t.Fatalf("Get while the connection came back within BusyWait: %v", err)
	}
	p.Put(c)
	if n := srv.Logins(); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
}

// cappedDialer logs in through real dials until cap connections were made,
// then refuses the way the server does.
type cappedDialer struct {
	real    Dialer
	cap     int
	made    int
	refusal *failure.Error
}

func (d *cappedDialer) Dial(ctx context.Context) (*remote.Conn, error) {
	if d.made >= d.cap {
		fe := *d.refusal
		return nil, &fe
	}
	d.made++
	return d.real.Dial(ctx)
}

func TestRefusedLoginCountsWhatTheServerAccepted(t *testing.T) {
	srv := ftptest.Start(t)
	real := &remote.Dialer{Endpoint: srv.Endpoint, ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second}
	tests := []struct {
		name     string
		refusal  *failure.Error
		wantFull bool
	}{
		{"530 with a limit text", &failure.Error{Code: failure.ConnectionError, ServerFull: true,
			Err: &textproto.Error{Code: 530, Msg: "Sorry, the maximum number of clients (2) for this user are already connected."}}, true},
		// A 421 that gives no reason while two of our logins stand: full, not down.
		{"bare 421", &failure.Error{Code: failure.ConnectionError, Unreachable: true,
			Err: &textproto.Error{Code: 421, Msg: "Service not available"}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &cappedDialer{real: real, cap: 2, refusal: tc.refusal}
			s := NewSet(Config{MaxTotal: 10, DefaultMax: 10, IdleTimeout: time.Minute, CheckAfter: time.Minute},
				[]*config.Endpoint{srv.Endpoint}, func(*config.Endpoint) Dialer { return d }, Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			defer s.closeIdle(0)
			p, _ := s.Pool("srv")
			ctx := context.Background()
			var held []*remote.Conn
			for range 2 {
				c, err := p.Get(ctx)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, c)
			}
			_, err := p.Get(ctx)
			var fe *failure.Error
			if !errors.As(err, &fe) || fe.ServerFull != tc.wantFull || fe.Unreachable || fe.Accepted != 2 {
				t.Fatalf("third login: %+v, want server full with 2 accepted", fe)
			}
			for _, c := range held {
				p.Put(c)
			}
		})
	}
	// With nothing logged in, a bare 421 is the server being down.
	d := &cappedDialer{real: real, cap: 0, refusal: tests[1].refusal}
	s := NewSet(Config{MaxTotal: 10, DefaultMax: 10, IdleTimeout: time.Minute, CheckAfter: time.Minute},
		[]*config.Endpoint{srv.Endpoint}, func(*config.Endpoint) Dialer { return d }, Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	p, _ := s.Pool("srv")
	_, err := p.Get(context.Background())
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.ServerFull || !fe.Unreachable {
		t.Fatalf("bare 421 with no connection logged in: %+v, want unreachable", fe)
	}
}

// What a connection learns about its server shows in the pool's Stats (the
// agent's pool reports, ListEndpoints).
func TestStatsReportQuirks(t *testing.T) {
	srv := ftpquirk.Start(t, ftpquirk.NoEPSV())
	ep := &config.Endpoint{ID: "quirky", Type: config.TypeFTP, Host: srv.Host(), Port: srv.Port(), User: ftpquirk.User, Password: ftpquirk.Password, TLS: config.TLSNone}
	s := newSet(t, ep, Config{})
	p, _ := s.Pool("quirky")
	c, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NameList(context.Background(), "/"); err != nil {
		t.Fatal(err)
	}
	p.Put(c)
	st := s.Stats()
	if len(st) != 1 || len(st[0].Quirks) != 1 || !strings.Contains(st[0].Quirks[0], "EPSV") {
		t.Fatalf("stats = %+v", st)
	}
	if st[0].HostKey != "" {
		t.Fatalf("an FTP endpoint reports host key %q", st[0].HostKey)
	}
}

// An SFTP pool's Stats carry the host key its server offered on the last
// connection, and none before the first.
func TestStatsReportSFTPHostKey(t *testing.T) {
	srv := sftptest.Start(t)
	ep := &config.Endpoint{ID: "sftp", Type: config.TypeSFTP, Host: "127.0.0.1", Port: srv.Port(), User: sftptest.User, Password: sftptest.Password}
	s := NewSet(Config{MaxTotal: 10, DefaultMax: 2, IdleTimeout: time.Minute, CheckAfter: time.Minute}, nil, nil, Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	d, err := sftpremote.NewDialer(sftpremote.Options{Endpoint: ep.ID, Addr: srv.Addr, User: ep.User, Password: sftptest.Password,
		HostKeys: sftpremote.HostKeys{Fingerprints: []string{srv.Fingerprint(0)}}, Timeout: 2 * time.Second, MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	p := Add(s, ep, sftpremote.NewMux(d), 2)
	t.Cleanup(func() { s.closeIdle(0) })
	if st := s.Stats(); len(st) != 1 || st[0].HostKey != "" {
		t.Fatalf("before any connection: stats = %+v, want no host key", st)
	}
	h, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Put(h)
	want := srv.HostKeys[0].PublicKey().Type() + " " + srv.Fingerprint(0)
	if st := s.Stats(); len(st) != 1 || st[0].HostKey != want {
		t.Fatalf("stats = %+v, want host key %q", st, want)
	}
}

// A server that hangs up after every transfer: each reuse finds the
// goodbye and logs in again, and no operation fails on a dead connection.
func TestConnectionClosedByServerIsReplacedBeforeUse(t *testing.T) {
	srv := ftpquirk.Start(t, ftpquirk.CloseAfterTransfer())
	ep := &config.Endpoint{ID: "closer", Type: config.TypeFTP, Host: srv.Host(), Port: srv.Port(), User: ftpquirk.User, Password: ftpquirk.Password, TLS: config.TLSNone}
	s := newSet(t, ep, Config{})
	p, _ := s.Pool("closer")
	ctx := context.Background()
	for i := range 5 {
		c, err := p.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Stor(ctx, "/f", strings.NewReader("payload"), 0); err != nil {
			t.Fatalf("transfer %d on a pooled connection: %v", i, err)
		}
		p.Put(c)
		time.Sleep(20 * time.Millisecond) // the server's goodbye arrives
	}
	if n := srv.Logins(); n != 5 {
		t.Fatalf("%d logins for 5 transfers on a server that closes after each", n)
	}
}

// session is a pooled C that needs no server.
type session struct{}

func (session) Broken() bool               { return false }
func (session) PeerClosed() bool           { return false }
func (session) LastUsed() time.Time        { return time.Now() }
func (session) NoOp(context.Context) error { return nil }
func (session) Close() error               { return nil }

// learningDialer opens sessions and, like the SFTP mux on ProFTPD's
// mod_sftp, learns at its first dial that its server carries one session
// per connection.
type learningDialer struct {
	per    atomic.Int64
	mu     sync.Mutex
	limits []int // SetConnectionLimit's arguments
}

func (d *learningDialer) Dial(context.Context) (session, error) {
	d.per.Store(1)
	return session{}, nil
}

func (d *learningDialer) SessionsPerConnection() int { return int(d.per.Load()) }

func (d *learningDialer) SetConnectionLimit(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.limits = append(d.limits, n)
}

func (d *learningDialer) lastLimit() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.limits[len(d.limits)-1]
}

// A pool of sessions sizes itself by the sessions its dialer's connections
// carry now, not by the configured number, and keeps the dialer's
// connection limit at its quota.
func TestSessionsPerConnectionLearnedShrinkThePool(t *testing.T) {
	ep := &config.Endpoint{ID: "s", Type: config.TypeSFTP, MaxConnections: 2}
	s := NewSet(Config{MaxTotal: 100, DefaultMax: 10, IdleTimeout: time.Minute, CheckAfter: time.Minute, BusyWait: 50 * time.Millisecond},
		nil, nil, Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	d := &learningDialer{}
	d.per.Store(4)
	p := Add(s, ep, DialerOf[session](d), 4)
	if got := d.lastLimit(); got != 2 {
		t.Fatalf("connection limit %d at start, want max_connections 2", got)
	}
	if st := p.stats(); st.Max != 8 || st.SessionsPerConnection != 4 {
		t.Fatalf("before the first dial: Max %d, SessionsPerConnection %d; want 2 connections × 4 sessions", st.Max, st.SessionsPerConnection)
	}
	ctx := context.Background()
	var held []session
	for range 2 {
		c, err := p.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if _, err := p.Get(ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("third session on a one-session server with 2 connections: %v, want ErrBusy", err)
	}
	if st := p.stats(); st.Max != 2 || st.SessionsPerConnection != 1 {
		t.Fatalf("once the server was found out: Max %d, SessionsPerConnection %d (what the dispatchers are told); want 2 and 1", st.Max, st.SessionsPerConnection)
	}
	s.SetLimit("s", 1)
	if got := d.lastLimit(); got != 1 {
		t.Fatalf("connection limit %d after a quota of 1", got)
	}
	s.SetLimit("s", 5)
	if got := d.lastLimit(); got != 2 {
		t.Fatalf("connection limit %d after a quota of 5, want max_connections 2", got)
	}
	for _, c := range held {
		p.Put(c)
	}
	s.closeIdle(0)
}

// slowConn's Close takes as long as its closer lets it, like a QUIT to a
// server slow to let go; the server counts it until then.
type slowConn struct {
	closer *slowCloser
}

func (slowConn) Broken() bool               { return false }
func (slowConn) PeerClosed() bool           { return false }
func (slowConn) LastUsed() time.Time        { return time.Time{} }
func (slowConn) NoOp(context.Context) error { return nil }
func (c slowConn) Close() error {
	c.closer.started <- struct{}{}
	<-c.closer.release
	c.closer.open.Add(-1)
	return nil
}

type slowCloser struct {
	open    atomic.Int64 // connections the "server" counts
	started chan struct{}
	release chan struct{}
}

func (d *slowCloser) Dial(context.Context) (slowConn, error) {
	d.open.Add(1)
	return slowConn{closer: d}, nil
}

// A connection being closed keeps its room and counts as open until its
// Close returns: freeing its room first let another task log in while the
// server still counted the old one (the chaos suite saw pure-ftpd hold 7
// connections against max_connections 6), and reporting it gone first let
// the agent acknowledge a lowered quota early.
func TestClosingConnectionsCountUntilClosed(t *testing.T) {
	for name, closeOne := range map[string]func(s *Set){
		"quota lowered": func(s *Set) { s.SetLimit("slow", 0) },
		"idle timeout":  func(s *Set) { s.closeIdle(0) },
		"agent-wide limit": func(s *Set) {
			p, _ := s.pools["slow"].(*PoolOf[slowConn])
			p.closeOneIdle()
		},
	} {
		t.Run(name, func(t *testing.T) {
			ep := &config.Endpoint{ID: "slow", Type: config.TypeFTP, MaxConnections: 1}
			s := NewSet(Config{MaxTotal: 10, DefaultMax: 10, IdleTimeout: time.Minute, CheckAfter: time.Minute, BusyWait: 50 * time.Millisecond},
				nil, nil, Hooks{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			d := &slowCloser{started: make(chan struct{}, 2), release: make(chan struct{})}
			p := Add(s, ep, DialerOf[slowConn](d), 1)
			s.SetLimit("slow", 1)
			c, err := p.Get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			p.Put(c)
			closed := make(chan struct{})
			go func() { closeOne(s); close(closed) }()
			<-d.started
			if st := p.stats(); st.Open != 1 {
				t.Fatalf("Open = %d while the connection is still closing, want 1", st.Open)
			}
			if name != "quota lowered" {
				if _, err := p.Get(context.Background()); !errors.Is(err, ErrBusy) {
					t.Fatalf("Get while the only connection allowed is closing: %v, want ErrBusy", err)
				}
			}
			if n := d.open.Load(); n != 1 {
				t.Fatalf("the server counts %d connections, want 1", n)
			}
			close(d.release)
			<-closed
			if st := p.stats(); st.Open != 0 {
				t.Fatalf("Open = %d after the close, want 0", st.Open)
			}
			c, err = p.Get(context.Background())
			if name == "quota lowered" {
				if err == nil {
					t.Fatal("dialed with a quota of 0")
				}
				return
			}
			if err != nil {
				t.Fatalf("Get after the close: %v", err)
			}
			p.Put(c)
			s.closeIdle(0) // released: closes at once
		})
	}
}
