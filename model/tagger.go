package model

import (
	"fmt"
	"math"
)

// Tagger decodes one sequence at a time against a Model. It owns its scratch
// memory and is not safe for concurrent use; get one per goroutine from
// Model.Tagger and hand it back with Release.
//
// The arithmetic follows CRFsuite's crf1d_context.c operation for operation
// (state scores summed in attribute order, Viterbi ties kept by the first
// maximum, forward-backward in scaled probability space), so labels and
// Viterbi scores match CRFsuite bit for bit and marginals to rounding.
type Tagger struct {
	m *Model
	T int

	state []float64 // T×L state scores
	delta []float64 // T×L Viterbi scores
	back  []int32   // T×L back pointers

	// forward-backward, computed lazily
	fbDone   bool
	expState []float64 // T×L
	expTrans []float64 // L×L, the model's (shared, read-only)
	alpha    []float64
	beta     []float64
	scale    []float64
	row      []float64
	logNorm  float64

	nb nbestScratch
}

func newTagger(m *Model) *Tagger {
	L := len(m.labels)
	t := &Tagger{m: m, expTrans: m.expTrans, row: make([]float64, L)}
	// exp(w − max w) keeps every factor ≤ 1 so long sequences and large
	// weights cannot overflow; the shift is added back into log Z.
	return t
}

func (tg *Tagger) grow(T int) {
	L := len(tg.m.labels)
	n := T * L
	if cap(tg.state) < n {
		c := n * 2
		tg.state = make([]float64, n, c)
		tg.delta = make([]float64, n, c)
		tg.back = make([]int32, n, c)
		tg.expState = make([]float64, n, c)
		tg.alpha = make([]float64, n, c)
		tg.beta = make([]float64, n, c)
		tg.scale = make([]float64, T, 2*T)
	}
	tg.state = tg.state[:n]
	tg.delta = tg.delta[:n]
	tg.back = tg.back[:n]
	tg.expState = tg.expState[:n]
	tg.alpha = tg.alpha[:n]
	tg.beta = tg.beta[:n]
	tg.scale = tg.scale[:T]
}

// Set computes the state scores of a sequence. It must be called before any
// decoding method.
func (tg *Tagger) Set(in *Instance) error {
	T := in.Len()
	if T == 0 {
		return ErrEmptySequence
	}
	tg.grow(T)
	tg.T = T
	tg.fbDone = false
	L := len(tg.m.labels)
	nattr := int32(len(tg.m.attrs))
	start := int32(0)
	for t := 0; t < T; t++ {
		row := tg.state[t*L : t*L+L]
		clear(row)
		end := in.Ends[t]
		for _, a := range in.Attrs[start:end] {
			if a.ID < 0 || a.ID >= nattr {
				continue
			}
			v := a.Value
			// Only the non-zero weights, as CRFsuite: adding w·v = 0 would
			// change no sum (rows start at +0).
			for _, f := range tg.m.attrFeatures(a.ID) {
				// The conversion forbids fusing into an FMA, which CRFsuite
				// does not do either.
				row[f.label] += float64(f.weight * v)
			}
		}
		start = end
	}
	return nil
}

// Len is the length of the current sequence.
func (tg *Tagger) Len() int { return tg.T }

// StateScore is the state score of label y at position t.
func (tg *Tagger) StateScore(t, y int) float64 { return tg.state[t*len(tg.m.labels)+y] }

// Viterbi writes the best label sequence into path (len ≥ Len) and returns its score.
func (tg *Tagger) Viterbi(path []int) float64 {
	s, _ := tg.viterbi(nil, path)
	return s
}

// ViterbiConstrained is Viterbi with some labels fixed by the caller:
// fixed[t] < 0 leaves position t free, otherwise only label fixed[t] is allowed.
func (tg *Tagger) ViterbiConstrained(fixed, path []int) (float64, error) {
	if len(fixed) != tg.T {
		return 0, fmt.Errorf("constraints for %d positions, sequence has %d", len(fixed), tg.T)
	}
	for t, y := range fixed {
		if y >= len(tg.m.labels) {
			return 0, fmt.Errorf("constraint at position %d: label id %d out of range", t, y)
		}
	}
	return tg.viterbi(fixed, path)
}

