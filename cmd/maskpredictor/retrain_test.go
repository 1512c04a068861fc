package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore/s3test"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// retrainEnv is a Redis and a loopback S3 for retrain, and the model URI.
type retrainEnv struct {
	redis *redistest.Server
	s3    *s3test.Server
	env   map[string]string
	uri   string
}

func newRetrainEnv(t *testing.T) *retrainEnv {
	t.Helper()
	rs := redistest.Start(t, redistest.Options{})
	s3 := s3test.Start(t, "models")
	return &retrainEnv{redis: rs, s3: s3, uri: s3.URI("prod/model.bin"),
		env: envWith(s3.Env(), "REDIS_URL", rs.URL)}
}

// storeVersion is the object's store version at the URI (its ETag).
func (e *retrainEnv) storeVersion(t *testing.T) string {
	t.Helper()
	st, err := modelstore.Open(context.Background(), e.uri, modelstore.Config{Getenv: e.s3.Getenv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.Version
}

// modelVersionAt pulls the model at the URI and returns its model version.
func (e *retrainEnv) modelVersionAt(t *testing.T) string {
	t.Helper()
	code, out, errs := runMain(t, e.env, "", "model", "pull", e.uri, filepath.Join(t.TempDir(), "m.bin"))
	if code != 0 {
		t.Fatalf("model pull: %s", errs)
	}
	return strings.TrimSpace(out)
}

// push trains a model with args and pushes it to the URI; it returns the
// model version.
func (e *retrainEnv) push(t *testing.T, args ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "current.bin")
	if code, _, errs := runMain(t, nil, "", append([]string{"train", "--out", path}, args...)...); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	code, out, errs := runMain(t, e.env, "", "model", "push", path, e.uri)
	if code != 0 {
		t.Fatalf("model push: %s", errs)
	}
	return strings.TrimSpace(out)
}

func (e *retrainEnv) last(t *testing.T) labels.RetrainResult {
	t.Helper()
	r, ok, err := labels.LastRetrain(context.Background(), e.redis.Client())
	if err != nil || !ok {
		t.Fatalf("no retrain result recorded: %v", err)
	}
	if r.At.IsZero() || time.Since(r.At) > time.Minute {
		t.Errorf("retrain result at %v", r.At)
	}
	return r
}

var newModelLine = regexp.MustCompile(`(?m)^new model (\S+):`)

// TestRetrainRefusesWorse: the model at the URI was trained on the stored
// labels (its score on them is in-sample) and the new recipe is crippled
// (one iteration): retrain exits 1, pushes nothing, and records why.
func TestRetrainRefusesWorse(t *testing.T) {
	e := newRetrainEnv(t)
	importLabels(t, e.env, labelsExport)
	lab := filepath.Join(t.TempDir(), "labels.json")
	if code, _, errs := runMain(t, e.env, "", "labels", "export", "--out", lab); code != 0 {
		t.Fatal(errs)
	}
	cur := e.push(t, "--data", "../../testdata/train.json", "--data", "../../testdata/labelled_extra.json", "--data", lab,
		"--features", "v4", "--c1", "0.05", "--c2", "0.01", "--max-iterations", "200")
	before := e.storeVersion(t)

	for _, dry := range []bool{true, false} {
		args := []string{"retrain", "--publish", e.uri, "--max-iterations", "1", "--base-cv", "0"}
		if dry {
			args = append(args, "--dry-run")
		}
		code, out, errs := runMain(t, e.env, "", args...)
		if code != 1 || !strings.Contains(errs, "not published: the new model is worse") {
			t.Fatalf("%q: exit %d, want 1:\n%s\n%s", args, code, out, errs)
		}
		for _, want := range []string{
			"current model: " + cur + " at " + e.uri,
			"compared are all 7 stored labels (if it was trained on some of them, its score on those is in-sample",
			"gate: 5-fold over 7 labels (26 tokens)",
			"current model " + cur,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
		if v := e.storeVersion(t); v != before {
			t.Fatalf("the object at the URI changed: %s → %s", before, v)
		}
		r := e.last(t)
		wantReason := "refused: new "
		if dry {
			wantReason = "dry run: would refuse: new "
		}
		if r.Published || r.DryRun != dry || !strings.HasPrefix(r.Reason, wantReason) || r.Labels != 7 || r.Scored != 26 ||
			r.CurrentVersion != cur || r.NewVersion == "" || r.NewVersion == cur || !(r.NewScore < r.CurrentScore) ||
			r.CurrentScore == 0 || r.CurrentNameScore == 0 {
			t.Errorf("recorded %+v", r)
		}
	}
}

// TestRetrainPublishesAndServeReloads: the model at the URI is weak (three
// names); retrain --dry-run shows it would publish and publishes nothing;
// retrain publishes, and a running serve polling MODEL_URI reloads it;
// another retrain with no new label is up to date; one new label is judged
// alone (leave-one-out), and a tie publishes.
func TestRetrainPublishesAndServeReloads(t *testing.T) {
	e := newRetrainEnv(t)
	weak := e.push(t, "--data", writeFile(t, t.TempDir(), "a.json", exportA), "--features", "v4", "--max-iterations", "5")
	srv := startCmd(t, envWith(e.s3.Env(), "MODEL_URI", e.uri, "MODEL_POLL", "50ms"), "serve", "--addr", "127.0.0.1:0")
	health := func() string { return servingVersion(t, srv.base) }
	if v := health(); v != weak {
		t.Fatalf("serving %s, want the weak model %s", v, weak)
	}
	importLabels(t, e.env, labelsExport)
	recipe := []string{"--publish", e.uri, "--max-iterations", "25", "--base-cv", "0"}

	before := e.storeVersion(t)
	code, out, errs := runMain(t, e.env, "", append([]string{"retrain", "--dry-run"}, recipe...)...)
	if code != 0 || !strings.Contains(out, "decision: dry run: would publish: new ") {
		t.Fatalf("dry run: exit %d:\n%s\n%s", code, out, errs)
	}
	if v := e.storeVersion(t); v != before {
		t.Fatal("--dry-run changed the object at the URI")
	}
	if r := e.last(t); r.Published || !r.DryRun || r.CurrentVersion != weak {
		t.Errorf("dry run recorded %+v", r)
	}

	code, out, errs = runMain(t, e.env, "", append([]string{"retrain"}, recipe...)...)
	if code != 0 || !strings.Contains(out, "decision: published: new ") || !strings.Contains(errs, "pushed ") {
		t.Fatalf("retrain: exit %d:\n%s\n%s", code, out, errs)
	}
	m := newModelLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no new model line:\n%s", out)
	}
	published := e.modelVersionAt(t)
	if published != m[1] || published == weak {
		t.Fatalf("the URI holds %s; retrain trained %s; the weak model was %s", published, m[1], weak)
	}
	r := e.last(t)
	if !r.Published || r.DryRun || r.NewVersion != published || r.CurrentVersion != weak || r.Labels != 7 || r.Scored != 26 ||
		r.NewScore < r.CurrentScore || !strings.HasPrefix(r.Reason, "published: ") {
		t.Errorf("recorded %+v", r)
	}
	// The running serve polls MODEL_URI and hot-reloads the new model.
	deadline := time.Now().Add(15 * time.Second)
	for health() != published {
		if time.Now().After(deadline) {
			t.Fatalf("serve still on %s, want %s:\n%s", health(), published, srv.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// No label since: nothing to compare, nothing published, exit 0.
	before = e.storeVersion(t)
	code, out, errs = runMain(t, e.env, "", append([]string{"retrain"}, recipe...)...)
	if code != 0 || !strings.Contains(out, "compared are the 0 labels stored or changed since") || !strings.Contains(out, "decision: up to date") {
		t.Fatalf("retrain with no new label: exit %d:\n%s\n%s", code, out, errs)
	}
	if v := e.storeVersion(t); v != before {
		t.Fatal("an up-to-date retrain changed the object")
	}
	if r := e.last(t); r.Published || !strings.HasPrefix(r.Reason, "up to date") || r.CurrentVersion != published {
		t.Errorf("recorded %+v", r)
	}

	// One new label: compared alone. Its fold trains on exactly what the
	// published model was trained on, so both predict alike: a tie, which
	// publishes.
	time.Sleep(2 * time.Millisecond) // a labelled_at after the published cutoff
	importLabels(t, e.env, `[{"mask_name":"Aero Pro 3-Ply Blue","breakdown":[{"Aero":"brand"},{"Pro":"model"},{"3":"model"},{"Ply":"misc"},{"Blue":"color"}]}]`)
	code, out, errs = runMain(t, e.env, "", append([]string{"retrain", "--dry-run"}, recipe...)...)
	if code != 0 || !strings.Contains(out, "compared are the 1 labels stored or changed since") ||
		!strings.Contains(out, "gate: leave-one-out (1 labels < --folds 5) over 1 labels (5 tokens)") {
		t.Fatalf("retrain with one new label: exit %d:\n%s\n%s", code, out, errs)
	}
	if r := e.last(t); r.Published || !r.DryRun || r.NewScore != r.CurrentScore || r.Labels != 1 || r.Scored != 5 {
		t.Errorf("recorded %+v", r)
	}
}

// TestRetrainFileURIAndBaseCV: a file URI with no model yet compares with
// the embedded default model, --out keeps the new model, --data replaces
// the base data, and the base data's grouped CV is printed.
func TestRetrainFileURIAndBaseCV(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	env := map[string]string{"REDIS_URL": rs.URL}
	importLabels(t, env, labelsExport)
	dir := t.TempDir()
	uri := filepath.Join(dir, "model.bin")
	out := filepath.Join(dir, "new.bin")
	def, err := predictor.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, errs := runMain(t, env, "", "retrain", "--publish", uri, "--dry-run", "--out", out,
		"--data", "../../testdata/train.json", "--max-iterations", "30", "--base-cv", "3", "--folds", "3")
	if code != 0 && code != 1 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"base data: ../../testdata/train.json, 236 records",
		"current model: none at " + uri + " yet; comparing with the embedded default model " + predictor.ModelVersion(def),
		"gate: 3-fold over 7 labels",
		"3-fold cross-validation of the new recipe on the base data, grouped by maker",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`current model's record \(its own training data\) +` + regexp.QuoteMeta(def.Meta().Extra["cv_grouped_token_accuracy"])).MatchString(stdout) {
		t.Errorf("stdout lacks the current model's recorded grouped CV:\n%s", stdout)
	}
	if _, err := os.Stat(uri); err == nil {
		t.Fatal("--dry-run wrote the model URI")
	}
	m, err := loadModelArg(out)
	if err != nil {
		t.Fatalf("--out: %v", err)
	}
	ex := m.Meta().Extra
	if ex[extraLabels] != "7" || ex[extraLabelledUntil] == "" || ex[extraBase] != "../../testdata/train.json" || !strings.Contains(ex[extraGate], "on 7 labels") {
		t.Errorf("new model's retrain metadata: %v", ex)
	}
}

func TestRetrainUsage(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	env := map[string]string{"REDIS_URL": rs.URL}
	uri := filepath.Join(t.TempDir(), "model.bin")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"retrain"}, 2, "--publish URI is required"},
		{[]string{"retrain", "--publish", uri, "--folds", "1"}, 2, "--folds 1"},
		{[]string{"retrain", "--publish", uri, "--base-cv", "1"}, 2, "--base-cv 1"},
		{[]string{"retrain", "--publish", uri, "--max-iterations", "0"}, 2, "--max-iterations"},
		{[]string{"retrain", "--publish", uri, "--c1", "-1"}, 2, "must not be negative"},
		{[]string{"retrain", "--publish", uri, "--features", "v9"}, 2, "--features"},
		{[]string{"retrain", "--publish", "gs://bucket/key"}, 2, "--publish"},
		{[]string{"retrain", "--publish", uri, "extra"}, 2, "unexpected arguments"},
		{[]string{"retrain", "--publish", uri, "--data", filepath.Join(t.TempDir(), "missing.json")}, 1, "no such file"},
		{[]string{"retrain", "--publish", uri}, 1, "no stored labels: nothing to retrain on"},
	} {
		code, _, errs := runMain(t, env, "", c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, want %d with %q: %s", c.args, code, c.code, c.want, errs)
		}
	}
	r, ok, err := labels.LastRetrain(context.Background(), rs.Client())
	if err != nil || !ok || r.Published || !strings.Contains(r.Reason, "no stored labels") {
		t.Errorf("no-labels retrain recorded %+v %v %v", r, ok, err)
	}
}

// servingVersion is the model_version a running serve or run reports on /health.
func servingVersion(t *testing.T, base string) string {
	t.Helper()
	_, h, body := httpDo(t, "GET", base+"/health", "")
	v, _ := h["model_version"].(string)
	if v == "" {
		t.Fatalf("health: %s", body)
	}
	return v
}
