// Package watermark tracks, per partition, which consumed offsets have a
// published outcome, and so which offset may be committed: the lowest
// offset still waiting. Later tasks may finish first; the committed offset
// only ever moves over a contiguous run of finished ones, so a crash never
// skips a task.
package watermark

import (
	"slices"
	"sync"
)

// Offset is a position to commit: the next offset to consume.
type Offset struct {
	Partition int32
	Offset    int64
}

// Tracker is safe for concurrent use.
type Tracker struct {
	mu    sync.Mutex
	parts map[int32]*partition
	total int
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
	// committed is the last offset handed to MarkCommitted, or -1.
	committed int64
}

// New returns an empty tracker.
func New() *Tracker { return &Tracker{parts: map[int32]*partition{}} }

// Assign starts tracking a partition. Re-assigning resets it: after a
// revoke the consumer restarts from the committed offset.
func (t *Tracker) Assign(p int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.parts[p]; ok {
		t.total -= len(old.pending) - old.head
	}
	t.parts[p] = &partition{last: -1, committed: -1}
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

// Track records a consumed offset. It returns false when the partition is
// not assigned or the offset is not beyond every tracked one (a redelivery
// within the assignment), in which case the record must not be processed.
func (t *Tracker) Track(p int32, off int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps, ok := t.parts[p]
	if !ok || off <= ps.last {
		return false
	}
	ps.last = off
	if ps.head > 0 && ps.head == len(ps.pending) {
		ps.pending, ps.head = ps.pending[:0], 0
	}
	ps.pending = append(ps.pending, entry{offset: off})
	t.total++
	return true
}

// Done marks a tracked offset as finished. Unknown offsets (of a revoked
// partition, say) are ignored.
func (t *Tracker) Done(p int32, off int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps, ok := t.parts[p]
	if !ok {
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

// Committable returns, for each partition whose commit point moved since its
// last MarkCommitted, the offset to commit.
func (t *Tracker) Committable() []Offset {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Offset
	for p, ps := range t.parts {
		if n := ps.next(); n > ps.committed {
			out = append(out, Offset{Partition: p, Offset: n})
		}
	}
	slices.SortFunc(out, func(a, b Offset) int { return int(a.Partition - b.Partition) })
	return out
}

// MarkCommitted records offsets as committed to Kafka.
func (t *Tracker) MarkCommitted(offs []Offset) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range offs {
		if ps, ok := t.parts[o.Partition]; ok && o.Offset > ps.committed {
			ps.committed = o.Offset
		}
	}
}

// Outstanding returns how many tracked offsets are not finished, in total.
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
