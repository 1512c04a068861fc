package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMarginalsConstrainedAgainstBruteForce: on random small models and
// random constraints, the constrained marginals equal the brute-force
// marginals over the label sequences that agree with the constraints; with
// no constraint they are Marginals'.
func TestMarginalsConstrainedAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	for trial := 0; trial < 40; trial++ {
		L, T := 2+r.IntN(3), 1+r.IntN(5)
		m := randomModel(t, uint64(100+trial), L, 6, 2)
		tg := m.Tagger()
		if err := tg.Set(randomInstance(r, T, 6)); err != nil {
			t.Fatal(err)
		}
		fixed := make([]int, T)
		for i := range fixed {
			fixed[i] = -1
			if trial%2 == 1 && r.IntN(3) == 0 {
				fixed[i] = r.IntN(L)
			}
		}
		got := make([]float64, T*L)
		if err := tg.MarginalsConstrained(fixed, got); err != nil {
			t.Fatal(err)
		}
		z := 0.0
		want := make([]float64, T*L)
		for _, p := range allPaths(tg) {
			ok := true
			for pos, y := range fixed {
				ok = ok && (y < 0 || p.Labels[pos] == y)
			}
			if !ok {
				continue
			}
			w := math.Exp(p.Score)
			z += w
			for pos, y := range p.Labels {
				want[pos*L+y] += w
			}
		}
		for k := range want {
			if d := math.Abs(got[k] - want[k]/z); d > 1e-9 {
				t.Fatalf("trial %d (fixed %v): marginal %d = %v, brute force %v", trial, fixed, k, got[k], want[k]/z)
			}
		}
		if trial%2 == 0 {
			plain := make([]float64, T*L)
			tg.Marginals(plain)
			for k := range plain {
				if math.Abs(plain[k]-got[k]) > 1e-9 {
					t.Fatalf("trial %d: unconstrained %v, Marginals %v", trial, got, plain)
				}
			}
		}
		tg.Release()
	}
}

// TestMarginalsConstrainedBadInput: wrong length, label id out of range and
// a short buffer are errors.
func TestMarginalsConstrainedBadInput(t *testing.T) {
	m := randomModel(t, 1, 3, 4, 1)
	tg := m.Tagger()
	defer tg.Release()
	if err := tg.Set(randomInstance(rand.New(rand.NewPCG(1, 1)), 3, 4)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		fixed []int
		buf   int
	}{{[]int{-1, -1}, 9}, {[]int{-1, 3, -1}, 9}, {[]int{-1, -1, -1}, 8}} {
		if err := tg.MarginalsConstrained(tc.fixed, make([]float64, tc.buf)); err == nil {
			t.Errorf("fixed %v, buffer %d: no error", tc.fixed, tc.buf)
		}
	}
}
