package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/predictor"
)

func TestCacheReadThrough(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	ctx := context.Background()
	ts := newTestServer(t, testOpts{rdb: rdb, cache: true})
	version := crf(t).Version()

	// A miss is predicted and stored under the normalized name.
	r := do(t, ts, "POST", "/predict", `{"mask_name":"3M Aura 9205+ N95"}`)
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	raw, err := rdb.Get(ctx, cache.KeyPrefix+"3m aura 9205+ n95").Result()
	if err != nil {
		t.Fatalf("cache entry not written: %v", err)
	}
	var stored predictor.Prediction
	if err := stored.UnmarshalJSON([]byte(raw)); err != nil || stored.ModelVersion != version {
		t.Fatalf("stored %v %+v", err, stored)
	}

	// Another spelling of the same name is a hit, answered with its own tokens.
	r = do(t, ts, "POST", "/predict", `{"mask_name":"3m  AURA (9205+) n95"}`)
	m := r.json(t)
	checkPrediction(t, m, "3m  AURA (9205+) n95")
	if fmt.Sprint(m["tokens"]) != "[3m AURA 9205+ n95]" || fmt.Sprint(m["components"].(map[string]any)["brand"]) != "[3m]" {
		t.Errorf("hit answered with %v", m)
	}
	if got := metricValue(t, ts, `maskpredictor_predictions_total{source="cache"}`); got != 1 {
		t.Errorf("cache predictions %v", got)
	}
	if got := metricValue(t, ts, `maskpredictor_cache_requests_total{origin="http",result="hit"}`); got != 1 {
		t.Errorf("hits %v", got)
	}
	if got := metricValue(t, ts, `maskpredictor_cache_requests_total{origin="http",result="miss"}`); got != 1 {
		t.Errorf("misses %v", got)
	}

	// What the cache answers is what Rails would read: the entry, by GET.
	hit := predictor.Prediction{}
	if err := hit.UnmarshalJSON(r.body); err != nil {
		t.Fatal(err)
	}
	for i := range stored.Labels {
		if hit.Labels[i] != stored.Labels[i] || hit.Confidence != stored.Confidence {
			t.Errorf("hit %v differs from the entry %v", hit.Labels, stored.Labels)
		}
	}

	// An entry of another model version is a miss, and is replaced.
	other := stored
	other.ModelVersion = "v1-old"
	other.Labels = []string{"misc", "misc", "misc", "misc"}
	if err := rdb.Set(ctx, cache.KeyPrefix+"3m aura 9205+ n95", other.AppendJSON(nil), 0).Err(); err != nil {
		t.Fatal(err)
	}
	m = do(t, ts, "POST", "/predict", `{"mask_name":"3M Aura 9205+ N95"}`).json(t)
	if m["model_version"] != version || fmt.Sprint(m["components"].(map[string]any)["brand"]) != "[3M]" {
		t.Errorf("stale entry served: %v", m)
	}
	raw, _ = rdb.Get(ctx, cache.KeyPrefix+"3m aura 9205+ n95").Result()
	if !strings.Contains(raw, version) {
		t.Errorf("stale entry not replaced: %s", raw)
	}

	// A batch: one MGET, misses stored, hits answered in order.
	r = do(t, ts, "POST", "/predict_batch", `{"mask_names":["3M AURA 9205+ N95","Zimi ZM9233","zimi zm9233"]}`)
	preds := r.json(t)["predictions"].([]any)
	if len(preds) != 3 {
		t.Fatalf("%s", r.body)
	}
	for i, n := range []string{"3M AURA 9205+ N95", "Zimi ZM9233", "zimi zm9233"} {
		checkPrediction(t, preds[i].(map[string]any), n)
	}
	if n, _ := rdb.Exists(ctx, cache.KeyPrefix+"zimi zm9233").Result(); n != 1 {
		t.Error("batch miss not stored")
	}
	r = do(t, ts, "POST", "/predict_batch", `{"mask_names":["Zimi ZM9233"]}`)
	checkPrediction(t, r.json(t)["predictions"].([]any)[0].(map[string]any), "Zimi ZM9233")
	if got := metricValue(t, ts, `maskpredictor_predictions_total{source="cache"}`); got != 3 {
		t.Errorf("cache predictions %v, want 3", got)
	}

	// /invoke reads through the cache too.
	env, body := decodeEnvelope(t, do(t, ts, "POST", "/invoke", `{"mask_name":"ZIMI zm9233"}`))
	if env.StatusCode != 200 || body["mask_name"] != "ZIMI zm9233" {
		t.Errorf("%+v", env)
	}
	if got := metricValue(t, ts, `maskpredictor_predictions_total{source="cache"}`); got != 4 {
		t.Errorf("cache predictions %v, want 4", got)
	}

	// Limits hold even for a name that is cached.
	if r := do(t, ts, "POST", "/predict", `{"mask_name":"`+strings.Repeat("3M ", 400)+`"}`); r.code != 400 {
		t.Errorf("over the limits: %d", r.code)
	}
	// A name whose tokens vanish under NFKC has no entry but is predicted.
	if r := do(t, ts, "POST", "/predict", `{"mask_name":"\u00ad"}`); r.code != 200 {
		t.Errorf("soft hyphen: %d %s", r.code, r.body)
	}
}

