package predictor

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/maskpredictor/maskpredictor/model"
)

type goldenPrediction struct {
	MaskName            string               `json:"mask_name"`
	Tokens              []string             `json:"tokens"`
	Labels              []string             `json:"labels"`
	Marginals           []map[string]float64 `json:"marginals"`
	SequenceProbability float64              `json:"sequence_probability"`
	Confidence          float64              `json:"confidence"`
	ViterbiScore        float64              `json:"viterbi_score"`
	LogNorm             float64              `json:"log_norm"`
}

func loadModel(t testing.TB, file string) *model.Model {
	t.Helper()
	m, err := model.Load(filepath.Join("..", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// referenceModels are the reference model as CRFsuite wrote it, as the
// sklearn-crfsuite pickle, and converted to the native format.
func referenceModels(t *testing.T) map[string]*model.Model {
	crf := loadModel(t, "crf_model.crfsuite")
	var buf bytes.Buffer
	if _, err := crf.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	native, err := model.ReadNative(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*model.Model{
		"crfsuite": crf,
		"pickle":   loadModel(t, "crf_model.pkl"),
		"native":   native,
	}
}

// TestParityWithCRFsuite pins our predictions to CRFsuite's own outputs for
// the reference model: labels exactly, Viterbi scores to 1e-13, marginals,
// log Z, sequence probability and confidence to 1e-9.
func TestParityWithCRFsuite(t *testing.T) {
	var golden []goldenPrediction
	for _, f := range []string{"golden_train.jsonl", "golden_mismatch.jsonl"} {
		golden = append(golden, readJSONL[goldenPrediction](t, filepath.Join("..", "testdata", f))...)
	}
	if len(golden) != 238 {
		t.Fatalf("%d golden names, want 238", len(golden))
	}
	const tol = 1e-9
	for src, m := range referenceModels(t) {
		t.Run(src, func(t *testing.T) {
			c, err := NewCRF(m, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for _, g := range golden {
				p, err := c.PredictWith(g.MaskName, Options{Marginals: true})
				if err != nil {
					t.Fatalf("%q: %v", g.MaskName, err)
				}
				if !reflect.DeepEqual(p.Tokens, g.Tokens) || !reflect.DeepEqual(p.Labels, g.Labels) {
					t.Fatalf("%q: got %q %q, want %q %q", g.MaskName, p.Tokens, p.Labels, g.Tokens, g.Labels)
				}
				check := func(what string, got, want, tol float64) {
					t.Helper()
					d := math.Abs(got - want)
					worst = max(worst, d)
					if d > tol {
						t.Errorf("%q %s: got %.17g, want %.17g (|Δ| %.3g)", g.MaskName, what, got, want, d)
					}
				}
				check("confidence", p.Confidence, g.Confidence, tol)
				check("sequence_probability", p.SequenceProbability, g.SequenceProbability, tol)
				for i, row := range g.Marginals {
					for k, l := range p.MarginalLabels {
						check("marginal "+l, p.Marginals[i][k], row[l], tol)
					}
				}
				// Viterbi score and log Z straight from the tagger.
				tg := m.Tagger()
				var sc Scratch
				var inst model.Instance
				rs := newResolveSink(m, c.fs, c.tables, &inst)
				c.fs.Featurize(p.Tokens, &sc, &rs)
				if err := tg.Set(&inst); err != nil {
					t.Fatal(err)
				}
				path := make([]int, len(p.Tokens))
				score := tg.Viterbi(path)
				if score != g.ViterbiScore {
					t.Logf("%q: viterbi score %.17g, CRFsuite %.17g (not bit-identical)", g.MaskName, score, g.ViterbiScore)
				}
				check("viterbi_score", score, g.ViterbiScore, 1e-13)
				check("log_norm", tg.LogNorm(), g.LogNorm, tol)
				tg.Release()
			}
			t.Logf("%s: 238 names, largest |Δ| %.3g", src, worst)
		})
	}
}

// TestConcurrentPredictions: one CRF shared by many goroutines gives the
// same predictions as sequential use (run with -race).
func TestConcurrentPredictions(t *testing.T) {
	c, err := NewCRF(loadModel(t, "crf_model.crfsuite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	ds := loadTrain(t)
	want := make([]string, len(ds.Records))
	for i, r := range ds.Records {
		p, err := c.Predict(r.MaskName)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = string(p.AppendJSON(nil))
	}
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func(g int) {
			for k := 0; k < 3*len(ds.Records); k++ {
				i := (k*7 + g) % len(ds.Records)
				p, err := c.PredictWith(ds.Records[i].MaskName, Options{NBest: 1 + k%3})
				if err != nil {
					errs <- err
					return
				}
				p.Alternatives = nil
				if got := string(p.AppendJSON(nil)); got != want[i] {
					errs <- fmt.Errorf("goroutine %d, %q: %s, want %s", g, ds.Records[i].MaskName, got, want[i])
					return
				}
			}
			errs <- nil
		}(g)
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestNBestAndMarginalsInPrediction checks the optional parts.
func TestNBestAndMarginalsInPrediction(t *testing.T) {
	c, err := NewCRF(loadModel(t, "crf_model.crfsuite"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.PredictWith("3M Aura 9205+ N95", Options{NBest: 5, Marginals: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Alternatives) != 4 {
		t.Fatalf("%d alternatives, want 4", len(p.Alternatives))
	}
	prev := p.SequenceProbability
	for _, a := range p.Alternatives {
		if a.Probability > prev || reflect.DeepEqual(a.Labels, p.Labels) {
			t.Fatalf("alternatives not in order or repeat the best: %+v", p.Alternatives)
		}
		prev = a.Probability
	}
	for i, row := range p.Marginals {
		sum := 0.0
		for _, v := range row {
			sum += v
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Fatalf("marginals of token %d sum to %v", i, sum)
		}
	}
	var back Prediction
	if err := back.UnmarshalJSON(p.AppendJSON(nil)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Labels, p.Labels) || !reflect.DeepEqual(back.Tokens, p.Tokens) || back.Confidence != p.Confidence {
		t.Fatalf("JSON round trip lost data: %+v", back)
	}
}
