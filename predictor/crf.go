package predictor

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"sync"

	"github.com/maskpredictor/maskpredictor/model"
)

// Options ask for optional parts of a prediction.
type Options struct {
	// Marginals adds every token's marginal probability for every label.
	Marginals bool
	// NBest > 1 adds the next best label sequences (at most model.MaxNBest).
	NBest int
}

// CRF predicts with a linear-chain CRF model. It is safe for concurrent use.
type CRF struct {
	m       *model.Model
	fs      FeatureSet
	tables  *attrTables
	limits  Limits
	version string
	pool    sync.Pool
}

type crfScratch struct {
	sc   Scratch
	inst model.Instance
	sink resolveSink
	path []int
	marg []float64
}

// resolveSink turns attribute names into model ids as they are emitted,
// skipping the ones the model does not know or gives no weight (they would
// score nothing).
//
// Attributes with value 0 are dropped: w·0 adds nothing to a score (not even
// a sign, since scores start at +0), so leaving them out keeps parity.
//
// Word attributes are resolved through the model's word table: begin looks
// up each token once, and every word attribute of that token is then an
// array index. Shapes are looked up by the shape alone.
type resolveSink struct {
	m      *model.Model
	inst   *model.Instance
	fixed  []int32 // model ids of the feature set's fixed attributes, -1 if unknown
	tables *attrTables
	sc     *Scratch
	cur    []*wordEntry // per token of the current name, nil if not in words
}

func (r *resolveSink) begin(sc *Scratch) {
	r.sc = sc
	r.cur = r.cur[:0]
	for i := range sc.info {
		r.cur = append(r.cur, r.tables.words[string(sc.lowerOf(&sc.info[i]))])
	}
}

func (r *resolveSink) word(k wordKind, i int) bool {
	if k < numWholeWordKinds {
		if w := r.cur[i]; w != nil && w.ids[k] >= 0 {
			r.inst.Add(w.ids[k], 1)
		}
		return true
	}
	// An affix: of an ASCII token, the lowered affix is the affix of the
	// lowered token, which its table entry has, or else the affix table.
	ti := &r.sc.info[i]
	if !ti.ascii {
		return false
	}
	id := int32(-1)
	if w := r.cur[i]; w != nil {
		id = w.ids[k]
	} else if v, ok := affixOf(k, r.sc.lowerOf(ti)); ok {
		if key, ok := affixKey(k, v); ok {
			if x, ok := r.tables.affixes[key]; ok {
				id = x
			}
		}
	}
	if id >= 0 {
		r.inst.Add(id, 1)
	}
	return true
}

func (r *resolveSink) fact(i int) (*wordFact, bool) {
	if w := r.cur[i]; w != nil {
		return w.fact, true
	}
	// Not in the table: no fact, but for a compound, which the feature
	// set's vocabulary decides part by part.
	return nil, bytes.IndexByte(r.sc.lowerOf(&r.sc.info[i]), '/') < 0
}

func (r *resolveSink) shape(shape []byte) {
	if id, ok := r.tables.shapes[string(shape)]; ok {
		r.inst.Add(id, 1)
	}
}

func newResolveSink(m *model.Model, fs FeatureSet, tables *attrTables, inst *model.Instance) resolveSink {
	names := fs.FixedNames()
	fixed := make([]int32, len(names))
	for i, n := range names {
		fixed[i] = -1
		if id, ok := m.AttrID(n); ok && m.AttrScores(id) {
			fixed[i] = id
		}
	}
	return resolveSink{m: m, inst: inst, fixed: fixed, tables: tables}
}

func (r *resolveSink) Attr(name []byte, v float64) {
	if v == 0 {
		return
	}
	if id, ok := r.m.AttrIDBytes(name); ok && r.m.AttrScores(id) {
		r.inst.Add(id, v)
	}
}

func (r *resolveSink) Fixed(k int, v float64) {
	if id := r.fixed[k]; id >= 0 && v != 0 {
		r.inst.Add(id, v)
	}
}

func (r *resolveSink) EndToken() { r.inst.EndItem() }

// NewCRF returns a predictor for m, featurizing with the feature set the
// model records (v1 when it records none, as CRFsuite files do not).
func NewCRF(m *model.Model, limits Limits) (*CRF, error) {
	name := m.Meta().FeatureSet
	if name == "" {
		name = "v1"
	}
	fs, err := LookupFeatureSet(name)
	if err != nil {
		return nil, fmt.Errorf("model needs %w", err)
	}
	return newCRFWith(m, fs, limits)
}

