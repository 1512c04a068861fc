package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

func defaultCRF(t testing.TB) *predictor.CRF { return modeltest.DefaultCRF(t) }

// job builds a Sidekiq 7 style payload.
func job(jid string, args ...any) []byte {
	b, err := json.Marshal(map[string]any{
		"retry": true, "queue": "mask_predictions", "class": "MaskPredictionJob",
		"args": args, "jid": jid, "created_at": 1764400000.123, "enqueued_at": 1764400000.125,
	})
	if err != nil {
		panic(err)
	}
	return b
}

type handlerEnv struct {
	rdb *redis.Client
	h   *Handler
	crf *predictor.CRF
}

func newHandlerEnv(t *testing.T, mod func(*HandlerConfig)) *handlerEnv {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	crf := defaultCRF(t)
	cfg := HandlerConfig{Redis: rdb, Predictor: CRFPredictor(crf), CallbackClass: "MaskPredictionCallbackJob"}
	if mod != nil {
		mod(&cfg)
	}
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &handlerEnv{rdb: rdb, h: h, crf: crf}
}

func (e *handlerEnv) run(raw []byte) error {
	return e.h.ProcessTask(context.Background(), asynq.NewTask(sidekiq.TaskType, raw))
}

func TestHandlerPredictsCachesAndWritesBack(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, nil)
	raw := job("aaaaaaaaaaaaaaaaaaaaaaaa", map[string]any{"mask_name": "3M Aura 9205+ N95", "mask_id": 42, "reply_to": "maskpredictor:reply:1"})
	if err := e.run(raw); err != nil {
		t.Fatal(err)
	}
	want, _ := e.crf.Predict("3M Aura 9205+ N95")

	// (1) the cache entry Rails reads
	val, err := e.rdb.Get(ctx, "maskpredictor:prediction:3m aura 9205+ n95").Result()
	if err != nil {
		t.Fatal(err)
	}
	var got predictor.Prediction
	if err := got.UnmarshalJSON([]byte(val)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Labels, want.Labels) || got.ModelVersion != e.crf.Version() || got.NormalizedName != "3m aura 9205+ n95" {
		t.Errorf("cache entry %s", val)
	}

	// (2) the callback job
	cbs, err := e.rdb.LRange(ctx, "queue:default", 0, -1).Result()
	if err != nil || len(cbs) != 1 {
		t.Fatalf("callbacks %v %v", cbs, err)
	}
	var cb struct {
		Class string `json:"class"`
		Queue string `json:"queue"`
		JID   string `json:"jid"`
		Args  []struct {
			JID        string          `json:"jid"`
			MaskID     json.RawMessage `json:"mask_id"`
			MaskName   string          `json:"mask_name"`
			Prediction map[string]any  `json:"prediction"`
		} `json:"args"`
	}
	if err := json.Unmarshal([]byte(cbs[0]), &cb); err != nil {
		t.Fatal(err)
	}
	if cb.Class != "MaskPredictionCallbackJob" || cb.Queue != "default" || len(cb.JID) != 24 || len(cb.Args) != 1 {
		t.Fatalf("callback %s", cbs[0])
	}
	a := cb.Args[0]
	if a.JID != "aaaaaaaaaaaaaaaaaaaaaaaa" || string(a.MaskID) != "42" || a.MaskName != "3M Aura 9205+ N95" || a.Prediction["model_version"] != e.crf.Version() {
		t.Errorf("callback arg %+v", a)
	}
	if ok, _ := e.rdb.SIsMember(ctx, "queues", "default").Result(); !ok {
		t.Error("callback queue not registered in 'queues'")
	}

	// (3) the reply, with an expiry
	replies, _ := e.rdb.LRange(ctx, "maskpredictor:reply:1", 0, -1).Result()
	if len(replies) != 1 || !strings.Contains(replies[0], `"mask_name":"3M Aura 9205+ N95"`) {
		t.Errorf("replies %v", replies)
	}
	if ttl := e.rdb.TTL(ctx, "maskpredictor:reply:1").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("reply TTL %v", ttl)
	}

	// Redelivery of the same bytes: no second callback or reply.
	if err := e.run(raw); err != nil {
		t.Fatal(err)
	}
	if n := e.rdb.LLen(ctx, "queue:default").Val(); n != 1 {
		t.Errorf("%d callbacks after redelivery", n)
	}
	if n := e.rdb.LLen(ctx, "maskpredictor:reply:1").Val(); n != 1 {
		t.Errorf("%d replies after redelivery", n)
	}
	// A new delivery of the same jid (Sidekiq Web's Retry changes the bytes) writes back again.
	raw2 := []byte(strings.Replace(string(raw), `"retry":true`, `"retry":true,"retry_count":1`, 1))
	if err := e.run(raw2); err != nil {
		t.Fatal(err)
	}
	if n := e.rdb.LLen(ctx, "queue:default").Val(); n != 2 {
		t.Errorf("%d callbacks after a new delivery", n)
	}
	// The redelivery and the new delivery both found the cache entry.
	if st := e.h.Stats(); st.CacheHits != 2 || st.CacheMisses != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestHandlerCacheHitUsesCallerTokens(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, func(c *HandlerConfig) { c.CallbackClass = "" })
	if err := e.run(job("b1", "3M Aura 9205+ N95")); err != nil {
		t.Fatal(err)
	}
	// Another spelling of the same normalized name: a hit, answered in its own spelling.
	name := "３Ｍ aura—9205+  n95"
	if err := e.run(job("b2", map[string]any{"mask_name": name, "reply_to": "maskpredictor:reply:r"})); err != nil {
		t.Fatal(err)
	}
	if st := e.h.Stats(); st.CacheHits != 1 || st.CacheMisses != 1 {
		t.Fatalf("stats %+v", st)
	}
	reply, err := e.rdb.LPop(ctx, "maskpredictor:reply:r").Result()
	if err != nil {
		t.Fatal(err)
	}
	var p predictor.Prediction
	if err := p.UnmarshalJSON([]byte(reply)); err != nil {
		t.Fatal(err)
	}
	if p.MaskName != name || !reflect.DeepEqual(p.Tokens, predictor.Tokenize(name)) {
		t.Errorf("reply %s", reply)
	}
	// The entry still holds the spelling that filled it.
	val := e.rdb.Get(ctx, "maskpredictor:prediction:3m aura 9205+ n95").Val()
	if !strings.Contains(val, `"mask_name":"3M Aura 9205+ N95"`) {
		t.Errorf("entry overwritten: %s", val)
	}

	// An entry of another model version is recomputed and replaced.
	rules := predictor.DefaultRules(predictor.Limits{})
	old, _ := rules.Predict("Moldex 2200 N95")
	c, _ := cache.New(e.rdb, cache.Config{})
	if err := c.Put(ctx, "moldex 2200 n95", old); err != nil {
		t.Fatal(err)
	}
	if err := e.run(job("b3", "Moldex 2200 N95")); err != nil {
		t.Fatal(err)
	}
	got, ok, err := c.Get(ctx, "moldex 2200 n95", e.crf.Version())
	if err != nil || !ok || got.Fallback {
		t.Errorf("entry not recomputed: %+v %v %v", got, ok, err)
	}
}

