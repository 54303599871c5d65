// Package transfer performs one lease: it streams the source to a temporary
// file at the destination, verifies the size, asks the dispatcher whether the
// lease is still ours, and only then renames the file into place. All four
// directions (FTP→local, local→FTP, FTP→FTP streamed through the agent,
// local→local) share that path.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/pool"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
	"github.com/ftp-pooler/ftp-pooler/services/internal/taskpath"
)

// Job is one lease being performed.
type Job struct {
	Lease *leasev1.Lease
	// Done counts bytes moved; Total is the source size, or -1.
	Done  atomic.Int64
	Total atomic.Int64
	// Commit asks the dispatcher whether the write may become visible.
	Commit func(ctx context.Context, bytes int64) (approved bool, reason string, err error)
}

// Engine performs jobs. It is safe for concurrent use.
type Engine struct {
	conns  *config.Connections
	pools  *pool.Set
	roots  map[string]*os.Root
	cfg    config.Transfer
	logger *slog.Logger
	bufs   sync.Pool
}

// NewEngine opens every local endpoint's root. A base_path that does not
// exist stops start-up: writing into an unmounted volume's mount point is
// how files get lost.
func NewEngine(conns *config.Connections, pools *pool.Set, cfg config.Transfer, logger *slog.Logger) (*Engine, error) {
	e := &Engine{conns: conns, pools: pools, roots: map[string]*os.Root{}, cfg: cfg, logger: logger.With("component", "transfer")}
	e.bufs.New = func() any { b := make([]byte, cfg.BufferSize); return &b }
	for _, id := range conns.IDs() {
		ep, _ := conns.Endpoint(id)
		if ep.Type != config.TypeLocal {
			continue
		}
		root, err := os.OpenRoot(ep.BasePath)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("%s: [%s] base_path: %w", conns.Path, id, err)
		}
		e.roots[id] = root
	}
	return e, nil
}

// Close releases the roots.
func (e *Engine) Close() {
	for _, r := range e.roots {
		r.Close()
	}
}

// Run performs a job and reports its outcome; it never panics on bad input.
func (e *Engine) Run(ctx context.Context, job *Job) *leasev1.Outcome {
	start := time.Now()
	job.Total.Store(-1)
	n, err := e.run(ctx, job)
	o := &leasev1.Outcome{
		BytesTransferred: n,
		Duration:         durationpb.New(time.Since(start)),
		SourceSize:       job.Total.Load(),
	}
	if err == nil {
		o.Status = leasev1.Status_STATUS_SUCCEEDED
		return o
	}
	var fe *failure.Error
	if !errors.As(err, &fe) {
		fe = failure.Wrap(failure.UnknownError, err, "transfer")
	}
	o.Status = leasev1.Status_STATUS_FAILED
	o.ErrorCode, o.ErrorMessage, o.Retryable = fe.Code, fe.Error(), fe.Retryable()
	return o
}

// sink is a destination being written.
type sink interface {
	abort()
}

