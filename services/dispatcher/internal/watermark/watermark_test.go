package watermark

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestOutOfOrderCompletion(t *testing.T) {
	t.Parallel()
	tr := New()
	tr.Assign(0, -1, "")
	for off := int64(10); off < 15; off++ {
		if track(tr, 0, off) != Process {
			t.Fatalf("Track(%d) refused", off)
		}
	}
	if got := tr.Committable(); len(got) != 1 || got[0].Offset != 10 {
		t.Fatalf("nothing done: Committable = %v, want offset 10", got)
	}
	// Later tasks finish first: the commit point must not move past 10.
	tr.Done(0, tr.Epoch(0), 12)
	tr.Done(0, tr.Epoch(0), 13)
	if got := tr.Committable(); got[0].Offset != 10 {
		t.Fatalf("after 12,13 done: %v, want 10", got)
	}
	tr.Done(0, tr.Epoch(0), 10)
	if got := tr.Committable(); got[0].Offset != 11 {
		t.Fatalf("after 10 done: %v, want 11", got)
	}
	tr.MarkCommitted(tr.Committable())
	if got := tr.Committable(); len(got) != 0 {
		t.Fatalf("nothing new: %v", got)
	}
	tr.Done(0, tr.Epoch(0), 11)
	if got := tr.Committable(); got[0].Offset != 14 {
		t.Fatalf("after 11 done: %v, want 14 (12 and 13 were already done)", got)
	}
	tr.Done(0, tr.Epoch(0), 14)
	if got := tr.Committable(); got[0].Offset != 15 {
		t.Fatalf("all done: %v, want 15", got)
	}
	if tr.Outstanding() != 0 {
		t.Fatalf("Outstanding = %d", tr.Outstanding())
	}
}

func TestGapsAndRedelivery(t *testing.T) {
	t.Parallel()
	tr := New()
	tr.Assign(3, -1, "")
	// Offsets skip numbers (transaction markers, compaction).
	tr.Track(3, 5)
	tr.Track(3, 9)
	if track(tr, 3, 9) != Ignore || track(tr, 3, 7) != Ignore {
		t.Fatal("a redelivered or older offset must be refused")
	}
	if track(tr, 4, 1) != Ignore {
		t.Fatal("an unassigned partition must be refused")
	}
	tr.Done(3, tr.Epoch(3), 9)
	if got := tr.Committable(); got[0].Offset != 5 {
		t.Fatalf("got %v, want 5", got)
	}
	tr.Done(3, tr.Epoch(3), 5)
	if got := tr.Committable(); got[0].Offset != 10 {
		t.Fatalf("got %v, want 10", got)
	}
	tr.Done(3, tr.Epoch(3), 6) // never tracked: ignored
	tr.Revoke(3)
	tr.Done(3, tr.Epoch(3), 9) // revoked: ignored
	if got := tr.Committable(); len(got) != 0 {
		t.Fatalf("revoked partition still committable: %v", got)
	}
}

// TestRandomCompletion checks the invariant on many shuffled completions:
// the commit point is always the lowest unfinished offset.
func TestRandomCompletion(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	tr := New()
	tr.Assign(0, -1, "")
	const n = 5000
	for off := range int64(n) {
		tr.Track(0, off*2) // even offsets only: gaps everywhere
	}
	order := rng.Perm(n)
	done := make([]bool, n)
	for _, i := range order {
		tr.Done(0, tr.Epoch(0), int64(i)*2)
		done[i] = true
		lowest := slices.Index(done, false)
		want := int64(n-1)*2 + 1 // all done: one past the last offset
		if lowest >= 0 {
			want = int64(lowest) * 2
		}
		got := tr.Committable()
		if len(got) != 1 || got[0].Offset != want {
			t.Fatalf("after %d done: Committable = %v, want %d", i, got, want)
		}
	}
	if tr.Outstanding() != 0 {
		t.Fatalf("Outstanding = %d", tr.Outstanding())
	}
}

