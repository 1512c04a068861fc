package main

import (
	"bytes"
	"context"
	"fmt"
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
// real Sidekiq client against a private Redis, while two `maskpredictor
// worker`s run in-process: one on mask_predictions with
// CALLBACK_CLASS=MaskPredictionResultJob (the kit's enqueue helpers, cache
// look-ups, synchronous predict_now with its error replies, the example
// result job, the switched-over service class), one on kit_activejob with
// CALLBACK_CLASS=MaskPredictor::ActiveJobRelay (the ActiveJob result job, run
// by a real Ruby Sidekiq server booting a Rails app).
//
// The file runs twice: without Rails (test/support/without_rails.rb hides
// railties, ActiveJob and ActiveSupport even where they are installed) and
// with them, skipped with a message when railties/ActiveJob are not
// installed (.ci/run installs them).
func TestRailsKit(t *testing.T) {
	ruby := redistest.RequireRubySidekiq(t)
	kit, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "rails"))
	t.Run("without-railties", func(t *testing.T) {
		runKitTest(t, ruby, kit, "-r"+filepath.Join(kit, "test", "support", "without_rails.rb"))
	})
	t.Run("with-railties", func(t *testing.T) {
		if out, err := exec.Command(ruby, "-e", `require "rails"; require "active_job"`).CombinedOutput(); err != nil {
			t.Skipf("railties/ActiveJob are not installed (apt-get install ruby-railties ruby-activejob): %v\n%s", err, out)
		}
		runKitTest(t, ruby, kit, "")
	})
}

// runKitTest starts a Redis and the two workers, then runs kit_test.rb with
// rubyopt added to RUBYOPT.
func runKitTest(t *testing.T, ruby, kit, rubyopt string) {
	rs := redistest.Start(t, redistest.Options{})
	m, err := predictor.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startWorker := func(name string, args ...string) {
		logs := &syncBuffer{}
		done := make(chan int, 1)
		go func() {
			env := map[string]string{"REDIS_URL": rs.URL, "LOG_FORMAT": "json", "LOG_LEVEL": "warn"}
			done <- Main(ctx, append([]string{"worker", "--concurrency", "4"}, args...),
				func(k string) string { return env[k] }, strings.NewReader(""), logs, logs)
		}()
		t.Cleanup(func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 || t.Failed() {
					t.Logf("worker %s exited %d; log:\n%s", name, code, logs.String())
				}
				if code != 0 {
					t.Errorf("worker %s exited %d", name, code)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("worker %s did not stop", name)
			}
		})
	}
	startWorker("main", "--callback-class", "MaskPredictionResultJob")
	startWorker("activejob", "--queues", "kit_activejob",
		"--callback-class", "MaskPredictor::ActiveJobRelay", "--callback-queue", "kit_relay")

	cmd := exec.Command(ruby, filepath.Join(kit, "test", "kit_test.rb"), "--verbose")
	cmd.Env = append(os.Environ(), "REDIS_URL="+rs.URL, "EXPECT_MODEL_VERSION="+predictor.ModelVersion(m),
		"KIT_AJ_QUEUE=kit_activejob", "KIT_RELAY_QUEUE=kit_relay")
	if rubyopt != "" {
		cmd.Env = append(cmd.Env, "RUBYOPT="+strings.TrimSpace(os.Getenv("RUBYOPT")+" "+rubyopt))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("ruby kit_test.rb (%v):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("ruby kit_test.rb: %v", err)
	}
	if !strings.Contains(out.String(), " 0 failures, 0 errors") {
		t.Fatal("minitest did not report a clean run")
	}
	if skips := kitSkips(out.String()); skips != "" {
		t.Logf("skipped: %s", skips)
	}
}

// kitSkips returns minitest's skip count line part, "" when none were skipped.
func kitSkips(out string) string {
	for _, line := range strings.Split(out, "\n") {
		var runs, asserts, fails, errs, skips int
		if n, _ := fmt.Sscanf(line, "%d runs, %d assertions, %d failures, %d errors, %d skips",
			&runs, &asserts, &fails, &errs, &skips); n == 5 && skips > 0 {
			return line
		}
	}
	return ""
}
