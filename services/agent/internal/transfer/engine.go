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

// sink is a destination being written.
type sink interface {
	// write appends the rest of the source to the temporary file.
	write(ctx context.Context, src io.Reader, progress func(int64), buffer func() []byte) (int64, error)
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
	ctx, dl := e.withDeadline(ctx, l)
	defer dl.stop()

	// A redelivery after the commit (whichever dispatcher made it) finds
	// the result in place: nothing to move.
	if done, size, err := dst.done(ctx, dstPath, l.PriorCommit, spec.Origin); err != nil || done {
		return outcome{total: size, alreadyDone: done}, err
	}
	snk, srcFile, offset, err := e.openEnds(ctx, src, srcPath, dst, dstPath, l)
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
	defer srcFile.close() //nolint:errcheck // closed explicitly after the copy; this covers early returns
	res.resumedFrom = offset
	job.Total.Store(srcFile.size)
	job.Done.Store(offset)
	if srcFile.size > 0 {
		dl.extend(srcFile.size-offset, e.cfg.MinRateBytesPerSecond)
	}
	if srcFile.size >= 0 && offset > srcFile.size {
		return res, failure.New(failure.IOError, "the earlier delivery's file holds %d bytes, more than the source's %d", offset, srcFile.size)
	}
	res.written, res.total, err = e.copyVerified(ctx, job, snk, srcFile, offset, dst.id())
	if err != nil {
		return res, err
	}
	return res, e.commit(ctx, job, snk, res.total)
}

// transferDeadline is a whole transfer's: the configured minimum, extended
// by the size at the minimum rate once the size is known. Its cause makes
// the failure a TRANSFER_TIMEOUT wherever it surfaces.
type transferDeadline struct {
	base   time.Duration
	limit  atomic.Int64 // a time.Duration, read when the timer fires
	timer  *time.Timer
	cancel context.CancelCauseFunc
}

func (e *Engine) withDeadline(ctx context.Context, l *leasev1.Lease) (context.Context, *transferDeadline) {
	ctx, cancel := context.WithCancelCause(ctx)
	d := &transferDeadline{base: time.Duration(e.cfg.TransferTimeoutSeconds) * time.Second, cancel: cancel}
	if t := l.TransferTimeout; t != nil && t.AsDuration() > 0 {
		d.base = t.AsDuration()
	}
	d.limit.Store(int64(d.base))
	d.timer = time.AfterFunc(d.base, func() {
		cancel(failure.New(failure.TransferTimeout, "the transfer did not finish within %s", time.Duration(d.limit.Load())))
	})
	return ctx, d
}

// extend gives the transfer time for n more bytes at minRate bytes/s.
func (d *transferDeadline) extend(n, minRate int64) {
	limit := d.base + time.Duration(float64(n)/float64(minRate)*float64(time.Second))
	d.limit.Store(int64(limit))
	d.timer.Reset(limit)
}

func (d *transferDeadline) stop() {
	d.timer.Stop()
	d.cancel(nil)
}

// openEnds opens the destination first (it may continue an earlier
// delivery's file, which decides where the source starts), then the source
// at that offset; a source that cannot start mid-file (no REST) makes both
// start over. On error nothing is left open.
func (e *Engine) openEnds(ctx context.Context, src endpoint, srcPath string, dst endpoint, dstPath string, l *leasev1.Lease) (sink, *source, int64, error) {
	snk, err := dst.create(ctx, dstPath, l)
	if err != nil {
		return nil, nil, 0, err
	}
	offset := snk.resumed()
	srcFile, err := src.open(ctx, srcPath, offset)
	if err != nil && offset > 0 {
		e.logger.Info("cannot resume; starting over", "task_id", l.Transfer.GetTaskId(), "offset", offset, "error", err)
		snk.abort()
		if snk, err = dst.create(ctx, dstPath, withoutResume(l)); err != nil {
			return nil, nil, 0, err
		}
		offset = 0
		srcFile, err = src.open(ctx, srcPath, 0)
	}
	if err != nil {
		snk.abort()
		return nil, nil, 0, err
	}
	return snk, srcFile, offset, nil
}

// copyVerified copies the source into the temporary file and checks what
// arrived: the source's final reply (a cut download is an error), the
// temporary file's size against what was written, and against the source's.
func (e *Engine) copyVerified(ctx context.Context, job *Job, snk sink, srcFile *source, offset int64, dstID string) (written, size int64, err error) {
	spec := job.Lease.Transfer
	// Taken only by a sink that copies through it: most paths copy with
	// the source's or the destination's own buffers (WriteTo, sendfile),
	// and 16 idle 1 MiB buffers were a quarter of the live heap of 16
	// concurrent SFTP downloads.
	var bufp *[]byte
	buffer := func() []byte {
		if bufp == nil {
			bufp = e.bufs.Get().(*[]byte)
		}
		return *bufp
	}
	defer func() {
		if bufp != nil {
			e.bufs.Put(bufp)
		}
	}()
	written, err = snk.write(ctx, srcFile.r, func(k int64) { job.Done.Add(k) }, buffer)
	if err != nil {
		return written, 0, e.copyError(ctx, err, spec.DstPath)
	}
	if err := srcFile.close(); err != nil {
		return written, 0, err
	}
	size, err = snk.verify(ctx)
	if err != nil {
		return written, 0, err
	}
	if size != offset+written {
		return written, 0, failure.New(failure.IOError, "the temporary file holds %d bytes after writing %d", size, offset+written).At(dstID)
	}
	if srcFile.size >= 0 && size != srcFile.size {
		return written, 0, failure.New(failure.IOError, "wrote %d bytes of %s, whose size is %d", size, spec.SrcPath, srcFile.size)
	}
	if ctx.Err() != nil {
		return written, size, e.copyError(ctx, ctx.Err(), "")
	}
	return written, size, nil
}

// commit asks the dispatcher whether the lease is still ours and, only if
// so, makes the write visible.
func (e *Engine) commit(ctx context.Context, job *Job, snk sink, size int64) error {
	ctx, span := e.tracer.Start(ctx, "commit", trace.WithAttributes(attribute.Int64("ftp_pooler.bytes", size)))
	defer span.End()
	approved, reason, err := job.Commit(ctx, size)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return failure.Wrap(failure.ConnectionError, err, "asking the dispatcher to commit")
	}
	if !approved {
		span.SetStatus(codes.Error, reason)
		return failure.New(failure.Cancelled, "the dispatcher refused the commit: %s", reason)
	}
	if err := snk.commit(ctx, job.Lease.Transfer.Origin); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	return nil
}

func withoutResume(l *leasev1.Lease) *leasev1.Lease {
	c := proto.Clone(l).(*leasev1.Lease)
	c.ResumeToken, c.ResumeOffset = 0, 0
	return c
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
