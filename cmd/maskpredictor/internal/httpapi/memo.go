package httpapi

import (
	"sync"
	"time"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// memo is a small in-process front of the Redis cache: the predictions of
// names asked for in the last TTL, so a hot name costs no Redis round trip.
// Redis stays the source of truth: an entry is used only for the model
// version it was made by, and is asked for again after TTL (an entry
// deleted or rewritten in Redis is seen within TTL). Bounded: when full, an
// arbitrary entry makes room. Safe for concurrent use.
type memo struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	m   map[string]memoEntry
}

type memoEntry struct {
	p       *predictor.Prediction // never modified once stored
	expires int64                 // unix nanos
}

func newMemo(max int, ttl time.Duration) *memo {
	if max <= 0 {
		return nil
	}
	return &memo{max: max, ttl: ttl, m: make(map[string]memoEntry, min(max, 1024))}
}

// get returns the entry for norm made by version.
func (m *memo) get(norm, version string, now time.Time) *predictor.Prediction {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	e, ok := m.m[norm]
	m.mu.Unlock()
	if !ok || now.UnixNano() >= e.expires || e.p.ModelVersion != version {
		return nil
	}
	return e.p
}

// forget drops the entry of norm (its label changed in this process).
func (m *memo) forget(norm string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	delete(m.m, norm)
	m.mu.Unlock()
}

// put remembers p (which must not be modified afterwards).
func (m *memo) put(norm string, p *predictor.Prediction, now time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if _, ok := m.m[norm]; !ok && len(m.m) >= m.max {
		for k := range m.m { // map order is arbitrary: a random victim
			delete(m.m, k)
			break
		}
	}
	m.m[norm] = memoEntry{p: p, expires: now.Add(m.ttl).UnixNano()}
	m.mu.Unlock()
}
