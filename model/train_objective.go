package model

import (
	"context"
	"math"
)

// crfObjective computes the training objective and its gradient the way
// crf1d_encode.c's encoder_objective_and_gradients_batch and
// train_lbfgs.c's lbfgs_evaluate do:
//
//	f(w) = Σ_s (log Z_s − score_s(y_s)) + c2‖w‖²
//	∇f   = Σ_s (E_model[φ] − φ(y_s)) + 2·c2·w
//
// with the forward-backward of crf1d_context.c in scaled probability space.
// Every loop runs in CRFsuite's order and products are wrapped in float64(…)
// so that the compiler cannot fuse them into FMAs, which the reference build
// does not do. It runs on one goroutine: a parallel sum would make the
// rounding, and so the weights, depend on scheduling.
//
// All scratch memory is allocated once, in newCRFObjective.
type crfObjective struct {
	ts   *trainSet
	c2   float64
	ctx  context.Context
	done <-chan struct{}

	trans     []float64 // L×L transition weights (0 where no feature)
	expTrans  []float64 // exp(trans)
	shiftExpT []float64 // exp(trans − max trans), for the overflow fallback
	shiftMaxT float64
	shiftOK   bool // shiftExpT is up to date for this evaluation

	state     []float64 // T×L state scores
	expState  []float64 // T×L
	alpha     []float64 // T×L scaled forward scores
	beta      []float64 // T×L scaled backward scores
	mexpState []float64 // T×L state marginals
	scale     []float64 // T scale factors
	row       []float64 // L
	mexpTrans []float64 // L×L transition marginals, summed over t

	evaluations int
	firstLoss   float64 // the objective at the starting point (w = 0)
}

func newCRFObjective(ctx context.Context, ts *trainSet, c2 float64) *crfObjective {
	L, T := ts.L, ts.maxT
	return &crfObjective{
		ts:        ts,
		c2:        c2,
		ctx:       ctx,
		done:      ctx.Done(),
		trans:     make([]float64, L*L),
		expTrans:  make([]float64, L*L),
		shiftExpT: make([]float64, L*L),
		state:     make([]float64, T*L),
		expState:  make([]float64, T*L),
		alpha:     make([]float64, T*L),
		beta:      make([]float64, T*L),
		mexpState: make([]float64, T*L),
		scale:     make([]float64, T),
		row:       make([]float64, L),
		mexpTrans: make([]float64, L*L),
	}
}

// cancelled polls the context without blocking; a nil Done channel
// (context.Background) is never ready.
func (o *crfObjective) cancelled() bool {
	select {
	case <-o.done:
		return true
	default:
		return false
	}
}

// evaluate writes ∇f(x) into g and returns f(x).
func (o *crfObjective) evaluate(x, g []float64) (float64, error) {
	if o.cancelled() {
		return 0, o.ctx.Err()
	}
	ts := o.ts
	L := ts.L

	// The gradient starts from minus the observation expectations.
	copy(g, ts.negFreq)

	// Transition scores and their exponentials, shared by all sequences.
	for k, fid := range ts.transFid {
		if fid >= 0 {
			o.trans[k] = x[fid]
		} else {
			o.trans[k] = 0
		}
	}
	for k, v := range o.trans {
		o.expTrans[k] = trainExp(v)
	}
	o.shiftOK = false

	logl := 0.0
	nseq := len(ts.seqItem) - 1
	for s := 0; s < nseq; s++ {
		if s&63 == 63 && o.cancelled() {
			return 0, o.ctx.Err()
		}
		first, last := int(ts.seqItem[s]), int(ts.seqItem[s+1])
		T := last - first
		n := T * L

		// State scores: Σ value·w over each item's attributes, in order.
		occ := ts.occ[ts.seqOcc[s]:ts.seqOcc[s+1]]
		state := o.state[:n]
		clear(state)
		for _, oc := range occ {
			state[oc.pos] += float64(x[oc.fid] * oc.v)
		}

		logNorm := o.forwardBackward(T)

		// log p(y|x) = score(y) − log Z, accumulated like CRFsuite's logl.
		labels := ts.label[first:last]
		i := int(labels[0])
		score := state[i]
		for t := 1; t < T; t++ {
			j := int(labels[t])
			score += o.trans[i*L+j]
			score += state[t*L+j]
			i = j
		}
		logl += score - logNorm

		// Model expectations: state features in item and attribute order,
		// then the transition features.
		prob := o.mexpState[:n]
		for _, oc := range occ {
			g[oc.fid] += float64(prob[oc.pos] * oc.v)
		}
		for k, fid := range ts.transFid {
			if fid >= 0 {
				g[fid] += o.mexpTrans[k]
			}
		}
	}
	f := -logl

	// L2 regularisation, as lbfgs_evaluate adds it.
	if 0 < o.c2 {
		c22 := o.c2 * 2
		norm := 0.0
		for i, xi := range x {
			g[i] += float64(c22 * xi)
			norm += float64(xi * xi)
		}
		f += float64(o.c2 * norm)
	}
	if o.evaluations == 0 {
		o.firstLoss = f
	}
	o.evaluations++
	return f, nil
}

