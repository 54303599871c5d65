//go:build e2e && chaos

package realstack

// Observers that run beside the chaos suite: a watcher that samples the
// destination directories every few milliseconds for files under their
// final names that are not (yet) the whole source (the connection sampler
// is in conns_test.go).

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// fileWant is what a destination must hold once it is visible.
type fileWant struct {
	Size int64
	Sum  string
}

// isTempName reports whether a base name is one of the agents' temporary
// files (.<name>.<token>.ftp-pooler.tmp locally, .part on FTP servers).
func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") &&
		(strings.HasSuffix(name, ".ftp-pooler.tmp") || strings.HasSuffix(name, ".ftp-pooler.part"))
}

// destWatcher samples destination trees until Stop.
type destWatcher struct {
	roots []string
	want  map[string]fileWant
	pause time.Duration
	stop  chan struct{}
	done  chan struct{}

	mu        sync.Mutex
	sweeps    int
	started   time.Time
	ended     time.Time
	verified  map[string]bool
	tempNames map[string]bool // every temporary file seen
	maxTemp   int             // most temporary files in one sweep
	bad       map[string]string
	strays    map[string]bool
}

// watchDestinations starts sampling roots; want maps each expected
// destination (path on disk) to its content. pause is the rest between
// sweeps.
func watchDestinations(roots []string, want map[string]fileWant, pause time.Duration) *destWatcher {
	w := &destWatcher{roots: roots, want: want, pause: pause, stop: make(chan struct{}), done: make(chan struct{}),
		verified: map[string]bool{}, tempNames: map[string]bool{}, bad: map[string]string{}, strays: map[string]bool{},
		started: time.Now()}
	go func() {
		defer close(w.done)
		for {
			w.sweep()
			select {
			case <-w.stop:
				w.sweep()
				w.mu.Lock()
				w.ended = time.Now()
				w.mu.Unlock()
				return
			case <-time.After(w.pause):
			}
		}
	}()
	return w
}

func (w *destWatcher) sweep() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sweeps++
	recheck := w.sweeps%50 == 0
	temps := 0
	for _, root := range w.roots {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			name := d.Name()
			if isTempName(name) {
				temps++
				w.tempNames[p] = true
				return nil
			}
			want, ok := w.want[p]
			if !ok {
				w.strays[p] = true
				return nil
			}
			if w.verified[p] && !recheck {
				return nil
			}
			info, err := os.Lstat(p)
			if err != nil {
				return nil // replaced or removed since the listing
			}
			switch {
			case !info.Mode().IsRegular():
				w.flag(p, fmt.Sprintf("not a regular file (%s)", info.Mode()))
			case info.Size() != want.Size:
				w.flag(p, fmt.Sprintf("%d bytes visible, source has %d", info.Size(), want.Size))
			case w.verified[p]:
			case want.Size <= 1<<20:
				// Small files are checked whole the moment they appear;
				// large ones by size here and by sha256 at the end.
				sum, n, err := FileSum(p)
				if err == nil && (sum != want.Sum || n != want.Size) {
					w.flag(p, fmt.Sprintf("%d bytes with sha256 %.12s… visible, source has sha256 %.12s…", n, sum, want.Sum))
				} else if err == nil {
					w.verified[p] = true
				}
			default:
				w.verified[p] = true
			}
			return nil
		})
	}
	w.maxTemp = max(w.maxTemp, temps)
}

func (w *destWatcher) flag(p, what string) {
	if _, seen := w.bad[p]; !seen {
		w.bad[p] = time.Now().Format("15:04:05.000") + " " + what
	}
}

// watchReport is what the watcher saw.
type watchReport struct {
	Sweeps    int
	Every     time.Duration // mean time between sweeps
	Seen      int           // destinations seen under their final names
	TempSeen  int           // temporary files seen (expected while transfers run)
	MaxTemp   int
	Bad       map[string]string // partial or wrong files under final names
	Strays    []string          // files with names no task writes
	Verified  int
	Unchecked int
}

// Stop ends the sampling (after one last sweep) and reports.
func (w *destWatcher) Stop() watchReport {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	r := watchReport{Sweeps: w.sweeps, TempSeen: len(w.tempNames), MaxTemp: w.maxTemp, Bad: w.bad, Verified: len(w.verified)}
	if w.sweeps > 0 {
		r.Every = w.ended.Sub(w.started) / time.Duration(w.sweeps)
	}
	for p := range w.strays {
		r.Strays = append(r.Strays, p)
	}
	sort.Strings(r.Strays)
	r.Seen = len(w.verified)
	return r
}