// TestDoneSetTravelsToTheNextOwner: offsets finished beyond the commit
// point are committed in the metadata; the next owner skips exactly those,
// and keeps them in its own commits until it has read past them.
func TestDoneSetTravelsToTheNextOwner(t *testing.T) {
	t.Parallel()
	a := New()
	a.Assign(0, -1, "")
	for off := int64(10); off < 20; off++ {
		a.Track(0, off)
	}
	for _, off := range []int64{12, 13, 17} {
		a.Done(0, a.Epoch(0), off)
	}
	got := a.Committable()
	if len(got) != 1 || got[0].Offset != 10 || got[0].Metadata != "ftp-pooler/1:2-3,7" {
		t.Fatalf("Committable = %+v, want offset 10 with 12, 13 and 17 done", got)
	}
	a.MarkCommitted(got)
	// The partition moves: b starts at the committed offset.
	b := New()
	b.Assign(0, got[0].Offset, got[0].Metadata)
	if v := track(b, 0, 10); v != Process {
		t.Fatalf("offset 10: %v", v)
	}
	b.Done(0, b.Epoch(0), 10)
	// b has read only offset 10, yet its commit must still carry 12, 13, 17.
	if c := b.Committable(); len(c) != 1 || c[0].Offset != 11 || c[0].Metadata != "ftp-pooler/1:1-2,6" {
		t.Fatalf("b's first commit = %+v, want 11 with 12, 13, 17 still done", c)
	}
	want := map[int64]Verdict{11: Process, 12: AlreadyDone, 13: AlreadyDone, 14: Process, 15: Process, 16: Process, 17: AlreadyDone, 18: Process, 19: Process}
	for off := int64(11); off < 20; off++ {
		if v := track(b, 0, off); v != want[off] {
			t.Fatalf("offset %d: %v, want %v", off, v, want[off])
		}
	}
	if b.Outstanding() != 9 {
		t.Fatalf("Outstanding = %d, want the 9 tracked past the commit point", b.Outstanding())
	}
	for _, off := range []int64{11, 14, 15, 16} {
		b.Done(0, b.Epoch(0), off)
	}
	if c := b.Committable(); c[0].Offset != 18 || c[0].Metadata != "" {
		t.Fatalf("after 11..17: %+v, want 18 and nothing beyond", c)
	}
}

// A change of the done-set alone is worth a commit: a crash right after it
// would otherwise make the next owner redo a task with a published outcome.
func TestDoneSetChangeIsCommittable(t *testing.T) {
	t.Parallel()
	tr := New()
	tr.Assign(1, -1, "")
	for off := int64(0); off < 5; off++ {
		tr.Track(1, off)
	}
	tr.MarkCommitted(tr.Committable())
	tr.Done(1, tr.Epoch(1), 3)
	got := tr.Committable()
	if len(got) != 1 || got[0].Offset != 0 || got[0].Metadata != "ftp-pooler/1:3" {
		t.Fatalf("Committable = %+v, want offset 0 with 3 done", got)
	}
	tr.MarkCommitted(got)
	if got := tr.Committable(); len(got) != 0 {
		t.Fatalf("nothing changed: %+v", got)
	}
}

func TestDoneSetTruncatedToTheMetadataLimit(t *testing.T) {
	t.Parallel()
	tr := New()
	tr.MaxMetadata = len(donePrefix) + 8
	var left int
	tr.Truncated = func(_ int32, n int) { left = n }
	tr.Assign(0, -1, "")
	for off := int64(0); off < 20; off++ {
		tr.Track(0, off)
	}
	for _, off := range []int64{2, 4, 6, 8, 10} {
		tr.Done(0, tr.Epoch(0), off)
	}
	got := tr.Committable()
	if got[0].Metadata != donePrefix+"2,4,6,8" || left != 1 {
		t.Fatalf("metadata %q, %d left out; want the lowest that fit and 1 left out", got[0].Metadata, left)
	}
}

