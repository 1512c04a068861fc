package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateFixes = flag.Bool("update-fixes", false, "rewrite testdata/train.json and train.fixes.txt from train.original.json")

const (
	origData  = "../../testdata/train.original.json"
	fixedData = "../../testdata/train.json"
	extraData = "../../testdata/labelled_extra.json"
	fixesList = "../../testdata/train.fixes.txt"
)

func TestDataExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`[{"mask_name":"x"`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"data"}, 2},
		{[]string{"data", "nope"}, 2},
		{[]string{"data", "-h"}, 0},
		{[]string{"data", "lint"}, 2},
		{[]string{"data", "lint", "--data", fixedData, "extra-arg"}, 2},
		{[]string{"data", "lint", "--data", fixedData}, 0},
		{[]string{"data", "lint", "--data", extraData}, 0},
		{[]string{"data", "lint", "--data", origData}, 1},
		{[]string{"data", "lint", "--data", bad}, 1},
		{[]string{"data", "lint", "--data", filepath.Join(dir, "missing.json")}, 1},
		{[]string{"data", "fix"}, 2},
		{[]string{"data", "fix", "--data", origData}, 2},
		{[]string{"data", "fix", "--data", origData, "--dry-run"}, 0},
	}
	for _, tc := range cases {
		if code, _, errs := runMain(t, nil, "", tc.args...); code != tc.code {
			t.Errorf("%v: exit %d, want %d (%s)", tc.args, code, tc.code, errs)
		}
	}
}

