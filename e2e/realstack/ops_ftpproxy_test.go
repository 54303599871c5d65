//go:build e2e

package realstack

// A throttling FTP proxy in front of a real FTP server, so an operator's
// view of a long transfer (Watch, ListLeases, DrainAgent, CancelTask) can be
// tested without gigabytes of data: the control connection is relayed line
// by line with its passive-mode replies (227, 229) pointed at the proxy,
// and every data connection is relayed at a fixed rate.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/config"
)

// ThrottledFTP relays FTP sessions to Upstream, data at Rate bytes/s.
type ThrottledFTP struct {
	Upstream string
	Rate     int64
	l        net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	closed   bool
	wg       sync.WaitGroup
}

// NewThrottledFTP listens on a loopback port; cleanup closes everything.
func NewThrottledFTP(t testing.TB, upstream string, rate int64) *ThrottledFTP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &ThrottledFTP{Upstream: upstream, Rate: rate, l: l}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Host and Port are where clients connect.
func (p *ThrottledFTP) Host() string { return "127.0.0.1" }

// Port is the proxy's control port.
func (p *ThrottledFTP) Port() int { return p.l.Addr().(*net.TCPAddr).Port }

// Close stops the proxy and cuts every session.
func (p *ThrottledFTP) Close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.l.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

func (p *ThrottledFTP) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

func (p *ThrottledFTP) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.Upstream, 10*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Add(2)
		go func() { // client → server, as is
			defer p.wg.Done()
			_, _ = io.Copy(up, c)
			up.Close()
			c.Close()
		}()
		go func() { // server → client, passive replies rewritten
			defer p.wg.Done()
			p.relayReplies(c, up)
			up.Close()
			c.Close()
		}()
	}
}

var (
	pasvRE = regexp.MustCompile(`^227 .*\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)`)
	epsvRE = regexp.MustCompile(`^229 .*\(\|\|\|(\d+)\|\)`)
)

func (p *ThrottledFTP) relayReplies(client, server net.Conn) {
	host, _, _ := net.SplitHostPort(p.Upstream)
	r := bufio.NewReader(server)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			if m := pasvRE.FindStringSubmatch(line); m != nil {
				hi, _ := strconv.Atoi(m[5])
				lo, _ := strconv.Atoi(m[6])
				if port, ok := p.dataRelay(fmt.Sprintf("%s.%s.%s.%s:%d", m[1], m[2], m[3], m[4], hi*256+lo)); ok {
					line = fmt.Sprintf("227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n", port/256, port%256)
				}
			} else if m := epsvRE.FindStringSubmatch(line); m != nil {
				if port, ok := p.dataRelay(net.JoinHostPort(host, m[1])); ok {
					line = fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)\r\n", port)
				}
			}
			if _, werr := io.WriteString(client, line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// dataRelay listens for the client's one data connection, connects it to
// the server's passive port and relays it throttled, both ways.
func (p *ThrottledFTP) dataRelay(upstream string) (int, bool) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer l.Close()
		_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
		c, err := l.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", upstream, 10*time.Second)
		if err != nil {
			c.Close()
			return
		}
		if !p.track(c, up) {
			return
		}
		var wg sync.WaitGroup
		wg.Add(2)
		half := func(dst, src net.Conn) {
			defer wg.Done()
			p.throttledCopy(dst, src)
			// End of data one way is the end of the transfer (FTP closes
			// the data connection): close both.
			dst.Close()
			src.Close()
		}
		go half(c, up)
		go half(up, c)
		wg.Wait()
	}()
	return l.Addr().(*net.TCPAddr).Port, true
}

// throttledCopy copies at most p.Rate bytes per second, in slices of a
// twentieth of a second.
func (p *ThrottledFTP) throttledCopy(dst io.Writer, src io.Reader) {
	chunk := max(p.Rate/20, 512)
	buf := make([]byte, chunk)
	start := time.Now()
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
			n += int64(k)
			due := start.Add(time.Duration(float64(n) / float64(p.Rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		if err != nil {
			return
		}
	}
}

// ftpSection is a connections.ini section for an FTP endpoint at host:port
// with srv's credentials and max_connections (0: the default).
func ftpSection(id, host string, port int, srv FTPServer, maxConnections int) config.Endpoint {
	e := config.FTP(id, host, port, srv.User, srv.Pass)
	e.MaxConnections = maxConnections
	return e
}
