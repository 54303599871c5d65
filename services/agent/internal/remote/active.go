package remote

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Active mode (passive = false), for servers that refuse PASV and EPSV.
//
// jlaffaye/ftp speaks passive mode only and opens data connections through
// our dial function before it sends the transfer command. Active mode is
// fitted underneath it, on a plain control connection: the PASV it sends
// (EPSV is disabled) never reaches the server. Instead the agent listens on
// the control connection's local address, sends PORT (EPRT for IPv6) itself,
// and answers jlaffaye with a made-up 227, or with the server's refusal. The
// data connection jlaffaye then "dials" is the listener: it accepts the
// server's connection on first use, after the transfer command went out.
// Over TLS the control channel is encrypted end to end, so active mode is
// refused there when connections.ini is loaded.

// activeMode rewrites one control connection's PASV.
type activeMode struct {
	raw  net.Conn // the control connection's TCP
	idle time.Duration

	mu       sync.Mutex
	reply    []byte           // made-up reply jlaffaye reads before the server's bytes
	listener *net.TCPListener // for the next data connection
	line     []byte           // the reply line jlaffaye is reading
	lastCode int              // the last complete reply jlaffaye read
}

// write intercepts PASV; anything else goes to the server.
func (a *activeMode) write(b []byte) (int, error) {
	if !bytes.EqualFold(bytes.TrimSpace(b), []byte("PASV")) {
		return a.raw.Write(b)
	}
	reply, err := a.port()
	if err != nil {
		return 0, err
	}
	a.mu.Lock()
	a.reply = append(a.reply[:0], reply...)
	a.mu.Unlock()
	return len(b), nil
}

// port listens for the server's data connection and tells the server where,
// returning the reply jlaffaye gets for its PASV.
func (a *activeMode) port() ([]byte, error) {
	local, _ := a.raw.LocalAddr().(*net.TCPAddr)
	if local == nil {
		return []byte("425 active mode needs a TCP control connection\r\n"), nil
	}
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: local.IP})
	if err != nil {
		return fmt.Appendf(nil, "425 active mode: cannot listen on %s for the server's data connection: %v\r\n", local.IP, err), nil
	}
	port := l.Addr().(*net.TCPAddr).Port
	cmd := fmt.Sprintf("EPRT |2|%s|%d|\r\n", local.IP, port)
	if ip4 := local.IP.To4(); ip4 != nil {
		cmd = fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d\r\n", ip4[0], ip4[1], ip4[2], ip4[3], port>>8, port&0xff)
	}
	if _, err := a.raw.Write([]byte(cmd)); err != nil {
		l.Close()
		return nil, err
	}
	code, reply, err := readReply(a.raw)
	if err != nil {
		l.Close()
		return nil, err
	}
	if code != 200 {
		l.Close()
		return reply, nil // the server's refusal is PASV's answer
	}
	a.mu.Lock()
	if a.listener != nil {
		a.listener.Close()
	}
	a.listener = l
	a.mu.Unlock()
	// jlaffaye dials the control host at this port; dial ignores both.
	return fmt.Appendf(nil, "227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n", port>>8, port&0xff), nil
}

// readReply reads one whole (possibly multi-line) reply a byte at a time,
// so nothing of what follows is taken from jlaffaye's reader.
func readReply(c net.Conn) (int, []byte, error) {
	var all, line []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return 0, nil, err
		}
		line = append(line, one[0])
		if one[0] != '\n' {
			if len(line) > 4096 {
				return 0, nil, errors.New("active mode: the server's reply to PORT has a line over 4 KiB")
			}
			continue
		}
		all = append(all, line...)
		if code, final := replyLine(line); final {
			return code, all, nil
		}
		line = line[:0]
	}
}

// replyLine parses "ddd " (a reply's last line); "ddd-" lines continue it.
func replyLine(line []byte) (code int, final bool) {
	if len(line) < 4 || line[3] != ' ' {
		return 0, false
	}
	n, err := strconv.Atoi(string(line[:3]))
	return n, err == nil
}

