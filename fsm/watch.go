package fsm

import (
	"cmp"
	"slices"
	"sync"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// maxPendingChanges bounds what a subscription buffers: past it, the pending
// changes collapse into one Reset.
const maxPendingChanges = 10_000

// Change is one resource changed at Index.
type Change struct {
	Key     resource.Key
	Deleted bool
	Index   uint64
}

// Batch is what a watcher receives: every change since its last Next, coalesced
// per key. Reset means "too much to list, or a restore happened: resync everything".
type Batch struct {
	Changes []Change
	Reset   bool
	Index   uint64 // applied index when the batch was taken
}

// Subscription delivers coalesced change batches. C is signalled (never blocks Apply).
type Subscription struct {
	C <-chan struct{}

	f  *FSM
	ch chan struct{}
	mu struct {
		sync.Mutex
		pending map[resource.Key]Change
		reset   bool
		closed  bool
	}
}

// Subscribe registers a watcher. Changes applied after Subscribe returns are
// delivered; read the current state (List, Get) after subscribing.
func (f *FSM) Subscribe() *Subscription {
	ch := make(chan struct{}, 1)
	s := &Subscription{C: ch, f: f, ch: ch}
	s.mu.pending = map[resource.Key]Change{}
	f.subs.Lock()
	f.subs.set[s] = struct{}{}
	f.subs.Unlock()
	return s
}

// Next returns every change since the previous Next, coalesced per key and
// ordered by index (then key). It does not block; an empty batch means nothing
// changed.
func (s *Subscription) Next() Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := Batch{Reset: s.mu.reset, Index: s.f.AppliedIndex()}
	if !s.mu.reset && len(s.mu.pending) > 0 {
		b.Changes = make([]Change, 0, len(s.mu.pending))
		for _, c := range s.mu.pending {
			b.Changes = append(b.Changes, c)
		}
		slices.SortFunc(b.Changes, func(x, y Change) int {
			if c := cmp.Compare(x.Index, y.Index); c != 0 {
				return c
			}
			return compareKeys(x.Key, y.Key)
		})
	}
	s.mu.reset = false
	if len(s.mu.pending) > 0 {
		s.mu.pending = map[resource.Key]Change{}
	}
	return b
}

// Close unregisters the watcher. C is not closed (a select on it just never
// fires again).
func (s *Subscription) Close() {
	s.f.subs.Lock()
	delete(s.f.subs.set, s)
	s.f.subs.Unlock()
	s.mu.Lock()
	s.mu.closed = true
	s.mu.pending = nil
	s.mu.Unlock()
}

// add records changes (or a reset) and signals C without blocking.
func (s *Subscription) add(changes []Change, reset bool) {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	switch {
	case reset:
		s.mu.reset = true
		s.mu.pending = map[resource.Key]Change{}
	case s.mu.reset:
		// Everything will be resynced anyway.
	default:
		for _, c := range changes {
			s.mu.pending[c.Key] = c
		}
		if len(s.mu.pending) > maxPendingChanges {
			s.mu.reset = true
			s.mu.pending = map[resource.Key]Change{}
		}
	}
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

// publish fans changes out to every subscription. It takes only small
// per-subscription locks, never waits for a reader.
func (f *FSM) publish(changes []Change) {
	if len(changes) == 0 {
		return
	}
	f.forEachSub(func(s *Subscription) { s.add(changes, false) })
}

func (f *FSM) resetWatchers() {
	f.forEachSub(func(s *Subscription) { s.add(nil, true) })
}

func (f *FSM) forEachSub(fn func(*Subscription)) {
	f.subs.Lock()
	defer f.subs.Unlock()
	for s := range f.subs.set {
		fn(s)
	}
}
