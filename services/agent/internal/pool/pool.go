// Package pool keeps logged-in FTP connections per endpoint. A login costs
// 50 to 100 times a small transfer, so the pool is the product: connections
// are reused most-recently-used first, checked with NOOP when they sat idle
// long enough for a server to have dropped them, evicted when idle past the
// session timeout, and replaced when broken.
package pool

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/remote"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// Conn is what a pool keeps: a logged-in FTP connection, or an SFTP
// session on a shared SSH connection.
type Conn interface {
	// Broken reports whether it cannot be used again.
	Broken() bool
	// PeerClosed reports whether the server hung up since its last use.
	PeerClosed() bool
	// LastUsed is when it last did work: the idle clock.
	LastUsed() time.Time
	// NoOp checks the server still answers.
	NoOp(ctx context.Context) error
	Close() error
}

// DialerOf opens a logged-in connection.
type DialerOf[C Conn] interface {
	Dial(ctx context.Context) (C, error)
}

// Dialer opens FTP connections.
type Dialer = DialerOf[*remote.Conn]

// Pool is an FTP endpoint's pool.
type Pool = PoolOf[*remote.Conn]

// member is what a Set does with each pool, whatever it keeps.
type member interface {
	endpoint() *config.Endpoint
	setLimit(n int) (dropped int)
	closeOneIdle() bool
	closeIdle(age time.Duration) int
	stats() Stats
}

// Config tunes every pool of a Set.
type Config struct {
	// MaxTotal caps connections over all endpoints (pool.max_sessions_per_pod).
	MaxTotal int
	// DefaultMax caps connections per endpoint without max_connections.
	DefaultMax int
	// IdleTimeout closes connections idle this long.
	IdleTimeout time.Duration
	// CheckAfter sends NOOP before reusing a connection idle this long.
	CheckAfter time.Duration
	// BusyWait bounds how long Get waits while every connection its limit
	// allows is in use (lease.connection_wait); 0 waits as long as ctx.
	BusyWait time.Duration
}

// ErrBusy is Get's answer when every connection the pool may hold stayed
// in use for Config.BusyWait: the caller should not wait behind them (one
// may be stalled until its idle timeout) but hand its work back, to run on
// a connection of its own.
var ErrBusy = errors.New("every connection the quota allows stayed busy")

// Set holds the pools of all FTP endpoints.
type Set struct {
	cfg    Config
	logger *slog.Logger
	pools  map[string]member
	hooks  Hooks

	mu      sync.Mutex
	total   int // connections open or being dialed, over all pools
	waiters []chan struct{}
}

// Hooks observe pool events, for metrics and traces.
type Hooks struct {
	Dialed func(endpoint string, d time.Duration, err error)
	// Tracer traces checkouts and dials; nil means none.
	Tracer trace.Tracer
}

// PoolOf is one endpoint's connections.
type PoolOf[C Conn] struct {
	set    *Set
	ep     *config.Endpoint
	dialer DialerOf[C]
	// perConn is how many pooled Cs one unit of the dispatchers' quota
	// stands for: 1 for FTP; for SFTP, the sessions an SSH connection
	// carries (the quota counts SSH connections), unless the dialer has
	// learned its server carries fewer (sessionsPerConnection).
	perConn int
	limit   int // the configured limit, in units
	quota   int // the dispatchers' quotas, in units

	mu      sync.Mutex
	idle    []C // most recently used last
	open    int // idle + busy + dialing + closing
	busy    int // includes dialing
	dialing int
	// closing counts connections taken out of idle to be closed: they
	// stay in open until closed, because the server counts them until then
	// (see discard), and a quota must not be acknowledged, nor their room
	// dialed again, before that.
	closing int
}

// NewSet builds a pool per FTP endpoint; dialer makes each endpoint's
// dialer. Add adds pools of other kinds.
func NewSet(cfg Config, endpoints []*config.Endpoint, dialer func(*config.Endpoint) Dialer, hooks Hooks, logger *slog.Logger) *Set {
	s := &Set{cfg: cfg, logger: logger.With("component", "pool"), pools: map[string]member{}, hooks: hooks}
	for _, ep := range endpoints {
		if ep.Type == config.TypeFTP {
			Add(s, ep, dialer(ep), 1)
		}
	}
	return s
}

// Add adds an endpoint's pool of Cs, perConn of them to a unit of the
// dispatchers' quota (and of max_connections). Call it before the set is
// used.
func Add[C Conn](s *Set, ep *config.Endpoint, dialer DialerOf[C], perConn int) *PoolOf[C] {
	limit := ep.MaxConnections
	if limit <= 0 {
		limit = s.cfg.DefaultMax
	}
	perConn = max(perConn, 1)
	p := &PoolOf[C]{set: s, ep: ep, dialer: dialer, perConn: perConn, limit: limit, quota: limit}
	if cl, ok := dialer.(connectionLimiter); ok {
		cl.SetConnectionLimit(limit)
	}
	s.pools[ep.ID] = p
	return p
}