func TestHandlerBatchAndRulesFallback(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, func(c *HandlerConfig) {
		c.Predictor = RulesPredictor(predictor.DefaultRules(predictor.Limits{}))
	})
	names := []string{"3M Aura 9205+ N95", "Moldex 2200 N95", "3m aura 9205+ n95"}
	if err := e.run(job("c1", map[string]any{"mask_names": names, "reply_to": "maskpredictor:reply:batch"})); err != nil {
		t.Fatal(err)
	}
	replies := e.rdb.LRange(ctx, "maskpredictor:reply:batch", 0, -1).Val()
	if len(replies) != 3 {
		t.Fatalf("%d replies", len(replies))
	}
	for i, r := range replies {
		var p predictor.Prediction
		if err := p.UnmarshalJSON([]byte(r)); err != nil {
			t.Fatal(err)
		}
		if p.MaskName != names[i] || !p.Fallback || p.Confidence != 0 {
			t.Errorf("reply %d: %s", i, r)
		}
	}
	if n := e.rdb.LLen(ctx, "queue:default").Val(); n != 3 {
		t.Errorf("%d callbacks, want 3 (one per name)", n)
	}
}

func TestHandlerPoisonGoesToDead(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, func(c *HandlerConfig) { c.MaxNames = 3; c.Limits = predictor.Limits{MaxChars: 50} })
	cases := []struct {
		name string
		raw  []byte
		want string
	}{
		{"not json", []byte(`{"class":`), "not JSON"},
		{"unknown args", job("d2", 1, 2, 3), "args"},
		{"no tokens", job("d3", " - , "), "no tokens"},
		{"too long", job("d4", strings.Repeat("x", 51)), "too long"},
		{"too many names", job("d5", map[string]any{"mask_names": []string{"a", "b", "c", "d"}}), "over the limit"},
		{"bad name in batch", job("d6", map[string]any{"mask_names": []string{"a", "()"}}), "mask_names[1]"},
		{"foreign class", []byte(`{"class":"UserMailerJob","jid":"d7","args":["3M Aura"],"retry":true}`), `class "UserMailerJob" is not run`},
		{"foreign ActiveJob class", []byte(`{"class":"Sidekiq::ActiveJob::Wrapper","wrapped":"UserMailerJob","jid":"d8","args":[{"job_class":"UserMailerJob","arguments":["3M Aura"]}]}`), `ActiveJob class "UserMailerJob"`},
		{"reply_to outside our keys", job("d9", map[string]any{"mask_name": "3M Aura", "reply_to": "queue:default"}), `"reply_to" "queue:default" is not under`},
		{"reply key of the wrong type", job("d10", map[string]any{"mask_name": "3M Aura", "reply_to": "maskpredictor:reply:str"}), "holds a Redis string, not a list"},
	}
	if err := e.rdb.Set(ctx, "maskpredictor:reply:str", "mine", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		// Ended, in the dead set only: the task completes (nil), so asynq
		// does not keep the payload a second time in its archive.
		if err := e.run(c.raw); err != nil {
			t.Errorf("%s: err %v, want nil (ended in the dead set)", c.name, err)
		}
	}
	if v, ttl := e.rdb.Get(ctx, "maskpredictor:reply:str").Val(), e.rdb.TTL(ctx, "maskpredictor:reply:str").Val(); v != "mine" || ttl != -1 {
		t.Errorf("the wrong-type reply key was touched: %q ttl %v", v, ttl)
	}
	if n, ttl := e.rdb.LLen(ctx, "queue:default").Val(), e.rdb.TTL(ctx, "queue:default").Val(); n != 0 || ttl != -2 {
		t.Errorf("queue:default touched: %d entries, ttl %v", n, ttl)
	}
	dead, err := e.rdb.ZRange(ctx, "dead", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != len(cases) {
		t.Fatalf("%d dead entries, want %d: %v", len(dead), len(cases), dead)
	}
	for _, c := range cases {
		found := false
		for _, d := range dead {
			var m map[string]any
			if json.Unmarshal([]byte(d), &m) != nil {
				continue
			}
			class := ErrorClassInvalid
			if strings.HasPrefix(c.name, "foreign") {
				class = sidekiq.ForeignErrorClass
			}
			if m["error_class"] == class && strings.Contains(fmt.Sprint(m["error_message"]), c.want) && m["failed_at"] != nil {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no dead entry with reason containing %q", c.name, c.want)
		}
	}
	if n := e.rdb.LLen(ctx, "queue:default").Val(); n != 0 {
		t.Errorf("poison jobs pushed %d callbacks", n)
	}
	if st := e.h.Stats(); st.Poison != int64(len(cases)) || st.Dead != int64(len(cases)) {
		t.Errorf("stats %+v", st)
	}
}

func TestHandlerTransientFailureExhausted(t *testing.T) {
	ctx := context.Background()
	// Redis is not there (the cache and write-back fail); the dead set's
	// Redis works.
	broken := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer broken.Close()
	e := newHandlerEnv(t, func(c *HandlerConfig) {
		c.Sidekiq = sidekiq.NewClient(c.Redis)
		c.Redis = broken
		c.Cache = nil
		c.CallbackClass = ""
		c.RedisRetryFor = time.Millisecond // fail at once
	})

	// retry: true with no retries used yet: Sidekiq's retry set, and the task
	// completes.
	if err := e.run(job("e1", "3M Aura")); err != nil {
		t.Fatalf("first failure: %v, want nil (the job waits in the retry set)", err)
	}
	if r := e.rdb.ZRange(ctx, "retry", 0, -1).Val(); len(r) != 1 || !strings.Contains(r[0], `"jid":"e1"`) ||
		!strings.Contains(r[0], `"retry_count":0`) || !strings.Contains(r[0], ErrorClassTransient) {
		t.Errorf("retry set %v", r)
	}
	// Out of retries by its retry_count (retry: 2, two retries done): dead.
	raw4 := []byte(strings.Replace(string(job("e4", "3M Aura")), `"retry":true`, `"retry":2,"retry_count":1,"failed_at":1764400001.5`, 1))
	if err := e.run(raw4); err != nil {
		t.Fatalf("exhausted: %v", err)
	}
	// retry: 0 (and false): no retry; retry 0 goes to dead, false leaves no trace.
	// Both end here (nil: the task completes, nothing kept in asynq's archive).
	raw := []byte(strings.Replace(string(job("e2", "3M Aura")), `"retry":true`, `"retry":0`, 1))
	if err := e.run(raw); err != nil {
		t.Fatalf("retry 0: %v", err)
	}
	raw = []byte(strings.Replace(string(job("e3", map[string]any{"mask_names": []string{"3M Aura", "Moldex"}, "reply_to": "maskpredictor:reply:e3"})),
		`"retry":true`, `"retry":false`, 1))
	if err := e.run(raw); err != nil {
		t.Fatalf("retry false: %v", err)
	}
	dead := e.rdb.ZRange(ctx, "dead", 0, -1).Val()
	if len(dead) != 2 || !strings.Contains(strings.Join(dead, " "), `"jid":"e2"`) || !strings.Contains(dead[0], ErrorClassTransient) ||
		!strings.Contains(strings.Join(dead, " "), `"retry_count":2,"failed_at":1764400001.5,`) || !strings.Contains(strings.Join(dead, " "), `"retried_at":`) {
		t.Errorf("dead %v, want e2 and e4 (retry_count 2)", dead)
	}
	// The discarded job leaves a trace: counted, and its reply says why.
	if st := e.h.Stats(); st.Discarded != 1 || st.Dead != 2 || st.Retrying != 1 {
		t.Errorf("stats %+v", st)
	}
	if n := e.rdb.Get(ctx, "stat:failed").Val(); n != "4" {
		t.Errorf("stat:failed %s, want 4", n)
	}
	replies := e.rdb.LRange(ctx, "maskpredictor:reply:e3", 0, -1).Val()
	if len(replies) != 2 {
		t.Fatalf("replies %v, want one error per name", replies)
	}
	for i, r := range replies {
		var m map[string]string
		if err := json.Unmarshal([]byte(r), &m); err != nil || m["jid"] != "e3" || m["mask_name"] != []string{"3M Aura", "Moldex"}[i] ||
			!strings.Contains(m["error"], "discarded (retry: false): failed 1 times") {
			t.Errorf("reply %d: %s", i, r)
		}
	}
	if ttl := e.rdb.TTL(ctx, "maskpredictor:reply:e3").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("reply ttl %v", ttl)
	}
}

