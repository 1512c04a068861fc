package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// rubySets runs testdata/e2e/sidekiq_sets.rb (Sidekiq's own API: Debian's 6.4.1, or
// the Sidekiq 7 on rubylib when set) and decodes its JSON into out.
func rubySets(t *testing.T, redisURL, rubylib string, out any, args ...string) {
	t.Helper()
	bin := redistest.RequireRubySidekiq(t)
	path, _ := filepath.Abs(filepath.Join("testdata", "e2e", "sidekiq_sets.rb"))
	cmd := exec.Command(bin, append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
	if rubylib != "" {
		cmd.Env = append(cmd.Env, "RUBYLIB="+rubylib)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("ruby sidekiq_sets.rb %v: %v\n%s", args, err, stderr.String())
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("sidekiq_sets.rb %v: %v\n%s", args, err, b)
		}
	}
}

type rubyEntry struct {
	JID          string  `json:"jid"`
	Class        string  `json:"class"`
	Queue        string  `json:"queue"`
	At           float64 `json:"at"`
	RetryCount   *int    `json:"retry_count"`
	ErrorClass   string  `json:"error_class"`
	ErrorMessage string  `json:"error_message"`
	FailedAt     float64 `json:"failed_at"`
	RetriedAt    float64 `json:"retried_at"`
}

type rubySetsOut struct {
	Version string      `json:"version"`
	Retry   []rubyEntry `json:"retry"`
	Dead    []rubyEntry `json:"dead"`
	Stats   struct {
		Processed, Failed int
		RetrySize         int `json:"retry_size"`
		DeadSize          int `json:"dead_size"`
	} `json:"stats"`
}

func (o rubySetsOut) find(set []rubyEntry, jid string) *rubyEntry {
	for i := range set {
		if set[i].JID == jid {
			return &set[i]
		}
	}
	return nil
}

// failJobs makes the write-back of chosen jobs fail with an error reply (a
// transient failure the handler does not wait out): jid → how many more
// times (-1: always).
type failJobs struct {
	mu    sync.Mutex
	times map[string]int
}

func (f *failJobs) set(jid string, n int) { f.mu.Lock(); f.times[jid] = n; f.mu.Unlock() }

func (f *failJobs) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *failJobs) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (f *failJobs) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			f.mu.Lock()
			var hit bool
			for _, a := range cmd.Args() {
				s, ok := a.(string)
				if !ok {
					if b, isBytes := a.([]byte); isBytes {
						s, ok = string(b), true
					}
				}
				if !ok || !strings.Contains(s, `"args":[{"jid":"`) {
					continue
				}
				for jid, left := range f.times {
					if left != 0 && strings.Contains(s, `"args":[{"jid":"`+jid+`"`) {
						if left > 0 {
							f.times[jid] = left - 1
						}
						hit = true
					}
				}
			}
			f.mu.Unlock()
			if hit {
				err := errorReply("ERR injected failure of the write-back")
				cmd.SetErr(err)
				return err
			}
		}
		return next(ctx, cmd)
	}
}

func callbacksFor(ctx context.Context, rdb *redis.Client, jid string) int {
	n := 0
	for _, cb := range rdb.LRange(ctx, "queue:default", 0, -1).Val() {
		if strings.Contains(cb, `"args":[{"jid":"`+jid+`"`) {
			n++
		}
	}
	return n
}

// startWebServer runs a worker.Server whose failed jobs retry after delay and
// whose scheduler and heartbeat are quick. One job per task: failJobs fails a
// whole write-back script, so jobs sharing a task would fail with the job
// it targets (a real Redis fault fails them together too, but these tests
// follow each job's own path through the retry set).
func startWebServer(t *testing.T, rdb *redis.Client, delay time.Duration) *Server {
	t.Helper()
	srv, err := New(Config{
		Redis: rdb,
		Handler: HandlerConfig{Predictor: CRFPredictor(defaultCRF(t)), CallbackClass: callbackClass,
			RetryDelay: func(int) time.Duration { return delay }},
		Scheduler: sidekiq.SchedulerConfig{Interval: 200 * time.Millisecond},
		Heartbeat: sidekiq.HeartbeatConfig{Interval: 200 * time.Millisecond},
		Bridge:    sidekiq.BridgeConfig{JobsPerTask: 1},
		Logger:    zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(ctx) })
	return srv
}

