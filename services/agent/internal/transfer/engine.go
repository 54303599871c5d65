// Package transfer performs one lease: it streams the source to a temporary
// file at the destination, verifies the size, asks the dispatcher whether the
// lease is still ours, and only then renames the file into place. All four
// directions (FTP→local, local→FTP, FTP→FTP streamed through the agent,
// local→local) share that path.
//
// A delivery builds on what earlier ones of the same task left: when an
// earlier commit was approved and the destination holds its result, nothing
// moves again; when an earlier delivery died mid-transfer, its temporary
// file is taken over and the copy continues where it stopped (REST).
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

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/pool"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
	"github.com/ftp-pooler/ftp-pooler/services/internal/taskpath"
)

// resumeMinBytes is the least a temporary file must hold to be kept for a
// later delivery to continue: smaller ones cost less to send again than a
// file left behind when no later delivery comes (its dispatcher died, and
// its successor leases the task afresh). Every commit of a file this large
// removes what other deliveries left for it.
const resumeMinBytes = 1 << 20

// ErrHandOver, as (or wrapped in) the cause of a job's cancellation, keeps
// the partial temporary file in place instead of removing it: the lease is
// going to another delivery, which continues from it.
var ErrHandOver = errors.New("handing the transfer over")

// Job is one lease being performed.
type Job struct {
	Lease *leasev1.Lease
	// Done counts bytes moved; Total is the source size, or -1.
	Done  atomic.Int64
	Total atomic.Int64
	// Commit asks the dispatcher whether the write may become visible.
	Commit func(ctx context.Context, bytes int64) (approved bool, reason string, err error)
	// ConnectionBusy is set when Run returned no outcome because every
	// connection the agent may open to an endpoint stayed busy for
	// lease.connection_wait: the lease goes back to the dispatcher, which
	// leases it again with a connection of its own.
	ConnectionBusy bool
}

// Engine performs jobs. It is safe for concurrent use.
type Engine struct {
	conns  *config.Connections
	pools  *pool.Set
	roots  map[string]*os.Root
	cfg    config.Transfer
	logger *slog.Logger
	bufs   sync.Pool
	dirs   dirSyncer
	tracer trace.Tracer
	// StaleAfter is how old another delivery's temporary file must be
	// before a retry removes it (its writer is surely gone).
	StaleAfter time.Duration
}

