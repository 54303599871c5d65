package transfer

import (
	"os"
	"sync"
)

// dirSyncer makes renames durable by fsyncing their directory, sharing one
// fsync between the commits that land in a directory at the same time. A
// rename is durable once an fsync of its directory that began after the
// rename has finished; a commit waits for the first such fsync, whoever
// runs it. With many small files going into one directory this turns one
// directory fsync per file (about as costly as the file's own) into one per
// group of concurrent commits.
type dirSyncer struct {
	mu   sync.Mutex
	dirs map[dirKey]*dirState
}

type dirKey struct {
	root *os.Root
	dir  string
}

type dirState struct {
	started, finished uint64 // fsyncs begun and completed, in order
	running           bool
	users             int
	cond              *sync.Cond
}

// sync returns once an fsync of dir that began after the call has finished.
// Like the single fsync it replaces, it is best effort: errors are ignored
// (some file systems cannot fsync a directory).
func (d *dirSyncer) sync(root *os.Root, dir string) {
	k := dirKey{root, dir}
	d.mu.Lock()
	if d.dirs == nil {
		d.dirs = map[dirKey]*dirState{}
	}
	st := d.dirs[k]
	if st == nil {
		st = &dirState{}
		st.cond = sync.NewCond(&d.mu)
		d.dirs[k] = st
	}
	st.users++
	// An fsync running now may have begun before our rename: we need the
	// next one.
	target := st.started + 1
	for st.finished < target {
		if st.running {
			st.cond.Wait()
			continue
		}
		st.running = true
		st.started++
		n := st.started
		d.mu.Unlock()
		if f, err := root.Open(dir); err == nil {
			_ = f.Sync()
			f.Close()
		}
		d.mu.Lock()
		st.running = false
		st.finished = n
		st.cond.Broadcast()
	}
	st.users--
	if st.users == 0 && !st.running {
		delete(d.dirs, k)
	}
	d.mu.Unlock()
}
