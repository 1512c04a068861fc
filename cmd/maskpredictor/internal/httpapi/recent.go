package httpapi

import (
	"sort"
	"sync"
	"time"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// Scored is one served prediction, as the admin page lists it.
type Scored struct {
	MaskName     string
	Normalized   string
	Confidence   float64
	ModelVersion string
	At           time.Time
}

// Recent remembers the last predictions served (not the rule fallback's,
// whose confidence says nothing), for the admin page's "lowest confidence"
// list: the names worth labelling next. Safe for concurrent use.
type Recent struct {
	mu   sync.Mutex
	ring []Scored
	next int
	full bool
}

// DefaultRecent is the number of predictions a Recent keeps by default.
const DefaultRecent = 1024

// NewRecent keeps the last n predictions (DefaultRecent when n ≤ 0).
func NewRecent(n int) *Recent {
	if n <= 0 {
		n = DefaultRecent
	}
	return &Recent{ring: make([]Scored, n)}
}

// Add records p.
func (r *Recent) Add(p *predictor.Prediction) {
	now := time.Now()
	r.mu.Lock()
	r.ring[r.next] = Scored{MaskName: p.MaskName, Normalized: p.NormalizedName, Confidence: p.Confidence, ModelVersion: p.ModelVersion, At: now}
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Lowest returns up to n remembered predictions of the lowest confidence,
// one per normalized name (its latest), lowest first.
func (r *Recent) Lowest(n int) []Scored {
	r.mu.Lock()
	all := make([]Scored, 0, len(r.ring))
	if r.full {
		all = append(all, r.ring[r.next:]...)
	}
	all = append(all, r.ring[:r.next]...)
	r.mu.Unlock()
	return LowestConfidence(all, n)
}

// LowestConfidence keeps the latest entry per normalized name (entries are
// oldest first) and returns the n of lowest confidence, lowest first.
func LowestConfidence(all []Scored, n int) []Scored {
	latest := make(map[string]int, len(all))
	for i, s := range all {
		key := s.Normalized
		if key == "" {
			key = s.MaskName
		}
		latest[key] = i
	}
	out := make([]Scored, 0, len(latest))
	for _, i := range latest {
		out = append(out, all[i])
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Confidence != out[j].Confidence {
			return out[i].Confidence < out[j].Confidence
		}
		return out[i].MaskName < out[j].MaskName
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
