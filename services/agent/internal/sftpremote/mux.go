package sftpremote

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// Mux hands out SFTP sessions packed onto as few SSH connections as it
// can: a new connection is dialed only when every open one carries
// MaxSessions sessions. So n×MaxSessions sessions never take more than n
// connections, which is what lets the dispatchers' fleet-wide connection
// quotas (max_connections) count SSH connections while an agent runs
// MaxSessions transfers on each.
//
// The agent's pool keeps the sessions (idle ones too); a connection is
// closed when its last session is. The pool also sets a connection limit
// (its quota): on a server found to carry fewer sessions per connection
// than configured, the sessions the pool let through before it learned
// that wait for room instead of opening connections beyond the quota.
type Mux struct {
	d *Dialer

	mu    sync.Mutex
	conns []*muxConn
	limit int           // connections at most; negative: no limit
	freed chan struct{} // closed, and replaced, when room may have opened
}

// muxConn is a connection of the mux, or one being dialed (conn nil until
// ready is closed).
type muxConn struct {
	conn     *Conn
	err      error // the dial's, once ready
	ready    chan struct{}
	sessions int // open or reserved
	// closing is set when its last session ended: it stays in conns,
	// counted against the limit, until closed, because the server counts
	// it until then and a quota must not be acknowledged, nor its room
	// dialed again, before that.
	closing bool
}

// NewMux serves sessions through d.
func NewMux(d *Dialer) *Mux { return &Mux{d: d, limit: -1, freed: make(chan struct{})} }

// SessionsPerConnection is the dialer's (the pool sizes itself by it).
func (m *Mux) SessionsPerConnection() int { return m.d.SessionsPerConnection() }

// QuirkNames describes what the dialer learned of the server, for the
// pool's reports (ListEndpoints shows them).
func (m *Mux) QuirkNames() []string {
	if m.d.oneSession.Load() {
		return []string{"concurrent sessions mixed up (mod_sftp): one session per connection"}
	}
	return nil
}

// HostKey is the dialer's: the key the server offered on the last
// connection, for the pool's reports (ListEndpoints shows it).
func (m *Mux) HostKey() string { return m.d.HostKey() }

// SetConnectionLimit caps the connections open or being dialed; those
// over a lowered cap close as their sessions end.
func (m *Mux) SetConnectionLimit(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.limit = max(n, 0)
	m.wakeLocked()
}

// wakeLocked wakes the callers waiting for room; m.mu is held.
func (m *Mux) wakeLocked() {
	close(m.freed)
	m.freed = make(chan struct{})
}

// Dialer is the mux's dialer.
func (m *Mux) Dialer() *Dialer { return m.d }

// Connections is how many SSH connections are open or being dialed.
func (m *Mux) Connections() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

// Dial returns a new session, on a connection with room or a new one,
// waiting while the connection limit leaves no room for one.
func (m *Mux) Dial(ctx context.Context) (*Handle, error) {
	for {
		mc, dial, freed := m.reserve()
		if mc == nil {
			select {
			case <-freed:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if dial {
			conn, err := m.d.Dial(ctx)
			m.mu.Lock() // reserve reads conn under the lock
			mc.conn, mc.err = conn, err
			m.mu.Unlock()
			close(mc.ready)
		} else {
			select {
			case <-mc.ready:
			case <-ctx.Done():
				m.unreserve(mc)
				return nil, ctx.Err()
			}
		}
		if mc.err != nil {
			m.unreserve(mc)
			return nil, mc.err
		}
		if mc.conn.Broken() {
			// Lost since it was dialed: forget it and pack elsewhere.
			m.unreserve(mc)
			continue
		}
		s, err := mc.conn.Session(ctx)
		if errors.Is(err, errConnFull) {
			// Reserved before its connection found that its server carries
			// fewer sessions: pack elsewhere.
			m.unreserve(mc)
			continue
		}
		if err != nil {
			m.unreserve(mc)
			return nil, err
		}
		return &Handle{Session: s, mux: m, mc: mc}, nil
	}
}

// reserve takes a session's room on the fullest connection that has some
// (keeping the others free to close), or adds a connection to dial; with
// neither possible under the limit it returns the channel to wait on.
func (m *Mux) reserve() (mc *muxConn, dial bool, freed <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	per := m.d.SessionsPerConnection()
	var best *muxConn
	for _, c := range m.conns {
		// per covers each connection's own maxSessions: that is 1 only on a
		// server already known to carry one session, where per is 1 too.
		if c.closing || c.sessions >= per || (c.conn != nil && c.conn.Broken()) {
			continue
		}
		if best == nil || c.sessions > best.sessions {
			best = c
		}
	}
	if best != nil {
		best.sessions++
		return best, false, nil
	}
	if m.limit >= 0 && len(m.conns) >= m.limit {
		return nil, false, m.freed
	}
	mc = &muxConn{ready: make(chan struct{}), sessions: 1}
	m.conns = append(m.conns, mc)
	return mc, true, nil
}

// unreserve gives a session's room back, closing the connection when it
// carries no session any more.
func (m *Mux) unreserve(mc *muxConn) {
	m.mu.Lock()
	mc.sessions--
	last := mc.sessions == 0
	if !last {
		m.wakeLocked()
		m.mu.Unlock()
		return
	}
	mc.closing = true
	m.mu.Unlock()
	if mc.conn != nil {
		_ = mc.conn.Close()
	}
	m.mu.Lock()
	m.conns = slices.DeleteFunc(m.conns, func(c *muxConn) bool { return c == mc })
	m.wakeLocked()
	m.mu.Unlock()
}

// Handle is a pooled SFTP session: what the agent's pool keeps, checks and
// closes, as it does FTP connections.
type Handle struct {
	*Session
	mux  *Mux
	mc   *muxConn
	once sync.Once
}

// Broken reports whether the session cannot be used again.
func (h *Handle) Broken() bool { return h.Session.Broken() }

// PeerClosed reports whether the server hung up.
func (h *Handle) PeerClosed() bool { return h.Session.Conn().Broken() }

// NoOp checks the connection still answers.
func (h *Handle) NoOp(ctx context.Context) error { return h.Session.Conn().NoOp(ctx) }

// Close ends the session, and its connection if it was the last.
func (h *Handle) Close() error {
	var err error
	h.once.Do(func() {
		err = h.Session.Close()
		h.mux.unreserve(h.mc)
	})
	return err
}

// String names the server.
func (h *Handle) String() string { return h.Session.Conn().String() }