// sessionsPerConnection is a dialer whose server may carry fewer sessions
// on a connection than configured (ProFTPD's mod_sftp: one).
type sessionsPerConnection interface{ SessionsPerConnection() int }

// connectionLimiter is a dialer that shares connections between Cs and
// keeps their number within the pool's units: while it learns that its
// server carries fewer sessions per connection than the pool assumed, the
// Cs the pool let through must wait rather than open more connections.
type connectionLimiter interface{ SetConnectionLimit(n int) }

// maxLocked is how many Cs the pool may hold now; p.mu is held.
func (p *PoolOf[C]) maxLocked() int {
	per := p.perConn
	if sp, ok := p.dialer.(sessionsPerConnection); ok {
		per = min(per, max(sp.SessionsPerConnection(), 1))
	}
	return min(p.quota, p.limit) * per
}

// Pool returns an FTP endpoint's pool.
func (s *Set) Pool(id string) (*Pool, bool) { return Lookup[*remote.Conn](s, id) }

// Lookup returns an endpoint's pool of Cs.
func Lookup[C Conn](s *Set, id string) (*PoolOf[C], bool) {
	p, ok := s.pools[id].(*PoolOf[C])
	return p, ok
}

func (p *PoolOf[C]) endpoint() *config.Endpoint { return p.ep }

// Get returns a connection for exclusive use; give it back with Put.
func (p *PoolOf[C]) Get(ctx context.Context) (C, error) {
	if t := p.set.hooks.Tracer; t != nil {
		var span trace.Span
		ctx, span = t.Start(ctx, "pool checkout", trace.WithAttributes(p.attrs()...))
		defer span.End()
		c, err := p.get(ctx)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		return c, err
	}
	return p.get(ctx)
}

func (p *PoolOf[C]) attrs() []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("ftp_pooler.endpoint", p.ep.ID),
		semconv.ServerAddress(p.ep.Host), semconv.ServerPort(p.ep.Port),
		semconv.NetworkTransportTCP,
	}
}

func (p *PoolOf[C]) get(ctx context.Context) (C, error) {
	var none C
	var giveUp time.Time
	for {
		if c, ok := p.takeIdle(); ok {
			if c.PeerClosed() {
				// Hung up since its last use (servers that close after each
				// transfer or idle out before us): replace it before a task's
				// first command fails on it.
				p.discard(c)
				continue
			}
			if time.Since(c.LastUsed()) < p.set.cfg.CheckAfter {
				return c, nil
			}
			if err := c.NoOp(ctx); err == nil {
				return c, nil
			}
			// The server dropped it while it sat idle: replace it.
			p.discard(c)
			if ctx.Err() != nil {
				return none, ctx.Err()
			}
			continue
		}
		if p.reserve() {
			return p.dial(ctx)
		}
		now := time.Now()
		if giveUp.IsZero() {
			giveUp = now.Add(p.set.cfg.BusyWait)
		}
		if p.set.cfg.BusyWait > 0 && !now.Before(giveUp) {
			return none, ErrBusy
		}
		wait := time.Second
		if p.set.cfg.BusyWait > 0 {
			wait = min(wait, giveUp.Sub(now))
		}
		if err := p.set.wait(ctx, wait); err != nil {
			return none, err
		}
	}
}

func (p *PoolOf[C]) takeIdle() (C, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var none C
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle[n-1] = none
		p.idle = p.idle[:n-1]
		p.busy++
		return c, true
	}
	return none, false
}

// reserve claims room for one more connection: under the endpoint's limit
// and the agent-wide one, closing another endpoint's idle connection when
// only the agent-wide limit is in the way.
func (p *PoolOf[C]) reserve() bool {
	p.mu.Lock()
	if p.open >= p.maxLocked() {
		p.mu.Unlock()
		return false
	}
	p.open++
	p.busy++
	p.mu.Unlock()
	if p.set.claim(p) {
		return true
	}
	p.mu.Lock()
	p.open--
	p.busy--
	p.mu.Unlock()
	return false
}

