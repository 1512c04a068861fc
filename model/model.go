// Package model is a first-order linear-chain conditional random field that
// knows nothing about masks: labels and attributes interned to ids, state
// weights (attribute × label) and transition weights (label × label), scored
// exactly as CRFsuite scores them.
//
// A *Model is immutable once built and safe for concurrent use. Decoding
// happens in a Tagger, which owns the scratch memory of one sequence; the
// Model keeps a pool of them so that Model.Tag allocates little.
package model

import (
	"errors"
	"fmt"
	"math"
	"sync"
)

// Sentinel errors callers branch on.
var (
	// ErrFormat is wrapped by every error about a model file that cannot be
	// decoded (truncated, corrupt, hostile or simply not a model).
	ErrFormat = errors.New("invalid model file")
	// ErrUnknownFormat says the first bytes match no format we read.
	ErrUnknownFormat = errors.New("unknown model file format")
	// ErrEmptySequence is returned when decoding a sequence with no items.
	ErrEmptySequence = errors.New("empty sequence")
)

// Limits that keep hostile model files from allocating without bound.
const (
	MaxLabels     = 1 << 10
	MaxAttributes = 1 << 24
	MaxFeatures   = 1 << 26
	// MaxStringLen bounds one label or attribute name.
	MaxStringLen = 1 << 16
)

// Meta describes where a model came from. It travels with the model in the
// native format; the CRFsuite readers fill what they can.
type Meta struct {
	// FeatureSet names the featurizer the model was trained with ("v1", "v2").
	FeatureSet string `json:"feature_set"`
	// Source says which reader or tool produced the model.
	Source string `json:"source,omitempty"`
	// Training parameters, when known.
	Training *TrainingParams `json:"training,omitempty"`
	// DataHash is the SHA-256 of the training data, hex encoded.
	DataHash string `json:"data_hash,omitempty"`
	// Extra holds free-form facts (cross-validation figures, tool versions).
	// encoding/json writes map keys sorted, so it stays deterministic.
	Extra map[string]string `json:"extra,omitempty"`
}

// TrainingParams are the settings a model was trained with.
type TrainingParams struct {
	Algorithm           string  `json:"algorithm"`
	C1                  float64 `json:"c1"`
	C2                  float64 `json:"c2"`
	MaxIterations       int     `json:"max_iterations"`
	NumMemories         int     `json:"num_memories,omitempty"`
	Epsilon             float64 `json:"epsilon,omitempty"`
	Period              int     `json:"period,omitempty"`
	Delta               float64 `json:"delta,omitempty"`
	PossibleTransitions bool    `json:"all_possible_transitions"`
	PossibleStates      bool    `json:"all_possible_states,omitempty"`
	Iterations          int     `json:"iterations,omitempty"`
	Loss                float64 `json:"loss,omitempty"`
	Sequences           int     `json:"sequences,omitempty"`
	Items               int     `json:"items,omitempty"`
}

// Model is a trained linear-chain CRF.
type Model struct {
	labels     []string
	labelIndex map[string]int
	attrs      []string
	attrIndex  map[string]int32
	// state[a*L+y] is the weight of attribute a for label y; zero where the
	// feature does not exist.
	state []float64
	// feats[featOff[a]:featOff[a+1]] are the non-zero weights of attribute
	// a, as CRFsuite stores them: L1-regularised models have about one in
	// seven of the dense weights non-zero, so scoring walks these instead of
	// state's rows.
	feats   []feature
	featOff []int32
	// trans[i*L+j] is the weight of the transition i → j.
	trans []float64
	meta  Meta

	// expTrans[i*L+j] = exp(trans[i*L+j] − maxTrans), computed once: the
	// forward-backward pass needs it for every sequence.
	expTrans []float64
	maxTrans float64

	pool sync.Pool
}

