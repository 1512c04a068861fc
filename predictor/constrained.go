package predictor

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// ErrConstraint is wrapped by PredictFixed's errors about the constraints
// themselves (a position outside the name, a label the model does not
// have): the caller's mistake, answered 400 by the dashboard's API.
var ErrConstraint = errors.New("invalid constraint")

// PredictFixed labels name with some of its tokens' labels given: fixed maps
// a token position (0-based, the tokenizer's tokens) to the label it must
// have. The other tokens get the best labelling that agrees with the given
// ones (constrained Viterbi), so fixing one token can change its neighbours
// (a token fixed to brand makes the next one a model). The review page
// re-decodes with it each time a person changes a label.
//
// Confidences are conditional on the constraints: TokenConfidences[t] is
// the largest marginal P(y_t | name, fixed labels) (1 for a fixed token) and
// Confidence their mean, so they say how sure the model still is about the
// tokens nobody has set. SequenceProbability stays P(labels | name) under
// the unconstrained model, comparable with Predict's. With no constraint
// the result is Predict's.
func (c *CRF) PredictFixed(name string, fixed map[int]string) (*Prediction, error) {
	toks, err := c.limits.appendChecked(make([]string, 0, 8), name)
	if err != nil {
		return nil, err
	}
	if len(fixed) == 0 {
		return c.predictTokens(name, toks, Options{})
	}
	T, L := len(toks), c.m.NumLabels()
	ids := make([]int, T)
	for t := range ids {
		ids[t] = -1
	}
	for _, t := range sortedPositions(fixed) {
		label := fixed[t]
		if t < 0 || t >= T {
			return nil, fmt.Errorf("%w: position %d is outside the name's %d tokens", ErrConstraint, t, T)
		}
		y, ok := c.m.LabelID(label)
		if !ok {
			return nil, fmt.Errorf("%w: token %d %q: unknown label %q (known: %s)", ErrConstraint, t, toks[t], label, strings.Join(c.m.Labels(), ", "))
		}
		ids[t] = y
	}

	s := c.pool.Get().(*crfScratch)
	defer c.pool.Put(s)
	s.inst.Reset()
	c.fs.Featurize(toks, &s.sc, &s.sink)
	tg := c.m.Tagger()
	defer tg.Release()
	if err := tg.Set(&s.inst); err != nil {
		return nil, fmt.Errorf("scoring %q: %w", name, err)
	}
	path := make([]int, T)
	score, err := tg.ViterbiConstrained(ids, path)
	if err != nil {
		return nil, fmt.Errorf("decoding %q with fixed labels: %w", name, err)
	}
	logZ := tg.LogNorm()

	marg := make([]float64, T*L)
	if err := tg.MarginalsConstrained(ids, marg); err != nil {
		return nil, fmt.Errorf("marginals of %q with fixed labels: %w", name, err)
	}

	names := c.m.Labels()
	p := &Prediction{
		MaskName:            name,
		Tokens:              toks,
		Labels:              make([]string, T),
		TokenConfidences:    make([]float64, T),
		SequenceProbability: math.Exp(score - logZ),
		ModelVersion:        c.version,
	}
	sum := 0.0
	for t := 0; t < T; t++ {
		p.Labels[t] = names[path[t]]
		best := 0.0
		for _, v := range marg[t*L : t*L+L] {
			best = max(best, v)
		}
		if ids[t] >= 0 {
			best = 1 // given, not inferred (the sum can round a hair past 1)
		}
		best = min(best, 1)
		p.TokenConfidences[t] = best
		sum += best
	}
	p.Confidence = sum / float64(T)
	return p, nil
}

// sortedPositions orders the constraints so that the first error reported
// does not depend on map order.
func sortedPositions(fixed map[int]string) []int {
	ks := make([]int, 0, len(fixed))
	for k := range fixed {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}
