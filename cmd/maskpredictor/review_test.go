package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maskpredictor/maskpredictor/predictor"
)

var reviewNames = []string{
	"3M Aura 9205+ N95", "3M 1860s", "Zimi ZM9233", "BreatheTeq - Large",
	"Honeywell DC365 N95 Small", "Powecom KN95 Black Earloop", "Moldex 2200N95 Medium/Large",
	"Xylo Qwv-88 Zorbax Kid", "Vogmask Organic Cotton Valve Small", "Aero Pro 3-Ply Blue",
}

type reviewJSON struct {
	Names []struct {
		MaskName   string          `json:"mask_name"`
		Score      float64         `json:"score"`
		Prediction json.RawMessage `json:"prediction"`
	} `json:"names"`
	Candidates   int    `json:"candidates"`
	ModelVersion string `json:"model_version"`
}

// TestReview: review ranks the names of a file as predictor.Review does
// with the embedded model, prints rank, score, name and breakdown, and
// --json prints the API's shape.
func TestReview(t *testing.T) {
	dir := t.TempDir()
	// A duplicate spelling, blank lines and a name too long to predict.
	body := strings.Join(reviewNames, "\n") + "\n\n  3m aura 9205+  N95 \n" + strings.Repeat("x", 2000) + "\n"
	path := writeFile(t, dir, "names.txt", body)

	m, err := predictor.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	c, err := predictor.NewCRF(m, predictor.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var preds []*predictor.Prediction
	for _, n := range reviewNames {
		p, err := c.PredictWith(n, predictor.Options{})
		if err != nil {
			t.Fatal(err)
		}
		preds = append(preds, p)
	}
	want := predictor.Review(c, preds, 4)

	code, out, errs := runMain(t, nil, "", "review", "--data", path, "--limit", "4", "--json")
	if code != 0 {
		t.Fatalf("review --json: exit %d: %s", code, errs)
	}
	var got reviewJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(got.Names) != len(want) || got.Candidates != len(reviewNames) || got.ModelVersion != c.Version() {
		t.Fatalf("review --json: %d names, %d candidates, model %s: %s", len(got.Names), got.Candidates, got.ModelVersion, out)
	}
	for i, w := range want {
		g := got.Names[i]
		if g.MaskName != w.Prediction.MaskName || g.Score != w.Score {
			t.Errorf("rank %d: %q %g, want %q %g", i+1, g.MaskName, g.Score, w.Prediction.MaskName, w.Score)
		}
		var p predictor.Prediction
		if err := json.Unmarshal(g.Prediction, &p); err != nil || p.ModelVersion != c.Version() || len(p.Labels) != len(w.Prediction.Labels) {
			t.Errorf("rank %d: prediction %s (%v)", i+1, g.Prediction, err)
		}
	}
	if !strings.Contains(errs, "line 13") || !strings.Contains(errs, "skipped") {
		t.Errorf("the too-long name is not reported: %s", errs)
	}

	// Text: a header and one line per name, from stdin with --data -.
	code, out, errs = runMain(t, nil, body, "review", "--data", "-", "--limit", "4")
	if code != 0 {
		t.Fatalf("review: exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "rank") {
		t.Fatalf("review text:\n%s", out)
	}
	first := want[0].Prediction
	wantBD := first.Tokens[0] + "/" + first.Labels[0]
	if f := strings.Fields(lines[1]); f[0] != "1" || !strings.Contains(lines[1], first.MaskName) || !strings.Contains(lines[1], wantBD) {
		t.Errorf("first line %q, want rank 1, %q, %q", lines[1], first.MaskName, wantBD)
	}
	if !strings.Contains(errs, "4 of 10 distinct names ranked (model "+c.Version()+")") {
		t.Errorf("stderr %q", errs)
	}

	// --limit 0: all distinct names; --model FILE ranks with that model.
	weak := filepath.Join(dir, "weak.bin")
	if code, _, errs := runMain(t, nil, "", "train", "--data", writeFile(t, dir, "a.json", exportA), "--out", weak, "--max-iterations", "5"); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs = runMain(t, nil, "", "review", "--data", path, "--limit", "0", "--json", "--model", weak)
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("review --model: exit %d %v %s", code, err, errs)
	}
	if len(got.Names) != len(reviewNames) || got.ModelVersion == c.Version() {
		t.Errorf("review --limit 0 --model weak: %d names, model %s", len(got.Names), got.ModelVersion)
	}
}

func TestReviewUsage(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "names.txt", "3M Aura\n")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"review"}, 2, "--data is required"},
		{[]string{"review", "--data", path, "--limit", "-1"}, 2, "must not be negative"},
		{[]string{"review", "--data", path, "3M"}, 2, "unexpected arguments"},
		{[]string{"review", "--data", filepath.Join(dir, "missing.txt")}, 1, "no such file"},
		{[]string{"review", "--data", path, "--model", filepath.Join(dir, "missing.bin")}, 1, "loading --model"},
	} {
		code, _, errs := runMain(t, nil, "", c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, want %d with %q: %s", c.args, code, c.code, c.want, errs)
		}
	}
}
