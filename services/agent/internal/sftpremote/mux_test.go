package sftpremote

import (
	"context"
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
