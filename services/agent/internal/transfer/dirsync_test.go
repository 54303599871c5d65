package transfer

import (
	"os"
	"sync"
	"testing"
)

func TestDirSyncerSharesFsyncs(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(dir+"/d", 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var d dirSyncer
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.sync(root, "d")
			d.sync(root, "missing") // best effort: returns without an fsync
		}()
	}
	wg.Wait()
	if len(d.dirs) != 0 {
		t.Errorf("%d directory states left after every caller returned", len(d.dirs))
	}
}

func TestDirSyncerWaitsForAnFsyncStartedAfterTheCall(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var d dirSyncer
	// An fsync "in flight" (begun before our call) must not satisfy it.
	d.dirs = map[dirKey]*dirState{}
	st := &dirState{started: 1, running: true, users: 1}
	st.cond = sync.NewCond(&d.mu)
	d.dirs[dirKey{root, "."}] = st
	returned := make(chan struct{})
	go func() { d.sync(root, "."); close(returned) }()
	// Finish the in-flight fsync: the caller must run (or wait for) one more.
	d.mu.Lock()
	st.running, st.finished = false, 1
	st.users--
	st.cond.Broadcast()
	d.mu.Unlock()
	<-returned
	if st.finished < 2 {
		t.Errorf("sync returned after fsync %d, which began before it was called", st.finished)
	}
}
