package lease

import (
	"container/heap"
	"time"
)

// routeKey groups tasks by the endpoints they use. Tasks are taken round-robin
// across routes, so one busy or saturated endpoint never holds up tasks for
// the others.
type routeKey struct {
	src, dst string
}

type route struct {
	key    routeKey
	tasks  []*Task
	head   int
	inRing bool
}

// queue holds tasks waiting for an agent: ready ones by route, and delayed
// ones (in retry backoff) in a heap by due time. Removal is lazy: a task
// whose state moved on is skipped when reached.
type queue struct {
	routes  map[routeKey]*route
	ring    []*route
	cursor  int
	delayed delayHeap
}

func newQueue() *queue {
	return &queue{routes: map[routeKey]*route{}}
}

// push appends a ready task.
func (q *queue) push(t *Task) {
	r := q.routes[t.route]
	if r == nil {
		r = &route{key: t.route}
		q.routes[t.route] = r
	}
	r.tasks = append(r.tasks, t)
	if !r.inRing {
		r.inRing = true
		q.ring = append(q.ring, r)
	}
}

// delay parks a task until its notBefore.
func (q *queue) delay(t *Task) {
	heap.Push(&q.delayed, t)
}

// promote moves due delayed tasks to the ready queues, calling promoted on
// each first so the caller can update its state.
func (q *queue) promote(now time.Time, promoted func(*Task)) {
	for q.delayed.Len() > 0 && !q.delayed[0].notBefore.After(now) {
		t := heap.Pop(&q.delayed).(*Task)
		if t.state == stateDelayed {
			promoted(t)
			q.push(t)
		}
	}
}

// scan offers the front task of each route, once per route, starting at
// the cursor; take returns true when it leased the task. The cursor moves
// on after every route, so routes take turns and a route whose task cannot
// be placed now (its endpoint saturated or its breaker open) does not hold
// up the others. scan returns how many tasks were taken.
func (q *queue) scan(take func(*Task) bool) int {
	taken := 0
	for n := len(q.ring); n > 0 && len(q.ring) > 0; n-- {
		if q.cursor >= len(q.ring) {
			q.cursor = 0
		}
		r := q.ring[q.cursor]
		t := r.front()
		if t == nil {
			q.dropRoute(q.cursor) // moves another route to the cursor
			continue
		}
		if take(t) {
			r.head++
			taken++
			if r.front() == nil {
				q.dropRoute(q.cursor)
				continue
			}
		}
		q.cursor++
	}
	return taken
}

// front returns the first task still queued, skipping lazily removed ones.
func (r *route) front() *Task {
	for r.head < len(r.tasks) {
		if t := r.tasks[r.head]; t.state == stateQueued {
			return t
		}
		r.tasks[r.head] = nil
		r.head++
	}
	r.tasks, r.head = r.tasks[:0], 0
	return nil
}

func (q *queue) dropRoute(i int) {
	r := q.ring[i]
	r.inRing = false
	delete(q.routes, r.key)
	last := len(q.ring) - 1
	q.ring[i] = q.ring[last]
	q.ring[last] = nil
	q.ring = q.ring[:last]
}

// each calls fn for every queued or delayed task.
func (q *queue) each(fn func(*Task)) {
	for _, r := range q.ring {
		for _, t := range r.tasks[r.head:] {
			if t != nil && t.state == stateQueued {
				fn(t)
			}
		}
	}
	for _, t := range q.delayed {
		if t.state == stateDelayed {
			fn(t)
		}
	}
}

// delayHeap orders delayed tasks by due time.
type delayHeap []*Task

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].notBefore.Before(h[j].notBefore) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(*Task)) }
func (h *delayHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}