func (tg *Tagger) viterbi(fixed, path []int) (float64, error) {
	T, L := tg.T, len(tg.m.labels)
	allowed := func(t, j int) bool { return fixed == nil || fixed[t] < 0 || fixed[t] == j }
	trans := tg.m.trans
	cur := tg.delta[:L]
	for j := 0; j < L; j++ {
		if allowed(0, j) {
			cur[j] = tg.state[j]
		} else {
			cur[j] = math.Inf(-1)
		}
	}
	for t := 1; t < T; t++ {
		prev := tg.delta[(t-1)*L : t*L]
		cur = tg.delta[t*L : t*L+L]
		state := tg.state[t*L : t*L+L]
		back := tg.back[t*L : t*L+L]
		for j := 0; j < L; j++ {
			if !allowed(t, j) {
				cur[j] = math.Inf(-1)
				back[j] = 0
				continue
			}
			maxScore := -math.MaxFloat64
			argmax := int32(-1)
			for i := 0; i < L; i++ {
				score := prev[i] + trans[i*L+j]
				if maxScore < score {
					maxScore = score
					argmax = int32(i)
				}
			}
			if argmax < 0 { // every predecessor excluded
				cur[j] = math.Inf(-1)
				back[j] = 0
				continue
			}
			back[j] = argmax
			cur[j] = maxScore + state[j]
		}
	}
	last := tg.delta[(T-1)*L : T*L]
	maxScore := -math.MaxFloat64
	best := -1
	for j := 0; j < L; j++ {
		if maxScore < last[j] {
			maxScore = last[j]
			best = j
		}
	}
	if best < 0 {
		return math.Inf(-1), fmt.Errorf("no label sequence satisfies the constraints")
	}
	path[T-1] = best
	for t := T - 1; t > 0; t-- {
		path[t-1] = int(tg.back[t*L+path[t]])
	}
	return maxScore, nil
}

// Score is the unnormalised log score of a label sequence, summed in
// CRFsuite's order.
func (tg *Tagger) Score(path []int) float64 {
	L := len(tg.m.labels)
	i := path[0]
	s := tg.state[i]
	for t := 1; t < tg.T; t++ {
		j := path[t]
		s += tg.m.trans[i*L+j]
		s += tg.state[t*L+j]
		i = j
	}
	return s
}

// LogNorm is log Z, the log of the partition function.
func (tg *Tagger) LogNorm() float64 {
	tg.forwardBackward()
	return tg.logNorm
}

// Probability is P(path | x) = exp(score(path) − log Z).
func (tg *Tagger) Probability(path []int) float64 {
	return math.Exp(tg.Score(path) - tg.LogNorm())
}

// Marginal is P(y_t = y | x).
func (tg *Tagger) Marginal(t, y int) float64 {
	tg.forwardBackward()
	L := len(tg.m.labels)
	return tg.alpha[t*L+y] * tg.beta[t*L+y] / tg.scale[t]
}

// Marginals writes P(y_t = y | x) for every t and y into dst (T×L, position-major).
func (tg *Tagger) Marginals(dst []float64) {
	tg.forwardBackward()
	L := len(tg.m.labels)
	for t := 0; t < tg.T; t++ {
		s := tg.scale[t]
		for y := 0; y < L; y++ {
			dst[t*L+y] = tg.alpha[t*L+y] * tg.beta[t*L+y] / s
		}
	}
}

