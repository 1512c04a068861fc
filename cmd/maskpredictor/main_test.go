package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runMain runs the CLI in-process.
func runMain(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func decodeLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestPredictArgs(t *testing.T) {
	code, out, errs := runMain(t, nil, "", "predict", "3M Aura 9205+ N95")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := decodeLines(t, out)
	if len(lines) != 1 {
		t.Fatalf("%d lines", len(lines))
	}
	p := lines[0]
	if p["fallback"] != false || p["mask_name"] != "3M Aura 9205+ N95" {
		t.Fatalf("unexpected %v", p)
	}
	comps := p["components"].(map[string]any)
	for _, l := range []string{"brand", "model", "size", "color", "style", "strap", "filter_type", "valved", "misc"} {
		if _, ok := comps[l].([]any); !ok {
			t.Errorf("component %q missing or not an array: %v", l, comps[l])
		}
	}
	if got := comps["brand"].([]any); len(got) != 1 || got[0] != "3M" {
		t.Errorf("brand %v", got)
	}
}

func TestPredictStdinStreamsAndReportsBadLines(t *testing.T) {
	in := "3M Aura 9205+ N95\n - \nbad\xffname\r\n" + strings.Repeat("x", 5000) + "\nHoneywell DF300 N95"
	code, out, errs := runMain(t, nil, in, "predict")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := decodeLines(t, out)
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), out)
	}
	wantErr := []string{"", "no tokens found in mask_name", "not valid UTF-8", "too long", ""}
	for i, w := range wantErr {
		e, _ := lines[i]["error"].(string)
		if w == "" && e != "" || w != "" && !strings.Contains(e, w) {
			t.Errorf("line %d: error %q, want %q", i, e, w)
		}
	}
	if lines[4]["mask_name"] != "Honeywell DF300 N95" {
		t.Errorf("last line %v", lines[4])
	}
}

func TestPredictModelFlags(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.bin")
	if err := os.WriteFile(corrupt, []byte("lCRF garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An explicit --model that cannot load is an error.
	code, _, errs := runMain(t, nil, "", "predict", "--model", corrupt, "3M")
	if code != 1 || !strings.Contains(errs, "loading --model") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	// MODEL_URI that cannot load falls back to the rules, with one warning.
	for _, uri := range []string{corrupt, filepath.Join(dir, "missing.bin")} {
		code, out, errs := runMain(t, map[string]string{"MODEL_URI": uri}, "", "predict", "3M Aura 9205+ N95")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		p := decodeLines(t, out)[0]
		if p["fallback"] != true || p["confidence"] != 0.0 {
			t.Fatalf("not a fallback prediction: %v", p)
		}
		if n := strings.Count(strings.TrimSpace(errs), "\n") + 1; n != 1 || !strings.Contains(errs, "rule-based fallback") {
			t.Fatalf("want one warning line, got %q", errs)
		}
	}
	// --rules forces the fallback; the three reference formats agree.
	code, out, _ := runMain(t, nil, "", "predict", "--rules", "3M Aura 9205+ N95")
	if code != 0 || decodeLines(t, out)[0]["fallback"] != true {
		t.Fatalf("--rules: exit %d %s", code, out)
	}
	var first string
	for _, f := range []string{"crf_model.crfsuite", "crf_model.pkl", "default"} {
		path := filepath.Join("..", "..", "testdata", f)
		if f == "default" {
			path = ""
		}
		args := []string{"predict", "Honeywell DF300 N95 Med/High"}
		if path != "" {
			args = append(args, "--model", path)
		}
		code, out, errs := runMain(t, nil, "", args...)
		if code != 0 {
			t.Fatalf("%s: exit %d %s", f, code, errs)
		}
		if first == "" {
			first = out
		} else if out != first {
			t.Errorf("%s predicts differently:\n%s\n%s", f, out, first)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"predict", "--nbest", "99", "x"}, {"model"}, {"train"}, {"eval"}} {
		if code, _, _ := runMain(t, nil, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestModelInfoAndConvert(t *testing.T) {
	out := filepath.Join(t.TempDir(), "m.bin")
	code, _, errs := runMain(t, nil, "", "model", "convert", "../../testdata/crf_model.crfsuite", out)
	if code != 0 {
		t.Fatalf("convert: %d %s", code, errs)
	}
	code, info, errs := runMain(t, nil, "", "model", "info", out)
	if code != 0 || !strings.Contains(info, "1536 state + 66 transition") || !strings.Contains(info, "attributes   1172") {
		t.Fatalf("info: %d %s %s", code, info, errs)
	}
}
