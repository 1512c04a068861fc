package sidekiq

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestPushWritesWhatSidekiqClientWrites(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	c := NewClient(rdb)
	c.now = func() time.Time { return time.Unix(1795936334, 0) } // a whole second: must still be a float
	jid, err := c.Push(ctx, "default", "MaskPredictionCallbackJob",
		[]any{map[string]any{"jid": "aba7eeff5ca7c018e41f4589", "mask_id": 42, "prediction": map[string]any{"x": "<&>"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(jid) {
		t.Errorf("jid %q is not 24 hex chars", jid)
	}
	if ok, _ := rdb.SIsMember(ctx, "queues", "default").Result(); !ok {
		t.Error("queue not in the queues set")
	}
	items, _ := rdb.LRange(ctx, "queue:default", 0, -1).Result()
	if len(items) != 1 {
		t.Fatalf("queue:default = %v", items)
	}
	want := `{"retry":true,"queue":"default","class":"MaskPredictionCallbackJob","args":[{"jid":"aba7eeff5ca7c018e41f4589","mask_id":42,"prediction":{"x":"<&>"}}],"jid":"` + jid + `","created_at":1795936334.0,"enqueued_at":1795936334.0}`
	if items[0] != want {
		t.Errorf("payload\n got %s\nwant %s", items[0], want)
	}
	j, err := ParseJob([]byte(items[0]))
	if err != nil || j.JID != jid || j.Retry != 25 || j.CreatedAt.Unix() != 1795936334 {
		t.Errorf("ParseJob of our own push: %+v, %v", j, err)
	}

	// Options.
	c.now = time.Now
	_, err = c.Push(ctx, "default", "K", nil, WithJID("0123456789abcdef01234567"), WithRetry(3),
		WithField("tags", []string{"go"}))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := rdb.LIndex(ctx, "queue:default", 0).Result()
	if !strings.HasPrefix(raw, `{"retry":3,"queue":"default","class":"K","args":[],"tags":["go"],"jid":"0123456789abcdef01234567","created_at":`) {
		t.Errorf("with options: %s", raw)
	}
	_, _ = c.Push(ctx, "default", "K", []any{"x"}, WithoutRetry())
	raw, _ = rdb.LIndex(ctx, "queue:default", 0).Result()
	if !strings.HasPrefix(raw, `{"retry":false,`) {
		t.Errorf("WithoutRetry: %s", raw)
	}
	at := time.Now().Add(time.Hour)
	_, _ = c.Push(ctx, "default", "K", []any{"later"}, WithAt(at))
	sched, _ := rdb.ZRangeWithScores(ctx, "schedule", 0, -1).Result()
	if len(sched) != 1 || strings.Contains(sched[0].Member.(string), "enqueued_at") || int64(sched[0].Score) != at.Unix() {
		t.Errorf("WithAt: %+v", sched)
	}

	for _, bad := range []func() error{
		func() error { _, err := c.Push(ctx, "", "K", nil); return err },
		func() error { _, err := c.Push(ctx, "q", "", nil); return err },
		func() error { _, err := c.Push(ctx, "q", "K", []any{make(chan int)}); return err },
		func() error { _, err := c.Push(ctx, "q", "K", nil, WithField("jid", "x")); return err },
		func() error { _, err := c.Push(ctx, "q", "K", nil, WithField("f", func() {})); return err },
	} {
		if bad() == nil {
			t.Error("a bad push was accepted")
		}
	}
}

func TestDeadEntries(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	c := NewClient(rdb)
	now := time.Unix(1795936400, 500_000_000)
	c.now = func() time.Time { return now }

	deadBy := func(jid string) map[string]any {
		t.Helper()
		all, _ := rdb.ZRange(ctx, "dead", 0, -1).Result()
		for _, m := range all {
			var v map[string]any
			if err := json.Unmarshal([]byte(m), &v); err != nil {
				t.Fatalf("dead entry is not JSON: %s", m)
			}
			if v["jid"] == jid {
				return v
			}
		}
		t.Fatalf("no dead entry for %s in %v", jid, all)
		return nil
	}

	// A Sidekiq 7 job: fields appended after the job's own, float seconds.
	raw := readFixture(t, "sidekiq73_plain.json")
	if err := c.Dead(ctx, raw, "Predictor::Timeout", "model took too long", WithRetryCount(3)); err != nil {
		t.Fatal(err)
	}
	all, _ := rdb.ZRangeWithScores(ctx, "dead", 0, -1).Result()
	wantEntry := strings.TrimSuffix(string(raw), "}") + `,"error_message":"model took too long","error_class":"Predictor::Timeout","failed_at":1795936400.5,"retry_count":3}`
	if len(all) != 1 || all[0].Member != wantEntry || all[0].Score != 1795936400.5 {
		t.Errorf("dead entry\n got %+v\nwant %s @ 1795936400.5", all, wantEntry)
	}

	// A Sidekiq 8 job that already failed (it came back from the dead set): it waits
	// once in retry (retried_at in integer milliseconds, retry_count + 1, RedeadField),
	// and goes to the dead set when that entry fails again.
	raw8 := readFixture(t, "sidekiq8_retry_entry.json")
	if err := c.Dead(ctx, raw8, "E", strings.Repeat("é", 12000)+"\xff"); err != nil {
		t.Fatal(err)
	}
	parked, _ := rdb.ZRangeWithScores(ctx, "retry", 0, -1).Result()
	if len(parked) != 1 {
		t.Fatalf("retry set: %v", parked)
	}
	var e map[string]any
	_ = json.Unmarshal([]byte(parked[0].Member.(string)), &e)
	if e["retried_at"] != float64(now.UnixMilli()) || e["failed_at"] != float64(1795936389934) || e["retry_count"] != float64(1) ||
		e[RedeadField] != float64(1) || parked[0].Score < 1795936400.5+15 || parked[0].Score > 1795936400.5+15+20 {
		t.Errorf("Sidekiq 8 entry parked in retry: %v @ %v", e, parked[0].Score)
	}
	if msg := e["error_message"].(string); len([]rune(msg)) != maxErrorMessage {
		t.Errorf("error_message has %d runes, want it cut to %d", len([]rune(msg)), maxErrorMessage)
	}
	// Back from retry (as the scheduler moves it, enqueued_at changed), still poison: dead,
	// without the marker member.
	back, err := setFields([]byte(parked[0].Member.(string)), field{"enqueued_at", []byte("1795936500123")})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Dead(ctx, back, "E", "again"); err != nil {
		t.Fatal(err)
	}
	e = deadBy("00000000000000000000f0rt")
	if _, ok := e[RedeadField]; ok || e["retry_count"] != float64(2) || e["error_message"] != "again" {
		t.Errorf("re-dead entry: %v", e)
	}
	// The same delivery again (a crash between the write and its LREM): stored once.
	if err := c.Dead(ctx, back, "E", "again"); err != nil {
		t.Fatal(err)
	}
	if n := rdb.ZCard(ctx, "dead").Val(); n != 2 {
		t.Errorf("dead set has %d entries after the same delivery died twice, want 2", n)
	}

	// No jid, no queue: both added so Sidekiq Web can retry it.
	if err := c.Dead(ctx, []byte(`{"class":"K","args":[1]}`), "E", "no jid", WithQueue("mask_predictions")); err != nil {
		t.Fatal(err)
	}
	// Not JSON at all: wrapped.
	if err := c.Dead(ctx, []byte("not json \xff"), "E", "not JSON", WithQueue("mask_predictions")); err != nil {
		t.Fatal(err)
	}
	members, _ := rdb.ZRange(ctx, "dead", 0, -1).Result()
	var sawNoJID, sawWrapped bool
	for _, m := range members {
		var v map[string]any
		_ = json.Unmarshal([]byte(m), &v)
		jid, _ := v["jid"].(string)
		if len(jid) != 24 {
			t.Errorf("dead entry without a proper jid: %s", m)
		}
		switch v["error_message"] {
		case "no jid":
			sawNoJID = v["queue"] == "mask_predictions"
		case "not JSON":
			sawWrapped = v["class"] == invalidPayloadClass && v["queue"] == "mask_predictions" &&
				v["args"].([]any)[0] == "not json \uFFFD" && v["raw_payload_base64"] == "bm90IGpzb24g/w=="
			if _, err := ParseJob([]byte(m)); err == nil {
				t.Error("the invalid-payload wrapper parses as a job: a Web UI retry would run it")
			}
		}
	}
	if !sawNoJID || !sawWrapped {
		t.Errorf("entries: %v", members)
	}
}

func TestDeadTrimmedLikeSidekiq(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	c := NewClient(rdb)
	now := time.Now()
	pipe := rdb.Pipeline()
	pipe.ZAdd(ctx, "dead", redis.Z{Score: float64(now.Add(-DeadTimeout - time.Hour).Unix()), Member: `{"jid":"ancient"}`})
	for i := range DeadMaxJobs + 5 {
		pipe.ZAdd(ctx, "dead", redis.Z{Score: float64(now.Add(-time.Hour).Unix()) + float64(i)/1e3, Member: `{"jid":"` + NewJID() + `"}`})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Dead(ctx, readFixture(t, "sidekiq73_plain.json"), "E", "m"); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.ZCard(ctx, "dead").Result(); n != DeadMaxJobs {
		t.Errorf("dead has %d entries, want the newest %d", n, DeadMaxJobs)
	}
	if _, err := rdb.ZScore(ctx, "dead", `{"jid":"ancient"}`).Result(); err != redis.Nil {
		t.Error("an entry older than 180 days survived")
	}
	newest, _ := rdb.ZRange(ctx, "dead", -1, -1).Result()
	if !strings.Contains(newest[0], "aba7eeff5ca7c018e41f4589") {
		t.Error("the new entry is not the newest")
	}
}

func TestIncrStats(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	c := NewClient(rdb)
	if err := c.IncrStats(ctx, 5, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.IncrStats(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Format("2006-01-02")
	for key, want := range map[string]string{"stat:processed": "6", "stat:failed": "2", "stat:processed:" + day: "6", "stat:failed:" + day: "2"} {
		if got, _ := rdb.Get(ctx, key).Result(); got != want {
			t.Errorf("%s = %q, want %s", key, got, want)
		}
	}
	if ttl, _ := rdb.TTL(ctx, "stat:processed:"+day).Result(); ttl < 5*364*24*time.Hour {
		t.Errorf("daily key TTL = %s, want 5 years", ttl)
	}
	if ttl, _ := rdb.TTL(ctx, "stat:processed").Result(); ttl != -1 {
		t.Errorf("total key TTL = %s, want none", ttl)
	}
}

func TestBackoff(t *testing.T) {
	for count := 0; count <= 25; count++ {
		base := count*count*count*count + 15
		for range 50 {
			d := Backoff(count)
			secs := int(d / time.Second)
			if secs < base || secs > base+9*(count+1) || (secs-base)%(count+1) != 0 {
				t.Fatalf("Backoff(%d) = %s, want %d + rand(10)×%d s", count, d, base, count+1)
			}
		}
	}
	if Backoff(-1) < 15*time.Second || Backoff(1_000_000) <= 0 {
		t.Error("Backoff out of range for odd counts")
	}
	if RetryDelay(2, nil, nil) < 31*time.Second {
		t.Error("RetryDelay does not follow Backoff")
	}
}

// TestRubySidekiqReadsOurWrites: jobs pushed by Client.Push, dead entries and stats are
// read back through the real Sidekiq API (Debian's ruby-sidekiq 6.4.1).
func TestRubySidekiqReadsOurWrites(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	c := NewClient(rdb)
	cbArgs := map[string]any{"jid": "aba7eeff5ca7c018e41f4589", "mask_id": 42, "mask_name": "Flameshroud",
		"prediction": map[string]any{"tokens": []string{"Flame", "shroud"}, "model_version": "v1"}}
	jid, err := c.Push(ctx, "default", "MaskPredictionCallbackJob", []any{cbArgs})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Dead(ctx, readFixture(t, "sidekiq73_plain.json"), PoisonErrorClass, "args is empty", WithRetryCount(2)); err != nil {
		t.Fatal(err)
	}
	if err := c.Dead(ctx, []byte("{oops"), PoisonErrorClass, "payload is not JSON", WithQueue("mask_predictions")); err != nil {
		t.Fatal(err)
	}
	if err := c.IncrStats(ctx, 7, 3); err != nil {
		t.Fatal(err)
	}

	var got struct {
		Version      string  `json:"version"`
		QueueSize    int     `json:"queue_size"`
		QueueLatency float64 `json:"queue_latency"`
		Queue        []struct {
			JID, Klass string
			Args       []map[string]any
			Retry      any
			EnqueuedAt float64 `json:"enqueued_at"`
			CreatedAt  float64 `json:"created_at"`
		}
		Dead []struct {
			JID, Klass, Queue string
			ErrorClass        string  `json:"error_class"`
			ErrorMessage      string  `json:"error_message"`
			FailedAt          float64 `json:"failed_at"`
			RetryCount        int     `json:"retry_count"`
			At                float64 `json:"at"`
		}
		Stats struct {
			Processed, Failed int
			DeadSize          int `json:"dead_size"`
		}
		History struct{ Processed, Failed map[string]int }
	}
	out := runRuby(t, "read_back.rb", "default")
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("read back with Sidekiq %s", got.Version)
	if got.QueueSize != 1 || len(got.Queue) != 1 {
		t.Fatalf("Sidekiq::Queue: %s", out)
	}
	q := got.Queue[0]
	if q.JID != jid || q.Klass != "MaskPredictionCallbackJob" || q.Retry != true || len(q.Args) != 1 ||
		q.Args[0]["mask_name"] != "Flameshroud" || q.Args[0]["mask_id"] != float64(42) || q.Args[0]["jid"] != "aba7eeff5ca7c018e41f4589" {
		t.Errorf("callback job as Sidekiq sees it: %+v", q)
	}
	if time.Since(time.Unix(int64(q.EnqueuedAt), 0)) > time.Minute || q.CreatedAt == 0 || got.QueueLatency > 60 || got.QueueLatency < 0 {
		t.Errorf("timestamps: enqueued_at=%v created_at=%v latency=%v", q.EnqueuedAt, q.CreatedAt, got.QueueLatency)
	}
	if len(got.Dead) != 2 || got.Stats.DeadSize != 2 {
		t.Fatalf("Sidekiq::DeadSet: %s", out)
	}
	for _, d := range got.Dead {
		if d.ErrorClass != PoisonErrorClass || d.FailedAt == 0 || time.Since(time.Unix(int64(d.At), 0)) > time.Minute {
			t.Errorf("dead entry: %+v", d)
		}
		switch d.ErrorMessage {
		case "args is empty":
			if d.JID != "aba7eeff5ca7c018e41f4589" || d.RetryCount != 2 || d.Queue != "mask_predict" {
				t.Errorf("dead entry: %+v", d)
			}
		case "payload is not JSON":
			if d.Klass != invalidPayloadClass || d.Queue != "mask_predictions" {
				t.Errorf("wrapped dead entry: %+v", d)
			}
		default:
			t.Errorf("dead entry: %+v", d)
		}
	}
	day := time.Now().UTC().Format("2006-01-02")
	// Dead counts each job it stores as processed and failed, as Sidekiq counts a failing
	// execution.
	if got.Stats.Processed != 9 || got.Stats.Failed != 5 || got.History.Processed[day] != 9 || got.History.Failed[day] != 5 {
		t.Errorf("stats: %+v %+v", got.Stats, got.History)
	}
}
