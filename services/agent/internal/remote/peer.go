package remote

import (
	"errors"
	"net"
	"syscall"
)

// PeerClosed reports whether the server has already hung up the control
// connection, or sent something nobody asked for (a "421 Timeout" before
// it hangs up), without taking anything from the socket. Some servers
// close after every transfer, others after an idle timeout shorter than
// ours: a pooled connection reused without this check failed the next
// task's first command, using up one of its attempts for every stale
// connection in the pool.
func (c *Conn) PeerClosed() bool {
	if c.broken.Load() {
		return true
	}
	c.mu.Lock()
	cc, _ := c.control.(*controlConn)
	c.mu.Unlock()
	if cc == nil {
		return false
	}
	tc, ok := cc.Conn.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	var rerr error
	buf := make([]byte, 1)
	if err := raw.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait for readiness: this is a poll
	}); err != nil {
		return false
	}
	if errors.Is(rerr, syscall.EAGAIN) {
		return false // nothing there: alive and quiet
	}
	// A reset, EOF, or unsolicited bytes: the server said goodbye.
	c.broken.Store(true)
	return true
}
