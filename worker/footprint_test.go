package worker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// TestRedisFootprintPerJob measures what the sidecar leaves in the shared
// Redis per job and per distinct name (MEMORY USAGE of every key, by kind),
// for one task per job (light load) and for batch tasks (a backlog), and
// keeps it within bounds. The figures are in BENCHMARKS.md ("Memory in the
// shared Redis"); -v prints them.
func TestRedisFootprintPerJob(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 2 × 1,000 jobs; skipped with -short")
	}
	const jobs = 1000
	names := distinctNames(t, 2*jobs)
	for _, tc := range []struct {
		label       string
		jobsPerTask int
		names       []string
	}{
		{"one task per job", 1, names[:jobs]},
		{"batch tasks", DefaultJobsPerTask, names[jobs:]},
	} {
		t.Run(strings.ReplaceAll(tc.label, " ", "_"), func(t *testing.T) {
			ctx := context.Background()
			rs := redistest.Start(t, redistest.Options{Private: true})
			rdb := rs.Client()
			client := sidekiq.NewClient(rdb)
			push := func() {
				for i, n := range tc.names {
					if _, err := client.Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{n, i}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.jobsPerTask > 1 {
				push() // a backlog: batch tasks
			}
			srv, err := New(Config{
				Redis:   rdb,
				Handler: HandlerConfig{Predictor: CRFPredictor(defaultCRF(t)), CallbackClass: callbackClass},
				Bridge:  sidekiq.BridgeConfig{JobsPerTask: tc.jobsPerTask},
				Logger:  zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if tc.jobsPerTask == 1 {
				push()
			}
			waitFor(t, 60*time.Second, "all callbacks", func() (bool, string) {
				n := rdb.LLen(ctx, "queue:default").Val()
				return n >= jobs, fmt.Sprintf("%d/%d", n, jobs)
			})
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			// Rails' callback jobs are Rails' to run: not the sidecar's footprint.
			rdb.Del(ctx, "queue:default")

			kinds := []struct{ label, prefix string }{
				{"asynq task (completed, with its payload)", "asynq:{mask_predictions}:t:"},
				{"asynq completed index", "asynq:{mask_predictions}:completed"},
				{"done marker", "maskpredictor:done:"},
				{"cache entry", "maskpredictor:prediction:"},
			}
			sizes := make([]int64, len(kinds))
			counts := make([]int, len(kinds))
			var other []string
			iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
			for iter.Next(ctx) {
				k := iter.Val()
				found := false
				for i, kind := range kinds {
					if strings.HasPrefix(k, kind.prefix) {
						sizes[i] += rdb.MemoryUsage(ctx, k).Val()
						counts[i]++
						found = true
					}
				}
				if !found {
					other = append(other, k)
				}
			}
			if err := iter.Err(); err != nil {
				t.Fatal(err)
			}
			var perJob float64
			for i, kind := range kinds {
				t.Logf("%-42s %5d keys %9d B  %6.0f B per job", kind.label, counts[i], sizes[i], float64(sizes[i])/jobs)
				if kind.prefix != "maskpredictor:prediction:" {
					perJob += float64(sizes[i]) / jobs
				}
			}
			perName := float64(sizes[3]) / float64(counts[3])
			t.Logf("%s: %.0f B per job (task %v, marker 24 h), %.0f B per distinct name; other keys: %v",
				tc.label, perJob, sidekiq.BridgeConfig{}.WithDefaults().Retention, perName, other)
			if counts[2] != jobs || counts[3] != jobs {
				t.Errorf("%d done markers and %d cache entries, want %d each", counts[2], counts[3], jobs)
			}
			if perJob > 2048 || perName > 2048 {
				t.Errorf("%.0f B per job, %.0f B per name: over 2 KB", perJob, perName)
			}
		})
	}
}
