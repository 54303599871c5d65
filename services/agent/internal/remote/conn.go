// Package remote is one logged-in FTP connection with the things jlaffaye/ftp
// leaves to its caller: deadlines and cancellation that reach the sockets,
// FTPS with a TLS session shared between control and data connections, a
// large-buffer data path, and every error classified once into a failure
// code.
//
// A Conn is used by one transfer at a time (jlaffaye's ServerConn is not
// goroutine-safe); the pool hands whole connections out. Once an operation
// was interrupted or failed below the FTP layer the connection is Broken and
// must be discarded: its control channel may be mid-reply.
package remote

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// Dialer opens connections to one endpoint.
type Dialer struct {
	Endpoint *config.Endpoint
	// ConnectTimeout bounds dial and login together.
	ConnectTimeout time.Duration
	// IdleTimeout fails a command or a data transfer that makes no
	// progress for this long.
	IdleTimeout time.Duration
	// BufferSize is the copy buffer of uploads.
	BufferSize int

	// learned is the endpoint's quirks, which every Conn of this Dialer
	// shares (a Dialer is used by pointer; vet refuses copies of it).
	learned quirks
}

// Conn is a logged-in FTP connection.
type Conn struct {
	ep       *config.Endpoint
	sc       *ftp.ServerConn
	idle     time.Duration
	bufSize  int
	tls      *tls.Config
	dialer   net.Dialer
	mu       sync.Mutex
	control  net.Conn // raw TCP of the control connection; set once, under mu
	data     net.Conn // the data connection in use, if any; under mu
	broken   atomic.Bool
	lastUsed time.Time
	dirs     map[string]bool // directories known to exist on the server
	learned  *quirks         // the endpoint's, shared with its Dialer
}

// LastUsed is when the connection last finished an operation.
func (c *Conn) LastUsed() time.Time { return c.lastUsed }

// Broken reports whether the connection must be discarded.
func (c *Conn) Broken() bool { return c.broken.Load() }

// Endpoint returns the endpoint the connection is logged in to.
func (c *Conn) Endpoint() *config.Endpoint { return c.ep }

