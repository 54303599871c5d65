//go:build e2e

package realstack

// Files on the FTP servers are made and checked directly on disk, in the
// users' homes (the tests run as root); whatever is made there belongs to
// the home's owner so the FTP user can read, overwrite and rename it.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack"
)

// owner is the uid and gid owning dir.
func owner(t testing.TB, dir string) (int, int) {
	t.Helper()
	uid, gid, err := stack.Owner(dir)
	must(t, err)
	return uid, gid
}

// mkdirAllOwned makes dir and its missing parents, owned like the nearest
// existing ancestor.
func mkdirAllOwned(t testing.TB, dir string) {
	t.Helper()
	must(t, stack.MkdirOwned(dir))
}

// PutFile writes data at path (creating directories), owned like its
// directory, and returns its sha256.
func PutFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	mkdirAllOwned(t, filepath.Dir(path))
	must(t, os.WriteFile(path, data, 0o644))
	uid, gid := owner(t, filepath.Dir(path))
	must(t, os.Chown(path, uid, gid))
	return Sum(data)
}

// PutRandomFile writes size pseudo-random bytes (from seed) at path,
// streaming, and returns their sha256.
func PutRandomFile(t testing.TB, path string, size int64, seed uint64) string {
	t.Helper()
	mkdirAllOwned(t, filepath.Dir(path))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	must(t, err)
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), RandomReader(seed), size); err != nil {
		f.Close()
		t.Fatal(err)
	}
	must(t, f.Close())
	uid, gid := owner(t, filepath.Dir(path))
	must(t, os.Chown(path, uid, gid))
	return hex.EncodeToString(h.Sum(nil))
}

// RandomReader is an endless deterministic byte stream.
func RandomReader(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	binary.LittleEndian.PutUint64(s[8:], 0x66747020706f6f6c) // "ftp pool"
	return rand.NewChaCha8(s)
}

// RandomBytes is n bytes of RandomReader(seed).
func RandomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	_, _ = io.ReadFull(RandomReader(seed), b)
	return b
}

// Sum is the hex sha256 of data.
func Sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// FileSum is a file's sha256 and size; err if it cannot be read.
func FileSum(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// CheckFile fails the test unless path holds size bytes with sha256 sum.
func CheckFile(t testing.TB, path, sum string, size int64) {
	t.Helper()
	got, n, err := FileSum(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if n != size || got != sum {
		t.Errorf("%s: %d bytes sha256 %.16s…, want %d bytes sha256 %.16s…", path, n, got, size, sum)
	}
}

// RemoveOnSuccess removes paths when the test ends without failing (a
// failed test leaves them to look at).
func RemoveOnSuccess(t testing.TB, paths ...string) {
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		for _, p := range paths {
			_ = os.RemoveAll(p)
		}
	})
}

// TempFiles lists files under dir whose names say they are a transfer's
// temporary file (.ftp-pooler.tmp locally, .part on FTP servers).
func TempFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".ftp-pooler.tmp") || strings.HasSuffix(p, ".part")) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// Tree lists every path under dir (relative), for before/after checks.
func Tree(dir string) map[string]string {
	out := map[string]string{}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		if info != nil {
			out[rel] = fmt.Sprintf("%s %d", info.Mode(), info.Size())
		}
		return nil
	})
	return out
}
