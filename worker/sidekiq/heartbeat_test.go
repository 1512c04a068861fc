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
	log, logs := observedLogger(t)
	down, err := NewHeartbeat(HeartbeatConfig{Redis: deadRedis(t), Interval: 20 * time.Millisecond, TTL: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	down.RecordResult(true)
	if err := down.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Start's beat failed, and then one of the loop's (it logs the first, after it).
	waitLogged(t, 5*time.Second, logs, "sidekiq heartbeat: beat failed; retrying every interval")
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

// TestHeartbeatSignals: with OnSignal the process is not embedded, and signals pushed
// as Sidekiq's Process#quiet!/#stop! push them (LPUSH <identity>-signals) are read in
// order, one per beat, with an immediate beat after each; without OnSignal the
// process stays embedded and its signals list is left alone.
func TestHeartbeatSignals(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	got := make(chan string, 4)
	hb, err := NewHeartbeat(HeartbeatConfig{Redis: rdb, Identity: "sig:1:abc", Interval: time.Hour, TTL: 3 * time.Hour,
		OnSignal: func(sig string) { got <- sig }, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer hb.Shutdown(context.Background()) //nolint:errcheck
	info := rdb.HGet(ctx, hb.Identity(), "info").Val()
	if !strings.Contains(info, `"embedded":false`) {
		t.Errorf("info %s, want embedded false", info)
	}
	for _, sig := range []string{"TSTP", "TERM"} { // what quiet! then stop! write
		rdb.LPush(ctx, hb.Identity()+"-signals", sig)
	}
	hb.Kick() // the beat reads TSTP, and the immediate next one TERM
	for _, want := range []string{"TSTP", "TERM"} {
		select {
		case sig := <-got:
			if sig != want {
				t.Errorf("signal %q, want %q", sig, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s", want)
		}
	}
	if n := rdb.LLen(ctx, hb.Identity()+"-signals").Val(); n != 0 {
		t.Errorf("%d signals left", n)
	}

	plain, err := NewHeartbeat(HeartbeatConfig{Redis: rdb, Identity: "plain:1:abc", Interval: time.Hour, TTL: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rdb.LPush(ctx, "plain:1:abc-signals", "TSTP")
	if err := plain.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if info := rdb.HGet(ctx, "plain:1:abc", "info").Val(); !strings.Contains(info, `"embedded":true`) {
		t.Errorf("info %s without OnSignal, want embedded true", info)
	}
	if n := rdb.LLen(ctx, "plain:1:abc-signals").Val(); n != 1 {
		t.Errorf("a heartbeat without OnSignal popped the signals list (%d left)", n)
	}
}

// TestHeartbeatBusyAtMostSlots: more jobs in hand than worker slots (batch tasks)
// show as the busy slots, at most Concurrency, with as many work entries, oldest
// first; without Occupy the running jobs show, capped at Concurrency.
func TestHeartbeatBusyAtMostSlots(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	raw := readFixture(t, "sidekiq73_plain.json")
	hb, err := NewHeartbeat(HeartbeatConfig{Redis: rdb, Identity: "slots:1:abc", Concurrency: 2, Interval: time.Hour, TTL: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, busy int) {
		t.Helper()
		if err := hb.Beat(ctx); err != nil {
			t.Fatal(err)
		}
		b := rdb.HGet(ctx, "slots:1:abc", "busy").Val()
		for _, key := range []string{"slots:1:abc:work", "slots:1:abc:workers"} {
			if n := rdb.HLen(ctx, key).Val(); b != strconv.Itoa(busy) || n != int64(busy) {
				t.Errorf("%s: busy %s, %d entries in %s, want %d", what, b, n, key, busy)
			}
		}
	}
	var ends []func()
	for range 5 {
		ends = append(ends, hb.Begin(raw))
	}
	check("5 jobs, no Occupy", 2)
	r1 := hb.Occupy()
	check("5 jobs in one slot", 1)
	w := rdb.HGetAll(ctx, "slots:1:abc:work").Val()
	if _, ok := w["1"]; !ok {
		t.Errorf("work %v, want the oldest job (tid 1)", w)
	}
	r2, r3 := hb.Occupy(), hb.Occupy()
	check("5 jobs in three slots", 2)
	r1()
	r1()
	r2()
	check("one slot left", 1)
	r3()
	check("no slot busy", 0)
	for _, end := range ends {
		end()
	}
	check("nothing running", 0)
}
