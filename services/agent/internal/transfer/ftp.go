package transfer

import (
	"context"
	"errors"
	"io"
	"os"
	"path"
	"strings"
	"time"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/pool"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/remote"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
	"github.com/ftp-pooler/ftp-pooler/services/internal/taskpath"
)

// ftpSource reads a file from an FTP endpoint on a pooled connection.
type ftpSource struct {
	pool *pool.Pool
	conn *remote.Conn
	rc   *remote.Download
	size int64
}

func openFTPSource(ctx context.Context, p *pool.Pool, file string, offset int64) (*ftpSource, error) {
	conn, err := p.Get(ctx)
	if err != nil {
		return nil, err
	}
	// A server that says in RETR's reply how large the file is needs no
	// SIZE before a whole-file download (remote/announce.go); the size
	// still bounds the deadline and is verified against what arrives.
	size := int64(-1)
	if offset > 0 || !conn.AnnouncesSize() {
		if size, err = conn.Size(ctx, file); err != nil {
			p.Put(conn)
			return nil, err
		}
	}
	rc, err := conn.Retr(ctx, file, offset)
	if err != nil {
		p.Put(conn)
		return nil, err
	}
	if size < 0 {
		size = rc.Announced
	}
	return &ftpSource{pool: p, conn: conn, rc: rc, size: size}, nil
}

// close ends the download, checking the server's transfer-complete reply,
// and returns the connection.
func (s *ftpSource) close() error {
	if s.rc == nil {
		return nil
	}
	err := s.rc.Close()
	s.rc = nil
	s.pool.Put(s.conn)
	return err
}

// ftpSink uploads to a temporary name next to the destination and renames
// it into place on commit.
type ftpSink struct {
	pool      *pool.Pool
	conn      *remote.Conn
	final     string
	tmp       string
	overwrite leasev1.OverwritePolicy
	offset    int64
	attempt   uint32
	size      int64 // what verify found
}

func openFTPSink(ctx context.Context, p *pool.Pool, final string, l *leasev1.Lease) (*ftpSink, error) {
	conn, err := p.Get(ctx)
	if err != nil {
		return nil, err
	}
	s := &ftpSink{pool: p, conn: conn, final: final, tmp: tempName(final, l.Token, "part"), overwrite: l.Transfer.Overwrite, attempt: l.Attempt}
	if s.overwrite == leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL {
		exists, err := conn.Exists(ctx, final)
		if err != nil {
			s.release()
			return nil, err
		}
		if exists {
			s.release()
			return nil, failure.New(failure.DestinationExists, "%s exists on %s and the task asked not to overwrite it", final, conn)
		}
	}
	if err := conn.MkdirAll(ctx, path.Dir(final)); err != nil {
		s.release()
		return nil, err
	}
	if l.ResumeToken != 0 {
		prev := tempName(final, l.ResumeToken, "part")
		if size, err := conn.Size(ctx, prev); err == nil && size > 0 {
			if err := conn.Rename(ctx, prev, s.tmp); err == nil {
				s.offset = size
			}
		}
	}
	if l.Attempt > 1 {
		s.removeStale(ctx)
	}
	if conn.Broken() {
		s.release()
		return nil, failure.New(failure.ConnectionError, "connection to %s lost while preparing the upload", conn).At(conn.Endpoint().ID)
	}
	return s, nil
}

// removeStale deletes temporary files other deliveries left for final. FTP
// gives no cheap modification time, so unlike local cleanup it does not
// wait for them to age: on a retry, every other delivery's lease is gone.
//
// Temporary names start with a dot, which vsftpd and pure-ftpd leave out of
// a plain NLST: "NLST -a" lists them (both servers take ls options); a
// server that does not gets the plain listing.
func (s *ftpSink) removeStale(ctx context.Context) {
	dir := path.Dir(s.final)
	names, err := s.conn.NameList(ctx, "-a "+dir)
	if err != nil && !s.conn.Broken() {
		names, err = s.conn.NameList(ctx, dir)
	}
	if err != nil {
		return
	}
	prefix, own := tempPrefix(s.final), path.Base(s.tmp)
	for _, n := range names {
		n = path.Base(n)
		if n != own && strings.HasPrefix(n, prefix) && strings.HasSuffix(n, ".ftp-pooler.part") {
			_ = s.conn.Delete(ctx, path.Join(dir, n))
		}
	}
}

func (s *ftpSink) resumed() int64 { return s.offset }

