package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// randomModel builds a small dense model with reproducible weights.
func randomModel(t testing.TB, seed uint64, L, A int, scale float64) *Model {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	labels := make([]string, L)
	for i := range labels {
		labels[i] = fmt.Sprintf("l%d", i)
	}
	attrs := make([]string, A)
	for i := range attrs {
		attrs[i] = fmt.Sprintf("a%d", i)
	}
	state := make([]float64, A*L)
	for i := range state {
		if r.IntN(4) > 0 {
			state[i] = (r.Float64()*2 - 1) * scale
		}
	}
	trans := make([]float64, L*L)
	for i := range trans {
		trans[i] = (r.Float64()*2 - 1) * scale
	}
	m, err := New(labels, attrs, state, trans, Meta{FeatureSet: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func randomInstance(r *rand.Rand, T, A int) *Instance {
	var in Instance
	for t := 0; t < T; t++ {
		for k := 0; k < 1+r.IntN(4); k++ {
			in.Add(int32(r.IntN(A+1))-1, float64(r.IntN(3)+1)) // includes unknown (-1)
		}
		in.EndItem()
	}
	return &in
}

// allPaths enumerates every label sequence with its score, for brute force.
func allPaths(tg *Tagger) []Path {
	T, L := tg.Len(), tg.m.NumLabels()
	var out []Path
	cur := make([]int, T)
	var rec func(t int)
	rec = func(t int) {
		if t == T {
			p := append([]int(nil), cur...)
			out = append(out, Path{Labels: p, Score: tg.Score(p)})
			return
		}
		for y := 0; y < L; y++ {
			cur[t] = y
			rec(t + 1)
		}
	}
	rec(0)
	return out
}

func TestTaggerAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for trial := 0; trial < 40; trial++ {
		L, T := 2+r.IntN(3), 1+r.IntN(5)
		m := randomModel(t, uint64(trial), L, 6, 2)
		tg := m.Tagger()
		if err := tg.Set(randomInstance(r, T, 6)); err != nil {
			t.Fatal(err)
		}
		paths := allPaths(tg)
		// log Z
		mx := math.Inf(-1)
		for _, p := range paths {
			mx = max(mx, p.Score)
		}
		z := 0.0
		for _, p := range paths {
			z += math.Exp(p.Score - mx)
		}
		logZ := mx + math.Log(z)
		if d := math.Abs(tg.LogNorm() - logZ); d > 1e-9 {
			t.Fatalf("trial %d: log Z %v, brute force %v", trial, tg.LogNorm(), logZ)
		}
		// marginals
		for pos := 0; pos < T; pos++ {
			for y := 0; y < L; y++ {
				want := 0.0
				for _, p := range paths {
					if p.Labels[pos] == y {
						want += math.Exp(p.Score - logZ)
					}
				}
				if d := math.Abs(tg.Marginal(pos, y) - want); d > 1e-9 {
					t.Fatalf("trial %d: marginal(%d,%d) = %v, brute force %v", trial, pos, y, tg.Marginal(pos, y), want)
				}
			}
		}
		// Viterbi and n-best
		sort.SliceStable(paths, func(a, b int) bool { return paths[a].Score > paths[b].Score })
		vp := make([]int, T)
		vs := tg.Viterbi(vp)
		if math.Abs(vs-paths[0].Score) > 1e-12 {
			t.Fatalf("trial %d: viterbi score %v, best %v", trial, vs, paths[0].Score)
		}
		k := min(10, len(paths))
		nb, err := tg.NBest(k)
		if err != nil {
			t.Fatal(err)
		}
		if len(nb) != k {
			t.Fatalf("trial %d: %d n-best paths, want %d", trial, len(nb), k)
		}
		for i := range nb {
			if math.Abs(nb[i].Score-paths[i].Score) > 1e-9 {
				t.Fatalf("trial %d: n-best %d score %v, want %v", trial, i, nb[i].Score, paths[i].Score)
			}
			if math.Abs(tg.Score(nb[i].Labels)-nb[i].Score) > 1e-9 {
				t.Fatalf("trial %d: n-best %d path %v does not score %v", trial, i, nb[i].Labels, nb[i].Score)
			}
		}
		for i := range nb[0].Labels {
			if nb[0].Labels[i] != vp[i] {
				t.Fatalf("trial %d: n-best[0] %v differs from Viterbi %v", trial, nb[0].Labels, vp)
			}
		}
		// constrained: fix the first position to the worst label at pos 0
		fixed := make([]int, T)
		for i := range fixed {
			fixed[i] = -1
		}
		fixed[0] = L - 1
		cp := make([]int, T)
		cs, err := tg.ViterbiConstrained(fixed, cp)
		if err != nil {
			t.Fatal(err)
		}
		best := math.Inf(-1)
		for _, p := range paths {
			if p.Labels[0] == L-1 {
				best = max(best, p.Score)
			}
		}
		if cp[0] != L-1 || math.Abs(cs-best) > 1e-12 {
			t.Fatalf("trial %d: constrained %v %v, want label %d score %v", trial, cp, cs, L-1, best)
		}
		tg.Release()
	}
}

// TestLongSequencesStayFinite: large weights and long inputs must not
// overflow the scaled forward-backward.
func TestLongSequencesStayFinite(t *testing.T) {
	m := randomModel(t, 3, 9, 20, 400)
	r := rand.New(rand.NewPCG(1, 2))
	tg := m.Tagger()
	defer tg.Release()
	if err := tg.Set(randomInstance(r, 2000, 20)); err != nil {
		t.Fatal(err)
	}
	if z := tg.LogNorm(); math.IsNaN(z) || math.IsInf(z, 0) {
		t.Fatalf("log Z = %v", z)
	}
	for pos := 0; pos < tg.Len(); pos++ {
		sum := 0.0
		for y := 0; y < 9; y++ {
			v := tg.Marginal(pos, y)
			if math.IsNaN(v) || v < 0 || v > 1+1e-12 {
				t.Fatalf("marginal(%d,%d) = %v", pos, y, v)
			}
			sum += v
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Fatalf("marginals at %d sum to %v", pos, sum)
		}
	}
	path := make([]int, tg.Len())
	tg.Viterbi(path)
	if p := tg.Probability(path); math.IsNaN(p) || p < 0 || p > 1 {
		t.Fatalf("probability %v", p)
	}
}

func TestEmptyAndBadInput(t *testing.T) {
	m := randomModel(t, 1, 3, 4, 1)
	tg := m.Tagger()
	defer tg.Release()
	if err := tg.Set(&Instance{}); err != ErrEmptySequence {
		t.Fatalf("empty: %v", err)
	}
	var in Instance
	in.Add(99, 1) // out of range ids score nothing
	in.EndItem()
	if err := tg.Set(&in); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.NBest(11); err == nil {
		t.Fatal("NBest(11) accepted")
	}
	if _, err := tg.ViterbiConstrained([]int{5}, make([]int, 1)); err == nil {
		t.Fatal("out-of-range constraint accepted")
	}
	if _, err := New([]string{"a", "a"}, nil, nil, make([]float64, 4), Meta{}); err == nil {
		t.Fatal("duplicate labels accepted")
	}
	if _, err := New([]string{"a"}, nil, nil, []float64{math.NaN()}, Meta{}); err == nil {
		t.Fatal("NaN weight accepted")
	}
}

// TestNBestReusesScratch: a tagger reused for a longer sequence with a
// smaller k must not index past its scratch (a bug found by the
// concurrent-prediction test).
func TestNBestReusesScratch(t *testing.T) {
	m := randomModel(t, 9, 9, 8, 1)
	r := rand.New(rand.NewPCG(3, 3))
	tg := m.Tagger()
	defer tg.Release()
	for _, c := range []struct{ T, k int }{{7, 3}, {8, 2}, {20, 1}, {3, 10}, {30, 2}} {
		if err := tg.Set(randomInstance(r, c.T, 8)); err != nil {
			t.Fatal(err)
		}
		paths, err := tg.NBest(c.k)
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) != c.k || len(paths[0].Labels) != c.T {
			t.Fatalf("T=%d k=%d: %d paths", c.T, c.k, len(paths))
		}
	}
}
