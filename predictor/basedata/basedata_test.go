package basedata

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// TestBaseDataMatchesTestdata: the embedded copies are testdata/'s files,
// byte for byte (`make model` copies them; a hand edit of one side fails
// here).
func TestBaseDataMatchesTestdata(t *testing.T) {
	for _, f := range Files() {
		want, err := os.ReadFile(filepath.Join("..", "..", "testdata", f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Data, want) {
			t.Errorf("predictor/basedata/%s differs from testdata/%s: run `make model` (it copies them)", f.Name, f.Name)
		}
	}
}

// TestBaseDataIsTheDefaultModelsData: the merged embedded exports hash to
// the data hash the default model records, so they are the data it was
// trained on, in that order.
func TestBaseDataIsTheDefaultModelsData(t *testing.T) {
	sets, err := Datasets()
	if err != nil {
		t.Fatal(err)
	}
	merged, _ := predictor.MergeExports(sets...)
	m, err := predictor.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := merged.Hash, m.Meta().DataHash; got != want {
		t.Fatalf("embedded base data hashes to %s, the default model was trained on %s", got, want)
	}
	if len(merged.Skipped) != 0 {
		t.Errorf("skipped records: %v", merged.Skipped)
	}
	if tp := m.Meta().Training; tp == nil || tp.Sequences != len(merged.Records) {
		t.Errorf("default model trained on %v sequences, base data has %d records", tp, len(merged.Records))
	}
}

// TestBaseDataDefaultModelRecipe: the constants are the recipe recorded in
// the default model, and training that recipe on the embedded data
// reproduces the default model's weights (its version).
func TestBaseDataDefaultModelRecipe(t *testing.T) {
	m, err := predictor.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	meta := m.Meta()
	tp := meta.Training
	if meta.FeatureSet != FeatureSet || tp == nil || tp.C1 != C1 || tp.C2 != C2 || tp.MaxIterations != MaxIterations || !tp.PossibleTransitions {
		t.Fatalf("default model's recipe %s %+v, constants %s c1=%g c2=%g max_iterations=%d", meta.FeatureSet, tp, FeatureSet, C1, C2, MaxIterations)
	}
	if got, want := meta.Extra["cv_folds"], fmt.Sprint(CVFolds); got != want {
		t.Errorf("cv_folds %q, CVFolds %s", got, want)
	}
	if got := meta.Extra["cv_grouped_by"]; !strings.HasPrefix(got, string(GroupBy)+" ") {
		t.Errorf("cv_grouped_by %q, GroupBy %s", got, GroupBy)
	}
	if testing.Short() {
		return
	}
	sets, err := Datasets()
	if err != nil {
		t.Fatal(err)
	}
	merged, _ := predictor.MergeExports(sets...)
	fs, err := predictor.LookupFeatureSet(FeatureSet)
	if err != nil {
		t.Fatal(err)
	}
	got, err := model.Train(context.Background(), predictor.Examples(merged.Records, fs), Settings())
	if err != nil {
		t.Fatal(err)
	}
	if gv, wv := predictor.ModelVersion(got), predictor.ModelVersion(m); gv != wv {
		t.Fatalf("the recipe on the embedded data trains %s, the default model is %s", gv, wv)
	}
}

// TestBaseDataMakefileFlags: `make model` trains with these constants.
func TestBaseDataMakefileFlags(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^MODEL_FLAGS\s*\?=\s*(.*)$`).FindSubmatch(b)
	if line == nil {
		t.Fatal("Makefile has no MODEL_FLAGS line")
	}
	flags := strings.Fields(string(line[1]))
	want := map[string]string{
		"--features":       FeatureSet,
		"--c1":             fmt.Sprint(C1),
		"--c2":             fmt.Sprint(C2),
		"--max-iterations": fmt.Sprint(MaxIterations),
		"--cv":             fmt.Sprint(CVFolds),
		"--group-by":       string(GroupBy),
	}
	got := map[string]string{}
	for i := 0; i+1 < len(flags); i += 2 {
		got[flags[i]] = flags[i+1]
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("MODEL_FLAGS %s is %q, basedata says %q", k, got[k], v)
		}
	}
	mk := string(b)
	for _, f := range Files() {
		if !strings.Contains(mk, "--data testdata/"+f.Name) || !strings.Contains(mk, "predictor/basedata/") {
			t.Errorf("Makefile's model target does not train on and copy testdata/%s", f.Name)
		}
	}
}
