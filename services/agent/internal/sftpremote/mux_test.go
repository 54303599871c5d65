package sftpremote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/sftptest"
)

func newMux(t *testing.T, srv *sftptest.Server, sessions int) *Mux {
	t.Helper()
	o := options(srv)
	o.MaxSessions = sessions
	d, err := NewDialer(o)
	if err != nil {
		t.Fatal(err)
	}
	return NewMux(d)
}

func waitOpen(t *testing.T, srv *sftptest.Server, want int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for srv.Open() != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := srv.Open(); got != want {
		t.Fatalf("server has %d connections open, want %d", got, want)
	}
}

func TestMuxPacksSessions(t *testing.T) {
	srv := sftptest.Start(t)
	m := newMux(t, srv, 2)
	ctx := context.Background()
	var hs []*Handle
	for range 5 {
		h, err := m.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if m.Connections() != 3 {
		t.Fatalf("5 sessions of 2 per connection on %d connections", m.Connections())
	}
	waitOpen(t, srv, 3)
	// Free one session on each of two connections: the next session goes
	// to one of them, not to a new connection.
	_ = hs[0].Close()
	_ = hs[2].Close()
	h, err := m.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hs[0] = h
	if m.Connections() != 3 {
		t.Fatalf("reopening took %d connections", m.Connections())
	}
	for _, h := range hs {
		_ = h.Close()
	}
	if m.Connections() != 0 {
		t.Fatalf("%d connections left after every session closed", m.Connections())
	}
	waitOpen(t, srv, 0)
}

// However many callers race, n sessions take at most ceil(n/MaxSessions)
// connections.
func TestMuxConcurrentOpens(t *testing.T) {
	srv := sftptest.Start(t)
	m := newMux(t, srv, 3)
	var wg sync.WaitGroup
	hs := make([]*Handle, 10)
	errs := make([]error, 10)
	for i := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs[i], errs[i] = m.Dial(context.Background())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Logins(); got > 4 {
		t.Fatalf("10 sessions of 3 per connection took %d logins", got)
	}
	waitOpen(t, srv, 4)
	for _, h := range hs {
		_ = h.Close()
	}
	waitOpen(t, srv, 0)
}

// A connection the server dropped is not packed into again.
func TestMuxSkipsBrokenConnections(t *testing.T) {
	srv := sftptest.Start(t)
	m := newMux(t, srv, 4)
	ctx := context.Background()
	a, err := m.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv.DropAll()
	deadline := time.Now().Add(2 * time.Second)
	for !a.PeerClosed() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	b, err := m.Dial(ctx)
	if err != nil {
		t.Fatalf("open after the drop: %v", err)
	}
	if b.Conn() == a.Conn() {
		t.Fatal("new session on the dropped connection")
	}
	_ = a.Close()
	_ = b.Close()
}

// On a server that mixes up concurrent sessions (ProFTPD's mod_sftp), each
// connection carries one session however many are configured, sessions
// reserved on a connection before it was found out move to others, and
// the connection limit holds: callers over it wait for a session to end.
func TestMuxOneSessionServer(t *testing.T) {
	srv := sftptest.Start(t, sftptest.Version("SSH-2.0-mod_sftp"))
	m := newMux(t, srv, 8)
	const limit = 3
	m.SetConnectionLimit(limit)
	ctx := context.Background()
	var wg sync.WaitGroup
	hs := make([]*Handle, limit)
	errs := make([]error, limit)
	for i := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs[i], errs[i] = m.Dial(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := m.SessionsPerConnection(); got != 1 {
		t.Fatalf("SessionsPerConnection %d on mod_sftp, want 1", got)
	}
	if q := m.QuirkNames(); len(q) != 1 || !strings.Contains(q[0], "one session per connection") {
		t.Fatalf("QuirkNames %q, want the one-session quirk", q)
	}
	seen := map[*Conn]bool{}
	for _, h := range hs {
		if seen[h.Conn()] {
			t.Fatal("two sessions share a connection to mod_sftp")
		}
		seen[h.Conn()] = true
	}
	waitOpen(t, srv, limit)

	// A fourth waits for room, then takes the connection-slot freed.
	got := make(chan error, 1)
	go func() {
		h, err := m.Dial(ctx)
		if err == nil {
			defer h.Close()
			if m.Connections() > limit {
				err = fmt.Errorf("%d connections, limit %d", m.Connections(), limit)
			}
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a session over the connection limit did not wait (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	_ = hs[0].Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting session did not get the freed room")
	}
	for _, h := range hs[1:] {
		_ = h.Close()
	}
	waitOpen(t, srv, 0)

	// A waiter gives up when its context ends.
	m.SetConnectionLimit(0)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := m.Dial(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial at limit 0: %v, want the context's deadline", err)
	}
}

// Servers other than mod_sftp keep the configured sessions per connection.
func TestMuxSessionsPerConnectionByVersion(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    int
	}{{"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", 4}, {"SSH-2.0-mod_sftp", 1}, {"SSH-2.0-mod_sftp/1.1.1", 1}} {
		srv := sftptest.Start(t, sftptest.Version(tc.version))
		m := newMux(t, srv, 4)
		h, err := m.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := m.SessionsPerConnection(); got != tc.want {
			t.Errorf("%s: %d sessions per connection, want %d", tc.version, got, tc.want)
		}
		if q := m.QuirkNames(); (len(q) > 0) != (tc.want == 1) {
			t.Errorf("%s: quirks %q", tc.version, q)
		}
		if h.Conn().ServerVersion() != tc.version {
			t.Errorf("ServerVersion %q, want %q", h.Conn().ServerVersion(), tc.version)
		}
		_ = h.Close()
	}
}