func TestDecodeDoneRejectsForeignMetadata(t *testing.T) {
	t.Parallel()
	for _, md := range []string{"", "some other tool", donePrefix, donePrefix + "x", donePrefix + "3,2", donePrefix + "5-4", donePrefix + "1,,2", donePrefix + "0-99999999"} {
		if got := decodeDone(100, md); got != nil {
			t.Errorf("decodeDone(%q) = %v, want nil", md, got)
		}
	}
	if got := decodeDone(100, donePrefix+"0,2-4,9"); !slices.Equal(got, []int64{100, 102, 103, 104, 109}) {
		t.Errorf("decodeDone = %v", got)
	}
}

func TestDoneSetRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		n := rng.Int64N(1 << 40)
		var offs []int64
		for o := n + 1; len(offs) < 50; o += 1 + rng.Int64N(3) {
			offs = append(offs, o)
		}
		md, left := encodeDone(n, offs[:25], offs[25:], 4000)
		if left != 0 {
			t.Fatalf("%d left out", left)
		}
		if got := decodeDone(n, md); !slices.Equal(got, offs) {
			t.Fatalf("round trip of %v: %v (%q)", offs, got, md)
		}
	}
}

// A partition lost and assigned again to the same dispatcher is read again
// from its committed offset: outcomes of the first assignment that were
// not published yet belong to it no more (the chaos suite saw them
// published after the redone tasks' own, two outcomes for 17 tasks).
func TestWorkOfAnEarlierAssignmentDoesNotCount(t *testing.T) {
	tr := New()
	tr.Assign(0, 10, "")
	first := tr.Epoch(0)
	tr.Track(0, 10)
	tr.Track(0, 11)
	tr.Revoke(0) // lost: the session timed out while the broker was away
	tr.Assign(0, 10, "")
	second := tr.Epoch(0)
	if first == 0 || second == first {
		t.Fatalf("epochs %d then %d: each assignment needs its own", first, second)
	}
	if tr.Owns(0, first) || !tr.Owns(0, second) {
		t.Fatal("only the current assignment owns the partition")
	}
	if track(tr, 0, 10) != Process {
		t.Fatal("the new assignment reads the record again")
	}
	tr.Done(0, first, 10) // the first assignment's outcome, late
	if got := tr.Committable(); len(got) > 0 && got[0].Offset != 10 {
		t.Fatalf("a late outcome of the earlier assignment moved the commit: %v", got)
	}
	tr.Done(0, second, 10)
	if got := tr.Committable(); len(got) != 1 || got[0].Offset != 11 {
		t.Fatalf("got %v, want 11", got)
	}
}

// track is Track's verdict alone.
func track(t *Tracker, p int32, off int64) Verdict {
	v, _ := t.Track(p, off)
	return v
}

// Epoch numbers the partition's current assignment (0: not assigned), as
// Track tells it with each record.
func (t *Tracker) Epoch(p int32) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ps, ok := t.parts[p]; ok {
		return ps.epoch
	}
	return 0
}

// A partition assigned with a committed offset reports it before this
// owner commits anything (GetStats' lag counts from it, not from the
// partition's start), does not commit it again, and commits once a record
// from there on finishes.
func TestAssignedCommittedOffsetIsTheStart(t *testing.T) {
	t.Parallel()
	tr := New()
	tr.Assign(0, 400, "")
	tr.Assign(1, -1, "")
	if got := tr.Snapshot(); got[0].Committed != 400 || got[1].Committed != -1 {
		t.Fatalf("Snapshot = %+v, want committed 400 and -1", got)
	}
	if track(tr, 0, 400) != Process {
		t.Fatal("Track(400) refused")
	}
	if got := tr.Committable(); len(got) != 0 {
		t.Fatalf("nothing done past the committed offset: Committable = %v", got)
	}
	tr.Done(0, tr.Epoch(0), 400)
	if got := tr.Committable(); len(got) != 1 || got[0].Offset != 401 {
		t.Fatalf("after 400 done: %v, want 401", got)
	}
}
