package httpapi

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// TestRailsClient runs testdata/rails_client.rb, the Rails app's service
// classes (Net::HTTP, JSON), against a server on a free loopback port:
// without Redis, then reading through the cache (where the second call of a
// name is a cache hit and must look the same to Rails).
func TestRailsClient(t *testing.T) {
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		t.Skip("ruby not installed")
	}
	run := func(t *testing.T, ts *testServer) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, ruby, "testdata/rails_client.rb")
		cmd.Env = append(cmd.Environ(), "MASK_PREDICTOR_URL="+ts.URL)
		out, err := cmd.CombinedOutput()
		t.Logf("%s", out)
		if err != nil {
			t.Fatalf("rails_client.rb: %v", err)
		}
		if !strings.Contains(string(out), " 0 failed") {
			t.Fatal("no summary line")
		}
	}
	t.Run("no cache", func(t *testing.T) { run(t, newTestServer(t, testOpts{})) })
	t.Run("cache", func(t *testing.T) {
		rdb := redistest.Start(t, redistest.Options{}).Client()
		ts := newTestServer(t, testOpts{rdb: rdb, cache: true})
		run(t, ts)
		if got := metricValue(t, ts, `maskpredictor_predictions_total{source="cache"}`); got < 1 {
			t.Errorf("the script's repeated names were not cache hits: %v", got)
		}
	})
}
