package model

import (
	"fmt"
	"math"
)

// MarginalsConstrained writes P(y_t = y | x, constraints) into marg
// (len ≥ Len()·NumLabels, position-major): the marginals over the label
// sequences that agree with fixed (fixed[t] < 0 leaves position t free,
// otherwise only label fixed[t] is allowed), the distribution
// ViterbiConstrained decodes. A fixed position has probability 1 on its
// label. It runs forward-backward in log space: sequences are short, and
// the constraints can leave almost no mass where the scaled pass of
// Marginals would underflow.
func (tg *Tagger) MarginalsConstrained(fixed []int, marg []float64) error {
	T, L := tg.T, len(tg.m.labels)
	if len(fixed) != T {
		return fmt.Errorf("constraints for %d positions, sequence has %d", len(fixed), T)
	}
	for t, y := range fixed {
		if y >= L {
			return fmt.Errorf("constraint %d: label id %d out of range (%d labels)", t, y, L)
		}
	}
	if len(marg) < T*L {
		return fmt.Errorf("marginals buffer of %d for %d×%d", len(marg), T, L)
	}
	negInf := math.Inf(-1)
	allowed := func(t, y int) bool { return fixed[t] < 0 || fixed[t] == y }
	state, trans := tg.state, tg.m.trans
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
			alpha[t*L+j] = logSumExp(buf) + state[t*L+j]
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
			beta[t*L+i] = logSumExp(buf)
		}
	}
	logZ := logSumExp(alpha[(T-1)*L : T*L])
	for k := range marg[:T*L] {
		marg[k] = 0
		if v := alpha[k] + beta[k]; !math.IsInf(v, -1) {
			marg[k] = math.Exp(v - logZ)
		}
	}
	return nil
}