// With the shared Redis near its maxmemory, the worker writes no cache
// entries (cache.Guard) but every job still gets its callback: the cache is
// optional, the job's answer is not.
func TestHandlerNoCacheWritesUnderMemoryPressure(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{Private: true})
	rdb := srv.Client()
	// 92 % of maxmemory used: past the guard's 90 % mark, with room left for
	// the callbacks (Redis itself would refuse them only at 100 %). A filler
	// makes the few hundred KB of room small beside what is used.
	if err := rdb.Set(ctx, "filler", strings.Repeat("x", 4<<20), 0).Err(); err != nil {
		t.Fatal(err)
	}
	used, err := strconv.ParseInt(rdb.InfoMap(ctx, "memory").Val()["Memory"]["used_memory"], 10, 64)
	if err != nil {
		t.Fatalf("used_memory: %v", err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used*100/92, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	g, err := cache.NewGuard(rdb, cache.GuardConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(HandlerConfig{Redis: rdb, Predictor: CRFPredictor(defaultCRF(t)), CallbackClass: "CB", Guard: g})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"3M Aura 9205+ N95", "Moldex 2200 N95"} {
		if err := h.ProcessTask(ctx, asynq.NewTask(sidekiq.TaskType, job(fmt.Sprintf("p%d", i), name))); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(rdb.Keys(ctx, "maskpredictor:prediction:*").Val()); n != 0 {
		t.Errorf("%d cache entries written under memory pressure", n)
	}
	if n := rdb.LLen(ctx, "queue:default").Val(); n != 2 {
		t.Errorf("%d callbacks, want 2", n)
	}
	if st := h.Stats(); st.CacheSkipped != 2 {
		t.Errorf("stats %+v", st)
	}
	// Pressure gone: entries are written again (after the guard's next INFO).
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*cache.DefaultCheckInterval, "the guard to see the room", func() (bool, string) {
		ok, why := g.Writable(ctx)
		return ok, string(why)
	})
	if err := h.ProcessTask(ctx, asynq.NewTask(sidekiq.TaskType, job("p9", "Honeywell DF300"))); err != nil {
		t.Fatal(err)
	}
	if n := len(rdb.Keys(ctx, "maskpredictor:prediction:*").Val()); n != 1 {
		t.Errorf("%d cache entries after the pressure went", n)
	}
}
