//go:build e2e && chaos

package realstack

// A loopback TCP proxy between an agent and a dispatcher, to make the
// agent a zombie: its FTP transfers go on while its lease stream is
// frozen (Stall: nothing passes either way, then everything that waited is
// delivered, stale tokens included) or cut (Cut: bytes are swallowed both
// ways, as in a network partition, until Heal closes every connection and
// lets new ones through).

import (
	"io"
	"net"
	"sync"
	"testing"
)

type chaosProxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool
	cut     bool
	closed  bool
	pairs   map[*proxyPair]struct{}
	// Accepted counts connections accepted; Severed those closed by Heal.
	accepted, severed int
}

type proxyPair struct {
	client, server net.Conn
	once           sync.Once
}

func (p *proxyPair) close() {
	p.once.Do(func() {
		p.client.Close()
		if p.server != nil {
			p.server.Close()
		}
	})
}

func newChaosProxy(t testing.TB, target string) *chaosProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &chaosProxy{target: target, ln: ln, pairs: map[*proxyPair]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	return p
}

// Addr is where the agent dials.
func (p *chaosProxy) Addr() string { return p.ln.Addr().String() }

func (p *chaosProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		pair := &proxyPair{client: c}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.accepted++
		p.pairs[pair] = struct{}{}
		cut := p.cut
		p.mu.Unlock()
		if cut {
			// Partitioned: the connection is accepted (a SYN got through
			// before) but nothing reaches the dispatcher.
			go p.swallow(pair, c)
			continue
		}
		go p.connect(pair)
	}
}

func (p *chaosProxy) connect(pair *proxyPair) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(pair)
		return
	}
	p.mu.Lock()
	pair.server = s
	_, alive := p.pairs[pair]
	p.mu.Unlock()
	if !alive {
		s.Close()
		return
	}
	go p.pipe(pair, pair.client, s)
	go p.pipe(pair, s, pair.client)
}

// pipe copies src to dst, holding data while stalled and swallowing it
// while cut.
func (p *chaosProxy) pipe(pair *proxyPair, src, dst net.Conn) {
	defer p.drop(pair)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.stalled && !p.cut && !p.closed {
				p.cond.Wait()
			}
			cut := p.cut
			p.mu.Unlock()
			if !cut {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// swallow reads and discards a connection accepted while cut.
func (p *chaosProxy) swallow(pair *proxyPair, c net.Conn) {
	defer p.drop(pair)
	_, _ = io.Copy(io.Discard, c)
}

func (p *chaosProxy) drop(pair *proxyPair) {
	pair.close()
	p.mu.Lock()
	delete(p.pairs, pair)
	p.mu.Unlock()
}

// Stall freezes every connection both ways until Unstall.
func (p *chaosProxy) Stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

// Unstall delivers what waited and lets data flow again.
func (p *chaosProxy) Unstall() {
	p.mu.Lock()
	p.stalled = false
	p.mu.Unlock()
	p.cond.Broadcast()
}

// Cut swallows everything both ways, on open and new connections, until
// Heal: the agent and the dispatcher each see a peer gone silent.
func (p *chaosProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
	p.cond.Broadcast()
}

// Heal closes every connection that lived through the cut (their streams
// lost bytes) and forwards new ones again. It returns how many it closed.
func (p *chaosProxy) Heal() int {
	p.mu.Lock()
	var old []*proxyPair
	for pair := range p.pairs {
		old = append(old, pair)
	}
	p.cut = false
	p.severed += len(old)
	p.mu.Unlock()
	for _, pair := range old {
		pair.close()
	}
	return len(old)
}

// Close stops the proxy and closes every connection.
func (p *chaosProxy) Close() {
	p.mu.Lock()
	p.closed = true
	var all []*proxyPair
	for pair := range p.pairs {
		all = append(all, pair)
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	p.ln.Close()
	for _, pair := range all {
		pair.close()
	}
}