// Dial connects and logs in.
func (d *Dialer) Dial(ctx context.Context) (*Conn, error) {
	ep := d.Endpoint
	timeout := d.ConnectTimeout
	if ep.Timeout > 0 {
		timeout = ep.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &Conn{ep: ep, idle: d.IdleTimeout, bufSize: d.BufferSize, dialer: net.Dialer{Timeout: timeout}, dirs: map[string]bool{}, learned: &d.learned}
	if ep.TLS != config.TLSNone {
		cfg, err := tlsConfig(ep)
		if err != nil {
			return nil, err
		}
		c.tls = cfg
	}
	opts := []ftp.DialOption{
		ftp.DialWithContext(ctx),
		ftp.DialWithDialFunc(c.dial),
		// Our data connections carry their own deadlines; this bounds the
		// wait for the final reply after a transfer.
		ftp.DialWithShutTimeout(d.IdleTimeout),
	}
	if ep.DisableEPSV || ep.Active || d.learned.has(QuirkNoEPSV) {
		opts = append(opts, ftp.DialWithDisabledEPSV(true)) // active mode rewrites PASV (active.go)
	}
	if ep.TrustPASVAddress {
		opts = append(opts, ftp.DialWithTrustPasvIP(true))
	}
	if ep.Encoding == config.EncodingLatin1 {
		opts = append(opts, ftp.DialWithDisabledUTF8(true)) // no OPTS UTF8 ON
	}
	if ep.TLS == config.TLSExplicit {
		opts = append(opts, ftp.DialWithExplicitTLS(c.tls))
	} else if ep.TLS == config.TLSImplicit {
		opts = append(opts, ftp.DialWithTLS(c.tls))
	}
	stop := context.AfterFunc(ctx, c.interrupt)
	defer stop()
	sc, err := ftp.Dial(ep.Address(), opts...)
	if err != nil {
		c.closeControl()
		return nil, unanswered(c.classify(ctx, "connect to", "", err), timeout)
	}
	c.sc = sc
	if err := sc.Login(ep.User, ep.Password.Reveal()); err != nil {
		_ = sc.Quit()
		return nil, unanswered(c.classify(ctx, "log in to", "", err), timeout)
	}
	if c.control != nil {
		_ = c.control.SetDeadline(time.Time{})
	}
	c.lastUsed = time.Now()
	return c, nil
}

// unanswered classifies a failure to connect or log in: a server that did
// not answer in time is a connection failure, not a transfer timeout, and a
// retryable one means the endpoint is unreachable (its breaker counts it).
func unanswered(fe *failure.Error, timeout time.Duration) *failure.Error {
	if fe.Code == failure.TransferTimeout {
		fe.Code = failure.ConnectionError
		fe.Msg += fmt.Sprintf(": no answer within %s", timeout)
	}
	if refusedAsFull(fe.Err) {
		fe.Code, fe.ServerFull = failure.ConnectionError, true
		return fe
	}
	fe.Unreachable = fe.Code == failure.ConnectionError
	return fe
}

// refusedAsFull reports whether a refused connect or login says the server
// is full. Servers say so in many ways: vsftpd "421 There are too many
// connected users", pure-ftpd "421 I can't accept more than 4 connections
// as the same user", ProFTPD "530 Sorry, the maximum number of clients (3)
// for this user are already connected.", pyftpdlib "421 Too many
// connections from the same IP address." A 530 without such words is a
// wrong password; a 421 without them may be a server going down, which
// IsBareRefusal lets the pool judge by the connections it already holds.
//
// jlaffaye returns a refusal of USER as a plain error that keeps the text
// and drops the code (Apache FtpServer: "421 Maximum login limit has been
// reached." at USER), so an error without a code is judged by its words too.
func refusedAsFull(err error) bool {
	if err == nil {
		// A failure classified from the context's cause, which carries no
		// server reply.
		return false
	}
	code := replyCode(err)
	if code != 421 && code != 530 && (code != 0 || isNetwork(err)) {
		return false
	}
	text := strings.ToLower(err.Error())
	for _, w := range []string{"too many", "maximum", "max ", "more than", "limit", "already connected", "is full", "server full", "try later", "try again later"} {
		if strings.Contains(text, w) {
			return true
		}
	}
	return false
}

// IsServerFull reports whether a failed Dial was the server refusing a
// login for being full, not a wrong password and not an outage.
func IsServerFull(err error) bool {
	var fe *failure.Error
	return errors.As(err, &fe) && fe.ServerFull
}

// IsBareRefusal reports whether a failed Dial was a 421 that gave no reason:
// "service not available" from a server shutting down, or from one that
// is full and does not say so. A pool already logged in to the endpoint
// knows the server is up and treats it as full.
func IsBareRefusal(err error) bool {
	var fe *failure.Error
	return errors.As(err, &fe) && fe.Unreachable && replyCode(err) == 421
}

// dial is jlaffaye's dial function: its first call makes the control
// connection, later ones data connections. Data connections are wrapped in
// TLS here (jlaffaye skips that when a dial function is set), sharing the
// control connection's TLS session cache so servers that demand session
// reuse (vsftpd require_ssl_reuse) accept them.
func (c *Conn) dial(network, addr string) (net.Conn, error) {
	if cc := c.activeControl(); cc != nil {
		return c.activeDataConn(cc)
	}
	raw, err := c.dialer.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	first := c.control == nil
	if first {
		cc := &controlConn{Conn: raw}
		if c.ep.TLS == config.TLSNone {
			cc.tap = newReplyTap()
		}
		if c.ep.Active {
			cc.active = &activeMode{raw: raw, idle: c.idle}
		} else if !c.ep.DisableEPSV && !c.learned.has(QuirkNoEPSV) {
			cc.learned = c.learned
		}
		raw = cc
		c.control = raw // interrupt reads it from another goroutine
	}
	c.mu.Unlock()
	if first {
		if c.ep.TLS == config.TLSImplicit {
			return tls.Client(raw, c.tls), nil
		}
		return raw, nil
	}
	var data net.Conn = raw
	if c.tls != nil {
		data = tls.Client(raw, c.tls)
	}
	return c.useData(data)
}

// useData wraps a data connection in the idle deadlines and makes it the
// one an interruption reaches.
func (c *Conn) useData(data net.Conn) (net.Conn, error) {
	dc := &dataConn{Conn: data, idle: c.idle, bufSize: c.bufSize, broken: &c.broken}
	c.mu.Lock()
	c.data = dc
	c.mu.Unlock()
	if c.broken.Load() {
		_ = dc.Close()
		return nil, net.ErrClosed
	}
	return dc, nil
}

// activeControl is the control connection when it runs in active mode and
// the dial is for data.
func (c *Conn) activeControl() *controlConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, _ := c.control.(*controlConn); cc != nil && cc.active != nil {
		return cc
	}
	return nil
}

