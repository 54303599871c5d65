// Package taskpath decides where a task's path points on an endpoint, and
// refuses paths that must not be used. The dispatcher applies it to fail
// bad tasks before leasing them; agents apply it again before touching a file,
// and their os.Root catches what only the file system can show (symlinks).
package taskpath

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// ErrRejected is wrapped by every refusal, so callers can classify them as
// PATH_REJECTED without parsing messages.
var ErrRejected = errors.New("path rejected")

func reject(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRejected, fmt.Sprintf(format, args...))
}

// Local maps p onto a local endpoint rooted at base and returns the path
// relative to base, in slash form, for use with os.Root.
//
// An absolute p that already lies under base is used as is, so the original
// service's "/data/storage/x" with base "/data/storage" lands at
// /data/storage/x rather than /data/storage/data/storage/x. Any other p is
// taken relative to base with its leading slashes dropped, as the original
// did. A p that would leave base through ".." is refused; the check runs on
// the path as written, before any cleaning, so "/data/storage/../etc" is
// refused instead of being silently reinterpreted.
func Local(base, p string) (string, error) {
	if err := common(p); err != nil {
		return "", err
	}
	rel, under := cutBase(base, p)
	if !under {
		rel = strings.TrimLeft(p, "/")
	}
	if rel == "" || strings.HasSuffix(rel, "/") {
		return "", reject("%q names a directory, not a file", p)
	}
	if !filepath.IsLocal(rel) {
		return "", reject("%q leaves the endpoint's base directory %s", p, base)
	}
	rel = path.Clean(rel)
	if rel == "." {
		return "", reject("%q names the base directory, not a file", p)
	}
	return rel, nil
}

// cutBase returns the part of p below base, if p is base or lies under it.
func cutBase(base, p string) (string, bool) {
	base = strings.TrimRight(base, "/")
	if base == "" {
		// A base of "/" holds every absolute path.
		return strings.TrimLeft(p, "/"), strings.HasPrefix(p, "/")
	}
	if p == base {
		return "", true
	}
	if rest, ok := strings.CutPrefix(p, base+"/"); ok {
		return strings.TrimLeft(rest, "/"), true
	}
	return "", false
}

// Remote checks a path on an FTP endpoint. The server enforces its own root;
// what we must prevent is a path that changes the meaning of the FTP command
// it is sent in (CR or LF would start a new command) or names no file.
func Remote(p string) error {
	if err := common(p); err != nil {
		return err
	}
	if strings.HasSuffix(p, "/") || path.Base(p) == "." || path.Base(p) == ".." {
		return reject("%q names a directory, not a file", p)
	}
	return nil
}

func common(p string) error {
	if p == "" {
		return reject("path is empty")
	}
	if strings.ContainsAny(p, "\x00\r\n") {
		return reject("%q contains a NUL, CR or LF character", p)
	}
	return nil
}
