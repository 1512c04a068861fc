package main

import (
	"archive/zip"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore/s3test"
	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// lambdaExpect is one fixture's expected answer (testdata/lambda/expect.json).
type lambdaExpect struct {
	Status      int    `json:"status"`
	Error       string `json:"error"`
	Batch       bool   `json:"batch"`
	Predictions []struct {
		MaskName   string              `json:"mask_name"`
		Components map[string][]string `json:"components"`
	} `json:"predictions"`
}

func lambdaFixtures(t *testing.T) (names []string, events map[string][]byte, expect map[string]lambdaExpect) {
	t.Helper()
	dir := filepath.Join("testdata", "lambda")
	b, err := os.ReadFile(filepath.Join(dir, "expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &expect); err != nil {
		t.Fatal(err)
	}
	events = map[string][]byte{}
	for name := range expect {
		if events[name], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, events, expect
}

// checkLambdaResponse compares one {"statusCode","headers","body"} answer
// with the fixture's expectation; version, when set, is the model version
// every prediction must carry.
func checkLambdaResponse(t *testing.T, fixture string, resp httpapi.LambdaResponse, want lambdaExpect, version string) {
	t.Helper()
	if resp.StatusCode != want.Status {
		t.Errorf("%s: statusCode %d, want %d (body %s)", fixture, resp.StatusCode, want.Status, resp.Body)
		return
	}
	if resp.Headers["Content-Type"] != "application/json" || resp.Headers["Access-Control-Allow-Origin"] != "*" {
		t.Errorf("%s: headers %v, want JSON with the CORS header the old function sent", fixture, resp.Headers)
	}
	if want.Error != "" {
		var body struct{ Error string }
		if err := json.Unmarshal([]byte(resp.Body), &body); err != nil || body.Error != want.Error {
			t.Errorf("%s: body %s, want error %q", fixture, resp.Body, want.Error)
		}
		return
	}
	var preds []map[string]any
	if want.Batch {
		var body struct {
			Predictions []map[string]any `json:"predictions"`
		}
		if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
			t.Fatalf("%s: body %s: %v", fixture, resp.Body, err)
		}
		preds = body.Predictions
	} else {
		var p map[string]any
		if err := json.Unmarshal([]byte(resp.Body), &p); err != nil {
			t.Fatalf("%s: body %s: %v", fixture, resp.Body, err)
		}
		preds = []map[string]any{p}
	}
	if len(preds) != len(want.Predictions) {
		t.Fatalf("%s: %d predictions, want %d", fixture, len(preds), len(want.Predictions))
	}
	for i, w := range want.Predictions {
		p := preds[i]
		if p["mask_name"] != w.MaskName {
			t.Errorf("%s[%d]: mask_name %v, want %q", fixture, i, p["mask_name"], w.MaskName)
		}
		comps, _ := p["components"].(map[string]any)
		for _, label := range predictor.ComponentLabels {
			got := []string{}
			arr, ok := comps[label].([]any)
			if !ok {
				t.Errorf("%s[%d]: components.%s = %v, want an array", fixture, i, label, comps[label])
				continue
			}
			for _, v := range arr {
				got = append(got, v.(string))
			}
			wantToks := w.Components[label]
			if wantToks == nil {
				wantToks = []string{}
			}
			if !slices.Equal(got, wantToks) {
				t.Errorf("%s[%d]: components.%s = %v, want %v", fixture, i, label, got, wantToks)
			}
		}
		if c, _ := p["confidence"].(float64); c <= 0 || c > 1 {
			t.Errorf("%s[%d]: confidence %v", fixture, i, p["confidence"])
		}
		if version != "" && p["model_version"] != version {
			t.Errorf("%s[%d]: model_version %v, want %s", fixture, i, p["model_version"], version)
		}
	}
}

// TestLambdaHandlerFixtures answers the old function's events in-process.
func TestLambdaHandlerFixtures(t *testing.T) {
	names, events, expect := lambdaFixtures(t)
	c := modeltest.DefaultCRF(t)
	live := predictor.NewLive(predictor.ServeCRF(c, "embedded"))
	h, err := lambdaHandler(live, predictor.Limits{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		resp, err := h(context.Background(), events[name])
		if err != nil {
			t.Fatalf("%s: the handler returned a function error: %v", name, err)
		}
		checkLambdaResponse(t, name, resp, expect[name], c.Version())
	}
}

func TestLambdaArgs(t *testing.T) {
	none := func(string) string { return "" }
	api := func(k string) string {
		if k == "AWS_LAMBDA_RUNTIME_API" {
			return "127.0.0.1:9001"
		}
		return ""
	}
	for _, tc := range []struct {
		argv0 string
		args  []string
		env   func(string) string
		want  []string
	}{
		{"/var/task/bootstrap", nil, none, []string{"lambda"}},
		{"./maskpredictor", nil, api, []string{"lambda"}},
		{"./maskpredictor", nil, none, nil},
		{"/var/task/bootstrap", []string{"predict", "x"}, api, []string{"predict", "x"}},
	} {
		if got := lambdaArgs(tc.argv0, tc.args, tc.env); !slices.Equal(got, tc.want) {
			t.Errorf("lambdaArgs(%q, %q) = %q, want %q", tc.argv0, tc.args, got, tc.want)
		}
	}
	code, _, errs := runMain(t, nil, "", "lambda")
	if code != 2 || !strings.Contains(errs, "AWS_LAMBDA_RUNTIME_API") {
		t.Fatalf("lambda outside Lambda: exit %d, %s", code, errs)
	}
}

// runtimeAPI is a fake of the Lambda Runtime API (what the Lambda service
// serves to a custom runtime on AWS_LAMBDA_RUNTIME_API): it hands out the
// events in order and records the responses.
type runtimeAPI struct {
	events []string // fixture names
	bodies map[string][]byte

	mu        sync.Mutex
	next      int
	responses map[string][]byte // request id → body
	errors    map[string][]byte
	done      chan struct{}
}

func (api *runtimeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const base = "/2018-06-01/runtime/"
	path := strings.TrimPrefix(r.URL.Path, base)
	switch {
	case r.Method == http.MethodGet && path == "invocation/next":
		api.mu.Lock()
		i := api.next
		api.next++
		api.mu.Unlock()
		if i >= len(api.events) {
			<-r.Context().Done() // no more events: hold the runtime here
			return
		}
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", strconv.Itoa(i))
		w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
		w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:mask-component-predictor")
		w.Header().Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
		w.Write(api.bodies[api.events[i]])
	case r.Method == http.MethodPost && strings.HasPrefix(path, "invocation/"):
		parts := strings.Split(path, "/") // invocation/<id>/response|error
		body, _ := io.ReadAll(r.Body)
		api.mu.Lock()
		if len(parts) == 3 && parts[2] == "response" {
			api.responses[parts[1]] = body
		} else {
			api.errors[strings.Join(parts[1:], "/")] = body
		}
		if len(api.responses)+len(api.errors) == len(api.events) {
			close(api.done)
		}
		api.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPost && path == "init/error":
		body, _ := io.ReadAll(r.Body)
		api.mu.Lock()
		api.errors["init"] = body
		api.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	default:
		http.NotFound(w, r)
	}
}

// TestLambdaZip builds the deployment zip with deploy/lambda/build.sh,
// checks it holds an executable, static linux/amd64 bootstrap, and runs that
// bootstrap as Lambda would (no arguments, AWS_LAMBDA_RUNTIME_API) against a
// fake Runtime API, with the model read from S3 at cold start (the old
// function's pickle, kept as is): every fixture gets its expected answer.
func TestLambdaZip(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Lambda zip (-short)")
	}
	for _, tool := range []string{"bash", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	out := t.TempDir()
	start := time.Now()
	build := exec.Command("bash", filepath.Join("..", "..", "deploy", "lambda", "build.sh"), out)
	build.Env = append(os.Environ(), "GOARCH=amd64")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	t.Logf("build.sh took %v", time.Since(start).Round(time.Millisecond))
	zipPath := filepath.Join(out, "maskpredictor-lambda.zip")
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var boot *zip.File
	for _, f := range zr.File {
		if f.Name == "bootstrap" {
			boot = f
		}
	}
	if boot == nil {
		t.Fatalf("no bootstrap in %s", zipPath)
	}
	if boot.Mode()&0o111 == 0 || !boot.Mode().IsRegular() {
		t.Fatalf("bootstrap mode %v: not an executable file", boot.Mode())
	}
	bin := filepath.Join(t.TempDir(), "bootstrap")
	rc, err := boot.Open()
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	dst.Close()
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("bootstrap is not an ELF executable: %v", err)
	}
	if ef.Machine != elf.EM_X86_64 || ef.Type != elf.ET_EXEC {
		t.Errorf("bootstrap: machine %v type %v, want x86-64 executable", ef.Machine, ef.Type)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("bootstrap has a dynamic loader (PT_INTERP): not static (CGO_ENABLED=0?)")
		}
	}
	ef.Close()
	fi, _ := os.Stat(zipPath)
	t.Logf("zip %d bytes, bootstrap %d bytes", fi.Size(), boot.UncompressedSize64)

	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("cannot run a linux/amd64 bootstrap on %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	// The old function's pickle, in S3, read at cold start.
	srv := s3test.Start(t, "models")
	pkl, err := os.ReadFile(filepath.Join("..", "..", "testdata", "crf_model.pkl"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := modelstore.Open(context.Background(), srv.URI("lambda/crf_model.pkl"), modelstore.Config{Getenv: srv.Getenv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), pkl); err != nil {
		t.Fatal(err)
	}

	names, events, expect := lambdaFixtures(t)
	api := &runtimeAPI{events: names, bodies: events, responses: map[string][]byte{}, errors: map[string][]byte{}, done: make(chan struct{})}
	rts := httptest.NewServer(api)
	defer rts.Close()
	cmd := exec.Command(bin)
	cmd.Dir = filepath.Dir(bin)
	env := []string{"PATH=/usr/bin:/bin", "LOG_FORMAT=json",
		"AWS_LAMBDA_RUNTIME_API=" + strings.TrimPrefix(rts.URL, "http://"),
		"AWS_LAMBDA_FUNCTION_NAME=mask-component-predictor", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512",
		"MODEL_URI=" + srv.URI("lambda/crf_model.pkl")}
	for k, v := range srv.Env() {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	coldStart := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	select {
	case <-api.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the bootstrap answered %d of %d events in 30 s\n%s", len(api.responses), len(names), stderr.String())
	}
	t.Logf("cold start (S3 model load) and %d invocations: %v", len(names), time.Since(coldStart).Round(time.Millisecond))
	if len(api.errors) > 0 {
		t.Fatalf("function errors: %q", api.errors)
	}
	for i, name := range names {
		var resp httpapi.LambdaResponse
		if err := json.Unmarshal(api.responses[strconv.Itoa(i)], &resp); err != nil {
			t.Fatalf("%s: response %s: %v", name, api.responses[strconv.Itoa(i)], err)
		}
		checkLambdaResponse(t, name, resp, expect[name], "v1-4e2756d131f5")
	}
	if log := stderr.String(); !strings.Contains(log, "lambda function ready") || !strings.Contains(log, "MODEL_URI s3://models/lambda/crf_model.pkl") {
		t.Errorf("no ready line naming the S3 model in the log:\n%s", log)
	}
}
