package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// labelsExport is a Rails export of names the base data does not hold,
// each breakdown the tokenizer's tokens.
const labelsExport = `[
 {"mask_name":"Zimi ZM9233 N95 Black","breakdown":[{"Zimi":"brand"},{"ZM9233":"model"},{"N95":"filter_type"},{"Black":"color"}]},
 {"mask_name":"Powecom KN95 Earloop White","breakdown":[{"Powecom":"brand"},{"KN95":"filter_type"},{"Earloop":"strap"},{"White":"color"}]},
 {"mask_name":"BreatheTeq Large","breakdown":[{"BreatheTeq":"brand"},{"Large":"size"}]},
 {"mask_name":"Moldex 2200N95 Medium/Large","breakdown":[{"Moldex":"brand"},{"2200N95":"model"},{"Medium/Large":"size"}]},
 {"mask_name":"Honeywell DC365 N95 Small","breakdown":[{"Honeywell":"brand"},{"DC365":"model"},{"N95":"filter_type"},{"Small":"size"}]},
 {"mask_name":"Kimberly-Clark Duckbill N95 Regular","breakdown":[{"Kimberly":"brand"},{"Clark":"brand"},{"Duckbill":"style"},{"N95":"filter_type"},{"Regular":"size"}]},
 {"mask_name":"Sanqi 9501+ KN95 Headband","breakdown":[{"Sanqi":"brand"},{"9501+":"model"},{"KN95":"filter_type"},{"Headband":"strap"}]}
]`

// labelsRefused are records Store.Put refuses: tokens that are not the
// tokenizer's, an unknown label, an empty name.
const labelsRefused = `[
 {"mask_name":"3M Aura 9205+","breakdown":[{"3M Aura":"brand"},{"9205+":"model"}]},
 {"mask_name":"Vogmask Small","breakdown":[{"Vogmask":"brand"},{"Small":"sizing"}]},
 {"mask_name":"  ","breakdown":[]}
]`