func (p *PoolOf[C]) dial(ctx context.Context) (C, error) {
	var span trace.Span
	if t := p.set.hooks.Tracer; t != nil {
		ctx, span = t.Start(ctx, "connect", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(p.attrs()...))
		defer span.End()
	}
	start := time.Now()
	p.mu.Lock()
	p.dialing++
	p.mu.Unlock()
	c, err := p.dialer.Dial(ctx)
	p.mu.Lock()
	p.dialing--
	p.mu.Unlock()
	if err != nil {
		err = p.judgeRefusal(ctx, err)
	}
	if err != nil && span != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	if p.set.hooks.Dialed != nil {
		p.set.hooks.Dialed(p.ep.ID, time.Since(start), err)
	}
	if err != nil {
		p.release()
		var none C
		return none, err
	}
	return c, nil
}

// judgeRefusal completes a refused login's failure with what only the pool
// knows: how many connections the server accepted before it refused this
// one (the dispatcher learns the endpoint's real limit from it), and, for a
// 421 that gave no reason, whether the server is up: with connections
// logged in it is, so it is full, not down.
func (p *PoolOf[C]) judgeRefusal(ctx context.Context, err error) error {
	var fe *failure.Error
	bare := remote.IsBareRefusal(err)
	if !errors.As(err, &fe) || !(fe.ServerFull || bare) {
		return err
	}
	loggedIn := p.loggedInSettled(ctx)
	if loggedIn > 0 && bare {
		fe.Unreachable, fe.ServerFull = false, true
	}
	if fe.ServerFull {
		fe.Accepted = loggedIn
	}
	return err
}

