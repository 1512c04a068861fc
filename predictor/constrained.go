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

	state := make([]float64, T*L)
	for t := 0; t < T; t++ {
		for y := 0; y < L; y++ {
			state[t*L+y] = tg.StateScore(t, y)
		}
	}
	trans := c.m.TransWeights()
	marg := constrainedMarginals(state, trans, ids, T, L)

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

// constrainedMarginals runs forward-backward in log space over the label
// sequences that agree with fixed (fixed[t] < 0: free), returning
// P(y_t = y | x, constraints), T×L position-major. The tagger's own
// forward-backward has no constraints; names are short (T ≤ MaxTokens,
// L = 9), so a plain log-space pass costs microseconds and cannot
// underflow whatever the weights.
func constrainedMarginals(state, trans []float64, fixed []int, T, L int) []float64 {
	negInf := math.Inf(-1)
	allowed := func(t, y int) bool { return fixed[t] < 0 || fixed[t] == y }
	alpha := make([]float64, T*L)
	beta := make([]float64, T*L)
	buf := make([]float64, L)
	for y := 0; y < L; y++ {
		alpha[y] = negInf
		if allowed(0, y) {
			alpha[y] = state[y]
		}
	}
	for t := 1; t < T; t++ {
		for j := 0; j < L; j++ {
			if !allowed(t, j) {
				alpha[t*L+j] = negInf
				continue
			}
			for i := 0; i < L; i++ {
				buf[i] = alpha[(t-1)*L+i] + trans[i*L+j]
			}
			alpha[t*L+j] = lseConstrained(buf) + state[t*L+j]
		}
	}
	for y := 0; y < L; y++ {
		beta[(T-1)*L+y] = negInf
		if allowed(T-1, y) {
			beta[(T-1)*L+y] = 0
		}
	}
	for t := T - 2; t >= 0; t-- {
		for i := 0; i < L; i++ {
			if !allowed(t, i) {
				beta[t*L+i] = negInf
				continue
			}
			for j := 0; j < L; j++ {
				buf[j] = trans[i*L+j] + state[(t+1)*L+j] + beta[(t+1)*L+j]
			}
			beta[t*L+i] = lseConstrained(buf)
		}
	}
	logZ := lseConstrained(alpha[(T-1)*L : T*L])
	marg := make([]float64, T*L)
	for k := range marg {
		if v := alpha[k] + beta[k]; !math.IsInf(v, -1) {
			marg[k] = math.Exp(v - logZ)
		}
	}
	return marg
}

// lseConstrained is log Σ exp(v), −Inf when every v is −Inf.
func lseConstrained(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	if math.IsInf(m, -1) {
		return m
	}
	s := 0.0
	for _, x := range v {
		s += math.Exp(x - m)
	}
	return m + math.Log(s)
}