// NewEngine opens every local endpoint's root. A base_path that does not
// exist stops start-up: writing into an unmounted volume's mount point is
// how files get lost.
func NewEngine(conns *config.Connections, pools *pool.Set, cfg config.Transfer, tracer trace.Tracer, logger *slog.Logger) (*Engine, error) {
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	e := &Engine{conns: conns, pools: pools, roots: map[string]*os.Root{}, cfg: cfg, tracer: tracer,
		logger: logger.With("component", "transfer"), StaleAfter: time.Minute}
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

// outcome is what run found out besides the error.
type outcome struct {
	written     int64 // bytes this delivery wrote
	total       int64 // size of the destination file it produced
	resumedFrom int64
	alreadyDone bool
}

// Run performs a job and reports its outcome; it never panics on bad input.
func (e *Engine) Run(ctx context.Context, job *Job) *leasev1.Outcome {
	start := time.Now()
	job.Total.Store(-1)
	res, err := e.run(ctx, job)
	if errors.Is(err, pool.ErrBusy) {
		job.ConnectionBusy = true
		return nil
	}
	o := &leasev1.Outcome{
		BytesTransferred: res.written,
		Duration:         durationpb.New(time.Since(start)),
		SourceSize:       job.Total.Load(),
		ResumedFrom:      res.resumedFrom,
		AlreadyDone:      res.alreadyDone,
	}
	if res.alreadyDone {
		o.BytesTransferred = res.total
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
	o.ErrorCode, o.ErrorMessage, o.Retryable, o.FailedEndpoint = fe.Code, fe.Error(), fe.Retryable(), fe.Endpoint
	o.EndpointUnreachable = fe.Unreachable && fe.Endpoint != ""
	if fe.ServerFull && fe.Endpoint != "" {
		o.EndpointFull, o.EndpointAccepted = true, uint32(max(fe.Accepted, 0))
	}
	return o
}

// source is an open source file positioned at its start offset.
type source struct {
	r     io.Reader
	size  int64
	close func() error
}

// sink is a destination being written.
type sink interface {
	// write appends the rest of the source to the temporary file.
	write(ctx context.Context, src io.Reader, progress func(int64), buf []byte) (int64, error)
	// verify reports the temporary file's size; a local sink starts
	// flushing it to disk, which commit waits for before the rename.
	verify(ctx context.Context) (int64, error)
	commit(ctx context.Context, origin string) error
	abort()
	// keep closes the temporary file and leaves it for a later delivery.
	keep()
	// resumed is the size of an earlier delivery's file taken over.
	resumed() int64
}

func (e *Engine) run(ctx context.Context, job *Job) (res outcome, err error) {
	l := job.Lease
	spec := l.Transfer
	src, srcPath, err := e.locate(spec.SrcId, spec.SrcPath, "src")
	if err != nil {
		return res, err
	}
	dst, dstPath, err := e.locate(spec.DstId, spec.DstPath, "dst")
	if err != nil {
		return res, err
	}

	// The whole transfer has a deadline: the configured minimum, extended by
	// the size at the minimum rate once the size is known. Its cause makes
	// the failure a TRANSFER_TIMEOUT wherever it surfaces.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	base := time.Duration(e.cfg.TransferTimeoutSeconds) * time.Second
	if t := l.TransferTimeout; t != nil && t.AsDuration() > 0 {
		base = t.AsDuration()
	}
	limit := base
	deadline := time.AfterFunc(limit, func() {
		cancel(failure.New(failure.TransferTimeout, "the transfer did not finish within %s", limit))
	})
	defer deadline.Stop()

	if pc := l.PriorCommit; pc != nil {
		done, size, err := e.committedEarlier(ctx, dst, dstPath, pc)
		if err != nil {
			return res, err
		}
		if done {
			return outcome{total: size, alreadyDone: true}, nil
		}
	}
	if dst.Type == config.TypeLocal {
		if size, ok := committedRecord(e.roots[dst.ID], dstPath, spec.Origin); ok {
			// This record's result is already in place (a redelivery after
			// the commit, whichever dispatcher made it): nothing to move.
			return outcome{total: size, alreadyDone: true}, nil
		}
	}

	// Open the destination first: it may continue an earlier delivery's
	// file, which decides where the source starts.
	snk, err := e.openSink(ctx, dst, dstPath, l)
	if err != nil {
		return res, err
	}
	defer func() {
		switch {
		case err == nil:
		case errors.Is(context.Cause(ctx), ErrHandOver) && job.Done.Load() >= resumeMinBytes:
			snk.keep()
		default:
			snk.abort()
		}
	}()
	offset := snk.resumed()
	res.resumedFrom = offset

	srcFile, err := e.openSource(ctx, src, srcPath, offset)
	if err != nil && offset > 0 {
		// The source cannot start mid-file (no REST): start over.
		e.logger.Info("cannot resume; starting over", "task_id", spec.TaskId, "offset", offset, "error", err)
		snk.abort()
		l = withoutResume(l)
		if snk, err = e.openSink(ctx, dst, dstPath, l); err != nil {
			return res, err
		}
		offset, res.resumedFrom = 0, 0
		srcFile, err = e.openSource(ctx, src, srcPath, 0)
	}
	if err != nil {
		return res, err
	}
	defer srcFile.close() //nolint:errcheck // closed explicitly below; this covers early returns
	job.Total.Store(srcFile.size)
	job.Done.Store(offset)
	if srcFile.size > 0 {
		limit = base + time.Duration(float64(srcFile.size-offset)/float64(e.cfg.MinRateBytesPerSecond)*float64(time.Second))
		deadline.Reset(limit)
	}
	if srcFile.size >= 0 && offset > srcFile.size {
		return res, failure.New(failure.IOError, "the earlier delivery's file holds %d bytes, more than the source's %d", offset, srcFile.size)
	}

	bufp := e.bufs.Get().(*[]byte)
	defer e.bufs.Put(bufp)
	res.written, err = snk.write(ctx, srcFile.r, func(k int64) { job.Done.Add(k) }, *bufp)
	if err != nil {
		return res, e.copyError(ctx, err, spec.DstPath)
	}
	// The source's final reply tells a complete download from a cut one.
	if err := srcFile.close(); err != nil {
		return res, err
	}
	size, err := snk.verify(ctx)
	if err != nil {
		return res, err
	}
	if size != offset+res.written {
		return res, failure.New(failure.IOError, "the temporary file holds %d bytes after writing %d", size, offset+res.written).At(dst.ID)
	}
	if srcFile.size >= 0 && size != srcFile.size {
		return res, failure.New(failure.IOError, "wrote %d bytes of %s, whose size is %d", size, spec.SrcPath, srcFile.size)
	}
	res.total = size
	if ctx.Err() != nil {
		return res, e.copyError(ctx, ctx.Err(), "")
	}
	ctx, span := e.tracer.Start(ctx, "commit", trace.WithAttributes(attribute.Int64("ftp_pooler.bytes", size)))
	defer span.End()
	approved, reason, err := job.Commit(ctx, size)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return res, failure.Wrap(failure.ConnectionError, err, "asking the dispatcher to commit")
	}
	if !approved {
		span.SetStatus(codes.Error, reason)
		return res, failure.New(failure.Cancelled, "the dispatcher refused the commit: %s", reason)
	}
	if err := snk.commit(ctx, spec.Origin); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return res, err
	}
	return res, nil
}

