package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
)

// randomExamples builds a small random training set: L labels, A attribute
// names, values in {0, ±0.5, 1, 2, 3} (zeros included: they create features
// but never fire), sequences of 1–maxT items.
func randomExamples(seed uint64, n, L, A, maxT int) []Example {
	r := rand.New(rand.NewPCG(seed, 7))
	values := []float64{0, 0.5, -0.5, 1, 2, 3}
	out := make([]Example, n)
	for i := range out {
		T := 1 + r.IntN(maxT)
		ex := Example{Items: make([][]Feature, T), Labels: make([]string, T)}
		for t := 0; t < T; t++ {
			k := 1 + r.IntN(4)
			for j := 0; j < k; j++ {
				ex.Items[t] = append(ex.Items[t], Feature{
					Name:  fmt.Sprintf("a%d", r.IntN(A)),
					Value: values[r.IntN(len(values))],
				})
			}
			ex.Labels[t] = fmt.Sprintf("y%d", r.IntN(L))
		}
		out[i] = ex
	}
	return out
}

// bruteObjective is the objective by enumeration of every label sequence,
// in log space: an independent check of forward-backward and of the
// feature bookkeeping.
func bruteObjective(ts *trainSet, x []float64, c2 float64) float64 {
	L := ts.L
	trans := make([]float64, L*L)
	for k, fid := range ts.transFid {
		if fid >= 0 {
			trans[k] = x[fid]
		}
	}
	nll := 0.0
	for s := 0; s+1 < len(ts.seqItem); s++ {
		first, last := int(ts.seqItem[s]), int(ts.seqItem[s+1])
		T := last - first
		state := make([]float64, T*L)
		for _, oc := range ts.occ[ts.seqOcc[s]:ts.seqOcc[s+1]] {
			state[oc.pos] += x[oc.fid] * oc.v
		}
		score := func(path []int) float64 {
			sc := state[path[0]]
			for t := 1; t < T; t++ {
				sc += trans[path[t-1]*L+path[t]] + state[t*L+path[t]]
			}
			return sc
		}
		var scores []float64
		path := make([]int, T)
		var rec func(t int)
		rec = func(t int) {
			if t == T {
				scores = append(scores, score(path))
				return
			}
			for y := 0; y < L; y++ {
				path[t] = y
				rec(t + 1)
			}
		}
		rec(0)
		m := math.Inf(-1)
		for _, v := range scores {
			m = max(m, v)
		}
		z := 0.0
		for _, v := range scores {
			z += math.Exp(v - m)
		}
		for t := 0; t < T; t++ {
			path[t] = int(ts.label[first+t])
		}
		nll += m + math.Log(z) - score(path)
	}
	norm := 0.0
	for _, v := range x {
		norm += v * v
	}
	return nll + c2*norm
}

// checkGradient compares evaluate's gradient with central finite
// differences (gonum's diff/fd) at x, and its value with bruteObjective when
// brute is set.
func checkGradient(t *testing.T, name string, ts *trainSet, x []float64, c2 float64, brute bool) {
	t.Helper()
	obj := newCRFObjective(context.Background(), ts, c2)
	g := make([]float64, ts.K)
	f, err := obj.evaluate(x, g)
	if err != nil {
		t.Fatal(err)
	}
	if brute {
		want := bruteObjective(ts, x, c2)
		if math.Abs(f-want) > 1e-9*max(1, math.Abs(want)) {
			t.Errorf("%s: objective %.15g, enumeration says %.15g", name, f, want)
		}
	}
	scratch := make([]float64, ts.K)
	fn := func(x []float64) float64 {
		v, err := obj.evaluate(x, scratch)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	num := fd.Gradient(nil, fn, x, &fd.Settings{Formula: fd.Central, Step: 1e-5})
	worst, worstAbs := 0.0, 0.0
	for i := range g {
		d := math.Abs(g[i] - num[i])
		worstAbs = max(worstAbs, d)
		worst = max(worst, d/max(1, math.Abs(num[i])))
	}
	t.Logf("%s: %d features, loss %.6f, largest gradient error %.2e (relative %.2e)", name, ts.K, f, worstAbs, worst)
	if worst > 1e-6 {
		t.Errorf("%s: analytic and finite-difference gradients differ by up to %.3g (relative)", name, worst)
	}
}

func TestTrainGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 42))
	randomX := func(K int, scale float64) []float64 {
		x := make([]float64, K)
		for i := range x {
			x[i] = (r.Float64()*2 - 1) * scale
		}
		return x
	}
	for _, tc := range []struct {
		name      string
		seed      uint64
		possible  bool
		c2, scale float64
	}{
		{"random/observed-transitions", 1, false, 0, 1},
		{"random/all-transitions/c2", 2, true, 0.3, 1},
		{"random/large-weights", 3, true, 0.1, 3},
	} {
		ts, err := newTrainSet(randomExamples(tc.seed, 12, 3, 8, 5), tc.possible)
		if err != nil {
			t.Fatal(err)
		}
		checkGradient(t, tc.name, ts, randomX(ts.K, tc.scale), tc.c2, true)
	}

	// A few real sequences at a random point, and at the optimum's scale.
	data := trainExamples(t)[:8]
	ts, err := newTrainSet(data, true)
	if err != nil {
		t.Fatal(err)
	}
	checkGradient(t, "real/8 names", ts, randomX(ts.K, 0.5), 0.1, false)
}

// TestTrainOverflowFallback drives the state scores far beyond exp's range
// (CRFsuite's unshifted forward-backward would give ∞/NaN) and checks that
// the objective stays finite and equal to the enumeration.
func TestTrainOverflowFallback(t *testing.T) {
	ts, err := newTrainSet(randomExamples(5, 6, 3, 5, 4), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, scale := range []float64{400, -400} {
		x := make([]float64, ts.K)
		r := rand.New(rand.NewPCG(9, 9))
		for i := range x {
			x[i] = scale * r.Float64()
		}
		obj := newCRFObjective(context.Background(), ts, 0)
		g := make([]float64, ts.K)
		f, err := obj.evaluate(x, g)
		if err != nil {
			t.Fatal(err)
		}
		want := bruteObjective(ts, x, 0)
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f-want) > 1e-9*max(1, math.Abs(want)) {
			t.Errorf("scale %v: objective %v, enumeration says %v", scale, f, want)
		}
		for i, v := range g {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("scale %v: gradient[%d] = %v", scale, i, v)
			}
		}
	}
}

// TestTrainObjectiveAllocs checks that an objective evaluation, the body of
// every L-BFGS iteration, allocates nothing.
func TestTrainObjectiveAllocs(t *testing.T) {
	ts, err := newTrainSet(trainExamples(t)[:50], true)
	if err != nil {
		t.Fatal(err)
	}
	obj := newCRFObjective(context.Background(), ts, 0.1)
	x := make([]float64, ts.K)
	g := make([]float64, ts.K)
	for i := range x {
		x[i] = float64(i%7-3) * 0.1
	}
	if n := testing.AllocsPerRun(20, func() { obj.evaluate(x, g) }); n != 0 {
		t.Errorf("evaluate allocates %v times per call", n)
	}
}
