package watermark

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestOutOfOrderCompletion(t *testing.T) {
	t.Parallel()
	tr := New()
	tr.Assign(0)
	for off := int64(10); off < 15; off++ {
		if !tr.Track(0, off) {
			t.Fatalf("Track(%d) refused", off)
		}
	}
	if got := tr.Committable(); len(got) != 1 || got[0].Offset != 10 {
		t.Fatalf("nothing done: Committable = %v, want offset 10", got)
	}
	// Later tasks finish first: the commit point must not move past 10.
	tr.Done(0, 12)
	tr.Done(0, 13)
	if got := tr.Committable(); got[0].Offset != 10 {
		t.Fatalf("after 12,13 done: %v, want 10", got)
	}
	tr.Done(0, 10)
	if got := tr.Committable(); got[0].Offset != 11 {
		t.Fatalf("after 10 done: %v, want 11", got)
	}
	tr.MarkCommitted(tr.Committable())
	if got := tr.Committable(); len(got) != 0 {
		t.Fatalf("nothing new: %v", got)
	}
	tr.Done(0, 11)
	if got := tr.Committable(); got[0].Offset != 14 {
		t.Fatalf("after 11 done: %v, want 14 (12 and 13 were already done)", got)
	}
	tr.Done(0, 14)
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
	tr.Assign(3)
	// Offsets skip numbers (transaction markers, compaction).
	tr.Track(3, 5)
	tr.Track(3, 9)
	if tr.Track(3, 9) || tr.Track(3, 7) {
		t.Fatal("a redelivered or older offset must be refused")
	}
	if tr.Track(4, 1) {
		t.Fatal("an unassigned partition must be refused")
	}
	tr.Done(3, 9)
	if got := tr.Committable(); got[0].Offset != 5 {
		t.Fatalf("got %v, want 5", got)
	}
	tr.Done(3, 5)
	if got := tr.Committable(); got[0].Offset != 10 {
		t.Fatalf("got %v, want 10", got)
	}
	tr.Done(3, 6) // never tracked: ignored
	tr.Revoke(3)
	tr.Done(3, 9) // revoked: ignored
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
	tr.Assign(0)
	const n = 5000
	for off := range int64(n) {
		tr.Track(0, off*2) // even offsets only: gaps everywhere
	}
	order := rng.Perm(n)
	done := make([]bool, n)
	for _, i := range order {
		tr.Done(0, int64(i)*2)
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
