package transfer

import (
	"context"
	"io"
	"path"
	"strings"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/pool"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/sftpremote"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
	"github.com/ftp-pooler/ftp-pooler/services/internal/taskpath"
)

// SFTPPool is an SFTP endpoint's pool of sessions.
type SFTPPool = pool.PoolOf[*sftpremote.Handle]

// sftpUntrusted is how much of a partial upload's end a resumed upload
// writes again: uploads keep many writes in flight, and after a failure
// any of them may be missing.
const sftpUntrusted = sftpremote.UnconfirmedTail

// sftpEndpoint is an SFTP server reached through the agent's pool.
type sftpEndpoint struct {
	ep   *config.Endpoint
	pool *SFTPPool
}

func (f *sftpEndpoint) id() string { return f.ep.ID }

func (f *sftpEndpoint) resolve(p string) (string, error) { return p, taskpath.Remote(p) }

func (f *sftpEndpoint) open(ctx context.Context, p string, offset int64) (*source, error) {
	h, err := f.pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := h.Open(ctx, p, offset)
	if err != nil {
		f.pool.Put(h)
		return nil, err
	}
	return &source{r: r, size: r.Size, close: func() error {
		err := r.Close()
		f.pool.Put(h)
		return err
	}}, nil
}

func (f *sftpEndpoint) create(ctx context.Context, p string, l *leasev1.Lease) (sink, error) {
	h, err := f.pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	s := &sftpSink{pool: f.pool, h: h, endpoint: f.ep.ID, final: p, tmp: tempName(p, l.Token, "part"), overwrite: l.Transfer.Overwrite, attempt: l.Attempt}
	if err := s.prepare(ctx, l); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// done: as for FTP (priorCommitDone).
func (f *sftpEndpoint) done(ctx context.Context, p string, pc *leasev1.PriorCommit, _ string) (bool, int64, error) {
	return priorCommitDone(ctx, f.pool, p, pc)
}

// sftpSink uploads to a temporary name next to the destination and renames
// it into place on commit.
type sftpSink struct {
	pool      *SFTPPool
	h         *sftpremote.Handle
	endpoint  string
	final     string
	tmp       string
	overwrite leasev1.OverwritePolicy
	offset    int64
	attempt   uint32
	size      int64 // what verify found
}

func (s *sftpSink) prepare(ctx context.Context, l *leasev1.Lease) error {
	if s.overwrite == leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL {
		exists, err := s.h.Exists(ctx, s.final)
		if err != nil {
			return err
		}
		if exists {
			return failure.New(failure.DestinationExists, "%s exists on %s and the task asked not to overwrite it", s.final, s.h)
		}
	}
	if err := s.h.MkdirAll(ctx, path.Dir(s.final)); err != nil {
		return err
	}
	if l.ResumeToken != 0 {
		prev := tempName(s.final, l.ResumeToken, "part")
		if size, err := s.h.Size(ctx, prev); err == nil && size > sftpUntrusted {
			if err := s.h.Rename(ctx, prev, s.tmp, false); err == nil {
				s.offset = size - sftpUntrusted
			}
		}
	}
	if l.Attempt > 1 {
		s.removeStale(ctx)
	}
	if s.h.Broken() {
		return failure.New(failure.ConnectionError, "connection to %s lost while preparing the upload", s.h).At(s.endpoint)
	}
	return nil
}

// removeStale deletes temporary files other deliveries left for final, as
// on FTP: on a retry, every other delivery's lease is gone.
func (s *sftpSink) removeStale(ctx context.Context) {
	dir := path.Dir(s.final)
	names, err := s.h.List(ctx, dir)
	if err != nil {
		return
	}
	prefix, own := tempPrefix(s.final), path.Base(s.tmp)
	for _, n := range names {
		if n != own && strings.HasPrefix(n, prefix) && strings.HasSuffix(n, ".ftp-pooler.part") {
			_ = s.h.Remove(ctx, path.Join(dir, n))
		}
	}
}

func (s *sftpSink) resumed() int64 { return s.offset }

// write truncates the temporary file at the resume offset (a fresh upload
// empties what an earlier delivery of this token left) and appends the
// source with writes kept in flight (Writer.ReadFrom).
func (s *sftpSink) write(ctx context.Context, src io.Reader, progress func(int64), _ func() []byte) (int64, error) {
	w, err := s.h.Create(ctx, s.tmp, s.offset)
	if err != nil {
		return 0, err
	}
	n, err := w.ReadFrom(&counting{r: src, add: progress})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func (s *sftpSink) verify(ctx context.Context) (int64, error) {
	size, err := s.h.Size(ctx, s.tmp)
	if err != nil {
		return 0, err
	}
	s.size = size
	return size, nil
}

// commit renames the upload into place: atomically over an existing file
// where the server offers posix-rename@openssh.com, else (overwrite
// allowed) by removing the old file first. With overwrite = fail, a plain
// SFTP rename, which OpenSSH refuses over an existing file.
func (s *sftpSink) commit(ctx context.Context, _ string) error {
	replace := s.overwrite != leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL
	if err := s.h.Rename(ctx, s.tmp, s.final, replace); err != nil {
		return err
	}
	if s.attempt > 1 || s.size >= resumeMinBytes {
		s.removeStale(ctx)
	}
	s.release()
	return nil
}

func (s *sftpSink) keep() { s.release() }

// abort deletes the temporary file, on a fresh session when this one
// broke, with a context of its own: the transfer's may be what ended.
func (s *sftpSink) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.h == nil || s.h.Broken() {
		s.release()
		h, err := s.pool.Get(ctx)
		if err != nil {
			return
		}
		s.h = h
	}
	_ = s.h.Remove(ctx, s.tmp)
	s.release()
}

func (s *sftpSink) release() {
	if s.h != nil {
		s.pool.Put(s.h)
		s.h = nil
	}
}
