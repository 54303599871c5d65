package sftpremote

import (
	"context"
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
// closed when its last session is.
type Mux struct {
	d *Dialer

	mu    sync.Mutex
	conns []*muxConn
}

// muxConn is a connection of the mux, or one being dialed (conn nil until
// ready is closed).
type muxConn struct {
	conn     *Conn
	err      error // the dial's, once ready
	ready    chan struct{}
	sessions int // open or reserved
}

// NewMux serves sessions through d.
func NewMux(d *Dialer) *Mux { return &Mux{d: d} }

// Dialer is the mux's dialer.
func (m *Mux) Dialer() *Dialer { return m.d }

// Connections is how many SSH connections are open or being dialed.
func (m *Mux) Connections() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

// Dial returns a new session, on a connection with room or a new one.
func (m *Mux) Dial(ctx context.Context) (*Handle, error) {
	for {
		mc, dial := m.reserve()
		if dial {
			mc.conn, mc.err = m.d.Dial(ctx)
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
		if err != nil {
			m.unreserve(mc)
			return nil, err
		}
		return &Handle{Session: s, mux: m, mc: mc}, nil
	}
}

// reserve takes a session's room on the fullest connection that has some
// (keeping the others free to close), or adds a connection to dial.
func (m *Mux) reserve() (mc *muxConn, dial bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best *muxConn
	for _, c := range m.conns {
		if c.sessions >= m.d.opts.MaxSessions || (c.conn != nil && c.conn.Broken()) {
			continue
		}
		if best == nil || c.sessions > best.sessions {
			best = c
		}
	}
	if best != nil {
		best.sessions++
		return best, false
	}
	mc = &muxConn{ready: make(chan struct{}), sessions: 1}
	m.conns = append(m.conns, mc)
	return mc, true
}

// unreserve gives a session's room back, closing the connection when it
// carries no session any more.
func (m *Mux) unreserve(mc *muxConn) {
	m.mu.Lock()
	mc.sessions--
	last := mc.sessions == 0
	if last {
		m.conns = slices.DeleteFunc(m.conns, func(c *muxConn) bool { return c == mc })
	}
	m.mu.Unlock()
	if last && mc.conn != nil {
		_ = mc.conn.Close()
	}
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
