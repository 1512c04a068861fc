package predictor

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func loadTrain(t testing.TB) *Dataset {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "train.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ds, err := LoadExport(f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// rulesCV scores the rule predictor with 5-fold cross-validation: the brand
// lexicon of fold k is built without fold k's names.
func rulesCV(t testing.TB, ds *Dataset, k int) Report {
	sc := NewScorer()
	vocab := DefaultVocabulary()
	for fold := 0; fold < k; fold++ {
		var train []Record
		for i, r := range ds.Records {
			if i%k != fold {
				train = append(train, r)
			}
		}
		r := NewRules(vocab, BrandsFromRecords(train), Limits{})
		for i := fold; i < len(ds.Records); i += k {
			rec := ds.Records[i]
			sc.Add(rec.MaskName, rec.Tokens, rec.Labels, r.Label(rec.Tokens))
		}
	}
	return sc.Report()
}

func TestRulesCrossValidated(t *testing.T) {
	rep := rulesCV(t, loadTrain(t), 5)
	t.Logf("rules 5-fold CV: token accuracy %.4f (%d/%d), name accuracy %.4f (%d/%d)",
		rep.TokenAccuracy, rep.CorrectTokens, rep.Tokens, rep.NameAccuracy, rep.CorrectNames, rep.Names)
	for _, l := range rep.orderedLabels() {
		s := rep.Labels[l]
		t.Logf("  %-12s P %.3f R %.3f F1 %.3f support %d", l, s.Precision, s.Recall, s.F1, s.Support)
	}
	// The old fallback (brand, model, misc…) scored about 0.5 on unseen names.
	if rep.TokenAccuracy < 0.80 {
		t.Errorf("rule predictor CV token accuracy %.4f < 0.80", rep.TokenAccuracy)
	}
}

func TestRulesPrediction(t *testing.T) {
	r := DefaultRules(Limits{})
	p, err := r.Predict("3M Aura 9205+ N95")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Fallback || p.Confidence != 0 {
		t.Fatalf("fallback %v confidence %v", p.Fallback, p.Confidence)
	}
	want := []string{"brand", "model", "model", "filter_type"}
	if !reflect.DeepEqual(p.Labels, want) {
		t.Fatalf("labels %v, want %v", p.Labels, want)
	}
	cases := map[string][]string{
		"Acme KN95 Kids Ear Loops Black":            {"brand", "filter_type", "size", "strap", "strap", "color"},
		"Zimi 7711 w/ Headband no Exhalation Valve": {"brand", "model", "misc", "strap", "valved", "valved", "valved"},
		"Honeywell DF300 N95 Med/High":              {"brand", "model", "filter_type", "size"},
	}
	for name, want := range cases {
		p, err := r.Predict(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p.Labels, want) {
			t.Errorf("%q: %v, want %v", name, p.Labels, want)
		}
	}
	if _, err := r.Predict(" - "); err == nil {
		t.Fatal("no error for a name without tokens")
	}
}

func FuzzRules(f *testing.F) {
	for _, s := range []string{"3M Aura 9205+ N95", "ear loops", "w/ / //", "Σ İ ²", "a/b/c/"} {
		f.Add(s)
	}
	r := DefaultRules(Limits{})
	f.Fuzz(func(t *testing.T, s string) {
		p, err := r.Predict(s)
		if err != nil {
			return
		}
		if len(p.Labels) != len(p.Tokens) {
			t.Fatalf("%d labels for %d tokens", len(p.Labels), len(p.Tokens))
		}
		for _, l := range p.Labels {
			if !isComponent(l) {
				t.Fatalf("label %q", l)
			}
		}
	})
}