// activeDataConn is jlaffaye's data "dial" in active mode: the address of
// the made-up 227 is not dialled; the data comes through the listener PORT
// announced, from the server's address.
func (c *Conn) activeDataConn(cc *controlConn) (net.Conn, error) {
	l, err := cc.active.take()
	if err != nil {
		return nil, err
	}
	ad := &activeData{l: l, mode: cc.active, idle: c.idle}
	if server, _ := cc.Conn.RemoteAddr().(*net.TCPAddr); server != nil {
		ad.server = server.IP
	}
	return c.useData(ad)
}

func tlsConfig(ep *config.Endpoint) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName:         ep.Host,
		InsecureSkipVerify: ep.TLSInsecureSkipVerify, //nolint:gosec // opt-in per endpoint, for test servers
		// One cache per connection: data connections resume the control
		// connection's session, and no other connection's session leaks in.
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         tls.VersionTLS12,
	}
	if ep.TLSMaxVersion == "1.3" {
		cfg.MaxVersion = tls.VersionTLS13
	}
	if ep.TLSServerName != "" {
		cfg.ServerName = ep.TLSServerName
	}
	if ep.TLSCAFile != "" {
		pem, err := os.ReadFile(ep.TLSCAFile)
		if err != nil {
			return nil, failure.Wrap(failure.InvalidConfig, err, "endpoint %s: tls_ca_file", ep.ID)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, failure.New(failure.InvalidConfig, "endpoint %s: tls_ca_file %s holds no PEM certificate", ep.ID, ep.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// interrupt unblocks whatever the connection is doing and marks it broken.
func (c *Conn) interrupt() {
	c.broken.Store(true)
	past := time.Unix(1, 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.control != nil {
		_ = c.control.SetDeadline(past)
	}
	if c.data != nil {
		_ = c.data.SetDeadline(past)
	}
}

// op bounds one control-channel exchange: the idle timeout, the context's
// deadline, and cancellation all reach the socket.
func (c *Conn) op(ctx context.Context) (done func()) {
	deadline := time.Now().Add(c.idle)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.control.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, c.interrupt)
	if ctx.Err() != nil {
		// AfterFunc runs in its own goroutine, which a quick exchange can
		// beat: an operation begun after cancellation would then succeed
		// and leave the connection looking healthy.
		c.interrupt()
	}
	return func() {
		stop()
		if !c.broken.Load() {
			_ = c.control.SetDeadline(time.Time{})
		}
		c.lastUsed = time.Now()
	}
}

// Size returns a file's size, or -1 when the server cannot tell (no SIZE).
func (c *Conn) Size(ctx context.Context, p string) (int64, error) {
	w, err := c.wire(p)
	if err != nil {
		return 0, err
	}
	defer c.op(ctx)()
	n, err := c.sc.FileSize(w)
	if err != nil {
		if code := replyCode(err); code == 500 || code == 502 || code == 504 {
			c.learned.add(QuirkNoSize)
			return -1, nil
		}
		return 0, c.classify(ctx, "SIZE", p, err)
	}
	return n, nil
}

// Exists reports whether a file exists, using SIZE, or, on a server
// without SIZE, listing its directory: taking "cannot tell" for "exists"
// failed every upload that must not overwrite with DESTINATION_EXISTS.
func (c *Conn) Exists(ctx context.Context, p string) (bool, error) {
	size, err := c.Size(ctx, p)
	if err == nil && size >= 0 {
		return true, nil
	}
	if err != nil {
		if failure.CodeOf(err) == failure.FileNotFound {
			return false, nil
		}
		return false, err
	}
	names, err := c.NameList(ctx, path.Dir(p))
	if err != nil {
		if failure.CodeOf(err) == failure.FileNotFound {
			return false, nil // no directory, no file
		}
		return false, err
	}
	base := path.Base(p)
	for _, n := range names {
		if path.Base(n) == base {
			return true, nil
		}
	}
	return false, nil
}

// Retr opens a file for reading from offset. The download's Close waits
// for the server's transfer-complete reply, so a cut-short download is an
// error.
func (c *Conn) Retr(ctx context.Context, p string, offset int64) (*Download, error) {
	w, err := c.wire(p)
	if err != nil {
		return nil, err
	}
	done := c.op(ctx)
	tap := c.replyTap()
	if tap != nil {
		tap.reset()
	}
	resp, err := c.sc.RetrFrom(w, uint64(offset))
	if err != nil {
		done()
		return nil, c.classify(ctx, "RETR", p, err)
	}
	// The control channel idles while data flows; only the data connection
	// has a deadline now, renewed on every read.
	_ = c.control.SetDeadline(time.Time{})
	d := &Download{c: c, ctx: ctx, resp: resp, path: p, done: done, Announced: -1}
	if tap != nil && offset == 0 {
		d.Announced = tap.announced()
		c.learned.announcesSize.Store(d.Announced >= 0)
	}
	return d, nil
}

// AnnouncesSize reports whether the server's downloads from the start say
// how large the file is, so that they need no SIZE first.
func (c *Conn) AnnouncesSize() bool { return c.learned.announcesSize.Load() }

// replyTap is the control connection's record of preliminary replies, or
// nil where it cannot read them (under TLS it sees only ciphertext).
func (c *Conn) replyTap() *replyTap {
	if cc, _ := c.control.(*controlConn); cc != nil {
		return cc.tap
	}
	return nil
}

// Download is a file being read from the server.
type Download struct {
	c    *Conn
	ctx  context.Context
	resp *ftp.Response
	path string
	done func()
	// Announced is the file's size as the server's reply to a download
	// from the start gave it, or -1.
	Announced int64
}

func (r *Download) Read(b []byte) (int, error) {
	n, err := r.resp.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		err = r.c.classify(r.ctx, "RETR", r.path, err)
	}
	return n, err
}

func (r *Download) Close() error {
	_ = r.c.control.SetDeadline(time.Now().Add(r.c.idle))
	err := r.resp.Close()
	r.c.clearData()
	r.done()
	if err != nil {
		return r.c.classify(r.ctx, "RETR", r.path, err)
	}
	return nil
}

// Stor writes r to a file from offset (REST), or from the start when
// offset is 0.
func (c *Conn) Stor(ctx context.Context, p string, r io.Reader, offset int64) error {
	w, err := c.wire(p)
	if err != nil {
		return err
	}
	defer c.op(ctx)()
	err = c.sc.StorFrom(w, r, uint64(offset))
	c.clearData()
	if err != nil {
		return c.classify(ctx, "STOR", p, err)
	}
	return nil
}

// NameList lists the names in a directory.
func (c *Conn) NameList(ctx context.Context, dir string) ([]string, error) {
	w, err := c.wire(dir)
	if err != nil {
		return nil, err
	}
	defer c.op(ctx)()
	names, err := c.sc.NameList(w)
	c.clearData()
	if err != nil {
		return nil, c.classify(ctx, "NLST", dir, err)
	}
	for i, n := range names {
		names[i] = c.unwire(n)
	}
	return names, nil
}

// Rename renames a file on the server.
func (c *Conn) Rename(ctx context.Context, from, to string) error {
	wFrom, err := c.wire(from)
	if err != nil {
		return err
	}
	wTo, err := c.wire(to)
	if err != nil {
		return err
	}
	defer c.op(ctx)()
	if err := c.sc.Rename(wFrom, wTo); err != nil {
		return c.classify(ctx, "RNFR/RNTO", from+" -> "+to, err)
	}
	return nil
}

// Delete removes a file.
func (c *Conn) Delete(ctx context.Context, p string) error {
	w, err := c.wire(p)
	if err != nil {
		return err
	}
	defer c.op(ctx)()
	if err := c.sc.Delete(w); err != nil {
		return c.classify(ctx, "DELE", p, err)
	}
	return nil
}

// MkdirAll creates dir and its missing parents. Directories seen to exist
// are remembered for the connection's life, saving round trips when many
// files go to one directory.
func (c *Conn) MkdirAll(ctx context.Context, dir string) error {
	dir = path.Clean(dir)
	if dir == "." || dir == "/" || c.dirs[dir] {
		return nil
	}
	if err := c.MkdirAll(ctx, path.Dir(dir)); err != nil {
		return err
	}
	w, err := c.wire(dir)
	if err != nil {
		return err
	}
	done := c.op(ctx)
	err = c.sc.MakeDir(w)
	done()
	if err != nil {
		if c.broken.Load() || replyCode(err) == 0 {
			return c.classify(ctx, "MKD", dir, err)
		}
		// 550/521 "exists" answers differ between servers; a directory is
		// fine if we can change into it.
		done = c.op(ctx)
		cwdErr := c.sc.ChangeDir(w)
		done()
		if cwdErr != nil {
			return c.classify(ctx, "MKD", dir, err)
		}
	}
	c.dirs[dir] = true
	return nil
}

// NoOp checks that the server still answers.
func (c *Conn) NoOp(ctx context.Context) error {
	defer c.op(ctx)()
	if err := c.sc.NoOp(); err != nil {
		return c.classify(ctx, "NOOP", "", err)
	}
	return nil
}

// Close says goodbye (briefly) and closes the connection.
func (c *Conn) Close() error {
	c.broken.Store(true)
	if c.sc == nil {
		c.closeControl()
		return nil
	}
	_ = c.control.SetDeadline(time.Now().Add(closeWait))
	return c.sc.Quit() // closes the control connection: see controlConn.Close
}

// closeWait bounds how long closing a control connection waits for the
// server to let go of it.
const closeWait = time.Second

// controlConn is the TCP connection under a control channel (and its TLS).
//
// Its Close returns once the server has closed its end too, or after
// closeWait: a connection we closed still counts on the server until the
// server has read our QUIT and FIN, and a pool slot freed any earlier let
// the next login arrive first. The chaos suite saw exactly that with ss:
// one connection over max_connections, our end in FIN-WAIT-1, the
// server's still ESTABLISHED.
type controlConn struct {
	net.Conn
	active *activeMode // set in active mode (passive = false)
	// learned, while EPSV is still tried, notes a PASV going out: jlaffaye
	// falls back to it only when the server refused EPSV.
	learned *quirks
	// tap keeps preliminary replies for Retr; nil under TLS.
	tap  *replyTap
	once sync.Once
	err  error
}

func (c *controlConn) Read(b []byte) (n int, err error) {
	if c.active != nil {
		n, err = c.active.read(b)
	} else {
		n, err = c.Conn.Read(b)
	}
	if c.tap != nil && n > 0 {
		c.tap.feed(b[:n])
	}
	return n, err
}

func (c *controlConn) Write(b []byte) (int, error) {
	if c.active != nil {
		return c.active.write(b)
	}
	if c.learned != nil && bytes.EqualFold(bytes.TrimSpace(b), []byte("PASV")) {
		c.learned.add(QuirkNoEPSV)
	}
	return c.Conn.Write(b)
}

func (c *controlConn) Close() error {
	c.once.Do(func() {
		if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
			// The server answers QUIT (or our FIN) by closing: wait for
			// its FIN, discarding its last reply.
			_ = c.Conn.SetReadDeadline(time.Now().Add(closeWait))
			_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, 1<<16))
		}
		if c.active != nil {
			c.active.close()
		}
		c.err = c.Conn.Close()
	})
	return c.err
}

func (c *Conn) closeControl() {
	if c.control != nil {
		_ = c.control.Close()
	}
}

func (c *Conn) clearData() {
	c.mu.Lock()
	c.data = nil
	c.mu.Unlock()
}

// String identifies the connection's endpoint for messages.
func (c *Conn) String() string { return fmt.Sprintf("%s (%s)", c.ep.ID, c.ep.Address()) }
