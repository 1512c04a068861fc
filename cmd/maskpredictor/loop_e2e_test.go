package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// loopGold are names of makers absent from every training file, with the
// labels a person gives them under docs/labelling.md.
var loopGold = map[string][]string{
	"Zorblax ZB-200 N95 Respirator": {"brand", "model", "model", "filter_type", "misc"},
	"Quintel Q7 KF94 White":         {"brand", "model", "filter_type", "color"},
	"Vexmor Airline Pro Large":      {"brand", "model", "model", "size"},
	"Huelix H9 FFP2 Mask":           {"brand", "model", "filter_type", "misc"},
	"Dravo D3 Kids Pink":            {"brand", "model", "size", "color"},
	"Plinth 8500 P100 Respirator":   {"brand", "model", "filter_type", "misc"},
}

// TestLabellingLoopE2E runs the loop the way the product team does, through
// one `run` process: predictions fill the review queue, the queue is read
// and labelled through the admin API, a label answers at once (cache entry
// and /predict), `labels export` holds them, `retrain --publish` publishes a
// better model, the running process hot-reloads it, and the labels still
// answer after the reload.
func TestLabellingLoopE2E(t *testing.T) {
	e := newRetrainEnv(t)
	weak := e.push(t, "--data", writeFile(t, t.TempDir(), "a.json", exportA), "--features", "v4", "--max-iterations", "5")
	env := envWith(e.env, "MODEL_URI", e.uri, "MODEL_POLL", "50ms", "ADMIN_TOKEN", "loop-token")
	srv := startCmd(t, env, "run", "--addr", "127.0.0.1:0", "--concurrency", "2")
	auth := []string{"Authorization", "Bearer loop-token", "Content-Type", "application/json"}
	health := func() string { return servingVersion(t, srv.base) }
	if v := health(); v != weak {
		t.Fatalf("serving %s, want %s", v, weak)
	}

	// Traffic: the names are predicted (and cached) by the weak model.
	var names []string
	for n := range loopGold {
		names = append(names, n)
	}
	body, _ := json.Marshal(map[string]any{"mask_names": names})
	if code, _, b := httpDo(t, "POST", srv.base+"/predict_batch", string(body), "Content-Type", "application/json"); code != 200 {
		t.Fatalf("predict_batch: %d %s", code, b)
	}

	// The review queue offers them, ranked.
	code, _, b := httpDo(t, "GET", srv.base+"/admin/api/review?limit=20", "", auth...)
	if code != 200 {
		t.Fatalf("review: %d %s", code, b)
	}
	var review struct {
		Names []struct {
			MaskName string  `json:"mask_name"`
			Score    float64 `json:"score"`
		} `json:"names"`
	}
	if err := json.Unmarshal([]byte(b), &review); err != nil {
		t.Fatal(err)
	}
	offered := map[string]bool{}
	for _, n := range review.Names {
		offered[n.MaskName] = true
	}
	for _, n := range names {
		if !offered[n] {
			t.Errorf("review queue lacks %q: %s", n, b)
		}
	}

	// A person labels every offered name through the API.
	for _, n := range review.Names {
		gold, ok := loopGold[n.MaskName]
		if !ok {
			continue
		}
		var bd []map[string]string
		for i, tok := range predictor.Tokenize(n.MaskName) {
			bd = append(bd, map[string]string{tok: gold[i]})
		}
		req, _ := json.Marshal(map[string]any{"mask_name": n.MaskName, "breakdown": bd})
		if code, _, b := httpDo(t, "PUT", srv.base+"/admin/api/labels", string(req), auth...); code != 200 {
			t.Fatalf("PUT label %q: %d %s", n.MaskName, code, b)
		}
	}
	checkAnswers := func(stage string) {
		t.Helper()
		ctx := context.Background()
		for n, gold := range loopGold {
			entry := e.redis.Client().Get(ctx, cache.KeyPrefix+predictor.Normalize(n)).Val()
			if !strings.Contains(entry, `"source":"label"`) {
				t.Errorf("%s: cache entry of %q is not the label: %s", stage, n, entry)
			}
			req, _ := json.Marshal(map[string]string{"mask_name": strings.ToUpper(n)})
			code, p, b := httpDo(t, "POST", srv.base+"/predict", string(req), "Content-Type", "application/json")
			if code != 200 || p["source"] != "label" {
				t.Fatalf("%s: /predict %q: %d %s", stage, n, code, b)
			}
			for i, entry := range p["breakdown"].([]any) {
				for _, l := range entry.(map[string]any) {
					if l != gold[i] {
						t.Errorf("%s: /predict %q token %d = %v, want %s", stage, n, i, l, gold[i])
					}
				}
			}
		}
	}
	checkAnswers("after labelling")

	// The review queue no longer offers labelled names.
	_, _, b = httpDo(t, "GET", srv.base+"/admin/api/review?limit=20", "", auth...)
	for n := range loopGold {
		if strings.Contains(b, `"mask_name":"`+n+`"`) {
			t.Errorf("labelled %q still offered: %s", n, b)
		}
	}

	// labels export holds them, in the Rails export format.
	out := writeFile(t, t.TempDir(), "labels.json", "")
	if code, _, errs := runMain(t, e.env, "", "labels", "export", "--out", out); code != 0 {
		t.Fatalf("labels export: %s", errs)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := predictor.ParseExport(raw)
	if err != nil || len(recs) != len(loopGold) {
		t.Fatalf("export: %d records, %v", len(recs), err)
	}

	// retrain publishes a model at least as good on the labels; the
	// running process hot-reloads it.
	code, stdout, errs := runMain(t, e.env, "", "retrain", "--publish", e.uri, "--max-iterations", "25", "--base-cv", "0")
	if code != 0 || !strings.Contains(stdout, "decision: published") {
		t.Fatalf("retrain: exit %d\n%s\n%s", code, stdout, errs)
	}
	published := e.modelVersionAt(t)
	deadline := time.Now().Add(15 * time.Second)
	for health() != published {
		if time.Now().After(deadline) {
			t.Fatalf("run still on %s, want %s", health(), published)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkAnswers("after the reload")
}
