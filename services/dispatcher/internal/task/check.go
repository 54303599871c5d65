package task

import (
	"path"
	"path/filepath"
	"strings"

	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
	"github.com/ftp-pooler/ftp-pooler/services/internal/taskpath"
)

// Check decides whether a task can be performed with these endpoints. A task
// that cannot fails at once with a specific code, without being leased.
// defaultLimit is the connection limit of endpoints without max_connections.
func Check(t *Task, conns *config.Connections, defaultLimit int) *failure.Error {
	src, ok := conns.Endpoint(t.SrcID)
	if !ok {
		return failure.New(failure.UnknownEndpoint, "src_id %q is not an endpoint in %s (known: %v)", t.SrcID, conns.Path, conns.IDs())
	}
	dst, ok := conns.Endpoint(t.DstID)
	if !ok {
		return failure.New(failure.UnknownEndpoint, "dst_id %q is not an endpoint in %s (known: %v)", t.DstID, conns.Path, conns.IDs())
	}
	srcPath, err := resolve(src, t.SrcPath)
	if err != nil {
		return failure.Wrap(failure.PathRejected, err, "src_path")
	}
	dstPath, err := resolve(dst, t.DstPath)
	if err != nil {
		return failure.Wrap(failure.PathRejected, err, "dst_path")
	}
	if sameFile(src, srcPath, dst, dstPath) {
		return failure.New(failure.InvalidTask, "source and destination are the same file (%s:%s)", t.SrcID, t.SrcPath)
	}
	if src == dst && src.IsRemote() {
		limit := src.MaxConnections
		if limit == 0 {
			limit = defaultLimit
		}
		if src.Type == config.TypeSFTP {
			if sessions := limit * src.SFTP.MaxSessionsPerConnection; sessions < 2 {
				return failure.New(failure.InvalidTask, "a copy within %s needs 2 SFTP sessions, but max_connections × max_sessions_per_connection is %d", t.SrcID, sessions)
			}
			return nil
		}
		if limit < 2 {
			return failure.New(failure.InvalidTask, "a copy within %s needs 2 connections to it, but its max_connections is %d", t.SrcID, limit)
		}
	}
	return nil
}

// resolve returns a path comparable between endpoints: relative to the base
// for local endpoints, as written for FTP and SFTP ones.
func resolve(e *config.Endpoint, p string) (string, error) {
	if e.Type == config.TypeLocal {
		return taskpath.Local(e.BasePath, p)
	}
	return p, taskpath.Remote(p)
}

// sameFile reports whether source and destination name one file, which a
// transfer would truncate or replace with itself.
func sameFile(src *config.Endpoint, srcPath string, dst *config.Endpoint, dstPath string) bool {
	switch {
	case src.Type == config.TypeLocal && dst.Type == config.TypeLocal:
		return filepath.Join(src.BasePath, srcPath) == filepath.Join(dst.BasePath, dstPath)
	case src.IsRemote() && src.Type == dst.Type:
		return src.Address() == dst.Address() && src.User == dst.User && cleanRemote(srcPath) == cleanRemote(dstPath)
	}
	return false
}

// cleanRemote normalises what every FTP server treats alike ("a//b", "a/./b").
// Relative and absolute paths stay distinct: the login directory is unknown.
func cleanRemote(p string) string {
	c := path.Clean(p)
	if strings.HasPrefix(p, "/") {
		return c
	}
	return "./" + c
}