// New builds a model from its parts. state must have len(attrs)*len(labels)
// entries (attribute-major) and trans len(labels)². The slices are copied.
func New(labels, attrs []string, state, trans []float64, meta Meta) (*Model, error) {
	L := len(labels)
	switch {
	case L == 0:
		return nil, fmt.Errorf("%w: no labels", ErrFormat)
	case L > MaxLabels:
		return nil, fmt.Errorf("%w: %d labels (max %d)", ErrFormat, L, MaxLabels)
	case len(attrs) > MaxAttributes:
		return nil, fmt.Errorf("%w: %d attributes (max %d)", ErrFormat, len(attrs), MaxAttributes)
	case len(state) != len(attrs)*L:
		return nil, fmt.Errorf("%w: %d state weights for %d attributes × %d labels", ErrFormat, len(state), len(attrs), L)
	case len(trans) != L*L:
		return nil, fmt.Errorf("%w: %d transition weights for %d labels", ErrFormat, len(trans), L)
	}
	m := &Model{
		labels:     append([]string(nil), labels...),
		labelIndex: make(map[string]int, L),
		attrs:      append([]string(nil), attrs...),
		attrIndex:  make(map[string]int32, len(attrs)),
		state:      append([]float64(nil), state...),
		trans:      append([]float64(nil), trans...),
		meta:       meta,
	}
	for i, l := range m.labels {
		if _, dup := m.labelIndex[l]; dup {
			return nil, fmt.Errorf("%w: duplicate label %q", ErrFormat, l)
		}
		m.labelIndex[l] = i
	}
	for i, a := range m.attrs {
		if _, dup := m.attrIndex[a]; dup {
			return nil, fmt.Errorf("%w: duplicate attribute %q", ErrFormat, a)
		}
		m.attrIndex[a] = int32(i)
	}
	for i, w := range m.state {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("%w: state weight %d (attribute %q) is %v", ErrFormat, i, m.attrs[i/L], w)
		}
	}
	for i, w := range m.trans {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("%w: transition weight %s→%s is %v", ErrFormat, m.labels[i/L], m.labels[i%L], w)
		}
	}
	m.featOff = make([]int32, 0, len(m.attrs)+1)
	for a := range m.attrs {
		m.featOff = append(m.featOff, int32(len(m.feats)))
		for y, w := range m.state[a*L : a*L+L] {
			if w != 0 {
				m.feats = append(m.feats, feature{label: int32(y), weight: w})
			}
		}
	}
	m.featOff = append(m.featOff, int32(len(m.feats)))
	m.maxTrans = math.Inf(-1)
	for _, w := range m.trans {
		m.maxTrans = max(m.maxTrans, w)
	}
	m.expTrans = make([]float64, len(m.trans))
	for k, w := range m.trans {
		m.expTrans[k] = math.Exp(w - m.maxTrans)
	}
	m.pool.New = func() any { return newTagger(m) }
	return m, nil
}

// feature is one non-zero state weight of an attribute.
type feature struct {
	label  int32
	weight float64
}

// attrFeatures are the non-zero state weights of attribute a.
func (m *Model) attrFeatures(a int32) []feature { return m.feats[m.featOff[a]:m.featOff[a+1]] }

// AttrScores reports whether attribute a has any non-zero weight: an
// attribute without one adds nothing to any score, so a featurizer may leave
// it out.
func (m *Model) AttrScores(a int32) bool { return m.featOff[a+1] > m.featOff[a] }

// Labels returns the label names in id order. The slice must not be modified.
func (m *Model) Labels() []string { return m.labels }

// NumLabels is the number of labels.
func (m *Model) NumLabels() int { return len(m.labels) }

// Attributes returns the attribute names in id order. The slice must not be modified.
func (m *Model) Attributes() []string { return m.attrs }

// LabelID returns the id of a label name.
func (m *Model) LabelID(name string) (int, bool) {
	id, ok := m.labelIndex[name]
	return id, ok
}

// AttrID returns the id of an attribute name; unknown attributes score nothing.
func (m *Model) AttrID(name string) (int32, bool) {
	id, ok := m.attrIndex[name]
	return id, ok
}

// AttrIDBytes is AttrID for a byte slice; it does not allocate.
func (m *Model) AttrIDBytes(name []byte) (int32, bool) {
	id, ok := m.attrIndex[string(name)]
	return id, ok
}

// Meta returns the model's metadata.
func (m *Model) Meta() Meta { return m.meta }

// StateWeight is w(attribute a, label y).
func (m *Model) StateWeight(a int32, y int) float64 { return m.state[int(a)*len(m.labels)+y] }

// TransWeight is w(label i → label j).
func (m *Model) TransWeight(i, j int) float64 { return m.trans[i*len(m.labels)+j] }

// StateWeights returns a copy of the dense state weights (attribute-major).
func (m *Model) StateWeights() []float64 { return append([]float64(nil), m.state...) }

// TransWeights returns a copy of the dense transition weights (from-major).
func (m *Model) TransWeights() []float64 { return append([]float64(nil), m.trans...) }

// NumFeatures counts the non-zero state and transition weights: the features
// CRFsuite would store.
func (m *Model) NumFeatures() (stateFeatures, transFeatures int) {
	for _, w := range m.state {
		if w != 0 {
			stateFeatures++
		}
	}
	for _, w := range m.trans {
		if w != 0 {
			transFeatures++
		}
	}
	return stateFeatures, transFeatures
}

// Tagger returns a tagger from the model's pool. Call Release when done.
func (m *Model) Tagger() *Tagger { return m.pool.Get().(*Tagger) }

// Release returns a tagger to its model's pool.
func (t *Tagger) Release() { t.m.pool.Put(t) }

// WithMeta returns a copy of the model with other metadata.
func (m *Model) WithMeta(meta Meta) (*Model, error) {
	return New(m.labels, m.attrs, m.state, m.trans, meta)
}