func TestCacheErrorsBypass(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Private: true})
	rdb := srv.Client()
	core, logs := observer.New(zapcore.WarnLevel)
	c, err := cache.New(rdb, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(MetricsConfig{})
	e, err := NewEngine(EngineConfig{Predictor: crf(t), Cache: c, Metrics: m, Logger: zap.New(core), CacheTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := e.Predict(ctx, "3M 1860s"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.PredictBatch(ctx, []string{"3M 1860s", "Zimi"}); err != nil {
			t.Fatal(err)
		}
	}
	// One error opens the bypass; the rest skip the cache: one log line.
	if n := logs.FilterMessage("prediction cache unavailable; predicting without it").Len(); n != 1 {
		t.Errorf("%d log lines", n)
	}
	if !e.cacheUsable(time.Now().Add(2 * cacheBackoff)) {
		t.Error("bypass does not end")
	}
	srv.StartAgain()
	e.cacheDown.Store(0)
	if _, err := e.Predict(ctx, "3M 1860s"); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, cache.KeyPrefix+"3m 1860s").Result(); n != 1 {
		t.Error("cache not used again after Redis came back")
	}
}

func TestReadQueues(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	ctx := context.Background()
	now := time.Now()
	// Sidekiq 7: float seconds; Sidekiq 8: integer milliseconds. LPUSH puts
	// the newest at the head; the oldest (the pop end) decides the latency.
	old7, _ := json.Marshal(map[string]any{"jid": "a", "enqueued_at": float64(now.Add(-90*time.Second).UnixNano()) / 1e9})
	new7, _ := json.Marshal(map[string]any{"jid": "b", "enqueued_at": float64(now.UnixNano()) / 1e9})
	old8, _ := json.Marshal(map[string]any{"jid": "c", "enqueued_at": now.Add(-5 * time.Second).UnixMilli()})
	rdb.LPush(ctx, "queue:mask_predictions", old7, new7)
	rdb.LPush(ctx, "queue:other", old8)
	rdb.ZAdd(ctx, DeadSetKey, redis.Z{Score: 1, Member: "x"}, redis.Z{Score: 2, Member: "y"})
	qs, dead, err := ReadQueues(ctx, rdb, []string{"mask_predictions", "other", "empty"})
	if err != nil {
		t.Fatal(err)
	}
	if dead != 2 || len(qs) != 3 {
		t.Fatalf("dead %d, %+v", dead, qs)
	}
	if qs[0].Depth != 2 || qs[0].Latency < 89*time.Second || qs[0].Latency > 95*time.Second {
		t.Errorf("mask_predictions %+v", qs[0])
	}
	if qs[1].Depth != 1 || qs[1].Latency < 4*time.Second || qs[1].Latency > 10*time.Second {
		t.Errorf("other %+v", qs[1])
	}
	if qs[2].Depth != 0 || qs[2].Latency != 0 {
		t.Errorf("empty %+v", qs[2])
	}
	// The metrics read the same.
	ts := newTestServer(t, testOpts{rdb: rdb})
	if got := metricValue(t, ts, `maskpredictor_ingress_queue_depth{queue="mask_predictions"}`); got != 2 {
		t.Errorf("depth metric %v", got)
	}
	if got := metricValue(t, ts, `maskpredictor_ingress_queue_latency_seconds{queue="mask_predictions"}`); got < 89 {
		t.Errorf("latency metric %v", got)
	}
	if got := metricValue(t, ts, `maskpredictor_sidekiq_dead_set_size`); got != 2 {
		t.Errorf("dead metric %v", got)
	}
	if got := metricValue(t, ts, `maskpredictor_redis_scrape_error`); got != 0 {
		t.Errorf("scrape error %v", got)
	}
}

func TestAsynqQueueMetrics(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	ctx := context.Background()
	// An asynq queue as the worker leaves it: registered, one task pending.
	rdb.SAdd(ctx, "asynq:queues", "mask_predictions")
	rdb.LPush(ctx, "asynq:{mask_predictions}:pending", "t1")
	rdb.HSet(ctx, "asynq:{mask_predictions}:t:t1", "state", "pending", "pending_since", time.Now().UnixNano())
	ts := newTestServer(t, testOpts{rdb: rdb})
	if got := metricValue(t, ts, `asynq_queue_size{queue="mask_predictions"}`); got != 1 {
		t.Errorf("asynq_queue_size %v", got)
	}
	if got := metricValue(t, ts, `asynq_tasks_enqueued_total{queue="mask_predictions",state="pending"}`); got != 1 {
		t.Errorf("asynq pending %v", got)
	}
}

func TestRecentLowest(t *testing.T) {
	r := NewRecent(4)
	add := func(name string, conf float64) {
		r.Add(&predictor.Prediction{MaskName: name, NormalizedName: strings.ToLower(name), Confidence: conf})
	}
	add("A", 0.5)
	add("B", 0.9)
	add("a", 0.95) // the latest of "a" replaces 0.5
	add("C", 0.3)
	add("D", 0.7)
	add("E", 0.1) // the ring holds a, C, D, E now (B fell out)
	got := r.Lowest(3)
	var names []string
	for _, s := range got {
		names = append(names, fmt.Sprintf("%s:%.2f", s.MaskName, s.Confidence))
	}
	if strings.Join(names, " ") != "E:0.10 C:0.30 D:0.70" {
		t.Errorf("%v", names)
	}
	if n := len(NewRecent(0).Lowest(5)); n != 0 {
		t.Errorf("empty ring gave %d", n)
	}
}

func TestRecentSkipsFallback(t *testing.T) {
	ts := newTestServer(t, testOpts{p: predictor.DefaultRules(predictor.Limits{})})
	do(t, ts, "POST", "/predict", `{"mask_name":"3M 1860s"}`)
	if n := len(ts.recent.Lowest(10)); n != 0 {
		t.Errorf("fallback predictions remembered: %d", n)
	}
	ts = newTestServer(t, testOpts{})
	do(t, ts, "POST", "/predict", `{"mask_name":"3M 1860s"}`)
	if got := ts.recent.Lowest(10); len(got) != 1 || got[0].MaskName != "3M 1860s" || got[0].Confidence <= 0 {
		t.Errorf("%+v", got)
	}
}

func TestMemo(t *testing.T) {
	rdb := redistest.Start(t, redistest.Options{}).Client()
	ctx := context.Background()
	c, err := cache.New(rdb, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(MetricsConfig{})
	e, err := NewEngine(EngineConfig{Predictor: crf(t), Cache: c, Metrics: m, MemoSize: 2, MemoTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	key := cache.KeyPrefix + "3m 1860s"
	if _, err := e.Predict(ctx, "3M 1860s"); err != nil { // miss: predicted, stored, remembered
		t.Fatal(err)
	}
	// Within the TTL the memo answers, even with the Redis entry gone…
	rdb.Del(ctx, key)
	p, err := e.Predict(ctx, "3m 1860S")
	if err != nil || p.MaskName != "3m 1860S" || p.Tokens[1] != "1860S" {
		t.Fatalf("%v %+v", err, p)
	}
	if m.cacheHitHTTP.Load() != 1 {
		t.Errorf("memo answer not counted as a cache hit")
	}
	if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
		t.Error("memo hit wrote to Redis")
	}
	// …and after it Redis is asked again (a miss now: predicted and stored).
	time.Sleep(1100 * time.Millisecond)
	if _, err := e.Predict(ctx, "3M 1860s"); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, key).Result(); n != 1 {
		t.Error("expired memo entry still answered")
	}
	// Batches use it too, and an entry of another model version is not used.
	if _, err := e.PredictBatch(ctx, []string{"3M 1860S", "Zimi ZM9233"}); err != nil {
		t.Fatal(err)
	}
	if m.cacheHitHTTP.Load() != 2 {
		t.Errorf("batch: %d hits, want 2", m.cacheHitHTTP.Load())
	}
	if got := e.memo.get("3m 1860s", "other-version", time.Now()); got != nil {
		t.Error("memo answered for another model version")
	}
	// Bounded.
	for i := 0; i < 10; i++ {
		e.memo.put(fmt.Sprint("n", i), &predictor.Prediction{}, time.Now())
	}
	if n := len(e.memo.m); n != 2 {
		t.Errorf("memo holds %d entries, max 2", n)
	}
	// Without a cache there is no memo.
	e2, _ := NewEngine(EngineConfig{Predictor: crf(t), MemoSize: 10})
	if e2.memo != nil {
		t.Error("memo without a cache")
	}
}
