package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore/s3test"
	"github.com/maskpredictor/maskpredictor/predictor"
)

const (
	pickleVersion   = "v1-4e2756d131f5" // testdata/crf_model.pkl, the Python service's model
	pickleTestdata  = "../../testdata/crf_model.pkl"
	crfsuiteTestdat = "../../testdata/crf_model.crfsuite"
)

func envWith(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestModelPushPull(t *testing.T) {
	srv := s3test.Start(t, "models")
	env := srv.Env()
	uri := srv.URI("prod/model.bin")
	dir := t.TempDir()

	code, out, errs := runMain(t, env, "", "model", "push", pickleTestdata, uri)
	if code != 0 || strings.TrimSpace(out) != pickleVersion || !strings.Contains(errs, "pushed") {
		t.Fatalf("push: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	pulled := filepath.Join(dir, "pulled.pkl")
	code, out, errs = runMain(t, env, "", "model", "pull", uri, pulled)
	if code != 0 || strings.TrimSpace(out) != pickleVersion {
		t.Fatalf("pull: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	want, _ := os.ReadFile(pickleTestdata)
	if got, _ := os.ReadFile(pulled); !bytes.Equal(got, want) {
		t.Fatal("pulled bytes differ from the pushed file")
	}

	// MODEL_URI=s3://… serves the pushed model.
	code, out, errs = runMain(t, envWith(env, "MODEL_URI", uri), "", "predict", "3M Aura 9205+ N95")
	if code != 0 || !strings.Contains(out, `"model_version":"`+pickleVersion+`"`) {
		t.Fatalf("predict with MODEL_URI=%s: exit %d, %s %s", uri, code, out, errs)
	}
	// A missing object: the rule fallback, one warning, exit 0.
	code, out, errs = runMain(t, envWith(env, "MODEL_URI", srv.URI("nope.bin")), "", "predict", "3M Aura 9205+ N95")
	if code != 0 || !strings.Contains(out, `"fallback":true`) || !strings.Contains(errs, "not found") {
		t.Fatalf("predict with a missing MODEL_URI object: exit %d, %s %s", code, out, errs)
	}

	// A model the service would reject is not uploaded without --force.
	garbage := filepath.Join(dir, "garbage.bin")
	os.WriteFile(garbage, []byte("lCRF but not really a model"), 0o644)
	code, _, errs = runMain(t, env, "", "model", "push", garbage, uri)
	if code != 1 || !strings.Contains(errs, "would be rejected") {
		t.Fatalf("push garbage: exit %d, %s", code, errs)
	}
	code, out, _ = runMain(t, env, "", "model", "pull", uri, filepath.Join(dir, "still.pkl"))
	if code != 0 || strings.TrimSpace(out) != pickleVersion {
		t.Fatalf("after a refused push the object changed: %d %q", code, out)
	}
	if code, _, errs = runMain(t, env, "", "model", "push", "--force", garbage, uri); code != 0 || !strings.Contains(errs, "warning") {
		t.Fatalf("push --force: exit %d, %s", code, errs)
	}
	// Pull refuses what is not a model, and leaves no file.
	bad := filepath.Join(dir, "bad.bin")
	if code, _, errs = runMain(t, env, "", "model", "pull", uri, bad); code != 1 || !strings.Contains(errs, "not a model") {
		t.Fatalf("pull garbage: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Fatal("pull of a non-model wrote the file")
	}
	// Rollback by copying an archived object over the live one.
	archive := srv.URI("archive/old.pkl")
	if code, _, errs := runMain(t, env, "", "model", "push", pickleTestdata, archive); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs = runMain(t, env, "", "model", "push", archive, uri)
	if code != 0 || strings.TrimSpace(out) != pickleVersion {
		t.Fatalf("push %s %s: exit %d, %q, %s", archive, uri, code, out, errs)
	}
	// Rollback to the embedded model needs no file.
	m, _ := predictor.DefaultModel()
	code, out, _ = runMain(t, env, "", "model", "push", "default", uri)
	if code != 0 || strings.TrimSpace(out) != predictor.ModelVersion(m) {
		t.Fatalf("push default: exit %d, %q", code, out)
	}

	for _, args := range [][]string{
		{"model", "push", pickleTestdata},
		{"model", "push", pickleTestdata, "gs://bucket/key"},
		{"model", "pull", uri, srv.URI("other.bin")},
		{"model", "pull", "s3://bucket"},
	} {
		if code, _, errs := runMain(t, env, "", args...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, errs)
		}
	}
	if code, _, errs := runMain(t, env, "", "model", "pull", srv.URI("missing.bin"), filepath.Join(dir, "x")); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("pull missing: exit %d, %s", code, errs)
	}
}

// startReload builds and starts the reload service the way worker/serve/run
// do, for a MODEL_URI in env.
func startReload(t *testing.T, env map[string]string, poll time.Duration) (*predictor.Live, *modelReload, *observer.ObservedLogs) {
	t.Helper()
	sys := IO{Env: func(k string) string { return env[k] }, Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	var mf modelFlags
	ctx := context.Background()
	l, err := mf.loadFull(ctx, sys, predictor.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	live := l.live
	core, logs := observer.New(zap.InfoLevel)
	rs, err := newModelReload(ctx, sys, &mf, &reloadFlags{poll: poll}, l, predictor.Limits{}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := rs.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return live, rs, logs
}

func waitVersion(t *testing.T, live *predictor.Live, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for live.Version() != want {
		if time.Now().After(deadline) {
			t.Fatalf("serving %s, want %s", live.Version(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestSIGHUPReloads: with polling off, SIGHUP alone makes the process load
// the new model at MODEL_URI (a file here, S3 below); a corrupt model is
// rejected and the old one keeps serving.
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.bin")
	data, _ := os.ReadFile(pickleTestdata)
	os.WriteFile(path, data, 0o644)
	live, rs, logs := startReload(t, map[string]string{"MODEL_URI": path}, 0)
	if live.Version() != pickleVersion || rs.Reloader() == nil {
		t.Fatalf("start: serving %s", live.Version())
	}
	m, _ := predictor.DefaultModel()
	var buf bytes.Buffer
	m.WriteTo(&buf)
	tmp := path + ".new"
	os.WriteFile(tmp, buf.Bytes(), 0o644)
	os.Rename(tmp, path)
	time.Sleep(50 * time.Millisecond)
	if live.Version() != pickleVersion {
		t.Fatal("reloaded without SIGHUP while polling is off")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, live, predictor.ModelVersion(m))
	if src := live.Source(); src != "MODEL_URI "+path {
		t.Errorf("source %q", src)
	}

	os.WriteFile(tmp, []byte("\x80\x04garbage"), 0o644)
	os.Rename(tmp, path)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for rs.Reloader().Stats().Rejected == 0 {
		if time.Now().After(deadline) {
			t.Fatal("corrupt model not rejected")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if live.Version() != predictor.ModelVersion(m) {
		t.Fatalf("a rejected model replaced the serving one: %s", live.Version())
	}
	if logs.FilterMessage("SIGHUP: reloading the model").Len() != 2 || logs.FilterMessage("new model rejected; the old model keeps serving").Len() != 1 {
		t.Errorf("log lines: %v", logs.All())
	}
}

// TestReloadFromS3Poll: the fallback at start (object missing) switches to
// the model once it is pushed, by polling the ETag.
func TestReloadFromS3Poll(t *testing.T) {
	srv := s3test.Start(t, "models")
	uri := srv.URI("prod/model.bin")
	env := envWith(srv.Env(), "MODEL_URI", uri)
	live, _, _ := startReload(t, env, 10*time.Millisecond)
	if live.ModelLoaded() || !strings.Contains(live.FallbackReason(), "not found") {
		t.Fatalf("start without the object: loaded=%v reason=%q", live.ModelLoaded(), live.FallbackReason())
	}
	if code, _, errs := runMain(t, srv.Env(), "", "model", "push", crfsuiteTestdat, uri); code != 0 {
		t.Fatal(errs)
	}
	waitVersion(t, live, pickleVersion) // the CRFsuite file holds the pickle's weights
	if !live.ModelLoaded() || live.FallbackReason() != "" {
		t.Fatal("still on the fallback")
	}
}

// TestSIGHUPWithoutStore: SIGHUP never kills a process whose model is not
// from a store; it logs that there is nothing to reload.
func TestSIGHUPWithoutStore(t *testing.T) {
	live, rs, logs := startReload(t, nil, 0)
	if rs.Reloader() != nil || !live.ModelLoaded() {
		t.Fatal("embedded model: no reloader expected")
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("nothing to reload").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no log line for SIGHUP")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