func withoutResume(l *leasev1.Lease) *leasev1.Lease {
	c := proto.Clone(l).(*leasev1.Lease)
	c.ResumeToken, c.ResumeOffset = 0, 0
	return c
}

// locate finds an endpoint and resolves a path on it.
func (e *Engine) locate(id, p, side string) (*config.Endpoint, string, error) {
	ep, ok := e.conns.Endpoint(id)
	if !ok {
		return nil, "", failure.New(failure.UnknownEndpoint, "%s_id %q is not an endpoint in this agent's %s", side, id, e.conns.Path)
	}
	if ep.Type == config.TypeLocal {
		rel, err := taskpath.Local(ep.BasePath, p)
		if err != nil {
			return nil, "", failure.Wrap(failure.PathRejected, err, "%s_path", side)
		}
		return ep, rel, nil
	}
	if err := taskpath.Remote(p); err != nil {
		return nil, "", failure.Wrap(failure.PathRejected, err, "%s_path", side)
	}
	return ep, p, nil
}

func (e *Engine) openSource(ctx context.Context, ep *config.Endpoint, p string, offset int64) (*source, error) {
	if ep.Type == config.TypeLocal {
		ls, err := openLocalSource(e.roots[ep.ID], p, offset)
		if err != nil {
			return nil, err
		}
		return &source{r: ls.f, size: ls.size, close: func() error { return ls.f.Close() }}, nil
	}
	pl, _ := e.pools.Pool(ep.ID)
	fs, err := openFTPSource(ctx, pl, p, offset)
	if err != nil {
		return nil, err
	}
	return &source{r: fs.rc, size: fs.size, close: fs.close}, nil
}

func (e *Engine) openSink(ctx context.Context, ep *config.Endpoint, p string, l *leasev1.Lease) (sink, error) {
	if ep.Type == config.TypeLocal {
		return openLocalSink(e.roots[ep.ID], p, l, e.cfg.Fsync, &e.dirs, e.StaleAfter)
	}
	pl, _ := e.pools.Pool(ep.ID)
	return openFTPSink(ctx, pl, p, l)
}

// committedEarlier checks an earlier delivery's approved commit: its
// temporary file is gone (renamed) and the destination has its size.
//
// Only pool.ErrBusy is returned as an error: the lease goes back rather
// than redo a transfer that may be done. Anything else means "not known to
// be done", and the transfer runs again.
func (e *Engine) committedEarlier(ctx context.Context, ep *config.Endpoint, p string, pc *leasev1.PriorCommit) (bool, int64, error) {
	if ep.Type == config.TypeLocal {
		root := e.roots[ep.ID]
		st, err := root.Stat(p)
		if err != nil || st.Size() != pc.Bytes {
			return false, 0, nil
		}
		_, err = root.Lstat(tempName(p, pc.Token, "tmp"))
		return errors.Is(err, os.ErrNotExist), st.Size(), nil
	}
	pl, _ := e.pools.Pool(ep.ID)
	conn, err := pl.Get(ctx)
	if errors.Is(err, pool.ErrBusy) {
		return false, 0, err
	}
	if err != nil {
		return false, 0, nil
	}
	defer pl.Put(conn)
	size, err := conn.Size(ctx, p)
	if err != nil || size != pc.Bytes {
		return false, 0, nil
	}
	exists, err := conn.Exists(ctx, tempName(p, pc.Token, "part"))
	return err == nil && !exists, size, nil
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