// exportRecords parses an export constant (for expected outputs).
func exportRecords(t *testing.T, s string) []predictor.ExportRecord {
	t.Helper()
	recs, err := predictor.ParseExport([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// wantExport is what `labels export` writes for recs: WriteExport of them
// sorted by normalized name (without mask_id: a label does not keep it).
func wantExport(t *testing.T, recs []predictor.ExportRecord) []byte {
	t.Helper()
	recs = append([]predictor.ExportRecord(nil), recs...)
	for i := range recs {
		recs[i].MaskID = nil
	}
	sort.SliceStable(recs, func(a, b int) bool {
		return predictor.Normalize(recs[a].MaskName) < predictor.Normalize(recs[b].MaskName)
	})
	var buf bytes.Buffer
	if err := predictor.WriteExport(&buf, recs); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// importLabels stores the export s through `labels import`.
func importLabels(t *testing.T, env map[string]string, s string) {
	t.Helper()
	path := writeFile(t, t.TempDir(), "labels.json", s)
	if code, out, errs := runMain(t, env, "", "labels", "import", path); code != 0 {
		t.Fatalf("labels import: exit %d: %s %s", code, out, errs)
	}
}

func TestLabelsImportExportList(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	env := map[string]string{"REDIS_URL": srv.URL}
	dir := t.TempDir()
	good := exportRecords(t, labelsExport)
	bad := exportRecords(t, labelsRefused)
	mixed := append(append([]predictor.ExportRecord(nil), good...), bad...)
	var buf bytes.Buffer
	if err := predictor.WriteExport(&buf, mixed); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, dir, "mixed.json", buf.String())

	// Refused records: reported with their reasons, exit 1, the others stored.
	code, out, errs := runMain(t, env, "", "labels", "import", "--labelled-by", "alice", path)
	if code != 1 {
		t.Fatalf("import with refusals: exit %d, want 1: %s %s", code, out, errs)
	}
	n := len(good)
	for _, want := range []string{
		"mixed.json: 10 records, 7 stored",
		"3 refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q: %s", want, out)
		}
	}
	for _, want := range []string{
		`refused record 7 ("3M Aura 9205+"): invalid label: breakdown has 2 entries`,
		`refused record 8 ("Vogmask Small"): invalid label: token 1 "Small" has label "sizing"`,
		`refused record 9 ("  "): invalid label: mask_name is empty`,
		"3 of 10",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	ctx := context.Background()
	st, err := labels.New(srv.Client(), labels.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.Len(ctx); err != nil || got != int64(n) {
		t.Fatalf("%d labels stored (%v), want %d", got, err, n)
	}
	for _, r := range bad {
		if _, ok, _ := st.Get(ctx, r.MaskName); ok {
			t.Errorf("refused %q was stored", r.MaskName)
		}
	}
	l, ok, err := st.Get(ctx, "zimi zm9233 n95 BLACK")
	if err != nil || !ok || l.Source != labels.SourceImport || l.LabelledBy != "alice" || l.LabelledAt.IsZero() {
		t.Fatalf("stored label %+v %v %v", l, ok, err)
	}

	// Export: byte-equal to WriteExport of the same records, stdout or --out.
	want := wantExport(t, good)
	code, out, errs = runMain(t, env, "", "labels", "export")
	if code != 0 || out != string(want) {
		t.Fatalf("export: exit %d %s\n%s\nwant\n%s", code, errs, out, want)
	}
	file := filepath.Join(dir, "out.json")
	if code, _, errs := runMain(t, env, "", "labels", "export", "--out", file); code != 0 || !strings.Contains(errs, "7 labels") {
		t.Fatalf("export --out: exit %d %s", code, errs)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, want) {
		t.Fatal("export --out differs from stdout")
	}
	// Importing the export again changes nothing the export shows.
	if code, _, errs := runMain(t, env, "", "labels", "import", file); code != 0 {
		t.Fatalf("re-import: exit %d %s", code, errs)
	}
	if _, out, _ := runMain(t, env, "", "labels", "export"); out != string(want) {
		t.Fatal("export after re-importing it differs")
	}

	// list: one line per label, sorted by normalized name; --json one object per line.
	code, out, errs = runMain(t, env, "", "labels", "list")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != n || !strings.Contains(errs, "7 labels") {
		t.Fatalf("list: exit %d, %d lines:\n%s%s", code, len(lines), out, errs)
	}
	if !strings.Contains(lines[0], "BreatheTeq Large") || !strings.Contains(lines[0], "BreatheTeq/brand Large/size") ||
		!strings.Contains(lines[0], "import") || !strings.Contains(lines[0], "import out.json") {
		t.Errorf("first line %q", lines[0])
	}
	code, out, _ = runMain(t, env, "", "labels", "list", "--json")
	if code != 0 {
		t.Fatalf("list --json: exit %d", code)
	}
	objs := decodeLines(t, out)
	if len(objs) != n || objs[0]["mask_name"] != "BreatheTeq Large" || objs[0]["source"] != "import" {
		t.Fatalf("list --json: %v", objs)
	}
	var back labels.Label
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &back); err != nil || len(back.Breakdown) != 2 {
		t.Fatalf("list --json line does not decode as a label: %v %+v", err, back)
	}
}

// TestLabelsExportTrainEval: the export is training data: train --data on
// it, then eval on it.
func TestLabelsExportTrainEval(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	env := map[string]string{"REDIS_URL": srv.URL}
	importLabels(t, env, labelsExport)
	dir := t.TempDir()
	data := filepath.Join(dir, "labels.json")
	if code, _, errs := runMain(t, env, "", "labels", "export", "--out", data); code != 0 {
		t.Fatal(errs)
	}
	m := filepath.Join(dir, "m.bin")
	code, _, errs := runMain(t, nil, "", "train", "--data", "../../testdata/train.json", "--data", data,
		"--out", m, "--features", "v4", "--max-iterations", "50")
	if code != 0 || !strings.Contains(errs, "replacing 0 records") {
		t.Fatalf("train: exit %d %s", code, errs)
	}
	code, out, errs := runMain(t, nil, "", "eval", "--model", m, "--data", data, "--json")
	if code != 0 {
		t.Fatalf("eval: exit %d %s", code, errs)
	}
	var rep predictor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Names != 7 || rep.Tokens != 26 || rep.TokenAccuracy < 0.9 {
		t.Fatalf("eval on the trained labels: %d names, %d tokens, token accuracy %.4f", rep.Names, rep.Tokens, rep.TokenAccuracy)
	}
}

func TestLabelsUsage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	env := map[string]string{"REDIS_URL": srv.URL}
	dir := t.TempDir()
	malformed := writeFile(t, dir, "bad.json", `[{"mask_name":"Zimi ZM9233","breakdown":[{"Zimi":"brand"}]}, {"breakdown":[]}]`)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"labels"}, 2, "labels export"},
		{[]string{"labels", "nope"}, 2, `unknown labels command "nope"`},
		{[]string{"labels", "import"}, 2, "labels import"},
		{[]string{"labels", "import", "a", "b"}, 2, "labels import"},
		{[]string{"labels", "export", "extra"}, 2, "unexpected arguments"},
		{[]string{"labels", "list", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"labels", "import", "--max-labels", "-1", malformed}, 2, "must not be negative"},
		{[]string{"labels", "import", filepath.Join(dir, "missing.json")}, 1, "no such file"},
		{[]string{"labels", "import", malformed}, 1, "record 1: no mask_name"},
		{[]string{"labels", "list", "--redis-url", "http://x"}, 2, "--redis-url"},
	} {
		code, _, errs := runMain(t, env, "", c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, want %d with %q: %s", c.args, code, c.code, c.want, errs)
		}
	}
	// A malformed file stores nothing, not even its good first record.
	if n, _ := srv.Client().HLen(context.Background(), labels.Key).Result(); n != 0 {
		t.Fatalf("%d labels stored from a malformed file", n)
	}
	if code, _, _ := runMain(t, env, "", "labels", "-h"); code != 0 {
		t.Errorf("labels -h: exit %d", code)
	}
}
