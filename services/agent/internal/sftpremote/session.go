package sftpremote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
)

// PacketSize is each read or write request's payload: 32 KiB, what every
// server takes (larger packets break some).
const PacketSize = 32 << 10

// RequestsPerFile is how many read or write requests one file keeps in
// flight: enough to fill a link with a few milliseconds of latency.
const RequestsPerFile = 64

// uploadChunk is each write of an upload, sent as concurrent requests;
// uploadWindow how many of them are in flight at once.
const (
	uploadChunk  = 1 << 20
	uploadWindow = 2
)

// UnconfirmedTail is how far before the end of a partial upload bytes may
// be missing after a failed or interrupted upload: the server may have
// written any of the requests in flight and not others.
const UnconfirmedTail = uploadChunk * uploadWindow

var clientOptions = []sftp.ClientOption{
	sftp.MaxPacket(PacketSize),
	sftp.UseConcurrentWrites(true),
	sftp.UseConcurrentReads(true),
	sftp.MaxConcurrentRequestsPerFile(RequestsPerFile),
}

// Session is one SFTP session (an SSH channel), used by one caller at a
// time. Every call is bounded: by ctx, which closes only this session, and
// by the connection's timeout, which closes the connection (a hung server
// hangs all its sessions alike).
type Session struct {
	conn   *Conn
	client *sftp.Client
	broken atomic.Bool
	closed atomic.Bool
	// lastUsed is when a call last ended (Unix nanoseconds).
	lastUsed atomic.Int64
	// aborted is why ctx ended this session's call, if it did.
	aborted atomic.Pointer[error]
	// dirs are directories seen to exist, for the session's life: many
	// files to one directory cost no round trip each to find it there.
	dirs map[string]bool
}

// Conn is the connection the session runs on.
func (s *Session) Conn() *Conn { return s.conn }

// Close ends the session; the connection stays.
func (s *Session) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	err := s.client.Close()
	s.conn.sessionEnded()
	return err
}

// Broken reports whether the session cannot be used again.
func (s *Session) Broken() bool { return s.broken.Load() || s.conn.Broken() }

// abort ends this session's calls for ctx's sake, leaving the connection's
// other sessions running.
func (s *Session) abort(err error) {
	s.aborted.CompareAndSwap(nil, &err)
	s.broken.Store(true)
	_ = s.client.Close()
}

// do runs one request-reply call under ctx and the timeout.
func (s *Session) do(ctx context.Context, what string, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := s.conn
	timer := time.AfterFunc(c.opts.Timeout, func() {
		c.kill(fmt.Errorf("%w: no reply to %s within %s", errHung, what, c.opts.Timeout))
	})
	stop := context.AfterFunc(ctx, func() { s.abort(ctx.Err()) })
	err := fn()
	timer.Stop()
	stop()
	s.lastUsed.Store(time.Now().UnixNano())
	return s.why(err)
}

// LastUsed is when the session's last call ended.
func (s *Session) LastUsed() time.Time { return time.Unix(0, s.lastUsed.Load()) }

func (s *Session) why(err error) error {
	if err == nil {
		return nil
	}
	if p := s.aborted.Load(); p != nil {
		return *p
	}
	if isConnectionLoss(err) {
		s.broken.Store(true)
	}
	return s.conn.why(err)
}

// stream bounds a transfer: ctx ends only this session; the connection is
// closed when no bytes moved for the timeout. touch marks progress.
func (s *Session) stream(ctx context.Context, what string) (touch func(), stop func()) {
	c := s.conn
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	stopCtx := context.AfterFunc(ctx, func() { s.abort(ctx.Err()) })
	go func() {
		tick := time.NewTicker(max(c.opts.Timeout/4, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.done:
				return
			case now := <-tick.C:
				if now.Sub(time.Unix(0, last.Load())) >= c.opts.Timeout {
					c.kill(fmt.Errorf("%w: no data moved by %s for %s", errHung, what, c.opts.Timeout))
					return
				}
			}
		}
	}()
	stopped := false
	return func() { last.Store(time.Now().UnixNano()) }, func() {
		if !stopped {
			stopped = true
			s.lastUsed.Store(time.Now().UnixNano())
			close(done)
			stopCtx()
		}
	}
}

// Size returns a file's size; a missing file is FILE_NOT_FOUND.
func (s *Session) Size(ctx context.Context, p string) (int64, error) {
	var fi os.FileInfo
	err := s.do(ctx, "STAT "+p, func() (err error) {
		fi, err = s.client.Stat(p)
		return err
	})
	if err != nil {
		return 0, classifyOp(s.conn, "stat", p, err)
	}
	if fi.IsDir() {
		return 0, classifyOp(s.conn, "stat", p, fmt.Errorf("%s is a directory, not a file", p))
	}
	return fi.Size(), nil
}

