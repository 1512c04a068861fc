package httpapi

import (
	"container/list"
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// DefaultBatchWait is how long a batch waits for room among the names in
// flight before it is answered 503.
const DefaultBatchWait = time.Second

// DefaultBatchNames is the default bound on the names of batches in flight
// at once: one full batch (maxNames) per CPU but one, and at least one full
// batch. A batch is worked by one goroutine, so with GOMAXPROCS=2 batches
// use at most one CPU and single /predict requests keep the other.
func DefaultBatchNames(maxNames int) int {
	return maxNames * max(1, runtime.GOMAXPROCS(0)-1)
}

// BusyError is the answer to a batch that found no room among the names in
// flight within its wait: a 503 with Retry-After.
type BusyError struct {
	RetryAfter time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("server busy: too many names in flight; retry after %v", e.RetryAfter)
}

// weighted is a FIFO weighted semaphore with a bounded queue: at most size
// units held, at most size units waiting (more is refused at once, so a
// flood costs no memory beyond one queue of waiting requests).
type weighted struct {
	mu      sync.Mutex
	size    int64
	cur     int64
	waiting int64
	waiters list.List // of *waiter
}

type waiter struct {
	n     int64
	ready chan struct{}
}

func newWeighted(size int64) *weighted { return &weighted{size: size} }

// clamp bounds n to the semaphore's size: a request larger than it takes it all.
func (s *weighted) clamp(n int64) int64 { return min(max(n, 1), s.size) }

// saturated reports whether a request would be refused without waiting.
func (s *weighted) saturated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting >= s.size
}

// inFlight returns the units held.
func (s *weighted) inFlight() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// acquire takes n units (clamped), waiting at most wait or until ctx ends;
// false when it could not. A true acquire must be released with the same n.
func (s *weighted) acquire(ctx context.Context, n int64, wait time.Duration) bool {
	n = s.clamp(n)
	s.mu.Lock()
	if s.size-s.cur >= n && s.waiters.Len() == 0 {
		s.cur += n
		s.mu.Unlock()
		return true
	}
	if s.waiting+n > s.size || wait <= 0 {
		s.mu.Unlock()
		return false
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	elem := s.waiters.PushBack(w)
	s.waiting += n
	s.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	s.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile: keep it
		s.mu.Unlock()
		return true
	default:
	}
	isFront := s.waiters.Front() == elem
	s.waiters.Remove(elem)
	s.waiting -= n
	if isFront && s.size > s.cur { // the next waiters may fit now
		s.notify()
	}
	s.mu.Unlock()
	return false
}

// release returns n units (as clamped by acquire).
func (s *weighted) release(n int64) {
	n = s.clamp(n)
	s.mu.Lock()
	s.cur -= n
	if s.cur < 0 {
		s.mu.Unlock()
		panic("httpapi: semaphore released more than held")
	}
	s.notify()
	s.mu.Unlock()
}

// notify wakes the waiters at the front that fit, in order.
func (s *weighted) notify() {
	for {
		front := s.waiters.Front()
		if front == nil {
			return
		}
		w := front.Value.(*waiter)
		if s.size-s.cur < w.n {
			return
		}
		s.cur += w.n
		s.waiting -= w.n
		s.waiters.Remove(front)
		close(w.ready)
	}
}