// TestDataLintOriginal: the text report names the known disagreements with
// their rules and ends with a summary line.
func TestDataLintOriginal(t *testing.T) {
	code, out, _ := runMain(t, nil, "", "data", "lint", "--data", origData)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		`record 53 "Daddy's Choice Purism - Protective KN95 Face Mask" token 4 "KN95": style → filter_type [convention, rule 3]`,
		"(KN95: filter_type 38, style 3, size 1 in the data)",
		`record 31 "AirBoss AirBoss L/XL for Med/High nose" token 1 "AirBoss": brand → model [convention, rule 1]`,
		"32 findings in 236 records of 1 file(s): convention 32\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestDataLintJSON: the --json shape, over two files (names are given per
// finding; counts are over both).
func TestDataLintJSON(t *testing.T) {
	code, out, errs := runMain(t, nil, "", "data", "lint", "--json", "--data", origData, "--data", extraData)
	if code != 1 {
		t.Fatalf("exit %d %s", code, errs)
	}
	var rep struct {
		Files    []string `json:"files"`
		Records  int      `json:"records"`
		Findings []struct {
			File     string `json:"file"`
			Index    *int   `json:"index"`
			MaskName string `json:"mask_name"`
			Kind     string `json:"kind"`
			Rule     string `json:"rule"`
			Position *int   `json:"token_index"`
			Token    string `json:"token"`
			Label    string `json:"label"`
			Want     string `json:"want"`
			Detail   string `json:"detail"`
		} `json:"findings"`
		ByKind map[string]int `json:"by_kind"`
		ByRule map[string]int `json:"by_rule"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Files) != 2 || rep.Records != 236+127 || len(rep.Findings) == 0 || rep.ByRule["rule 3"] == 0 {
		t.Fatalf("report %+v", rep)
	}
	total := 0
	for _, n := range rep.ByKind {
		total += n
	}
	if total != len(rep.Findings) {
		t.Errorf("by_kind adds to %d, %d findings", total, len(rep.Findings))
	}
	for _, f := range rep.Findings {
		if f.File != origData && f.File != extraData || f.Index == nil || f.Position == nil || f.Kind == "" || f.Detail == "" || f.MaskName == "" {
			t.Fatalf("incomplete finding %+v", f)
		}
	}
	// Clean data: an empty list, not null.
	code, out, _ = runMain(t, nil, "", "data", "lint", "--json", "--data", fixedData)
	if code != 0 || !strings.Contains(out, `"findings":[]`) {
		t.Fatalf("exit %d %s", code, out)
	}
}

// TestDataFixTrain: fix on the original export writes testdata/train.json
// and prints testdata/train.fixes.txt; lint on its output is clean; the
// input is untouched.
func TestDataFixTrain(t *testing.T) {
	before, err := os.ReadFile(origData)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "fixed.json")
	extraBefore, err := os.ReadFile(extraData)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, errs := runMain(t, nil, "", "data", "fix", "--data", origData, "--context", extraData, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d %s", code, errs)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if *updateFixes {
		if err := os.WriteFile(fixedData, got, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fixesList, []byte(stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(fixedData)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("testdata/train.json is not data fix's output (go test -run TestDataFixTrain -update-fixes)")
	}
	list, err := os.ReadFile(fixesList)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(list) {
		t.Errorf("testdata/train.fixes.txt differs from the output (go test -run TestDataFixTrain -update-fixes):\n%s", stdout)
	}
	if after, _ := os.ReadFile(origData); !bytes.Equal(before, after) {
		t.Fatal("fix changed its input")
	}
	if after, _ := os.ReadFile(extraData); !bytes.Equal(extraBefore, after) {
		t.Fatal("fix changed its context")
	}
	if code, out, _ := runMain(t, nil, "", "data", "lint", "--data", out); code != 0 {
		t.Errorf("lint on fix's output: exit %d\n%s", code, out)
	}
	if code, out, _ := runMain(t, nil, "", "data", "lint", "--data", out, "--data", extraData); code != 0 {
		t.Errorf("lint on fix's output with its context: exit %d\n%s", code, out)
	}
	// Deterministic: a second run prints the same.
	if _, again, _ := runMain(t, nil, "", "data", "fix", "--data", origData, "--context", extraData, "--dry-run"); again != stdout {
		t.Error("two runs print different changes")
	}
}

// TestDataFixNeverWritesInput: --out naming the input (any spelling) is
// refused; --dry-run writes nothing.
func TestDataFixNeverWritesInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.json")
	body := []byte(`[{"mask_id":1,"mask_name":"Acme KN95","breakdown":[{"Acme":"brand"},{"KN95":"style"}]}]`)
	if err := os.WriteFile(in, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(in, filepath.Join(dir, "link.json")); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{in, filepath.Join(dir, ".", "in.json"), filepath.Join(dir, "link.json")} {
		code, _, errs := runMain(t, nil, "", "data", "fix", "--data", in, "--out", o)
		if code != 2 || !strings.Contains(errs, "never writes its input") {
			t.Errorf("--out %s: exit %d %s", o, code, errs)
		}
	}
	ctx := filepath.Join(dir, "ctx.json")
	ctxBody := []byte(`[{"mask_id":2,"mask_name":"Acme Filter","breakdown":[{"Acme":"brand"},{"Filter":"misc"}]}]`)
	if err := os.WriteFile(ctx, ctxBody, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--context", ctx, "--out", ctx}, {"--context", in, "--out", filepath.Join(dir, "x.json")}} {
		code, _, errs := runMain(t, nil, "", append([]string{"data", "fix", "--data", in}, args...)...)
		if code != 2 {
			t.Errorf("%v: exit %d %s", args, code, errs)
		}
	}
	if b, _ := os.ReadFile(ctx); !bytes.Equal(b, ctxBody) {
		t.Error("context changed")
	}
	out := filepath.Join(dir, "out.json")
	code, stdout, _ := runMain(t, nil, "", "data", "fix", "--data", in, "--out", out, "--dry-run")
	if code != 0 || !strings.Contains(stdout, `record 0 "Acme KN95" token 1 "KN95": style → filter_type (rule 3)`) {
		t.Fatalf("exit %d %s", code, stdout)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("--dry-run wrote its output")
	}
	if b, _ := os.ReadFile(in); !bytes.Equal(b, body) {
		t.Error("input changed")
	}
}

// TestDataFixKeepsMismatched: a record whose breakdown does not match the
// tokenizer is written back as it is and reported.
func TestDataFixKeepsMismatched(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json")
	body := `[{"mask_id":1,"mask_name":"Acme KN95-S","breakdown":[{"Acme":"brand"},{"KN95-S":"style"}]},` +
		`{"mask_id":2,"mask_name":"Acme KN95","breakdown":[{"Acme":"brand"},{"KN95":"style"}]}]`
	if err := os.WriteFile(in, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, errs := runMain(t, nil, "", "data", "fix", "--data", in, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d %s", code, errs)
	}
	if !strings.Contains(stdout, `kept as is: record 0 "Acme KN95-S" [tokenizer]`) || !strings.Contains(stdout, "1 changes in 1 of 2 records: rule 3 1; 1 findings left") {
		t.Errorf("output:\n%s", stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"KN95-S": "style"`) || !strings.Contains(string(b), `"KN95": "filter_type"`) {
		t.Errorf("written:\n%s", b)
	}
}