// newCRFWith pairs a model with a given feature set (cross-validation of
// feature sets that are not registered).
func newCRFWith(m *model.Model, fs FeatureSet, limits Limits) (*CRF, error) {
	c := &CRF{m: m, fs: fs, tables: newAttrTables(m, fs), limits: limits.WithDefaults(), version: ModelVersion(m)}
	c.pool.New = func() any {
		s := &crfScratch{}
		s.sink = newResolveSink(m, fs, c.tables, &s.inst)
		return s
	}
	return c, nil
}

// Model returns the underlying model.
func (c *CRF) Model() *model.Model { return c.m }

// Version is the model version stamped on every prediction.
func (c *CRF) Version() string { return c.version }

// FeatureSet is the name of the featurizer in use.
func (c *CRF) FeatureSet() string { return c.fs.Name() }

// Predict labels every token of name.
func (c *CRF) Predict(name string) (*Prediction, error) {
	return c.PredictWith(name, Options{})
}

// PredictWith is Predict with optional extras.
func (c *CRF) PredictWith(name string, opt Options) (*Prediction, error) {
	toks, err := c.limits.appendChecked(make([]string, 0, 8), name)
	if err != nil {
		return nil, err
	}
	return c.predictTokens(name, toks, opt)
}

// PredictTokens labels tokens that the caller already split (the cache
// answers with the caller's own tokens).
func (c *CRF) PredictTokens(name string, toks []string, opt Options) (*Prediction, error) {
	if len(toks) == 0 {
		return nil, ErrNoTokens
	}
	return c.predictTokens(name, toks, opt)
}

func (c *CRF) predictTokens(name string, toks []string, opt Options) (*Prediction, error) {
	s := c.pool.Get().(*crfScratch)
	defer c.pool.Put(s)
	s.inst.Reset()
	c.fs.Featurize(toks, &s.sc, &s.sink)

	tg := c.m.Tagger()
	defer tg.Release()
	if err := tg.Set(&s.inst); err != nil {
		return nil, fmt.Errorf("scoring %q: %w", name, err)
	}
	T, L := len(toks), c.m.NumLabels()
	if cap(s.path) < T {
		s.path = make([]int, T)
	}
	path := s.path[:T]
	score := tg.Viterbi(path)
	if cap(s.marg) < T*L {
		s.marg = make([]float64, T*L)
	}
	marg := s.marg[:T*L]
	tg.Marginals(marg)
	logZ := tg.LogNorm()

	type block struct {
		p      Prediction
		labels [8]string
		conf   [8]float64
	}
	blk := &block{} // one allocation for the common short name
	p := &blk.p
	labels := blk.labels[:0]
	conf := blk.conf[:0]
	if T > len(blk.labels) {
		labels = make([]string, 0, T)
		conf = make([]float64, 0, T)
	}
	names := c.m.Labels()
	sum := 0.0
	for t := 0; t < T; t++ {
		labels = append(labels, names[path[t]])
		row := marg[t*L : t*L+L]
		best := row[0]
		for _, v := range row[1:] {
			best = max(best, v)
		}
		conf = append(conf, best)
		sum += best
	}
	*p = Prediction{
		MaskName:            name,
		Tokens:              toks,
		Labels:              labels,
		Confidence:          sum / float64(T),
		TokenConfidences:    conf,
		SequenceProbability: math.Exp(score - logZ),
		ModelVersion:        c.version,
	}
	if opt.Marginals {
		p.MarginalLabels = names
		p.Marginals = make([][]float64, T)
		for t := range p.Marginals {
			p.Marginals[t] = append([]float64(nil), marg[t*L:t*L+L]...)
		}
	}
	if opt.NBest > 1 {
		paths, err := tg.NBest(min(opt.NBest, model.MaxNBest))
		if err != nil {
			return nil, err
		}
		for _, alt := range paths[1:] {
			a := Alternative{Labels: make([]string, T), Probability: math.Exp(alt.Score - logZ)}
			for t, y := range alt.Labels {
				a.Labels[t] = names[y]
			}
			p.Alternatives = append(p.Alternatives, a)
		}
		if p.Alternatives == nil {
			p.Alternatives = []Alternative{}
		}
	}
	return p, nil
}

// ModelVersion identifies a model by what decides its predictions: feature
// set, labels, attributes and weights. The same weights read from a pickle,
// a CRFsuite file or the native format have the same version.
func ModelVersion(m *model.Model) string {
	h := sha256.New()
	var buf [8]byte
	str := func(s string) {
		binary.LittleEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	fs := m.Meta().FeatureSet
	if fs == "" {
		fs = "v1"
	}
	str(fs)
	for _, l := range m.Labels() {
		str(l)
	}
	for _, a := range m.Attributes() {
		str(a)
	}
	for _, w := range m.StateWeights() {
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(w))
		h.Write(buf[:])
	}
	for _, w := range m.TransWeights() {
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(w))
		h.Write(buf[:])
	}
	return fs + "-" + hex.EncodeToString(h.Sum(nil)[:6])
}
