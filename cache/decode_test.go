package cache

import (
	"reflect"
	"testing"

	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/predictor"
)

func testPredictions(t testing.TB) []*predictor.Prediction {
	t.Helper()
	crf := modeltest.DefaultCRF(t)
	rules := predictor.DefaultRules(predictor.Limits{})
	names := []string{
		`3M "Aura" 9205+ N95`, `back\slash`, "tab\tand\nnewline", "ctl\x01\x1f", "emoji 😷 mask",
		"line\u2028sep\u2029", "NBSP\u00a0name", "<script>&amp;", "ünïcödé Straße", "bad \xff utf8",
	}
	names = append(names, modeltest.TrainNames(t)...)
	var out []*predictor.Prediction
	for i, n := range names {
		opt := predictor.Options{}
		if i%3 == 1 {
			opt = predictor.Options{Marginals: true, NBest: 3}
		}
		p, err := crf.PredictWith(n, opt)
		if err != nil {
			continue
		}
		if i%4 == 2 {
			p.NormalizedName = predictor.Normalize(n)
		}
		out = append(out, p)
		if rp, err := rules.Predict(n); err == nil {
			out = append(out, rp)
		}
	}
	return out
}

// comparable keeps the fields the fast decoder reads.
func comparable(p *predictor.Prediction) predictor.Prediction {
	return predictor.Prediction{
		MaskName: p.MaskName, Tokens: p.Tokens, Labels: p.Labels, Confidence: p.Confidence,
		TokenConfidences: p.TokenConfidences, SequenceProbability: p.SequenceProbability,
		ModelVersion: p.ModelVersion, Fallback: p.Fallback, NormalizedName: p.NormalizedName,
	}
}

func TestDecodeFastMatchesUnmarshal(t *testing.T) {
	preds := testPredictions(t)
	if len(preds) < 400 {
		t.Fatalf("%d predictions", len(preds))
	}
	for _, p := range preds {
		b := p.AppendJSON(nil)
		fast, err := decodeFast(b)
		if p.Marginals != nil || p.Alternatives != nil {
			if err != errFast {
				t.Errorf("decodeFast of an entry with marginals: %v, want errFast", err)
			}
			continue // the full decoder's business
		}
		if err != nil {
			t.Fatalf("decodeFast(%s): %v", b, err)
		}
		var full predictor.Prediction
		if err := full.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		if got, want := comparable(fast), comparable(&full); !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\nfast %+v\nfull %+v", b, got, want)
		}
	}
}

func TestDecodeFastRejects(t *testing.T) {
	for _, s := range []string{
		``, `{}`, `[]`, `{"tokens":["a"]}`, `{"breakdown":[{"a":"brand"}],"tokens":["a"]}`,
		`{"tokens":["a"],"breakdown":[{"b":"brand"}]}`, `{"tokens":["a","b"],"breakdown":[{"a":"brand"}]}`,
		`{"tokens":["a"],"breakdown":[{"a":"brand"}],"confidence":+1}`, `{"tokens":["a"],"breakdown":[{"a":"brand"}]} x`,
		`{"tokens":null,"breakdown":[]}`, `{"tokens":["a"],"breakdown":[{"a":"brand","b":"x"}]}`,
	} {
		if p, err := decodeFast([]byte(s)); err == nil {
			t.Errorf("decodeFast(%s) = %+v, want an error", s, p)
		}
	}
}

func FuzzDecodeFast(f *testing.F) {
	for _, p := range testPredictions(f)[:20] {
		f.Add(p.AppendJSON(nil))
	}
	f.Add([]byte(`{"tokens":["\ud83d\ude37","\ud800x"],"breakdown":[{"\ud83d\ude37":"a"},{"\ud800x":"b"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, err := decodeFast(b)
		if err != nil {
			return
		}
		var full predictor.Prediction
		if err := full.UnmarshalJSON(b); err != nil {
			t.Fatalf("fast accepted what encoding/json rejects (%v): %q", err, b)
		}
		if got, want := comparable(fast), comparable(&full); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nfast %+v\nfull %+v", b, got, want)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	p := testPredictions(b)[30]
	p.Marginals, p.Alternatives, p.MarginalLabels = nil, nil, nil
	buf := p.AppendJSON(nil)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeFast(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var q predictor.Prediction
			if err := q.UnmarshalJSON(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
