package predictor

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// pred is a CRF-like prediction of name with the given token confidences.
func reviewPred(name string, conf ...float64) *Prediction {
	toks := Tokenize(name)
	labels := make([]string, len(toks))
	for i := range labels {
		labels[i] = "misc"
	}
	sum := 0.0
	for _, c := range conf {
		sum += c
	}
	p := &Prediction{MaskName: name, Tokens: toks, Labels: labels, TokenConfidences: conf}
	if len(conf) > 0 {
		p.Confidence = sum / float64(len(conf))
	}
	return p
}

func reviewNames(s []Scored) []string {
	out := []string{}
	for _, x := range s {
		out = append(out, x.Prediction.MaskName)
	}
	return out
}

func TestReview(t *testing.T) {
	fallback := &Prediction{MaskName: "Rule Fallback", Tokens: []string{"Rule", "Fallback"}, Labels: []string{"brand", "misc"}, Fallback: true}
	for _, tc := range []struct {
		name  string
		preds []*Prediction
		limit int
		want  []string
	}{
		{"empty", nil, 0, []string{}},
		{"most uncertain token on average first",
			[]*Prediction{reviewPred("Sure Mask", 0.99, 0.99), reviewPred("Unsure Mask", 0.4, 0.9), reviewPred("Middle Mask", 0.8, 0.9)}, 0,
			[]string{"Unsure Mask", "Middle Mask", "Sure Mask"}},
		// A long name with one doubtful token of many is not worth more
		// than a short one doubtful throughout (the sum would say it is).
		{"mean, not sum, over tokens",
			[]*Prediction{reviewPred("A B C D E F G H", 0.5, 0.5, 0.5, 0.9, 0.9, 0.9, 0.9, 0.9), reviewPred("X Y", 0.5, 0.6)}, 0,
			[]string{"X Y", "A B C D E F G H"}},
		{"ties by normalized name",
			[]*Prediction{reviewPred("b Mask", 0.5, 0.5), reviewPred("A mask", 0.5, 0.5), reviewPred("C Mask", 0.5, 0.5)}, 0,
			[]string{"A mask", "b Mask", "C Mask"}},
		{"duplicates by Normalize count once, the first kept",
			[]*Prediction{reviewPred("3M  Aura", 0.5, 0.5), reviewPred("3m aura", 0.1, 0.1), reviewPred("ＡＵＲＡ 3m", 0.9, 0.9), reviewPred("3M-Aura", 0.2, 0.2)}, 0,
			[]string{"3M  Aura", "ＡＵＲＡ 3m"}},
		{"empty normalized names and nil skipped",
			[]*Prediction{reviewPred("  -- ", 0.1), nil, reviewPred("Mask", 0.9), {MaskName: ""}}, 0,
			[]string{"Mask"}},
		{"limit", []*Prediction{reviewPred("A", 0.9), reviewPred("B", 0.5), reviewPred("C", 0.7)}, 2, []string{"B", "C"}},
		{"limit above the count", []*Prediction{reviewPred("A", 0.9), reviewPred("B", 0.5)}, 5, []string{"B", "A"}},
		{"negative limit is all", []*Prediction{reviewPred("A", 0.9), reviewPred("B", 0.5)}, -1, []string{"B", "A"}},
		{"fallback without a model ranks last",
			[]*Prediction{fallback, reviewPred("Sure Mask", 1, 1), reviewPred("Unsure Mask", 0.5, 0.5)}, 0,
			[]string{"Unsure Mask", "Sure Mask", "Rule Fallback"}},
		{"NaN confidence is no uncertainty",
			[]*Prediction{reviewPred("Odd", math.NaN()), reviewPred("Even", 0.99)}, 0,
			[]string{"Even", "Odd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Review(nil, tc.preds, tc.limit)
			if names := reviewNames(got); !reflect.DeepEqual(names, tc.want) {
				t.Fatalf("Review = %q, want %q", names, tc.want)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Score > got[i-1].Score {
					t.Errorf("scores not descending: %v", got)
				}
			}
			for _, s := range got {
				if s.Score < 0 || s.Score > 1 || math.IsNaN(s.Score) {
					t.Errorf("%q: score %v outside [0, 1]", s.Prediction.MaskName, s.Score)
				}
			}
		})
	}
}

// TestReviewScore: the score is 1 − Confidence, and Review returns the
// caller's predictions, unchanged.
func TestReviewScore(t *testing.T) {
	p := reviewPred("3M Aura 9205+ N95", 0.9, 0.6, 0.8, 1)
	got := Review(nil, []*Prediction{p}, 0)
	if len(got) != 1 || got[0].Prediction != p {
		t.Fatalf("Review = %v", got)
	}
	if want := 1 - p.Confidence; math.Abs(got[0].Score-want) > 1e-12 {
		t.Errorf("score %v, want 1 − confidence = %v", got[0].Score, want)
	}
	if !reflect.DeepEqual(p, reviewPred("3M Aura 9205+ N95", 0.9, 0.6, 0.8, 1)) {
		t.Error("Review modified its input")
	}
}

// TestReviewDeterministic: any order of the same predictions gives the same
// ranking, for CRF predictions of the default model.
func TestReviewDeterministic(t *testing.T) {
	c := reviewCRF(t)
	var preds []*Prediction
	for _, r := range loadTrainJSON(t)[:120] {
		p, err := c.Predict(r.MaskName)
		if err != nil {
			t.Fatal(err)
		}
		preds = append(preds, p)
	}
	want := Review(c, preds, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		shuffled := append([]*Prediction(nil), preds...)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		got := Review(c, shuffled, 0)
		if len(got) != len(want) {
			t.Fatalf("shuffle %d: %d names, want %d", i, len(got), len(want))
		}
		for k := range got {
			// duplicates keep the first seen, so compare by normalized name
			if Normalize(got[k].Prediction.MaskName) != Normalize(want[k].Prediction.MaskName) || got[k].Score != want[k].Score {
				t.Fatalf("shuffle %d: position %d is %q (%v), want %q (%v)", i, k,
					got[k].Prediction.MaskName, got[k].Score, want[k].Prediction.MaskName, want[k].Score)
			}
		}
	}
	if top := Review(c, preds, 10); !reflect.DeepEqual(top, want[:10]) {
		t.Error("Review with limit 10 is not the first 10 of the whole ranking")
	}
}

// TestReviewFallbackWithModel: a rule-fallback prediction is scored by the
// model's prediction for its tokens, as if the model had made it.
func TestReviewFallbackWithModel(t *testing.T) {
	c := reviewCRF(t)
	name := "Trust Loyalty Glory Epoch Network Respiratory Face Mask"
	crf, err := c.Predict(name)
	if err != nil {
		t.Fatal(err)
	}
	fb := &Prediction{MaskName: name, Tokens: Tokenize(name), Labels: make([]string, len(Tokenize(name))), Fallback: true}
	sure := reviewPred("Sure Mask", 1, 1)
	got := Review(c, []*Prediction{sure, fb}, 0)
	if len(got) != 2 || got[0].Prediction != fb {
		t.Fatalf("Review = %q, want the fallback first", reviewNames(got))
	}
	if want := 1 - crf.Confidence; math.Abs(got[0].Score-want) > 1e-12 {
		t.Errorf("fallback scored %v, want the model's 1 − confidence %v", got[0].Score, want)
	}
}

func reviewCRF(t testing.TB) *CRF {
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
