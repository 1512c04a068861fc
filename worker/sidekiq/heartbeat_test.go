package sidekiq

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func TestHeartbeatAsSidekiqWebSeesIt(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	const id = "gohost:4242:0123456789ab"
	hb, err := NewHeartbeat(HeartbeatConfig{
		Redis: rdb, Identity: id, Queues: []QueueWeight{{"mask_predictions", 3}, {"other", 1}},
		Concurrency: 8, Tag: "mask-sidecar", Labels: []string{"go"}, Interval: 25 * time.Second,
		Logger: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := readFixture(t, "sidekiq73_plain.json")
	done := hb.Begin(raw)
	hb.RecordResult(false)
	hb.RecordResult(true)
	if err := hb.Start(ctx); err != nil { // the first beat is written by Start
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() { // a skip (no ruby) or a failure must not leak the loop
		if !stopped {
			_ = hb.Shutdown(context.Background())
		}
	})
	if hb.Busy() != 1 {
		t.Errorf("Busy = %d", hb.Busy())
	}

	if ok, _ := rdb.SIsMember(ctx, "processes", id).Result(); !ok {
		t.Fatal("not in processes")
	}
	h, _ := rdb.HGetAll(ctx, id).Result()
	var info struct {
		Hostname    string
		StartedAt   json.Number `json:"started_at"`
		PID         int
		Tag         string
		Concurrency int
		Queues      []string
		Weights     []map[string]int
		Labels      []string
		Identity    string
		Version     string
		Embedded    bool
	}
	if err := json.Unmarshal([]byte(h["info"]), &info); err != nil {
		t.Fatalf("info %q: %v", h["info"], err)
	}
	if info.Identity != id || info.PID != os.Getpid() || info.Concurrency != 8 || !slices.Equal(info.Queues, []string{"mask_predictions", "other"}) ||
		info.Weights[0]["mask_predictions"] != 3 || info.Tag != "mask-sidecar" || !info.Embedded || info.Hostname == "" ||
		!strings.Contains(string(info.StartedAt), ".") {
		t.Errorf("info = %s", h["info"])
	}
	beat, _ := strconv.ParseFloat(h["beat"], 64)
	if h["busy"] != "1" || h["quiet"] != "false" || h["concurrency"] != "8" || h["rss"] == "0" || h["rtt_us"] == "" ||
		time.Since(time.Unix(int64(beat), 0)) > time.Minute {
		t.Errorf("process hash = %v", h)
	}
	if ttl, _ := rdb.TTL(ctx, id).Result(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("process hash TTL = %s", ttl)
	}
	for _, key := range []string{id + ":work", id + ":workers"} {
		w, _ := rdb.HGetAll(ctx, key).Result()
		if len(w) != 1 {
			t.Fatalf("%s = %v", key, w)
		}
		for _, v := range w {
			var e struct {
				Queue   string
				Payload string
				RunAt   int64 `json:"run_at"`
			}
			if err := json.Unmarshal([]byte(v), &e); err != nil || e.Queue != "mask_predict" || e.Payload != string(raw) ||
				time.Since(time.Unix(e.RunAt, 0)) > time.Minute {
				t.Errorf("%s entry = %s (%v)", key, v, err)
			}
		}
		if ttl, _ := rdb.TTL(ctx, key).Result(); ttl <= 0 || ttl > time.Minute {
			t.Errorf("%s TTL = %s", key, ttl)
		}
	}

	// What Sidekiq's own API (6.4.1, reading :workers) makes of it.
	var got struct {
		Processes []struct {
			Identity, Tag string
			Busy          int
			Concurrency   int
			Queues        []string
		}
		Workers []struct {
			Process, Queue, JID string
		}
		Stats struct {
			Processed, Failed int
			WorkersSize       int `json:"workers_size"`
		}
	}
	out := runRuby(t, "read_back.rb", "default")
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got.Processes) != 1 || got.Processes[0].Identity != id || got.Processes[0].Busy != 1 || got.Processes[0].Concurrency != 8 ||
		got.Processes[0].Tag != "mask-sidecar" {
		t.Errorf("Sidekiq::ProcessSet: %s", out)
	}
	if len(got.Workers) != 1 || got.Workers[0].Process != id || got.Workers[0].JID != "aba7eeff5ca7c018e41f4589" || got.Workers[0].Queue != "mask_predict" {
		t.Errorf("Sidekiq::Workers: %s", out)
	}
	if got.Stats.Processed != 2 || got.Stats.Failed != 1 || got.Stats.WorkersSize != 1 {
		t.Errorf("Sidekiq::Stats: %s", out)
	}

	// The job ends; the next beat drops it. done is idempotent.
	done()
	done()
	hb.Quiet()
	if err := hb.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, id+":work", id+":workers").Result(); n != 0 {
		t.Error("work hash still there with no running job")
	}
	if h, _ := rdb.HGetAll(ctx, id).Result(); h["busy"] != "0" || h["quiet"] != "true" {
		t.Errorf("after the job: %v", h)
	}

	hb.RecordResult(false)
	stopped = true
	if err := hb.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := rdb.SIsMember(ctx, "processes", id).Result(); ok {
		t.Error("still in processes after Shutdown")
	}
	if n, _ := rdb.Exists(ctx, id, id+":work", id+":workers").Result(); n != 0 {
		t.Error("process keys left after Shutdown")
	}
	if p, _ := rdb.Get(ctx, "stat:processed").Result(); p != "3" {
		t.Errorf("stat:processed = %s after the final flush, want 3", p)
	}
	if err := hb.Shutdown(ctx); err == nil {
		t.Error("second Shutdown succeeded")
	}
}

func TestHeartbeatBeatsPeriodicallyAndSurvivesRedisErrors(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	hb, err := NewHeartbeat(HeartbeatConfig{Redis: rdb, Interval: 20 * time.Millisecond, TTL: time.Second, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := rdb.HGet(ctx, hb.Identity(), "beat").Result()
	waitFor(t, 2*time.Second, "a second beat", func() bool {
		b, _ := rdb.HGet(ctx, hb.Identity(), "beat").Result()
		return b != "" && b != first
	})
	if err := hb.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// A Redis that is down: Start still succeeds, beats fail quietly and keep the counts.
	down, err := NewHeartbeat(HeartbeatConfig{Redis: deadRedis(t), Interval: 20 * time.Millisecond, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	down.RecordResult(true)
	if err := down.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if down.processed.Load() != 1 || down.failed.Load() != 1 {
		t.Error("counts lost by failed beats")
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := down.Shutdown(sctx); err == nil {
		t.Error("Shutdown against a dead Redis reported success")
	}
}

func TestHeartbeatConfigValidation(t *testing.T) {
	if _, err := NewHeartbeat(HeartbeatConfig{}); err == nil || !strings.Contains(err.Error(), "Redis is required") {
		t.Errorf("no Redis: %v", err)
	}
	rdb := deadRedis(t)
	if _, err := NewHeartbeat(HeartbeatConfig{Redis: rdb, Interval: time.Minute}); err == nil || !strings.Contains(err.Error(), "TTL") {
		t.Errorf("Interval ≥ TTL/2: %v", err)
	}
	if _, err := NewHeartbeat(HeartbeatConfig{Redis: rdb, Queues: []QueueWeight{{"bad name", 1}}}); err == nil {
		t.Error("bad queue name accepted")
	}
}