func (e *Engine) run(ctx context.Context, job *Job) (written int64, err error) {
	spec := job.Lease.Transfer
	src, err := e.endpoint(spec.SrcId, "src_id")
	if err != nil {
		return 0, err
	}
	dst, err := e.endpoint(spec.DstId, "dst_id")
	if err != nil {
		return 0, err
	}
	srcPath, err := resolve(src, spec.SrcPath, "src_path")
	if err != nil {
		return 0, err
	}
	dstPath, err := resolve(dst, spec.DstPath, "dst_path")
	if err != nil {
		return 0, err
	}

	// The whole transfer has a deadline: the configured minimum, extended by
	// the size at the minimum rate once the size is known. Its cause makes
	// the failure a TRANSFER_TIMEOUT wherever it surfaces.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	base := time.Duration(e.cfg.TransferTimeoutSeconds) * time.Second
	if t := job.Lease.TransferTimeout; t != nil && t.AsDuration() > 0 {
		base = t.AsDuration()
	}
	limit := base
	deadline := time.AfterFunc(limit, func() {
		cancel(failure.New(failure.TransferTimeout, "the transfer did not finish within %s", limit))
	})
	defer deadline.Stop()

	progress := func(k int64) { job.Done.Add(k) }
	bufp := e.bufs.Get().(*[]byte)
	defer e.bufs.Put(bufp)

	// Open the source.
	var (
		reader   io.Reader
		size     int64
		closeSrc = func() error { return nil }
	)
	if src.Type == config.TypeLocal {
		ls, err := openLocalSource(e.roots[src.ID], srcPath, 0)
		if err != nil {
			return 0, err
		}
		defer ls.f.Close()
		reader, size = ls.f, ls.size
	} else {
		p, _ := e.pools.Pool(src.ID)
		fs, err := openFTPSource(ctx, p, srcPath, 0)
		if err != nil {
			return 0, err
		}
		defer fs.close() //nolint:errcheck // closed explicitly below; this covers early returns
		reader, size, closeSrc = fs.rc, fs.size, fs.close
	}
	job.Total.Store(size)
	if size > 0 {
		limit = base + time.Duration(float64(size)/float64(e.cfg.MinRateBytesPerSecond)*float64(time.Second))
		deadline.Reset(limit)
	}

	// Write the destination's temporary file, abort it on any failure.
	var open sink
	defer func() {
		if err != nil && open != nil {
			open.abort()
		}
	}()
	var verify func() error
	var commit func() error
	if dst.Type == config.TypeLocal {
		ls, err := openLocalSink(e.roots[dst.ID], dstPath, job.Lease.Token, spec.Overwrite, e.cfg.Fsync)
		if err != nil {
			return 0, err
		}
		open = ls
		if written, err = ls.write(ctx, reader, progress, *bufp); err != nil {
			return written, e.copyError(ctx, err, ls.tmp)
		}
		verify = func() error { return ls.verify(written) }
		commit = ls.commit
	} else {
		p, _ := e.pools.Pool(dst.ID)
		fsink, err := openFTPSink(ctx, p, dstPath, job.Lease.Token, spec.Overwrite)
		if err != nil {
			return 0, err
		}
		open = fsink // abort releases its connection on failure
		if written, err = fsink.write(ctx, reader, progress); err != nil {
			return written, e.copyError(ctx, err, fsink.tmp)
		}
		verify = func() error { return fsink.verify(ctx, written) }
		commit = func() error { return fsink.commit(ctx) }
	}
	// The source's final reply tells a complete download from a cut one.
	if err := closeSrc(); err != nil {
		return written, err
	}
	if size >= 0 && written != size {
		return written, failure.New(failure.IOError, "read %d bytes of %s, whose size is %d", written, spec.SrcPath, size)
	}
	if err := verify(); err != nil {
		return written, err
	}

	if ctx.Err() != nil {
		return written, e.copyError(ctx, ctx.Err(), "")
	}
	approved, reason, err := job.Commit(ctx, written)
	if err != nil {
		return written, failure.Wrap(failure.ConnectionError, err, "asking the dispatcher to commit")
	}
	if !approved {
		return written, failure.New(failure.Cancelled, "the dispatcher refused the commit: %s", reason)
	}
	if err := commit(); err != nil {
		return written, err
	}
	if fsink, ok := open.(*ftpSink); ok {
		fsink.release()
	}
	open = nil
	return written, nil
}

// copyError classifies a failed copy: a context cause wins, then whatever
// the FTP or file layer classified.
func (e *Engine) copyError(ctx context.Context, err error, target string) error {
	if ctx.Err() != nil {
		var cf *failure.Error
		if errors.As(context.Cause(ctx), &cf) {
			return cf
		}
	}
	var fe *failure.Error
	if errors.As(err, &fe) {
		return fe
	}
	return classifyLocal("write", target, err)
}

func (e *Engine) endpoint(id, field string) (*config.Endpoint, error) {
	ep, ok := e.conns.Endpoint(id)
	if !ok {
		return nil, failure.New(failure.UnknownEndpoint, "%s %q is not an endpoint in this agent's %s", field, id, e.conns.Path)
	}
	return ep, nil
}

func resolve(ep *config.Endpoint, p, field string) (string, error) {
	if ep.Type == config.TypeLocal {
		rel, err := taskpath.Local(ep.BasePath, p)
		if err != nil {
			return "", failure.Wrap(failure.PathRejected, err, "%s", field)
		}
		return rel, nil
	}
	if err := taskpath.Remote(p); err != nil {
		return "", failure.Wrap(failure.PathRejected, err, "%s", field)
	}
	return p, nil
}
