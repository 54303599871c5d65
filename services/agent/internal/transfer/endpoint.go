package transfer

import (
	"context"
	"io"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/pool"
	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/sftpremote"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

// endpoint is what the engine needs of one kind of endpoint. Each kind
// implements it once (local.go, ftp.go, sftp.go); the engine picks the kind once per
// side of a lease and never asks again, so a new kind (SFTP) is one more
// implementation, with the guarantees the engine gives every kind: the size
// verified, the commit asked for, one outcome.
type endpoint interface {
	// id is the endpoint's section name, for failures.
	id() string
	// resolve checks a task's path for this endpoint and returns it as the
	// endpoint's operations take it.
	resolve(p string) (string, error)
	// open opens a file for reading from offset, with its size (-1 when the
	// endpoint cannot tell).
	open(ctx context.Context, p string, offset int64) (*source, error)
	// create starts writing p through a temporary file of the lease's
	// delivery, continuing an earlier delivery's when the lease says so
	// and removing stale ones.
	create(ctx context.Context, p string, l *leasev1.Lease) (sink, error)
	// done reports whether p already holds this task's result, with its
	// size: an earlier delivery's approved commit (pc, when not nil), or,
	// where the endpoint records it, the Kafka record origin. An error
	// sends the lease back (see pool.ErrBusy); "cannot tell" is false.
	done(ctx context.Context, p string, pc *leasev1.PriorCommit, origin string) (bool, int64, error)
}

// source is an open source file positioned at its start offset.
type source struct {
	r     io.Reader
	size  int64
	close func() error
}

// endpointOf picks an endpoint's implementation by its type: the one place
// the engine looks at it.
func (e *Engine) endpointOf(ep *config.Endpoint) endpoint {
	switch ep.Type {
	case config.TypeLocal:
		return &localEndpoint{e: e, ep: ep, root: e.roots[ep.ID]}
	case config.TypeSFTP:
		pl, _ := pool.Lookup[*sftpremote.Handle](e.pools, ep.ID)
		return &sftpEndpoint{ep: ep, pool: pl}
	default:
		pl, _ := e.pools.Pool(ep.ID)
		return &ftpEndpoint{ep: ep, pool: pl}
	}
}

// locate finds a task's endpoint and resolves the path on it.
func (e *Engine) locate(id, p, side string) (endpoint, string, error) {
	ep, ok := e.conns.Endpoint(id)
	if !ok {
		return nil, "", failure.New(failure.UnknownEndpoint, "%s_id %q is not an endpoint in this agent's %s", side, id, e.conns.Path)
	}
	end := e.endpointOf(ep)
	resolved, err := end.resolve(p)
	if err != nil {
		return nil, "", failure.Wrap(failure.PathRejected, err, "%s_path", side)
	}
	return end, resolved, nil
}
