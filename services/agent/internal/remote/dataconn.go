package remote

import (
	"io"
	"net"
	"time"
)

// dataConn is an FTP data connection whose every read and write must make
// progress within the idle timeout, so a server that stops sending (or
// reading) fails the transfer instead of holding its slot forever.
type dataConn struct {
	net.Conn
	idle    time.Duration
	bufSize int
}

func (d *dataConn) Read(b []byte) (int, error) {
	_ = d.Conn.SetReadDeadline(time.Now().Add(d.idle))
	return d.Conn.Read(b)
}

func (d *dataConn) Write(b []byte) (int, error) {
	_ = d.Conn.SetWriteDeadline(time.Now().Add(d.idle))
	return d.Conn.Write(b)
}

// ReadFrom serves uploads (jlaffaye's Stor uses io.Copy) with a large
// buffer: io.Copy's default 32 KiB leaves much of loopback bandwidth unused.
func (d *dataConn) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, d.bufSize)
	return io.CopyBuffer(writerOnly{d}, r, buf)
}

// writerOnly hides ReadFrom so io.CopyBuffer uses the buffer it is given.
type writerOnly struct{ io.Writer }
