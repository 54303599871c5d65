package remote

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// dataConn is an FTP data connection whose every read and write must make
// progress within the idle timeout, so a server that stops sending (or
// reading) fails the transfer instead of holding its slot forever.
type dataConn struct {
	net.Conn
	idle    time.Duration
	bufSize int
	// broken is the connection's flag, set when an operation is
	// interrupted: a chunked send stops at the next chunk even if its
	// renewed deadline outran the interruption.
	broken *atomic.Bool
	wrote  bool // an upload: Close ends TLS gracefully
}

// Read and Write renew both deadlines: over TLS the first of them runs the
// handshake, which writes and reads whichever way the data goes, and a
// server that never answers it must not hold the transfer.
func (d *dataConn) Read(b []byte) (int, error) {
	_ = d.Conn.SetDeadline(time.Now().Add(d.idle))
	return d.Conn.Read(b)
}

func (d *dataConn) Write(b []byte) (int, error) {
	d.wrote = true
	_ = d.Conn.SetDeadline(time.Now().Add(d.idle))
	return d.Conn.Write(b)
}

// closeDrain bounds how long closing an upload's TLS data connection waits
// for the server to finish its side.
const closeDrain = 5 * time.Second

// Close ends an upload over TLS the way servers expect: close_notify and
// FIN, then read what the server still sends (TLS 1.3 session tickets)
// until it closes. Closing with those tickets unread made our kernel reset
// the connection, and the server lost the end of the upload: Apache
// FtpServer answered 426 to most TLS 1.3 uploads, vsftpd 3.0 cut them short.
func (d *dataConn) Close() error {
	tc, ok := d.Conn.(*tls.Conn)
	if !ok || !d.wrote || !tc.ConnectionState().HandshakeComplete || (d.broken != nil && d.broken.Load()) {
		return d.Conn.Close()
	}
	_ = tc.SetDeadline(time.Now().Add(min(d.idle, closeDrain)))
	if tc.CloseWrite() == nil {
		if raw, ok := tc.NetConn().(interface{ CloseWrite() error }); ok {
			_ = raw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(tc, 1<<20))
	}
	return tc.Close()
}

// Handshake completes the TLS handshake of an FTPS data connection that
// carried no bytes. TLS starts on the first read or write, so an empty
// upload would close the connection before TLS began, and servers refuse
// that (ProFTPD mod_tls: 425 "Unable to build data connection"; pyftpdlib:
// no reply at all). jlaffaye's StorFrom calls it after writing nothing, but
// only when the connection it dialed has this method.
func (d *dataConn) Handshake() error {
	tc, ok := d.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	d.wrote = true // an empty upload, closed like any other
	_ = tc.SetDeadline(time.Now().Add(d.idle))
	return tc.Handshake()
}

// ReadFrom serves uploads (jlaffaye's Stor uses io.Copy) with a large
// buffer: io.Copy's default 32 KiB leaves much of loopback bandwidth unused.
// Buffers are pooled: a fresh 1 MiB per upload costs more than a small
// file's whole transfer (allocation, zeroing, garbage collection).
func (d *dataConn) ReadFrom(r io.Reader) (int64, error) {
	if fr, ok := r.(FileReader); ok {
		if tc, ok := d.Conn.(*net.TCPConn); ok {
			f, progress := fr.SendFile()
			return d.sendFile(tc, f, progress)
		}
	}
	bp := getBuffer(d.bufSize)
	defer putBuffer(bp)
	return io.CopyBuffer(writerOnly{d}, r, *bp)
}

// FileReader is an upload source that is a local file: a plain TCP data
// connection sends it with sendfile(2), without copying it through user
// space, and reports progress through the returned function. (TLS data
// connections read it like any reader.)
type FileReader interface {
	io.Reader
	SendFile() (f *os.File, progress func(int64))
}

// sendChunk bounds each sendfile call, so the idle deadline is renewed and
// progress reported as the upload goes.
const sendChunk = 8 << 20

func (d *dataConn) sendFile(tc *net.TCPConn, f *os.File, progress func(int64)) (int64, error) {
	var total int64
	for {
		if d.broken != nil && d.broken.Load() {
			return total, os.ErrDeadlineExceeded
		}
		_ = tc.SetWriteDeadline(time.Now().Add(d.idle))
		n, err := tc.ReadFrom(io.LimitReader(f, sendChunk))
		total += n
		if n > 0 {
			progress(n)
		}
		if err != nil || n < sendChunk {
			return total, err
		}
	}
}

// buffers holds a *sync.Pool of *[]byte per buffer size.
var buffers sync.Map

func bufferPool(size int) *sync.Pool {
	if p, ok := buffers.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := buffers.LoadOrStore(size, &sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	return p.(*sync.Pool)
}

func getBuffer(size int) *[]byte {
	if size <= 0 {
		size = 32 << 10
	}
	return bufferPool(size).Get().(*[]byte)
}

func putBuffer(b *[]byte) { bufferPool(len(*b)).Put(b) }

// writerOnly hides ReadFrom so io.CopyBuffer uses the buffer it is given.
type writerOnly struct{ io.Writer }
