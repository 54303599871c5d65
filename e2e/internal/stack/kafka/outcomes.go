package kafka

import (
	"sync"
	"time"
)

// Outcomes holds the records read from the outcome topics, by key (the
// task id), each record once however often a reader delivers it.
type Outcomes struct {
	mu    sync.Mutex
	byKey map[string][]Message
	seen  map[recordID]bool
	// tracked, when tracking, are the only keys kept.
	tracking bool
	tracked  map[string]bool
	errs     []string
	// waiters are the Awaits under way, told as their keys arrive: a
	// benchmark awaits 10,000 keys, too many to look over at each arrival.
	waiters map[*waiter]bool
}

type waiter struct {
	missing map[string]bool
	topic   string
	since   time.Time
	done    chan struct{} // closed when nothing is missing, or a reader failed
}

func (w *waiter) wants(m Message) bool {
	return w.missing[m.Key] && (w.topic == "" || m.Topic == w.topic) && !m.Time.Before(w.since)
}

type recordID struct {
	topic     string
	partition int32
	offset    int64
}

// NewOutcomes is an empty store that keeps every key.
func NewOutcomes() *Outcomes {
	return &Outcomes{byKey: map[string][]Message{}, seen: map[recordID]bool{}, waiters: map[*waiter]bool{}}
}

// Track forgets what the store holds and keeps, from now on, only the
// given keys (none for an empty list): a benchmark that produces 100,000
// tasks a run keeps only the run's.
func (o *Outcomes) Track(keys []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tracking = true
	o.tracked = make(map[string]bool, len(keys))
	for _, k := range keys {
		o.tracked[k] = true
	}
	o.byKey = map[string][]Message{}
	o.seen = map[recordID]bool{}
}

// Wants reports whether a record with key would be kept, so a reader can
// skip decoding the others.
func (o *Outcomes) Wants(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.tracking || o.tracked[key]
}

// Add keeps m unless its key is not wanted or the record was added before
// (a reader started again from the beginning).
func (o *Outcomes) Add(m Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	id := recordID{m.Topic, m.Partition, m.Offset}
	if (o.tracking && !o.tracked[m.Key]) || o.seen[id] {
		return
	}
	o.seen[id] = true
	o.byKey[m.Key] = append(o.byKey[m.Key], m)
	for w := range o.waiters {
		if w.wants(m) {
			delete(w.missing, m.Key)
			if len(w.missing) == 0 {
				close(w.done)
				delete(o.waiters, w)
			}
		}
	}
}

// Fail records a reader's problem; Await returns at once from then on.
func (o *Outcomes) Fail(problem string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, problem)
	for w := range o.waiters {
		close(w.done)
		delete(o.waiters, w)
	}
}

// Errors are the readers' problems.
func (o *Outcomes) Errors() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.errs...)
}

// Messages returns what arrived for key on topic ("" for any outcome
// topic) with a timestamp not before since.
func (o *Outcomes) Messages(key, topic string, since time.Time) []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.filter(key, topic, since)
}

func (o *Outcomes) filter(key, topic string, since time.Time) []Message {
	var out []Message
	for _, m := range o.byKey[key] {
		if (topic == "" || m.Topic == topic) && !m.Time.Before(since) {
			out = append(out, m)
		}
	}
	return out
}

// Await waits until every key has at least one message on topic ("" for
// any) since the given time, and returns the first of each. On timeout,
// or when a reader failed, it returns what arrived and the keys still
// missing.
func (o *Outcomes) Await(keys []string, topic string, since time.Time, timeout time.Duration) (map[string]Message, []string) {
	o.mu.Lock()
	w := &waiter{missing: map[string]bool{}, topic: topic, since: since, done: make(chan struct{})}
	for _, k := range keys {
		if len(o.filter(k, topic, since)) == 0 {
			w.missing[k] = true
		}
	}
	if len(w.missing) > 0 && len(o.errs) == 0 {
		o.waiters[w] = true
		o.mu.Unlock()
		t := time.NewTimer(timeout)
		select {
		case <-w.done:
		case <-t.C:
		}
		t.Stop()
		o.mu.Lock()
		delete(o.waiters, w)
	}
	defer o.mu.Unlock()
	got := make(map[string]Message, len(keys))
	var missing []string
	for _, k := range keys {
		if ms := o.filter(k, topic, since); len(ms) > 0 {
			got[k] = ms[0]
		} else {
			missing = append(missing, k)
		}
	}
	return got, missing
}

// Count reports how many of keys have an outcome since the given time, and
// how many outcomes they have in all.
func (o *Outcomes) Count(keys []string, since time.Time) (withOutcome, total int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		if n := len(o.filter(k, "", since)); n > 0 {
			withOutcome++
			total += n
		}
	}
	return withOutcome, total
}