// Exists reports whether p exists; only a missing file is false.
func (s *Session) Exists(ctx context.Context, p string) (bool, error) {
	err := s.do(ctx, "STAT "+p, func() error {
		_, err := s.client.Stat(p)
		return err
	})
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, classifyOp(s.conn, "stat", p, err)
	}
	return true, nil
}

// Reader reads a remote file; its reads run under the session's bounds.
type Reader struct {
	s     *Session
	f     *sftp.File
	touch func()
	stop  func()
	path  string
	// Size is the file's size when opened.
	Size int64
	// pos is where the next read starts.
	pos int64
}

// Open opens p for reading from offset.
func (s *Session) Open(ctx context.Context, p string, offset int64) (*Reader, error) {
	var f *sftp.File
	var fi os.FileInfo
	err := s.do(ctx, "OPEN "+p, func() (err error) {
		if f, err = s.client.Open(p); err != nil {
			return err
		}
		if fi, err = f.Stat(); err != nil {
			_ = f.Close()
		}
		return err
	})
	if err != nil {
		return nil, classifyOp(s.conn, "open", p, err)
	}
	if fi.IsDir() {
		_ = f.Close()
		return nil, classifyOp(s.conn, "open", p, fmt.Errorf("%s is a directory, not a file", p))
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, classifyOp(s.conn, "seek", p, err)
	}
	touch, stop := s.stream(ctx, "reading "+p)
	return &Reader{s: s, f: f, touch: touch, stop: stop, path: p, Size: fi.Size(), pos: offset}, nil
}

// Read reads the next bytes. A buffer larger than the packet size is
// fetched with concurrent requests (pkg/sftp), which is what makes a
// large buffer fast over a link with latency.
func (r *Reader) Read(b []byte) (int, error) {
	n, err := r.f.Read(b)
	if n > 0 {
		r.pos += int64(n)
		r.touch()
	}
	if err != nil && err != io.EOF {
		return n, classifyOp(r.s.conn, "read", r.path, r.s.why(err))
	}
	return n, err
}

// WriteTo copies the rest of the file to w with reads kept in flight the
// whole time. An error of w is returned as it is; only the server's are
// classified.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	tw := &touchingWriter{w: w, touch: r.touch}
	var n int64
	var err error
	if rest := r.Size - r.pos; rest < pipelineMin {
		// The buffer fits the rest (and the EOF after it): pkg/sftp sends
		// a read request for every packet of the buffer at once, past the
		// end of the file too.
		bp := buffers.Get().(*[]byte)
		defer buffers.Put(bp)
		n, err = io.CopyBuffer(tw, readerOnly{r}, (*bp)[:max(rest+1, PacketSize)])
		if tw.err == nil && err != nil {
			return n, err // classified by Read
		}
	} else {
		n, err = r.pipelined(tw)
	}
	switch {
	case tw.err != nil:
		return n, tw.err
	case err != nil:
		return n, classifyOp(r.s.conn, "read", r.path, r.s.why(err))
	}
	return n, nil
}

// Reads of a large file are chunks of readChunk bytes, each fetched with
// concurrent requests of a packet (pkg/sftp's ReadAt), several chunks in
// flight; the connection's readBudget is shared by the files it is
// reading, between minReadWindow and maxReadWindow chunks each. A single
// file keeps OpenSSH's sftp client's 64 requests of 32 KiB in flight; 16
// files on two connections keep 16 each (two chunks) instead of 64, which
// cut the live heap of 16 concurrent 1 GiB downloads from 70 MB to 20.
//
// pkg/sftp's own WriteTo keeps 64 requests in flight per file whatever
// else the connection carries, hands each packet through channels and
// goroutines of its own, and stats the file again first; its Read of a
// large buffer waits for all of its requests before the next Read asks
// for more (59% of OpenSSH's sftp client for one 1 GiB download).
const (
	readChunk     = 256 << 10
	readBudget    = 4 << 20
	minReadWindow = 2
	maxReadWindow = 8
)

// readChunks are the pipelined reads' buffers.
var readChunks = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}

// readWindow is how many chunks a file keeps in flight while readers
// files are being read on its connection.
func readWindow(readers int32) int {
	return min(max(readBudget/readChunk/max(int(readers), 1), minReadWindow), maxReadWindow)
}

// chunkRead is one chunk of a pipelined read.
type chunkRead struct {
	off  int64
	buf  *[]byte // from readChunks
	n    int
	err  error
	done chan struct{}
}

