// Package watermark tracks, per partition, which consumed offsets have a
// published outcome, and so which offset may be committed: the lowest
// offset still waiting. Later tasks may finish first; the committed offset
// only ever moves over a contiguous run of finished ones, so a crash never
// skips a task.
//
// The offsets finished beyond the committed one travel with it, in the
// commit's metadata (see doneset.go), in the same transaction as their
// outcomes. The partition's next owner reads them back (Assign) and skips
// those records (Track answers AlreadyDone): after a rebalance or a crash
// no task whose outcome is published is done again, so it never gets a
// second outcome.
package watermark

import (
	"slices"
	"sync"
)

// Offset is a position to commit: the next offset to consume, and in
// Metadata the offsets beyond it that already have their outcome.
type Offset struct {
	Partition int32
	Offset    int64
	Metadata  string
	seq       uint64
}

// Verdict says what to do with a consumed record.
type Verdict int

const (
	// Process: a new record; run it and report Done.
	Process Verdict = iota
	// AlreadyDone: a previous owner of the partition published its outcome;
	// skip it (it counts as done).
	AlreadyDone
	// Ignore: not assigned, or read before in this assignment.
	Ignore
)

// Tracker is safe for concurrent use.
type Tracker struct {
	mu    sync.Mutex
	parts map[int32]*partition
	total int
	// epochs counts assignments, numbering each partition's.
	epochs uint64
	// MaxMetadata bounds the metadata of a commit (Kafka's
	// offset.metadata.max.bytes, 4096 by default).
	MaxMetadata int
	// Truncated counts commits whose done-set did not fit the metadata:
	// the offsets left out would be done again by a next owner.
	Truncated func(partition int32, left int)
}

type entry struct {
	offset int64
	done   bool
}

type partition struct {
	// pending holds tracked offsets in ascending order from head on; the
	// front entries are popped as they finish.
	pending []entry
	head    int
	// last is the highest offset tracked, or -1.
	last int64
	// committed is the group's committed offset at assignment or the last
	// offset handed to MarkCommitted since, whichever is later; -1 for none.
	committed int64
	// inherited holds offsets beyond last that a previous owner finished,
	// ascending; they are skipped when read and kept in every commit's
	// metadata until then.
	inherited []int64
	// seq counts changes to the done-set; committedSeq is the seq of the
	// last commit, so a commit is due when they differ.
	seq, committedSeq uint64
	// epoch numbers this assignment of the partition: work read in an
	// earlier one (revoked, then assigned again) must not count in it.
	epoch uint64
}

// New returns an empty tracker.
func New() *Tracker { return &Tracker{parts: map[int32]*partition{}, MaxMetadata: 4000} }

// Assign starts tracking a partition. Re-assigning resets it: after a
// revoke the consumer restarts from the committed offset. committed and
// metadata are what the group has committed for it (metadata may be
// empty, or another tool's: it is then ignored).
func (t *Tracker) Assign(p int32, committed int64, metadata string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.parts[p]; ok {
		t.total -= len(old.pending) - old.head
	}
	t.epochs++
	ps := &partition{last: -1, committed: -1, epoch: t.epochs}
	if committed >= 0 {
		// What the group committed is where this owner starts: lag is
		// counted from it (not from the partition's start) before this
		// owner commits, and committing it again would be a no-op.
		ps.committed = committed
		ps.inherited = decodeDone(committed, metadata)
	}
	t.parts[p] = ps
}

// Owns reports whether the partition is assigned and still in the given
// assignment. A partition lost and assigned again is owned anew: its
// records are read again from the committed offset and redone, so an
// outcome of the earlier assignment still waiting to be published would
// be a second one.
func (t *Tracker) Owns(p int32, epoch uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps, ok := t.parts[p]
	return ok && ps.epoch == epoch
}

// Revoke stops tracking a partition and forgets its offsets.
func (t *Tracker) Revoke(p int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.parts[p]; ok {
		t.total -= len(old.pending) - old.head
		delete(t.parts, p)
	}
}

