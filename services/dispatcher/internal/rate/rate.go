// Package rate counts events per key over a sliding minute, for the
// "outcomes per second" of the admin API's stats.
package rate

import (
	"sync"
	"time"
)

const buckets = 60

// Window holds one-second buckets per key for the last minute.
type Window struct {
	mu   sync.Mutex
	now  func() time.Time
	keys map[string]*[buckets]uint64
	last int64 // the second the buckets were last advanced to
}

// New returns an empty window; now may be nil for the wall clock.
func New(now func() time.Time) *Window {
	if now == nil {
		now = time.Now
	}
	return &Window{now: now, keys: map[string]*[buckets]uint64{}}
}

// Add counts one event for key.
func (w *Window) Add(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sec := w.advance()
	b := w.keys[key]
	if b == nil {
		b = &[buckets]uint64{}
		w.keys[key] = b
	}
	b[sec%buckets]++
}

// advance clears buckets of seconds that passed since the last call.
func (w *Window) advance() int64 {
	sec := w.now().Unix()
	if w.last != 0 {
		for s := w.last + 1; s <= sec && s <= w.last+buckets; s++ {
			for _, b := range w.keys {
				b[s%buckets] = 0
			}
		}
	}
	w.last = max(w.last, sec)
	return sec
}

// PerSecond returns each key's average rate over the last minute.
func (w *Window) PerSecond() map[string]float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.advance()
	out := make(map[string]float64, len(w.keys))
	for k, b := range w.keys {
		var sum uint64
		for _, n := range b {
			sum += n
		}
		if sum > 0 {
			out[k] = float64(sum) / buckets
		}
	}
	return out
}
