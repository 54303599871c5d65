package sftpremote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
)

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
	return &Reader{s: s, f: f, touch: touch, stop: stop, path: p, Size: fi.Size()}, nil
}

// Read reads the next bytes. A buffer larger than the packet size is
// fetched with concurrent requests (pkg/sftp), which is what makes a
// large buffer fast over a link with latency.
func (r *Reader) Read(b []byte) (int, error) {
	n, err := r.f.Read(b)
	if n > 0 {
		r.touch()
	}
	if err != nil && err != io.EOF {
		return n, classifyOp(r.s.conn, "read", r.path, r.s.why(err))
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
}

// Create opens p for writing at offset, truncating it there (a fresh
// upload at 0 empties the file an earlier delivery left).
func (s *Session) Create(ctx context.Context, p string, offset int64) (*Writer, error) {
	var f *sftp.File
	err := s.do(ctx, "OPEN "+p, func() (err error) {
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
	return &Writer{s: s, f: f, touch: touch, stop: stop, path: p}, nil
}

// Write writes b; a b larger than the packet size goes as concurrent
// requests, and Write returns once the server acknowledged all of them.
// After an error, bytes of b may be missing anywhere within b's range: a
// resumed upload must not trust the last WriteChunk bytes of the file.
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
	if dir == "" || dir == "." || dir == "/" {
		return nil
	}
	err := s.do(ctx, "MKDIR "+dir, func() error { return s.client.MkdirAll(dir) })
	return classifyOp(s.conn, "create directory", dir, err)
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
