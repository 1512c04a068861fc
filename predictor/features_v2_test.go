package predictor

import (
	"context"
	"os"
	"testing"

	"github.com/maskpredictor/maskpredictor/model"
)

func TestShape(t *testing.T) {
	for in, want := range map[string]string{"KN95": "X9", "Aura": "Xx", "9205+": "9+", "3M": "9X", "w/": "x/", "Med/High": "Xx/Xx"} {
		if got := string(appendShape(nil, in)); got != want {
			t.Errorf("shape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestV2Ablation runs 5-fold cross-validation for v1, v2 and v2 without each
// of its parts. It takes a while, so it runs only with MASKPREDICTOR_ABLATION=1;
// BENCHMARKS.md records its output.
func TestV2Ablation(t *testing.T) {
	if os.Getenv("MASKPREDICTOR_ABLATION") == "" {
		t.Skip("set MASKPREDICTOR_ABLATION=1 to run the feature ablation")
	}
	ds := loadTrain(t)
	variants := map[string]FeatureSet{"v1": v1{}, "v2": featureSets["v2"]}
	all := v2Parts{shape: true, window2: true, fromEnd: true, vocab: true}
	for _, drop := range []string{"shape", "window2", "fromEnd", "vocab"} {
		p := all
		switch drop {
		case "shape":
			p.shape = false
		case "window2":
			p.window2 = false
		case "fromEnd":
			p.fromEnd = false
		case "vocab":
			p.vocab = false
		}
		variants["v2-"+drop] = newV2("v2-"+drop, p)
	}
	for _, c := range [][3]float64{{0.1, 0.1, 100}, {0.05, 0.01, 200}} {
		s := model.Settings{C1: c[0], C2: c[1], MaxIterations: int(c[2]), PossibleTransitions: true}
		for name, fs := range variants {
			rep, err := CrossValidate(context.Background(), ds.Records, fs, s, 5)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("c1=%g c2=%g it=%g %-10s token %.4f (%d/%d)  name %.4f (%d/%d)  macroF1 %.4f", c[0], c[1], c[2], name, rep.TokenAccuracy, rep.CorrectTokens, rep.Tokens, rep.NameAccuracy, rep.CorrectNames, rep.Names, rep.MacroF1)
		}
	}
}
