package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// TestRailsKit runs deploy/rails/test/kit_test.rb (minitest) with Ruby's
// real Sidekiq client against a private Redis, while `maskpredictor worker`
// runs in-process with CALLBACK_CLASS=MaskPredictionResultJob: the Rails
// kit's enqueue helpers, cache lookups, synchronous predict_now (reply_to),
// the example result job and the switched-over service class.
func TestRailsKit(t *testing.T) {
	ruby := redistest.RequireRubySidekiq(t)
	rs := redistest.Start(t, redistest.Options{})
	m, err := predictor.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		env := map[string]string{"REDIS_URL": rs.URL, "LOG_FORMAT": "json", "LOG_LEVEL": "warn"}
		done <- Main(ctx, []string{"worker", "--callback-class", "MaskPredictionResultJob", "--concurrency", "4"},
			func(k string) string { return env[k] }, strings.NewReader(""), logs, logs)
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("worker exited %d\n%s", code, logs.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("worker did not stop")
		}
	}()

	script, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "rails", "test", "kit_test.rb"))
	cmd := exec.Command(ruby, script, "--verbose")
	cmd.Env = append(os.Environ(), "REDIS_URL="+rs.URL, "EXPECT_MODEL_VERSION="+predictor.ModelVersion(m))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("ruby kit_test.rb (%v):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("ruby kit_test.rb: %v\nworker log:\n%s", err, logs.String())
	}
	if !strings.Contains(out.String(), " 0 failures, 0 errors") {
		t.Fatal("minitest did not report a clean run")
	}
}