// pipelined copies from r's position to the end of the file, the chunks
// written in order as they arrive. It reads to EOF, as RETR does, not to
// the size the file had when opened: chunks are asked for up to that size
// and one past it, and a full chunk there (the file grew) asks for more.
// Nothing after the first short chunk is written.
func (r *Reader) pipelined(w io.Writer) (written int64, err error) {
	c := r.s.conn
	readers := c.readers.Add(1)
	defer c.readers.Add(-1)
	var inFlight []*chunkRead
	defer func() {
		// The buffers are the requests' until their replies are in.
		for _, cr := range inFlight {
			<-cr.done
			readChunks.Put(cr.buf)
		}
	}()
	next, end, eof := r.pos, r.Size, false
	defer func() {
		// Later Reads go on from here.
		r.pos += written
		_, _ = r.f.Seek(r.pos, io.SeekStart)
	}()
	for {
		for !eof && err == nil && next <= end && len(inFlight) < readWindow(readers) {
			cr := &chunkRead{off: next, buf: readChunks.Get().(*[]byte), done: make(chan struct{})}
			go func() {
				defer close(cr.done)
				cr.n, cr.err = r.f.ReadAt(*cr.buf, cr.off)
			}()
			inFlight = append(inFlight, cr)
			next += readChunk
		}
		if len(inFlight) == 0 {
			return written, err
		}
		cr := inFlight[0]
		<-cr.done
		inFlight = inFlight[1:]
		if !eof && err == nil {
			if cr.n > 0 {
				var k int
				k, err = w.Write((*cr.buf)[:cr.n])
				written += int64(k)
			}
			switch {
			case err != nil:
			case cr.err != nil && cr.err != io.EOF:
				err = cr.err
			case cr.err == io.EOF || cr.n < readChunk:
				eof = true
			default:
				// Full up to or past the end: the file is at least this
				// long now.
				end = max(end, cr.off+readChunk)
			}
		}
		readChunks.Put(cr.buf)
		readers = c.readers.Load()
	}
}

// pipelineMin is the size from which WriteTo keeps reads in flight.
const pipelineMin = 1 << 20

// buffers are WriteTo's for files under pipelineMin (one Read of the
// whole rest, whose requests pkg/sftp sends at once) and ReadFrom's chunks.
var buffers = sync.Pool{New: func() any { b := make([]byte, max(pipelineMin, uploadChunk)); return &b }}

// readerOnly hides Reader's WriteTo from io.CopyBuffer.
type readerOnly struct{ io.Reader }

// touchingWriter marks the stream alive on every write and remembers its
// writer's error.
type touchingWriter struct {
	w     io.Writer
	touch func()
	err   error
}

func (t *touchingWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.touch()
	if err != nil {
		t.err = err
	}
	return n, err
}

// Close closes the file.
func (r *Reader) Close() error {
	r.stop()
	err := r.s.why(r.f.Close())
	if err != nil {
		return classifyOp(r.s.conn, "close", r.path, err)
	}
	return nil
}

// Writer writes a remote file.
type Writer struct {
	s     *Session
	f     *sftp.File
	touch func()
	stop  func()
	path  string
	// offset is where writing started.
	offset int64
}

// Create opens p for writing at offset, truncating it there (a fresh
// upload at 0 empties the file an earlier delivery left: with O_TRUNC,
// which costs no round trip of its own).
func (s *Session) Create(ctx context.Context, p string, offset int64) (*Writer, error) {
	var f *sftp.File
	err := s.do(ctx, "OPEN "+p, func() (err error) {
		if offset == 0 {
			f, err = s.client.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
			return err
		}
		if f, err = s.client.OpenFile(p, os.O_WRONLY|os.O_CREATE); err != nil {
			return err
		}
		if err = f.Truncate(offset); err != nil {
			_ = f.Close()
		}
		return err
	})
	if err != nil {
		return nil, classifyOp(s.conn, "create", p, err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, classifyOp(s.conn, "seek", p, err)
	}
	touch, stop := s.stream(ctx, "writing "+p)
	return &Writer{s: s, f: f, touch: touch, stop: stop, path: p, offset: offset}, nil
}

// ReadFrom writes the rest of r from where the file was opened, keeping
// uploadWindow writes of uploadChunk in flight: Write of a large buffer
// waits for all of its requests before the next Write sends more, which
// drains the pipeline at every buffer. Only the last uploadWindow chunks are
// ever unconfirmed, so after an error nothing is missing before the last
// UnconfirmedTail bytes the server holds. An error of r is returned as it
// is; only the server's are classified.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	type write struct {
		n   int
		buf *[]byte
		err chan error
	}
	var inFlight []write
	var confirmed int64
	var writeErr, readErr error
	oldestDone := func() {
		wr := inFlight[0]
		inFlight = inFlight[1:]
		if err := <-wr.err; err != nil {
			writeErr = cmp.Or(writeErr, err)
		} else {
			confirmed += int64(wr.n)
			w.touch()
		}
		buffers.Put(wr.buf)
	}
	off := w.offset
	for writeErr == nil {
		bp := buffers.Get().(*[]byte)
		n, err := io.ReadFull(r, *bp)
		if n == 0 {
			buffers.Put(bp)
		} else {
			wr := write{n: n, buf: bp, err: make(chan error, 1)}
			go func(b []byte, off int64) {
				_, err := w.f.WriteAt(b, off)
				wr.err <- err
			}((*bp)[:n], off)
			off += int64(n)
			inFlight = append(inFlight, wr)
		}
		if err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF {
				readErr = err
			}
			break
		}
		if len(inFlight) == uploadWindow {
			oldestDone()
		}
	}
	for len(inFlight) > 0 {
		oldestDone()
	}
	switch {
	case writeErr != nil:
		return confirmed, classifyOp(w.s.conn, "write", w.path, w.s.why(writeErr))
	case readErr != nil:
		return confirmed, readErr
	}
	return confirmed, nil
}

