package predictor_test

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// The interfaces Live must satisfy: the CLI's and HTTP's, and the worker's
// (declared here: predictor does not import worker).
var (
	_ interface {
		PredictWith(string, predictor.Options) (*predictor.Prediction, error)
		Version() string
	} = (*predictor.Live)(nil)
	_ interface {
		PredictTokens(string, []string) (*predictor.Prediction, error)
		Version() string
	} = (*predictor.Live)(nil)
)

// relabeled is m with two label names exchanged: the same weights, so the
// same best paths, but other labels and another version.
func relabeled(t testing.TB, m *model.Model, a, b string) *model.Model {
	t.Helper()
	labels := slices.Clone(m.Labels())
	ia, ib := slices.Index(labels, a), slices.Index(labels, b)
	if ia < 0 || ib < 0 {
		t.Fatalf("labels %q/%q not in %v", a, b, labels)
	}
	labels[ia], labels[ib] = labels[ib], labels[ia]
	v, err := model.New(labels, m.Attributes(), m.StateWeights(), m.TransWeights(), m.Meta())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var liveNames = []string{
	"3M Aura 9205+ N95", "3M 1860s", "Zimi ZM9233", "BreatheTeq - Large",
	"Honeywell DC365 N95 Small", "Powecom KN95 Black Earloop", "Moldex 2200N95 Medium/Large",
	"Kimberly-Clark Duckbill N95 Regular",
}

func TestLiveNeverMixesModels(t *testing.T) {
	base, err := predictor.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	variants := []*model.Model{base, relabeled(t, base, "brand", "model"), relabeled(t, base, "size", "filter_type")}
	servings := make([]*predictor.Serving, 0, len(variants)+1)
	want := map[string]map[string][]string{} // version → name → labels
	for i, m := range variants {
		c, err := predictor.NewCRF(m, predictor.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		servings = append(servings, predictor.ServeCRF(c, fmt.Sprintf("variant %d", i)))
		want[c.Version()] = map[string][]string{}
		for _, n := range liveNames {
			p, err := c.Predict(n)
			if err != nil {
				t.Fatal(err)
			}
			want[c.Version()][n] = p.Labels
		}
	}
	rules := predictor.DefaultRules(predictor.Limits{})
	servings = append(servings, predictor.ServeRules(rules, "rules", "test"))
	want[rules.Version()] = map[string][]string{}
	for _, n := range liveNames {
		p, _ := rules.Predict(n)
		want[rules.Version()][n] = p.Labels
	}
	if len(want) != len(servings) {
		t.Fatalf("%d distinct versions for %d servings", len(want), len(servings))
	}
	live := predictor.NewLive(servings[0])

	var (
		wg      sync.WaitGroup
		stop    atomic.Bool
		preds   atomic.Int64
		seen    sync.Map
		failure atomic.Pointer[string]
	)
	fail := func(format string, a ...any) {
		s := fmt.Sprintf(format, a...)
		failure.CompareAndSwap(nil, &s)
	}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				n := liveNames[(g+i)%len(liveNames)]
				var p *predictor.Prediction
				var err error
				if i%2 == 0 {
					p, err = live.PredictWith(n, predictor.Options{})
				} else {
					p, err = live.PredictTokens(n, predictor.Tokenize(n))
				}
				if err != nil {
					fail("predict %q: %v", n, err)
					return
				}
				exp, ok := want[p.ModelVersion]
				if !ok {
					fail("unknown version %q", p.ModelVersion)
					return
				}
				if !slices.Equal(exp[n], p.Labels) {
					fail("%q under %s: labels %v, want %v (mixed models?)", n, p.ModelVersion, p.Labels, exp[n])
					return
				}
				seen.Store(p.ModelVersion, true)
				preds.Add(1)
			}
		}(g)
	}
	// Swap 400 times, letting a few predictions through between swaps.
	for i := 0; i < 400 && failure.Load() == nil; i++ {
		live.Swap(servings[i%len(servings)])
		for target := preds.Load() + 5; preds.Load() < target && failure.Load() == nil; {
			runtime.Gosched()
		}
	}
	stop.Store(true)
	wg.Wait()
	if f := failure.Load(); f != nil {
		t.Fatal(*f)
	}
	n := 0
	seen.Range(func(any, any) bool { n++; return true })
	t.Logf("%d predictions across %d swaps, %d versions seen", preds.Load(), live.Swaps(), n)
	if n != len(servings) {
		t.Errorf("saw %d versions, want %d", n, len(servings))
	}
	if live.Swaps() != 400 {
		t.Errorf("Swaps = %d", live.Swaps())
	}
}

func TestServingStatus(t *testing.T) {
	c, err := predictor.NewCRF(mustDefault(t), predictor.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	live := predictor.NewLive(predictor.ServeRules(predictor.DefaultRules(predictor.Limits{}), "rules", "MODEL_URI s3://b/k: not found"))
	if live.ModelLoaded() || live.FallbackReason() == "" || live.Source() != "rules" || live.Current().CRF() != nil {
		t.Fatalf("rules serving: loaded=%v reason=%q source=%q", live.ModelLoaded(), live.FallbackReason(), live.Source())
	}
	p, err := live.PredictWith("3M Aura", predictor.Options{})
	if err != nil || !p.Fallback {
		t.Fatalf("fallback prediction: %+v, %v", p, err)
	}
	if _, err := live.PredictTokens("", nil); !errors.Is(err, predictor.ErrNoTokens) {
		t.Fatalf("rules PredictTokens(no tokens) = %v", err)
	}
	old := live.Swap(predictor.ServeCRF(c, "MODEL_URI s3://b/k"))
	if old.ModelLoaded() || !live.ModelLoaded() || live.FallbackReason() != "" || live.Version() != c.Version() {
		t.Fatalf("after swap: loaded=%v reason=%q version=%q", live.ModelLoaded(), live.FallbackReason(), live.Version())
	}
	if live.Swap(nil) == nil || live.Current().CRF() != c {
		t.Fatal("Swap(nil) must keep the current serving")
	}
	p, err = live.PredictTokens("3M Aura", []string{"3M", "Aura"})
	if err != nil || p.Fallback || p.ModelVersion != c.Version() {
		t.Fatalf("model prediction: %+v, %v", p, err)
	}
	if _, err := live.PredictTokens("", nil); !errors.Is(err, predictor.ErrNoTokens) {
		t.Fatalf("crf PredictTokens(no tokens) = %v", err)
	}
	if live.Current().Since().IsZero() {
		t.Error("Since is zero")
	}
}

func mustDefault(t testing.TB) *model.Model {
	t.Helper()
	m, err := predictor.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	return m
}