// forwardBackward computes the state and transition marginals of the
// sequence whose state scores are in o.state and returns log Z. It follows
// crf1dc_exp_state, crf1dc_alpha_score, crf1dc_beta_score and
// crf1dc_marginals exactly. CRFsuite exponentiates unshifted scores; when
// that overflows or underflows a whole row (weights far beyond anything L2
// training produces, e.g. during a wild line-search trial) this redoes the
// sequence with each row shifted by its maximum, which changes nothing
// mathematically and keeps the loss finite.
func (o *crfObjective) forwardBackward(T int) float64 {
	L := o.ts.L
	n := T * L
	state, expState := o.state[:n], o.expState[:n]
	for k, v := range state {
		expState[k] = trainExp(v)
	}
	if logScale, ok := o.alphaScore(T, o.expTrans); ok {
		o.betaMarginals(T, o.expTrans)
		return -logScale
	}

	// Fallback: exp(s − max) per row and exp(trans − max trans).
	if !o.shiftOK {
		o.shiftMaxT = math.Inf(-1)
		for _, v := range o.trans {
			o.shiftMaxT = max(o.shiftMaxT, v)
		}
		for k, v := range o.trans {
			o.shiftExpT[k] = trainExp(v - o.shiftMaxT)
		}
		o.shiftOK = true
	}
	shift := float64(float64(T-1) * o.shiftMaxT)
	for t := 0; t < T; t++ {
		row := state[t*L : t*L+L]
		m := row[0]
		for _, v := range row[1:] {
			m = max(m, v)
		}
		shift += m
		er := expState[t*L : t*L+L]
		for y, v := range row {
			er[y] = trainExp(v - m)
		}
	}
	logScale, _ := o.alphaScore(T, o.shiftExpT)
	o.betaMarginals(T, o.shiftExpT)
	return -logScale + shift
}

// alphaScore is crf1dc_alpha_score. It returns Σ log scale[t] (so log Z is
// its negation) and false if a row summed to 0, ∞ or NaN.
func (o *crfObjective) alphaScore(T int, expTrans []float64) (float64, bool) {
	L := o.ts.L
	ok := true
	cur := o.alpha[:L]
	copy(cur, o.expState[:L])
	o.scale[0], ok = normalize(cur)
	for t := 1; t < T; t++ {
		prev := o.alpha[(t-1)*L : t*L]
		cur = o.alpha[t*L : t*L+L]
		clear(cur)
		for i, p := range prev {
			tr := expTrans[i*L : i*L+L]
			tr = tr[:len(cur)]
			for j := range cur {
				cur[j] += float64(p * tr[j])
			}
		}
		es := o.expState[t*L : t*L+L]
		es = es[:len(cur)]
		for j := range cur {
			cur[j] *= es[j]
		}
		var rowOK bool
		o.scale[t], rowOK = normalize(cur)
		ok = ok && rowOK
	}
	s := 0.0
	for _, c := range o.scale[:T] {
		s += trainLog(c)
	}
	return s, ok
}

// normalize scales v to sum 1 as crf1dc_alpha_score does: scale = 1/sum, or
// 1 if the sum is 0. ok is false when the sum is not a positive finite
// number whose reciprocal is finite.
func normalize(v []float64) (float64, bool) {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	s := 1.0
	if sum != 0 {
		s = 1.0 / sum
	}
	for i := range v {
		v[i] *= s
	}
	return s, sum > 0 && sum <= math.MaxFloat64 && s <= math.MaxFloat64
}

// betaMarginals is crf1dc_beta_score followed by crf1dc_marginals.
func (o *crfObjective) betaMarginals(T int, expTrans []float64) {
	L := o.ts.L
	row := o.row

	// Backward scores.
	cur := o.beta[(T-1)*L : T*L]
	for j := range cur {
		cur[j] = o.scale[T-1]
	}
	for t := T - 2; t >= 0; t-- {
		cur = o.beta[t*L : t*L+L]
		next := o.beta[(t+1)*L : (t+2)*L]
		es := o.expState[(t+1)*L : (t+2)*L]
		next, es = next[:len(row)], es[:len(row)]
		for j := range row {
			row[j] = next[j] * es[j]
		}
		for i := range cur {
			tr := expTrans[i*L : i*L+L]
			tr = tr[:len(row)]
			s := 0.0
			for j, r := range row {
				s += float64(tr[j] * r)
			}
			cur[i] = s
		}
		sc := o.scale[t]
		for i := range cur {
			cur[i] *= sc
		}
	}

	// State marginals: p(t,i) = α'[t][i]·β'[t][i] / C[t].
	for t := 0; t < T; t++ {
		fwd := o.alpha[t*L : t*L+L]
		bwd := o.beta[t*L : t*L+L]
		prob := o.mexpState[t*L : t*L+L]
		fwd, bwd = fwd[:len(prob)], bwd[:len(prob)]
		inv := 1.0 / o.scale[t]
		for i := range prob {
			prob[i] = float64(fwd[i]*bwd[i]) * inv
		}
	}

	// Transition marginals summed over t:
	// p(t,i,t+1,j) = α'[t][i]·edge[i][j]·state[t+1][j]·β'[t+1][j].
	mt := o.mexpTrans
	clear(mt)
	for t := 0; t < T-1; t++ {
		fwd := o.alpha[t*L : t*L+L]
		es := o.expState[(t+1)*L : (t+2)*L]
		bwd := o.beta[(t+1)*L : (t+2)*L]
		es, bwd = es[:len(row)], bwd[:len(row)]
		for j := range row {
			row[j] = bwd[j] * es[j]
		}
		for i, f := range fwd {
			edge := expTrans[i*L : i*L+L]
			prob := mt[i*L : i*L+L]
			edge, prob = edge[:len(row)], prob[:len(row)]
			for j, r := range row {
				prob[j] += float64(float64(f*edge[j]) * r)
			}
		}
	}
}