// TestSidekiqWebRetriesDeadAndCounts: what Sidekiq Web shows and does, through
// Sidekiq 6.4.1's own API with the sidecar running: a transient failure is in
// the RetrySet with Sidekiq's fields, comes back when due and then succeeds
// once; Retry Now, Kill and Delete work on its entries; a job out of retries
// and a poison job are dead and counted in Failed; and Sidekiq 7.3's
// Metrics::Query (when SIDEKIQ7_RUBYLIB names its lib, redis-client's and
// connection_pool's) reads the executions back.
func TestSidekiqWebRetriesDeadAndCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	redistest.RequireRubySidekiq(t)
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{})
	rdb := rs.Client()
	fails := &failJobs{times: map[string]int{}}
	rdb.AddHook(fails)
	// Long enough that the entries still wait while the Ruby reader and the
	// buttons (two process starts, seconds each on a loaded machine) act.
	const delay = 10 * time.Second
	startWebServer(t, rdb, delay)
	sets := func() rubySetsOut {
		var o rubySetsOut
		rubySets(t, rs.URL, "", &o, "sets")
		return o
	}

	// A transient failure: in the retry set, due after the delay, then once done.
	fails.set("t1", 1)
	fails.set("x1", -1)
	fails.set("k1", -1)
	fails.set("d1", -1)
	fails.set("r1", 1)
	// One Ruby process pushes all six (one process each took longer than the
	// retry delay on a loaded machine, and t1 came back before the last push).
	rubySets(t, rs.URL, "", nil, "push_many", `[["t1", "3M Aura 9205+ N95", null], ["x1", "Moldex 2200 N95", 1],
		["k1", "Honeywell DF300 N95 k1", null], ["d1", "Honeywell DF300 N95 d1", null], ["r1", "Honeywell DF300 N95 r1", null],
		["p1", " - , ", null]]`) // p1 is poison: no tokens
	waitFor(t, 10*time.Second, "five retry entries", func() (bool, string) {
		n := rdb.ZCard(ctx, "retry").Val()
		return n == 5, fmt.Sprint(n)
	})
	o := sets()
	t.Logf("read with Sidekiq %s", o.Version)
	e := o.find(o.Retry, "t1")
	if e == nil || e.RetryCount == nil || *e.RetryCount != 0 || e.ErrorClass != ErrorClassTransient ||
		!strings.Contains(e.ErrorMessage, "injected failure") || e.Queue != "mask_predictions" || e.Class != "MaskPredictionJob" ||
		e.FailedAt == 0 || e.RetriedAt != 0 {
		t.Fatalf("t1 in the RetrySet: %+v", e)
	}
	if d := e.At - e.FailedAt; d < delay.Seconds()-0.1 || d > delay.Seconds()+0.1 {
		t.Errorf("t1 due %.2f s after it failed, want %v", d, delay)
	}
	due := time.Unix(0, int64(e.At*1e9))

	// The Retries page's buttons: Kill, Delete, Retry Now.
	// In one Ruby process, like the reads: each process start takes seconds
	// on a loaded machine, and the entries must still wait when it acts.
	rubySets(t, rs.URL, "", nil, "buttons", `[["kill", "k1"], ["delete", "d1"], ["retry_now", "r1"]]`)
	waitFor(t, 2*time.Second, "r1's callback after Retry Now", func() (bool, string) {
		return callbacksFor(ctx, rdb, "r1") == 1, ""
	})

	waitFor(t, delay+3*time.Second, "t1's callback", func() (bool, string) { return callbacksFor(ctx, rdb, "t1") == 1, "" })
	// The scheduler looks every 200 ms; a loaded machine adds a second or two.
	if late := time.Since(due); late < -100*time.Millisecond || late > 3*time.Second {
		t.Errorf("t1 came back %v after it was due, want within the scheduler's poll", late)
	}
	waitFor(t, 2*delay+3*time.Second, "x1 dead", func() (bool, string) {
		n := rdb.ZCard(ctx, "dead").Val()
		return n == 3, fmt.Sprint(n)
	})
	waitIdle(t, rdb, sidekiq.DefaultQueue) // a second run would have called back by now
	o = sets()
	if n1, n2 := callbacksFor(ctx, rdb, "t1"), callbacksFor(ctx, rdb, "r1"); n1 != 1 || n2 != 1 {
		t.Errorf("callbacks: t1 %d, r1 %d, want 1 each", n1, n2)
	}
	if len(o.Retry) != 0 {
		t.Errorf("retry set: %+v", o.Retry)
	}
	x := o.find(o.Dead, "x1")
	if x == nil || x.RetryCount == nil || *x.RetryCount != 1 || x.ErrorClass != ErrorClassTransient || x.RetriedAt == 0 || x.FailedAt == 0 {
		t.Errorf("x1 (retry: 1, failing) in the DeadSet: %+v", x)
	}
	if p := o.find(o.Dead, "p1"); p == nil || p.ErrorClass != ErrorClassInvalid || !strings.Contains(p.ErrorMessage, "no tokens") {
		t.Errorf("p1 (poison) in the DeadSet: %+v", p)
	}
	if k := o.find(o.Dead, "k1"); k == nil || k.ErrorClass != ErrorClassTransient {
		t.Errorf("k1 killed from the retry set: %+v", k)
	}
	// Executions: t1 2, x1 2, k1 1, d1 1, r1 2, p1 1 (at the bridge); failed: all but
	// t1's and r1's second run.
	waitFor(t, 3*time.Second, "the dashboard's counts", func() (bool, string) {
		o = sets()
		return o.Stats.Processed == 9 && o.Stats.Failed == 7, fmt.Sprintf("%+v", o.Stats)
	})

	lib := os.Getenv("SIDEKIQ7_RUBYLIB")
	if lib == "" {
		t.Log("SIDEKIQ7_RUBYLIB not set: Sidekiq 7's Metrics::Query not run (the keys are checked by TestMetricsKeys)")
		return
	}
	var m struct {
		Version string             `json:"version"`
		Totals  map[string]float64 `json:"totals"`
		Hist    []int              `json:"hist"`
		AvgMS   float64            `json:"avg_ms"`
		Top     map[string]map[string]float64
	}
	rubySets(t, rs.URL, lib, &m, "metrics", "MaskPredictionJob")
	t.Logf("Sidekiq %s Metrics::Query for MaskPredictionJob: %+v", m.Version, m)
	hist := 0
	for _, n := range m.Hist {
		hist += n
	}
	if m.Totals["p"] != 9 || m.Totals["f"] != 7 || hist != 2 || m.Top["MaskPredictionJob"]["p"] != 9 {
		t.Errorf("Metrics tab: totals %v, %d timed executions, top %v; want p 9, f 7, 2 timed", m.Totals, hist, m.Top)
	}
}

