package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// isEscape reports whether os.Root refused a path for leaving the root
// (through ".." or a symlink). The os package does not export the error, so
// its text is matched; TestSymlinkEscapeRejected fails if Go changes it.
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// classifyLocal maps a file system error of op on p to a failure code.
func classifyLocal(op, p string, err error) *failure.Error {
	var fe *failure.Error
	if errors.As(err, &fe) {
		return fe
	}
	code := failure.IOError
	switch {
	case isEscape(err):
		code = failure.PathRejected
	case errors.Is(err, fs.ErrNotExist):
		code = failure.FileNotFound
	case errors.Is(err, fs.ErrPermission):
		code = failure.PermissionDenied
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENAMETOOLONG):
		code = failure.PathRejected
	}
	return failure.Wrap(code, err, "%s %s", op, p)
}

// localSource reads a file below a local endpoint's root.
type localSource struct {
	f    *os.File
	size int64
}

func openLocalSource(root *os.Root, rel string, offset int64) (*localSource, error) {
	f, err := root.Open(rel)
	if err != nil {
		return nil, classifyLocal("open", rel, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, classifyLocal("stat", rel, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, failure.New(failure.InvalidTask, "src_path %s is a directory, not a file", rel)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, classifyLocal("seek", rel, err)
		}
	}
	return &localSource{f: f, size: st.Size()}, nil
}

// localSink writes a temporary file next to the destination and renames it
// into place on commit, so the destination name never shows a partial file.
type localSink struct {
	root      *os.Root
	final     string
	tmp       string
	f         *os.File
	fsync     bool
	overwrite leasev1.OverwritePolicy
}

func openLocalSink(root *os.Root, final string, token uint64, overwrite leasev1.OverwritePolicy, fsync bool) (*localSink, error) {
	dir := path.Dir(final)
	if err := root.MkdirAll(dir, 0o755); err != nil {
		return nil, classifyLocal("create directory", dir, err)
	}
	if overwrite == leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL {
		if _, err := root.Lstat(final); err == nil {
			return nil, failure.New(failure.DestinationExists, "%s exists and the task asked not to overwrite it", final)
		}
	}
	tmp := tempName(final, token, "tmp")
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, classifyLocal("create", tmp, err)
	}
	return &localSink{root: root, final: final, tmp: tmp, f: f, fsync: fsync, overwrite: overwrite}, nil
}

// tempName is a hidden sibling of final that names its delivery, so two
// deliveries never share one and stale ones are recognisable.
func tempName(final string, token uint64, suffix string) string {
	dir, base := path.Split(final)
	// Keep the whole name within the 255-byte limit of most file systems.
	const keep = 180
	if len(base) > keep {
		cut := keep
		for cut > 0 && !isRuneStart(base[cut]) {
			cut--
		}
		base = base[:cut]
	}
	return fmt.Sprintf("%s.%s.%d.ftp-pooler.%s", dir, base, token, suffix)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// write copies src into the temporary file. A plain *os.File source (a
// local copy) goes through copy_file_range in chunks, counting progress
// between them.
func (s *localSink) write(ctx context.Context, src io.Reader, progress func(int64), buf []byte) (int64, error) {
	if lf, ok := src.(*os.File); ok {
		return copyFileChunks(ctx, s.f, lf, progress)
	}
	n, err := io.CopyBuffer(writerOnly{s.f}, &counting{r: src, add: progress}, buf)
	if err != nil {
		return n, err
	}
	return n, nil
}

const chunk = 64 << 20

func copyFileChunks(ctx context.Context, dst, src *os.File, progress func(int64)) (int64, error) {
	var total int64
	for {
		if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
			return total, err
		}
		n, err := dst.ReadFrom(io.LimitReader(src, chunk))
		total += n
		progress(n)
		if err != nil {
			return total, classifyLocal("copy to", dst.Name(), err)
		}
		if n < chunk {
			return total, nil
		}
	}
}

// verify flushes (when configured) and checks the written size.
func (s *localSink) verify(n int64) error {
	if s.fsync {
		if err := s.f.Sync(); err != nil {
			return classifyLocal("fsync", s.tmp, err)
		}
	}
	st, err := s.f.Stat()
	if err != nil {
		return classifyLocal("stat", s.tmp, err)
	}
	if st.Size() != n {
		return failure.New(failure.IOError, "%s holds %d bytes after writing %d", s.tmp, st.Size(), n)
	}
	return nil
}

// commit makes the file visible under its final name.
func (s *localSink) commit() error {
	if err := s.f.Close(); err != nil {
		return classifyLocal("close", s.tmp, err)
	}
	s.f = nil
	if s.overwrite == leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL {
		// Link fails if the name exists, atomically, where rename would replace.
		if err := s.root.Link(s.tmp, s.final); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return failure.New(failure.DestinationExists, "%s appeared during the transfer and the task asked not to overwrite it", s.final)
			}
			return classifyLocal("link", s.final, err)
		}
		_ = s.root.Remove(s.tmp)
	} else if err := s.root.Rename(s.tmp, s.final); err != nil {
		return classifyLocal("rename into place", s.final, err)
	}
	if s.fsync {
		// The rename is durable once its directory is.
		if d, err := s.root.Open(path.Dir(s.final)); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	return nil
}

// abort removes the temporary file.
func (s *localSink) abort() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	_ = s.root.Remove(s.tmp)
}

// writerOnly hides ReadFrom: os.File.ReadFrom falls back to a 32 KiB buffer
// for network sources, ignoring the large one we pass to io.CopyBuffer.
type writerOnly struct{ io.Writer }

// counting reports bytes read as they pass.
type counting struct {
	r   io.Reader
	add func(int64)
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}