// Track records a consumed offset and says what to do with its record,
// and numbers the partition's assignment it was read in (0: not
// assigned). The record carries that epoch, so its outcome is told apart
// from those of an earlier assignment of the same partition (Owns, Done).
func (t *Tracker) Track(p int32, off int64) (Verdict, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps, ok := t.parts[p]
	if !ok {
		return Ignore, 0
	}
	if off <= ps.last {
		return Ignore, ps.epoch
	}
	ps.last = off
	// Offsets the previous owner finished that were skipped over (deleted
	// by retention, say) no longer matter.
	for len(ps.inherited) > 0 && ps.inherited[0] < off {
		ps.inherited = ps.inherited[1:]
	}
	if ps.head > 0 && ps.head == len(ps.pending) {
		ps.pending, ps.head = ps.pending[:0], 0
	}
	if len(ps.inherited) > 0 && ps.inherited[0] == off {
		ps.inherited = ps.inherited[1:]
		if ps.head == len(ps.pending) {
			ps.seq++ // the commit point moves over it
			return AlreadyDone, ps.epoch
		}
		ps.pending = append(ps.pending, entry{offset: off, done: true})
		t.total++
		return AlreadyDone, ps.epoch
	}
	ps.pending = append(ps.pending, entry{offset: off})
	t.total++
	return Process, ps.epoch
}

// Done marks a tracked offset of the given assignment as finished. Unknown
// offsets, and those of another assignment (of a revoked partition, or one
// revoked and assigned again), are ignored.
func (t *Tracker) Done(p int32, epoch uint64, off int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps, ok := t.parts[p]
	if !ok || ps.epoch != epoch {
		return
	}
	live := ps.pending[ps.head:]
	i, found := slices.BinarySearchFunc(live, off, func(e entry, o int64) int {
		switch {
		case e.offset < o:
			return -1
		case e.offset > o:
			return 1
		}
		return 0
	})
	if !found || live[i].done {
		return
	}
	live[i].done = true
	ps.seq++
	for ps.head < len(ps.pending) && ps.pending[ps.head].done {
		ps.head++
		t.total--
	}
	// Compact once the popped prefix dominates, keeping appends amortised O(1).
	if ps.head > 1024 && ps.head*2 > len(ps.pending) {
		n := copy(ps.pending, ps.pending[ps.head:])
		ps.pending, ps.head = ps.pending[:n], 0
	}
}

// next is the offset to commit: the lowest unfinished one, or one past the
// last tracked when all are finished; -1 when nothing was tracked.
func (ps *partition) next() int64 {
	if ps.head < len(ps.pending) {
		return ps.pending[ps.head].offset
	}
	if ps.last < 0 {
		return -1
	}
	return ps.last + 1
}

// Committable returns, for each partition whose commit point or done-set
// changed since its last MarkCommitted, the offset to commit and the
// done-set beyond it.
func (t *Tracker) Committable() []Offset {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Offset
	for p, ps := range t.parts {
		n := ps.next()
		if n < 0 || (n <= ps.committed && ps.seq == ps.committedSeq) {
			continue
		}
		md, left := encodeDone(n, ps.doneBeyondHead(), ps.inherited, t.MaxMetadata)
		if left > 0 && t.Truncated != nil {
			t.Truncated(p, left)
		}
		out = append(out, Offset{Partition: p, Offset: n, Metadata: md, seq: ps.seq})
	}
	slices.SortFunc(out, func(a, b Offset) int { return int(a.Partition - b.Partition) })
	return out
}

// doneBeyondHead lists the finished offsets after the first unfinished one.
func (ps *partition) doneBeyondHead() []int64 {
	var out []int64
	for _, e := range ps.pending[ps.head:] {
		if e.done {
			out = append(out, e.offset)
		}
	}
	return out
}

// MarkCommitted records offsets as committed to Kafka.
func (t *Tracker) MarkCommitted(offs []Offset) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range offs {
		ps, ok := t.parts[o.Partition]
		if !ok {
			continue
		}
		ps.committed = max(ps.committed, o.Offset)
		ps.committedSeq = max(ps.committedSeq, o.seq)
	}
}

// Outstanding returns how many tracked offsets are not committable yet (not
// finished, or finished after an unfinished one), in total.
func (t *Tracker) Outstanding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// PartitionState is one partition's backlog, for the admin API.
type PartitionState struct {
	Partition   int32
	Outstanding int
	Committed   int64
}

// Snapshot returns every assigned partition's state.
func (t *Tracker) Snapshot() []PartitionState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PartitionState, 0, len(t.parts))
	for p, ps := range t.parts {
		out = append(out, PartitionState{Partition: p, Outstanding: len(ps.pending) - ps.head, Committed: ps.committed})
	}
	slices.SortFunc(out, func(a, b PartitionState) int { return int(a.Partition - b.Partition) })
	return out
}