// forwardBackward runs CRFsuite's scaled forward-backward. Each row of state
// scores is shifted by its maximum before exp (and transitions by theirs), so
// no factor exceeds 1 whatever the weights; log Z adds the shifts back.
func (tg *Tagger) forwardBackward() {
	if tg.fbDone {
		return
	}
	T, L := tg.T, len(tg.m.labels)
	shift := float64(T-1) * tg.m.maxTrans
	for t := 0; t < T; t++ {
		row := tg.state[t*L : t*L+L]
		m := row[0]
		for _, v := range row[1:] {
			m = max(m, v)
		}
		shift += m
		er := tg.expState[t*L : t*L+L]
		for y, v := range row {
			er[y] = math.Exp(v - m)
		}
	}

	// forward
	cur := tg.alpha[:L]
	copy(cur, tg.expState[:L])
	tg.scale[0] = scaleOf(cur)
	for t := 1; t < T; t++ {
		prev := tg.alpha[(t-1)*L : t*L]
		cur = tg.alpha[t*L : t*L+L]
		clear(cur)
		for i := 0; i < L; i++ {
			p := prev[i]
			tr := tg.expTrans[i*L : i*L+L]
			for j := range cur {
				cur[j] += p * tr[j]
			}
		}
		es := tg.expState[t*L : t*L+L]
		for j := range cur {
			cur[j] *= es[j]
		}
		tg.scale[t] = scaleOf(cur)
	}
	logScale := 0.0
	for t, s := range tg.scale {
		if t > 0 && s == 1 && allZero(tg.alpha[t*L:t*L+L]) {
			// Every path underflowed: extreme weights. Redo in log space.
			tg.forwardBackwardLog()
			return
		}
		logScale += math.Log(s)
	}
	tg.logNorm = -logScale + shift

	// backward
	cur = tg.beta[(T-1)*L : T*L]
	for j := range cur {
		cur[j] = tg.scale[T-1]
	}
	row := tg.row
	for t := T - 2; t >= 0; t-- {
		cur = tg.beta[t*L : t*L+L]
		next := tg.beta[(t+1)*L : (t+2)*L]
		es := tg.expState[(t+1)*L : (t+2)*L]
		for j := range row {
			row[j] = next[j] * es[j]
		}
		for i := 0; i < L; i++ {
			tr := tg.expTrans[i*L : i*L+L]
			s := 0.0
			for j := range row {
				s += tr[j] * row[j]
			}
			cur[i] = s * tg.scale[t]
		}
	}
	tg.fbDone = true
}

// scaleOf normalises v to sum 1 and returns the factor used (1 for a zero sum).
func scaleOf(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	s := 1.0
	if sum != 0 {
		s = 1 / sum
	}
	for i := range v {
		v[i] *= s
	}
	return s
}

func allZero(v []float64) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}

// forwardBackwardLog is the slow, underflow-proof path for models whose
// weights defeat scaling. It leaves the marginals in alpha (beta and scale
// set to 1) so Marginal and Marginals read them unchanged.
func (tg *Tagger) forwardBackwardLog() {
	T, L := tg.T, len(tg.m.labels)
	la, lb := tg.expState, make([]float64, T*L) // reuse expState for log alpha
	copy(la[:L], tg.state[:L])
	tmp := tg.row
	for t := 1; t < T; t++ {
		for j := 0; j < L; j++ {
			for i := 0; i < L; i++ {
				tmp[i] = la[(t-1)*L+i] + tg.m.trans[i*L+j]
			}
			la[t*L+j] = logSumExp(tmp) + tg.state[t*L+j]
		}
	}
	tg.logNorm = logSumExp(la[(T-1)*L:])
	for t := T - 2; t >= 0; t-- {
		for i := 0; i < L; i++ {
			for j := 0; j < L; j++ {
				tmp[j] = tg.m.trans[i*L+j] + tg.state[(t+1)*L+j] + lb[(t+1)*L+j]
			}
			lb[t*L+i] = logSumExp(tmp)
		}
	}
	for k := range tg.alpha {
		tg.alpha[k] = min(1, math.Exp(la[k]+lb[k]-tg.logNorm))
		tg.beta[k] = 1
	}
	for t := range tg.scale {
		tg.scale[t] = 1
	}
	tg.fbDone = true
}

func logSumExp(v []float64) float64 {
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
