package predictor

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

func defaultCRFForTest(t *testing.T) *CRF {
	t.Helper()
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCRF(m, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPredictFixedNoConstraint: without constraints PredictFixed is Predict,
// field for field.
func TestPredictFixedNoConstraint(t *testing.T) {
	c := defaultCRFForTest(t)
	for _, name := range []string{"3M Aura 9205+ N95", "Zzyzx Qwerty 99", "Vogmask Organic Large", "Dräger X-plore 1750"} {
		want, err := c.Predict(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, fixed := range []map[int]string{nil, {}} {
			got, err := c.PredictFixed(name, fixed)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%q %v:\n got %+v\nwant %+v", name, fixed, got, want)
			}
		}
	}
}

// TestPredictFixedRedecodes pins the behaviour the review page relies on:
// fixing one token keeps it and re-decodes the others. With the default
// model, "Zzyzx Qwerty 99" is brand brand model (an unknown two-word
// brand); told that "Zzyzx" is a model, the chain makes "Qwerty" a model
// too: the brand/model pair moves together.
func TestPredictFixedRedecodes(t *testing.T) {
	c := defaultCRFForTest(t)
	tests := []struct {
		name       string
		fixed      map[int]string
		wantBefore []string
		want       []string
	}{
		{"Zzyzx Qwerty 99", map[int]string{0: "model"}, []string{"brand", "brand", "model"}, []string{"model", "model", "model"}},
		{"Acme Foo N95", map[int]string{0: "model"}, []string{"brand", "brand", "filter_type"}, []string{"model", "model", "filter_type"}},
		{"Acme Foo N95", map[int]string{2: "style"}, []string{"brand", "brand", "filter_type"}, []string{"brand", "style", "style"}},
		// Fixing a token to the label it already has changes nothing.
		{"Zzyzx Qwerty 99", map[int]string{1: "brand"}, []string{"brand", "brand", "model"}, []string{"brand", "brand", "model"}},
		// Two constraints.
		{"Zzyzx Qwerty 99", map[int]string{0: "brand", 1: "model"}, []string{"brand", "brand", "model"}, []string{"brand", "model", "model"}},
	}
	for _, tc := range tests {
		before, err := c.Predict(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(before.Labels, tc.wantBefore) {
			t.Fatalf("%q: the default model now predicts %v (the examples assume %v): pick new examples", tc.name, before.Labels, tc.wantBefore)
		}
		got, err := c.PredictFixed(tc.name, tc.fixed)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Labels, tc.want) {
			t.Errorf("%q fixed %v: %v, want %v", tc.name, tc.fixed, got.Labels, tc.want)
		}
		for pos := range tc.fixed {
			if got.TokenConfidences[pos] != 1 {
				t.Errorf("%q: fixed token %d has confidence %v, want 1", tc.name, pos, got.TokenConfidences[pos])
			}
		}
		if got.ModelVersion != c.Version() || got.MaskName != tc.name || !reflect.DeepEqual(got.Tokens, before.Tokens) {
			t.Errorf("%q: %+v", tc.name, got)
		}
	}
}

// TestPredictFixedBruteForce checks decoding and conditional confidences
// against enumerating every labelling that agrees with the constraints.
func TestPredictFixedBruteForce(t *testing.T) {
	c := defaultCRFForTest(t)
	L := c.m.NumLabels()
	names := c.m.Labels()
	for _, name := range []string{"Zzyzx Qwerty 99", "Acme Foo N95", "3M Aura 9205+ N95", "Cleanspace Halo"} {
		toks := Tokenize(name)
		T := len(toks)
		s := c.pool.Get().(*crfScratch)
		s.inst.Reset()
		c.fs.Featurize(toks, &s.sc, &s.sink)
		tg := c.m.Tagger()
		if err := tg.Set(&s.inst); err != nil {
			t.Fatal(err)
		}
		logZ := tg.LogNorm()
		for pos := 0; pos < T; pos++ {
			for y := 0; y < L; y++ {
				fixed := map[int]string{pos: names[y]}
				got, err := c.PredictFixed(name, fixed)
				if err != nil {
					t.Fatal(err)
				}
				// enumerate
				path := make([]int, T)
				best, bestScore := []int(nil), math.Inf(-1)
				marg := make([]float64, T*L)
				total := 0.0
				var walk func(t int)
				walk = func(k int) {
					if k == T {
						sc := tg.Score(path)
						if sc > bestScore {
							bestScore, best = sc, append([]int(nil), path...)
						}
						w := math.Exp(sc - logZ)
						total += w
						for i, yy := range path {
							marg[i*L+yy] += w
						}
						return
					}
					for yy := 0; yy < L; yy++ {
						if k == pos && yy != y {
							continue
						}
						path[k] = yy
						walk(k + 1)
					}
				}
				walk(0)
				for i := range T {
					if got.Labels[i] != names[best[i]] {
						t.Fatalf("%q fixed %v: labels %v, brute force %v", name, fixed, got.Labels, best)
					}
					conf := 0.0
					for yy := 0; yy < L; yy++ {
						conf = max(conf, marg[i*L+yy]/total)
					}
					if math.Abs(conf-got.TokenConfidences[i]) > 1e-9 {
						t.Errorf("%q fixed %v: token %d confidence %v, brute force %v", name, fixed, i, got.TokenConfidences[i], conf)
					}
				}
				if want := math.Exp(bestScore - logZ); math.Abs(got.SequenceProbability-want) > 1e-12 {
					t.Errorf("%q fixed %v: sequence probability %v, want %v", name, fixed, got.SequenceProbability, want)
				}
			}
		}
		tg.Release()
		c.pool.Put(s)
	}
}

func TestPredictFixedErrors(t *testing.T) {
	c := defaultCRFForTest(t)
	for _, tc := range []struct {
		name  string
		fixed map[int]string
		want  error
	}{
		{"3M Aura N95", map[int]string{3: "brand"}, ErrConstraint},
		{"3M Aura N95", map[int]string{-1: "brand"}, ErrConstraint},
		{"3M Aura N95", map[int]string{0: "manufacturer"}, ErrConstraint},
		{"3M Aura N95", map[int]string{0: ""}, ErrConstraint},
		{"  ", map[int]string{0: "brand"}, ErrNoTokens},
		{"", nil, ErrNoTokens},
	} {
		_, err := c.PredictFixed(tc.name, tc.fixed)
		if !errors.Is(err, tc.want) {
			t.Errorf("%q %v: %v, want %v", tc.name, tc.fixed, err, tc.want)
		}
	}
}