func (s *ftpSink) write(ctx context.Context, src io.Reader, progress func(int64), _ func() []byte) (int64, error) {
	var n int64
	var r io.Reader = &counting{r: src, add: func(k int64) { n += k; progress(k) }}
	if f, ok := src.(*os.File); ok {
		// A local file: the data connection may send it with sendfile.
		r = &countingFile{counting: r.(*counting), f: f}
	}
	err := s.conn.Stor(ctx, s.tmp, r, s.offset)
	return n, err
}

// countingFile is a counting reader over a local file, which the data
// connection can send with sendfile (remote.FileReader).
type countingFile struct {
	*counting
	f *os.File
}

func (c *countingFile) SendFile() (*os.File, func(int64)) { return c.f, c.add }

func (s *ftpSink) verify(ctx context.Context) (int64, error) {
	size, err := s.conn.Size(ctx, s.tmp)
	if err != nil {
		return 0, err
	}
	if size < 0 {
		return 0, failure.New(failure.IOError, "%s does not report file sizes (SIZE); the upload cannot be verified", s.conn).At(s.conn.Endpoint().ID)
	}
	s.size = size
	return size, nil
}

func (s *ftpSink) commit(ctx context.Context, _ string) error {
	err := s.conn.Rename(ctx, s.tmp, s.final)
	if err != nil && s.overwrite != leasev1.OverwritePolicy_OVERWRITE_POLICY_FAIL && !s.conn.Broken() {
		// Some servers refuse to rename over an existing file: replace it.
		if exists, _ := s.conn.Exists(ctx, s.final); exists {
			if err = s.conn.Delete(ctx, s.final); err == nil {
				err = s.conn.Rename(ctx, s.tmp, s.final)
			}
		}
	}
	if err == nil {
		if s.attempt > 1 || s.size >= resumeMinBytes {
			// The approved commit fenced every earlier delivery: remove
			// what they left, including files written since this delivery
			// started (a zombie agent's) and partials kept for a delivery
			// that never came.
			s.removeStale(ctx)
		}
		s.release()
	}
	return err
}

// keep leaves the partial upload on the server for a later delivery.
func (s *ftpSink) keep() { s.release() }

// abort deletes the temporary file, on the same connection when it still
// works or a fresh one otherwise, with a context of its own: the transfer's
// may be what ended.
func (s *ftpSink) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := s.conn
	if conn == nil || conn.Broken() {
		if conn != nil {
			s.release()
		}
		var err error
		if conn, err = s.pool.Get(ctx); err != nil {
			return
		}
		s.conn = conn
	}
	_ = conn.Delete(ctx, s.tmp)
	s.release()
}

func (s *ftpSink) release() {
	if s.conn != nil {
		s.pool.Put(s.conn)
		s.conn = nil
	}
}

// ftpEndpoint is an FTP server reached through the agent's pool.
type ftpEndpoint struct {
	ep   *config.Endpoint
	pool *pool.Pool
}

func (f *ftpEndpoint) id() string { return f.ep.ID }

func (f *ftpEndpoint) resolve(p string) (string, error) { return p, taskpath.Remote(p) }

func (f *ftpEndpoint) open(ctx context.Context, p string, offset int64) (*source, error) {
	fs, err := openFTPSource(ctx, f.pool, p, offset)
	if err != nil {
		return nil, err
	}
	return &source{r: fs.rc, size: fs.size, close: fs.close}, nil
}

func (f *ftpEndpoint) create(ctx context.Context, p string, l *leasev1.Lease) (sink, error) {
	return openFTPSink(ctx, f.pool, p, l)
}

// done: FTP keeps no record origin; see priorCommitDone.
func (f *ftpEndpoint) done(ctx context.Context, p string, pc *leasev1.PriorCommit, _ string) (bool, int64, error) {
	return priorCommitDone(ctx, f.pool, p, pc)
}

// remoteFiles is what priorCommitDone asks of a pooled FTP connection or
// SFTP session.
type remoteFiles interface {
	pool.Conn
	Size(ctx context.Context, p string) (int64, error)
	Exists(ctx context.Context, p string) (bool, error)
}

// priorCommitDone reports whether an approved earlier commit (pc) left p
// at its size with its temporary file renamed away. Only pool.ErrBusy is
// an error: the lease goes back rather than redo a transfer that may be
// done; any other failure to look means "not known to be done", and the
// transfer runs again.
func priorCommitDone[C remoteFiles](ctx context.Context, pl *pool.PoolOf[C], p string, pc *leasev1.PriorCommit) (bool, int64, error) {
	if pc == nil {
		return false, 0, nil
	}
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
