//go:build e2e

package realstack

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

// TestSFTPDirectionsLarge moves a 1 GiB file in each of sftpDirections,
// all at once in one run, sha256 checked on both sides, and leaves no
// temporary file; the outputs go when it passes. TestSFTPDirections runs
// the same directions with empty and 1 MiB files.
//
// On 2 cores the run is CPU-bound and takes about 2 minutes, most of it
// ProFTPD's: mod_sftp moves about 20 MiB/s a connection on its own here,
// 8–10 MiB/s beside the OpenSSH transfers (which finish in under a
// minute), and the copy within ProFTPD is two of those legs.
func TestSFTPDirectionsLarge(t *testing.T) {
	openssh, proftpd := sftpServers(t)
	// The ProFTPD sides of the run hold 4 connections at once (a session
	// each): to and from OpenSSH, and both sides of the copy within
	// ProFTPD. 6 leaves the two agents room however the dispatcher splits
	// the quota between them.
	s := NewStack(t, StackOptions{Endpoints: sftpDirectionEndpoints(openssh, proftpd, 6)})
	sides := sftpSides(s, openssh, proftpd)
	for _, e := range sides {
		RemoveOnSuccess(t, e.disk(e.dir))
	}

	// One source, written and summed once (3 to 8 s on 2 cores), then
	// hard-linked onto every source endpoint: their homes share a
	// filesystem here. Where one does not, that copy is written again from
	// the same seed. The sources are all one content, so a transfer reading
	// the wrong endpoint would pass here; TestSFTPDirections, whose sources
	// differ, catches that.
	const size, seed = 1 << 30, 41
	const name = "1GiB.bin"
	started := time.Now()
	origin := sides["local"].file("src/" + name)
	sum := PutRandomFile(t, origin, size, seed)
	sums := map[string]string{}
	for _, id := range sftpSourceIDs() {
		sums[id] = sum
		if dst := sides[id].file("src/" + name); dst != origin {
			linkSource(t, origin, dst, size, seed, sum)
		}
	}
	t.Logf("sources ready in %s", time.Since(started).Round(100*time.Millisecond))

	checks := directionChecks(s, sides, name, size, sums)
	var tasks []Task
	for _, c := range checks {
		tasks = append(tasks, c.tk)
	}
	// The timeout is for a hang, with room for a busy machine.
	started = time.Now()
	got := s.Run(t, 5*time.Minute, tasks...)
	t.Logf("%d × %s moved in %s", len(tasks), proc.MiB(size), time.Since(started).Round(100*time.Millisecond))
	for _, c := range checks {
		m := got[c.tk.TaskID]
		s.CheckSuccess(t, m, c.tk, c.size)
		if ms, ok := m.Num("duration_ms"); ok && ms > 0 {
			t.Logf("%-24s %6.1f s  %5.1f MiB/s", c.tk.SrcID+" → "+c.tk.DstID, ms/1000, float64(size)/(1<<20)/(ms/1000))
		}
	}
	// Summing 8 GiB takes a while: both cores at it.
	started = time.Now()
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Go(func() { CheckFile(t, c.path, c.sum, c.size) })
	}
	wg.Wait()
	t.Logf("outputs checked in %s", time.Since(started).Round(100*time.Millisecond))
	for _, e := range sides {
		if tmp := TempFiles(e.disk(e.dir)); len(tmp) > 0 {
			t.Errorf("temporary files left: %v", tmp)
		}
	}
}

// linkSource hard-links origin (size bytes from seed, sha256 sum) at dst,
// in a directory owned like dst's nearest existing one; across
// filesystems it writes the same bytes there instead.
func linkSource(t testing.TB, origin, dst string, size int64, seed uint64, sum string) {
	t.Helper()
	mkdirAllOwned(t, filepath.Dir(dst))
	err := os.Link(origin, dst)
	if errors.Is(err, syscall.EXDEV) {
		if got := PutRandomFile(t, dst, size, seed); got != sum {
			t.Fatalf("%s: sha256 %s, want %s as %s", dst, got, sum, origin)
		}
		return
	}
	must(t, err)
}