// read serves the made-up reply first, and notes the code of every reply
// jlaffaye reads: a data connection closed unused accepts the server's
// connection only when the transfer command was accepted (125 or 150).
func (a *activeMode) read(b []byte) (int, error) {
	a.mu.Lock()
	if len(a.reply) > 0 {
		n := copy(b, a.reply)
		a.reply = a.reply[n:]
		a.mu.Unlock()
		return n, nil
	}
	a.mu.Unlock()
	n, err := a.raw.Read(b)
	a.mu.Lock()
	for _, c := range b[:n] {
		if len(a.line) < 512 {
			a.line = append(a.line, c)
		}
		if c == '\n' {
			if code, final := replyLine(a.line); final {
				a.lastCode = code
			}
			a.line = a.line[:0]
		}
	}
	a.mu.Unlock()
	return n, err
}

// take hands the listener PORT announced to the data connection.
func (a *activeMode) take() (*net.TCPListener, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.listener
	a.listener = nil
	if l == nil {
		return nil, errors.New("active mode: no PORT announced for this data connection")
	}
	return l, nil
}

func (a *activeMode) commandAccepted() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastCode == 125 || a.lastCode == 150
}

func (a *activeMode) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.listener != nil {
		a.listener.Close()
		a.listener = nil
	}
}

// activeData is a data connection the server opens to us: accepted on first
// use, from the server's address only (anyone else reaching the port first
// would otherwise be sent the file, or write it).
type activeData struct {
	l      *net.TCPListener
	mode   *activeMode
	server net.IP
	idle   time.Duration

	mu       sync.Mutex
	conn     net.Conn
	err      error
	deadline time.Time // set before the accept; applied to the listener
}

func (d *activeData) accept() (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil || d.err != nil {
		return d.conn, d.err
	}
	deadline := time.Now().Add(d.idle)
	if !d.deadline.IsZero() && d.deadline.Before(deadline) {
		deadline = d.deadline
	}
	_ = d.l.SetDeadline(deadline)
	for {
		c, err := d.l.AcceptTCP()
		if err != nil {
			d.err = fmt.Errorf("active mode: the server did not connect for the data: %w", err)
			break
		}
		if ip := c.RemoteAddr().(*net.TCPAddr).IP; d.server != nil && !ip.Equal(d.server) {
			c.Close() // not the server: keep waiting for it
			continue
		}
		d.conn = c
		break
	}
	d.l.Close()
	return d.conn, d.err
}

func (d *activeData) Read(b []byte) (int, error) {
	c, err := d.accept()
	if err != nil {
		return 0, err
	}
	return c.Read(b)
}

func (d *activeData) Write(b []byte) (int, error) {
	c, err := d.accept()
	if err != nil {
		return 0, err
	}
	return c.Write(b)
}

// Close of a data connection never used (an empty upload) still takes the
// server's connection when the command was accepted: closing it is how an
// empty file ends.
func (d *activeData) Close() error {
	d.mu.Lock()
	used := d.conn != nil || d.err != nil
	d.mu.Unlock()
	if !used && d.mode.commandAccepted() {
		_, _ = d.accept()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.l.Close()
	if d.conn != nil {
		return d.conn.Close()
	}
	return nil
}

func (d *activeData) LocalAddr() net.Addr { return d.l.Addr() }

func (d *activeData) RemoteAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		return d.conn.RemoteAddr()
	}
	return &net.TCPAddr{IP: d.server}
}

func (d *activeData) SetDeadline(t time.Time) error {
	d.mu.Lock()
	c := d.conn
	if c == nil {
		d.deadline = t
	}
	d.mu.Unlock()
	if c == nil {
		return d.l.SetDeadline(t) // wakes an accept an interruption must end
	}
	return c.SetDeadline(t)
}

func (d *activeData) SetReadDeadline(t time.Time) error {
	if c := d.accepted(); c != nil {
		return c.SetReadDeadline(t)
	}
	return nil // the accept has the idle deadline of its own
}

func (d *activeData) SetWriteDeadline(t time.Time) error {
	if c := d.accepted(); c != nil {
		return c.SetWriteDeadline(t)
	}
	return nil
}

func (d *activeData) accepted() net.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}
