package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/predictor"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Two small exports: the second relabels "3M Aura" (written differently)
// and adds a name.
const (
	exportA = `[{"mask_name":"3M Aura","breakdown":[{"3M":"brand"},{"Aura":"misc"}]},
	{"mask_name":"Moldex 2200 N95","breakdown":[{"Moldex":"brand"},{"2200":"model"},{"N95":"filter_type"}]},
	{"mask_name":"Honeywell DF300 N95","breakdown":[{"Honeywell":"brand"},{"DF300":"model"},{"N95":"filter_type"}]}]`
	exportB = `[{"mask_name":"3m  AURA","breakdown":[{"3m":"brand"},{"AURA":"model"}]},
	{"mask_name":"3M 8210 N95","breakdown":[{"3M":"brand"},{"8210":"model"},{"N95":"filter_type"}]}]`
)

// TestTrainEvalSeveralFiles: --data twice; the later file wins for the same
// normalized name, and the counts are printed; eval reads both too.
func TestTrainEvalSeveralFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := writeFile(t, dir, "a.json", exportA), writeFile(t, dir, "b.json", exportB)
	out := filepath.Join(dir, "m.bin")
	code, _, errs := runMain(t, nil, "", "train", "--data", a, "--data", b, "--out", out, "--max-iterations", "5")
	if code != 0 {
		t.Fatalf("train: exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"loaded " + a + ": 3 records, replacing 0",
		"loaded " + b + ": 2 records, replacing 1 records of earlier files",
		"4 records from 2 files, 1 replaced by a later file",
		"wrote " + out + ": 4 names",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("train stderr lacks %q:\n%s", want, errs)
		}
	}
	code, stdout, errs := runMain(t, nil, "", "eval", "--model", out, "--data", a, "--data", b, "--json")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, errs)
	}
	var rep struct{ Names, Tokens int }
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Names != 4 || rep.Tokens != 11 || !strings.Contains(errs, "1 replaced by a later file") {
		t.Fatalf("eval scored %+v; stderr %s", rep, errs)
	}
	// One file: no merge lines, as before.
	if code, _, errs := runMain(t, nil, "", "eval", "--model", out, "--data", a); code != 0 || strings.Contains(errs, "loaded") {
		t.Fatalf("eval one file: exit %d: %s", code, errs)
	}
}

// TestTrainGroupedCV: --cv K --group-by maker stores plain and grouped
// figures in the model, and model info shows both.
func TestTrainGroupedCV(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.bin")
	code, stdout, errs := runMain(t, nil, "", "train", "--data", "../../testdata/train.json", "--features", "v1",
		"--max-iterations", "3", "--cv", "3", "--group-by", "maker", "--out", out)
	if code != 0 {
		t.Fatalf("train: exit %d: %s", code, errs)
	}
	if !strings.Contains(stdout, "3-fold cross-validation, feature set v1") || !strings.Contains(stdout, "3-fold cross-validation grouped by maker (") {
		t.Fatalf("stdout:\n%s", stdout)
	}
	code, info, errs := runMain(t, nil, "", "model", "info", "--json", out)
	if code != 0 {
		t.Fatalf("model info: exit %d: %s", code, errs)
	}
	var mi struct {
		Meta struct{ Extra map[string]string } `json:"meta"`
	}
	if err := json.Unmarshal([]byte(info), &mi); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cv_folds", "cv_token_accuracy", "cv_name_accuracy", "cv_macro_f1",
		"cv_grouped_by", "cv_grouped_token_accuracy", "cv_grouped_name_accuracy", "cv_grouped_macro_f1"} {
		if mi.Meta.Extra[k] == "" {
			t.Errorf("model lacks %s: %v", k, mi.Meta.Extra)
		}
	}
	if !strings.HasPrefix(mi.Meta.Extra["cv_grouped_by"], "maker (") || !strings.HasSuffix(mi.Meta.Extra["cv_token_accuracy"], "/1200)") {
		t.Errorf("extra %v", mi.Meta.Extra)
	}
	code, text, _ := runMain(t, nil, "", "model", "info", out)
	if code != 0 || !strings.Contains(text, "cv_grouped_token_accuracy") || !strings.Contains(text, "cv_token_accuracy") {
		t.Fatalf("model info text:\n%s", text)
	}
	// --json with grouping: one object with both reports.
	code, stdout, errs = runMain(t, nil, "", "train", "--data", "../../testdata/train.json", "--features", "v1",
		"--max-iterations", "2", "--cv", "2", "--group-by", "maker", "--json")
	if code != 0 {
		t.Fatalf("train --json: exit %d: %s", code, errs)
	}
	var both struct {
		GroupBy string `json:"group_by"`
		Groups  int    `json:"groups"`
		Plain   struct{ Names int }
		Grouped struct{ Names int }
	}
	if err := json.Unmarshal([]byte(stdout), &both); err != nil {
		t.Fatal(err)
	}
	if both.GroupBy != "maker" || both.Groups < 2 || both.Plain.Names != 236 || both.Grouped.Names != 236 {
		t.Fatalf("%+v", both)
	}
}

func TestTrainEvalUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown grouping", []string{"train", "--data", "x.json", "--cv", "5", "--group-by", "brand"}, "--group-by"},
		{"grouping without cv", []string{"train", "--data", "x.json", "--out", "m.bin", "--group-by", "maker"}, "needs --cv"},
		{"empty data", []string{"train", "--data", "", "--cv", "5"}, "empty file name"},
		{"no data", []string{"eval", "--model", "default"}, "--data is required"},
	} {
		code, _, errs := runMain(t, nil, "", tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, stderr %q", tc.name, code, errs)
		}
	}
	// A missing second file is an error that names it.
	code, _, errs := runMain(t, nil, "", "eval", "--model", "default", "--data", "../../testdata/train.json", "--data", "nope.json")
	if code != 1 || !strings.Contains(errs, "nope.json") {
		t.Errorf("missing file: exit %d, stderr %q", code, errs)
	}
}

// TestModelDefault: eval and predict take --model default (and embedded)
// as model info does.
func TestModelDefault(t *testing.T) {
	for _, arg := range []string{"default", "embedded"} {
		code, out, errs := runMain(t, nil, "", "eval", "--model", arg, "--data", "../../testdata/train.json", "--json")
		if code != 0 {
			t.Fatalf("eval --model %s: exit %d: %s", arg, code, errs)
		}
		var rep struct{ Names int }
		if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Names != 236 {
			t.Fatalf("eval --model %s: %v %s", arg, err, out)
		}
		code, out, errs = runMain(t, map[string]string{"MODEL_URI": "file:///nonexistent/m.bin"}, "", "predict", "--model", arg, "3M Aura 9205+ N95")
		if code != 0 {
			t.Fatalf("predict --model %s: exit %d: %s", arg, code, errs)
		}
		lines := decodeLines(t, out)
		if len(lines) != 1 || lines[0]["fallback"] != false || !strings.HasPrefix(lines[0]["model_version"].(string), "v") {
			t.Fatalf("predict --model %s: %s", arg, out)
		}
	}
}

// TestModelDefaultNoReload: the services' --model default loads the embedded
// model, even with MODEL_URI set, and sets up no hot reload (there is no
// file named "default" to watch).
func TestModelDefaultNoReload(t *testing.T) {
	env := map[string]string{"MODEL_URI": "file:///nonexistent/m.bin"}
	sys := IO{Env: func(k string) string { return env[k] }, Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	mf := modelFlags{path: "default"}
	ctx := context.Background()
	l, err := mf.loadFull(ctx, sys, predictor.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if l.crf == nil || l.fallback != "" || !strings.HasPrefix(l.source, "embedded") {
		t.Fatalf("loaded %+v", l)
	}
	rs, err := newModelReload(ctx, sys, &mf, &reloadFlags{poll: time.Second}, l, predictor.Limits{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if rs.Reloader() != nil {
		t.Fatal("a reloader for the embedded model")
	}
}