// loggedInSettled counts the pool's logged-in connections, other than the
// refused one, once the logins racing it have ended (for at most a
// second): counted mid-burst, logins about to succeed would be missed and
// the limit learned too low.
func (p *PoolOf[C]) loggedInSettled(ctx context.Context) int {
	deadline := time.Now().Add(time.Second)
	for {
		p.mu.Lock()
		dialing, loggedIn := p.dialing, p.open-p.dialing-1
		p.mu.Unlock()
		if dialing == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return loggedIn
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Put returns a connection; a broken one, or one above a limit that
// shrank, is closed and its room freed.
func (p *PoolOf[C]) Put(c C) {
	p.mu.Lock()
	over := p.open-p.closing > p.maxLocked()
	p.mu.Unlock()
	if c.Broken() || over {
		p.discard(c)
		return
	}
	p.mu.Lock()
	p.busy--
	p.idle = append(p.idle, c)
	p.mu.Unlock()
	p.set.notify()
}

// SetLimit sets how many connections the pool may hold (the dispatchers'
// quotas, in units of perConn), capped by the configured limit. Idle
// connections above a lower limit are closed at once, busy ones when they
// come back.
func (s *Set) SetLimit(id string, n int) {
	p, ok := s.pools[id]
	if !ok {
		return
	}
	dropped := p.setLimit(n)
	for range dropped {
		s.free()
	}
	if dropped == 0 {
		s.notify() // a raised limit may let a waiter dial
	}
}

func (p *PoolOf[C]) setLimit(n int) int {
	if cl, ok := p.dialer.(connectionLimiter); ok {
		cl.SetConnectionLimit(min(n, p.limit))
	}
	p.mu.Lock()
	p.quota = n
	var drop []C
	for p.open-p.closing > p.maxLocked() && len(p.idle) > 0 {
		drop = append(drop, p.idle[0])
		p.idle = slices.Delete(p.idle, 0, 1)
	}
	p.closing += len(drop)
	p.mu.Unlock()
	p.closeTaken(drop)
	return len(drop)
}

// closeTaken closes connections taken out of idle (counted in closing),
// then gives up their room.
func (p *PoolOf[C]) closeTaken(cs []C) {
	for _, c := range cs {
		_ = c.Close()
	}
	p.mu.Lock()
	p.open -= len(cs)
	p.closing -= len(cs)
	p.mu.Unlock()
}

// discard closes a connection taken from the pool.
// discard closes a connection before giving up its slot: closing it in the
// background let the slot's next connection log in while the server still
// counted the old one, one over the endpoint's limit for a few milliseconds
// (seen with ss by the chaos suite). Close bounds its QUIT to a second.
func (p *PoolOf[C]) discard(c C) {
	_ = c.Close() // best effort QUIT; the socket closes either way
	p.release()
}

func (p *PoolOf[C]) release() {
	p.mu.Lock()
	p.open--
	p.busy--
	p.mu.Unlock()
	p.set.free()
}

// Stats is a pool's state.
type Stats struct {
	Endpoint              string
	Open, Idle, Busy, Max int
	// Connections and IdleConnections are in units of the dispatchers'
	// quota: Open and Idle for FTP; for SFTP, whose pool keeps sessions,
	// SSH connections and the idle sessions' whole connections' worth.
	Connections, IdleConnections int
	// Quirks are what the endpoint's connections found in its server.
	Quirks []string
	// HostKey is the key an SFTP server offered on the last connection
	// ("ssh-ed25519 SHA256:..."); empty for FTP and before the first.
	HostKey string
	// SessionsPerConnection is, for SFTP, the sessions one connection
	// carries: as configured, or fewer once learned from the server; 0 for
	// FTP.
	SessionsPerConnection int
}

// connectionCounter is a dialer whose Cs share connections (SFTP sessions
// on SSH connections) and counts them.
type connectionCounter interface{ Connections() int }

// quirkReporter is a Dialer that remembers its server's quirks.
type quirkReporter interface{ QuirkNames() []string }

// hostKeyReporter is a Dialer that remembers the host key its server
// offered (SFTP).
type hostKeyReporter interface{ HostKey() string }

// Stats reports every pool's state.
func (s *Set) Stats() []Stats {
	out := make([]Stats, 0, len(s.pools))
	for _, p := range s.pools {
		out = append(out, p.stats())
	}
	slices.SortFunc(out, func(a, b Stats) int {
		if a.Endpoint < b.Endpoint {
			return -1
		}
		return 1
	})
	return out
}

func (p *PoolOf[C]) stats() Stats {
	p.mu.Lock()
	st := Stats{Endpoint: p.ep.ID, Open: p.open, Idle: len(p.idle), Busy: p.busy, Max: p.maxLocked()}
	p.mu.Unlock()
	st.Connections, st.IdleConnections = st.Open, st.Idle/p.perConn
	if cc, ok := p.dialer.(connectionCounter); ok {
		st.Connections = cc.Connections()
		st.IdleConnections = min(st.IdleConnections, st.Connections)
	}
	if qr, ok := p.dialer.(quirkReporter); ok {
		st.Quirks = qr.QuirkNames()
	}
	if hr, ok := p.dialer.(hostKeyReporter); ok {
		st.HostKey = hr.HostKey()
	}
	if sp, ok := p.dialer.(sessionsPerConnection); ok {
		st.SessionsPerConnection = min(p.perConn, max(sp.SessionsPerConnection(), 1))
	}
	return st
}

// claim counts a new connection against the agent-wide limit.
func (s *Set) claim(requester member) bool {
	s.mu.Lock()
	if s.total < s.cfg.MaxTotal {
		s.total++
		s.mu.Unlock()
		return true
	}
	s.mu.Unlock()
	// Make room by closing the longest-idle connection of another endpoint.
	for _, p := range s.pools {
		if p != requester && p.closeOneIdle() {
			return true // its slot in total passes to the requester
		}
	}
	return false
}

// closeOneIdle closes the longest-idle connection, if there is one, before
// its slot passes on (as in discard).
func (p *PoolOf[C]) closeOneIdle() bool {
	p.mu.Lock()
	if len(p.idle) == 0 {
		p.mu.Unlock()
		return false
	}
	c := p.idle[0]
	p.idle = slices.Delete(p.idle, 0, 1)
	p.closing++
	p.mu.Unlock()
	p.closeTaken([]C{c})
	return true
}

func (s *Set) free() {
	s.mu.Lock()
	s.total--
	s.mu.Unlock()
	s.notify()
}

// notify wakes every waiter: a freed connection may suit any of them.
func (s *Set) notify() {
	s.mu.Lock()
	ws := s.waiters
	s.waiters = nil
	s.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
}

func (s *Set) wait(ctx context.Context, recheck time.Duration) error {
	w := make(chan struct{})
	s.mu.Lock()
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	// Re-check periodically as well: a pool's own limit frees on Put,
	// which notifies, but cheap insurance against a missed wake-up.
	t := time.NewTimer(recheck)
	defer t.Stop()
	select {
	case <-w:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run evicts connections idle past the idle timeout until ctx ends, then
// closes every idle connection.
func (s *Set) Run(ctx context.Context) error {
	t := time.NewTicker(min(s.cfg.IdleTimeout/4, 15*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.closeIdle(0)
			return nil
		case <-t.C:
			s.closeIdle(s.cfg.IdleTimeout)
		}
	}
}

// closeIdle closes connections idle longer than age.
func (s *Set) closeIdle(age time.Duration) {
	for id, p := range s.pools {
		n := p.closeIdle(age)
		for range n {
			s.free()
		}
		if n > 0 {
			s.logger.Debug("closed idle connections", "endpoint", id, "closed", n)
		}
	}
}

func (p *PoolOf[C]) closeIdle(age time.Duration) int {
	p.mu.Lock()
	var keep, drop []C
	for _, c := range p.idle {
		if time.Since(c.LastUsed()) >= age {
			drop = append(drop, c)
		} else {
			keep = append(keep, c)
		}
	}
	p.idle = keep
	p.closing += len(drop)
	p.mu.Unlock()
	p.closeTaken(drop)
	return len(drop)
}