// Write writes b; a b larger than the packet size goes as concurrent
// requests, and Write returns once the server acknowledged all of them.
// After an error, bytes of b may be missing anywhere within b's range.
func (w *Writer) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.touch()
	if err != nil {
		return n, classifyOp(w.s.conn, "write", w.path, w.s.why(err))
	}
	return n, nil
}

// Close closes the file, which the server acknowledges once its writes are
// done.
func (w *Writer) Close() error {
	defer w.stop()
	if err := w.s.why(w.f.Close()); err != nil {
		return classifyOp(w.s.conn, "close", w.path, err)
	}
	return nil
}

// Rename moves from to to. With replace, an existing to is replaced:
// atomically where the server offers posix-rename@openssh.com, otherwise
// by removing it first (a window in which to does not exist). Without
// replace, plain SFTP rename, which refuses an existing to.
func (s *Session) Rename(ctx context.Context, from, to string, replace bool) error {
	if replace && s.conn.ext.posixRename {
		err := s.do(ctx, "RENAME "+from, func() error { return s.client.PosixRename(from, to) })
		return classifyOp(s.conn, "rename", from, err)
	}
	err := s.do(ctx, "RENAME "+from, func() error { return s.client.Rename(from, to) })
	if err == nil || !replace || s.Broken() {
		return classifyOp(s.conn, "rename", from, err)
	}
	if exists, xerr := s.Exists(ctx, to); xerr != nil || !exists {
		return classifyOp(s.conn, "rename", from, err)
	}
	if err := s.Remove(ctx, to); err != nil {
		return err
	}
	err = s.do(ctx, "RENAME "+from, func() error { return s.client.Rename(from, to) })
	return classifyOp(s.conn, "rename", from, err)
}

// AtomicReplace reports whether Rename with replace is atomic here.
func (s *Session) AtomicReplace() bool { return s.conn.ext.posixRename }

// Remove deletes a file.
func (s *Session) Remove(ctx context.Context, p string) error {
	err := s.do(ctx, "REMOVE "+p, func() error { return s.client.Remove(p) })
	return classifyOp(s.conn, "remove", p, err)
}

// MkdirAll creates dir and its parents as needed.
func (s *Session) MkdirAll(ctx context.Context, dir string) error {
	dir = path.Clean(dir)
	if dir == "." || dir == "/" || s.dirs[dir] {
		return nil
	}
	err := s.do(ctx, "MKDIR "+dir, func() error { return s.client.MkdirAll(dir) })
	if err != nil {
		return classifyOp(s.conn, "create directory", dir, err)
	}
	if s.dirs == nil {
		s.dirs = map[string]bool{}
	}
	for d := dir; d != "." && d != "/" && !s.dirs[d]; d = path.Dir(d) {
		s.dirs[d] = true
	}
	return nil
}

// List returns the names in dir, hidden ones included.
func (s *Session) List(ctx context.Context, dir string) ([]string, error) {
	var names []string
	err := s.do(ctx, "READDIR "+dir, func() error {
		fis, err := s.client.ReadDir(dir)
		for _, fi := range fis {
			names = append(names, path.Base(fi.Name()))
		}
		return err
	})
	if err != nil {
		return nil, classifyOp(s.conn, "list", dir, err)
	}
	return names, nil
}