// TestRetryAllDeadPoisonJobsEnds: "Retry All" on 200 poison jobs in the dead
// set (Sidekiq 6.4's DeadSet#retry_all retries until the set is empty) returns
// at once with the sidecar running: a poison job back from the dead set waits
// once in the retry set, and goes back to the dead set when it comes back
// from there.
func TestRetryAllDeadPoisonJobsEnds(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	redistest.RequireRubySidekiq(t)
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{})
	rdb := rs.Client()
	startWebServer(t, rdb, time.Second)
	const n = 200
	pipe := rdb.Pipeline()
	for i := range n {
		pipe.LPush(ctx, "queue:mask_predictions", fmt.Sprintf(
			`{"retry":true,"queue":"mask_predictions","class":"MaskPredictionJob","args":[" - , "],"jid":"%024x","created_at":1795936334.5,"enqueued_at":1795936334.5}`, i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "200 poison jobs dead", func() (bool, string) {
		c := rdb.ZCard(ctx, "dead").Val()
		return c == n, fmt.Sprint(c)
	})

	var r struct {
		Version string  `json:"version"`
		Size    int     `json:"size"`
		Retries int     `json:"retries"`
		Seconds float64 `json:"seconds"`
	}
	rubySets(t, rs.URL, "", &r, "retry_all_dead")
	t.Logf("Sidekiq %s DeadSet#retry_all of %d poison jobs: %d retries, %.3f s", r.Version, r.Size, r.Retries, r.Seconds)
	// Counted, not timed: before the fix the jobs kept coming back to the
	// dead set, and retry_all went round until the sidecar was stopped
	// (38.8 s for 205 jobs in the issue).
	if r.Size != n || r.Retries != n {
		t.Errorf("retry_all of %d dead jobs retried %d entries (%.2f s), want each once", r.Size, r.Retries, r.Seconds)
	}
	waitFor(t, 10*time.Second, "the retried jobs parked in retry", func() (bool, string) {
		a, b := rdb.ZCard(ctx, "retry").Val(), rdb.ZCard(ctx, "dead").Val()
		return a == n && b == 0, fmt.Sprintf("retry %d, dead %d", a, b)
	})
	for _, m := range rdb.ZRange(ctx, "retry", 0, 0).Val() {
		if !strings.Contains(m, `"retry_count":0`) || !strings.Contains(m, `"`+sidekiq.RedeadField+`":0`) || !strings.Contains(m, ErrorClassInvalid) {
			t.Errorf("parked entry %s", m)
		}
	}
	// Due (Sidekiq's first delay, 15–24 s, made due now): back in the dead set,
	// once each, without the marker.
	due := float64(time.Now().Add(-time.Second).UnixNano()) / 1e9
	for _, m := range rdb.ZRange(ctx, "retry", 0, -1).Val() {
		rdb.ZAddXX(ctx, "retry", redis.Z{Score: due, Member: m})
	}
	waitFor(t, 10*time.Second, "the jobs back in the dead set", func() (bool, string) {
		a, b := rdb.ZCard(ctx, "retry").Val(), rdb.ZCard(ctx, "dead").Val()
		return a == 0 && b == n, fmt.Sprintf("retry %d, dead %d", a, b)
	})
	for _, m := range rdb.ZRange(ctx, "dead", 0, 0).Val() {
		if strings.Contains(m, sidekiq.RedeadField) || !strings.Contains(m, `"retry_count":1`) {
			t.Errorf("re-dead entry %s", m)
		}
	}
	// Each of the 3 executions of each job counted, processed and failed.
	waitFor(t, 3*time.Second, "the counts", func() (bool, string) {
		p, f := rdb.Get(ctx, "stat:processed").Val(), rdb.Get(ctx, "stat:failed").Val()
		return p == "600" && f == "600", p + " " + f
	})
}
