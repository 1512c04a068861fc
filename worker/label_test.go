package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// labelJob builds a Sidekiq 7 style MaskLabelJob payload.
func labelJob(jid string, args ...any) []byte {
	b, err := json.Marshal(map[string]any{
		"retry": true, "queue": "mask_predictions", "class": sidekiq.LabelClass,
		"args": args, "jid": jid, "created_at": 1764400000.123, "enqueued_at": 1764400000.125,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// bd is a breakdown [{token: label}…] from "token/label" pairs.
func bd(pairs ...string) []map[string]string {
	out := make([]map[string]string, len(pairs))
	for i, p := range pairs {
		tok, lab, _ := strings.Cut(p, "/")
		out[i] = map[string]string{tok: lab}
	}
	return out
}

// storedLabel is the label hash's entry for name, and the source of its
// cache entry.
func storedLabel(t *testing.T, rdb *redis.Client, name string) (l labels.Label, cacheSource string, ok bool) {
	t.Helper()
	ctx := context.Background()
	norm := predictor.Normalize(name)
	b, err := rdb.HGet(ctx, labels.Key, norm).Bytes()
	if errors.Is(err, redis.Nil) {
		return l, "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := l.UnmarshalJSON(b); err != nil {
		t.Fatalf("stored label %s: %v", b, err)
	}
	var entry struct {
		Source       string `json:"source"`
		ModelVersion string `json:"model_version"`
	}
	if v, err := rdb.Get(ctx, "maskpredictor:prediction:"+norm).Bytes(); err == nil {
		if err := json.Unmarshal(v, &entry); err != nil {
			t.Fatal(err)
		}
	}
	return l, entry.Source, true
}

func TestHandlerLabelJobStoresTheLabel(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, nil) // with a callback class: label jobs push none
	name := "3M Aura 9205+ N95"
	if err := e.run(labelJob("l1", name, bd("3M/brand", "Aura/model", "9205+/model", "N95/filter_type"), "admin@example.com")); err != nil {
		t.Fatal(err)
	}
	l, src, ok := storedLabel(t, e.rdb, name)
	if !ok {
		t.Fatal("no label stored")
	}
	if l.MaskName != name || l.Source != labels.SourceSidekiq || l.LabelledBy != "admin@example.com" ||
		len(l.Breakdown) != 4 || l.Breakdown[3] != (predictor.Labelled{Token: "N95", Label: "filter_type"}) {
		t.Errorf("stored %+v", l)
	}
	if got, want := l.LabelledAt.Round(time.Millisecond).UnixMilli(), int64(1764400000123); got != want {
		t.Errorf("labelled_at %v, want the job's created_at", l.LabelledAt)
	}
	if src != "label" {
		t.Errorf("cache entry source %q, want label", src)
	}
	// No callback, no reply, no done marker: a label has no write-back.
	if n := e.rdb.LLen(ctx, "queue:default").Val(); n != 0 {
		t.Errorf("%d callback jobs for a label", n)
	}
	if keys := e.rdb.Keys(ctx, "maskpredictor:done:*").Val(); len(keys) != 0 {
		t.Errorf("done markers %v", keys)
	}
	// Labelled again (a relabel, or a redelivery): replaced, no error; without
	// labelled_by (two args) and with null.
	if err := e.run(labelJob("l2", name, bd("3M/brand", "Aura/model", "9205+/model", "N95/misc"))); err != nil {
		t.Fatal(err)
	}
	if err := e.run(labelJob("l3", "Moldex 2200 N95", bd("Moldex/brand", "2200/model", "N95/filter_type"), nil)); err != nil {
		t.Fatal(err)
	}
	if l, _, _ := storedLabel(t, e.rdb, name); l.Breakdown[3].Label != "misc" || l.LabelledBy != "" {
		t.Errorf("relabel: %+v", l)
	}
	if _, _, ok := storedLabel(t, e.rdb, "moldex 2200 n95"); !ok {
		t.Error("labelled_by null: not stored")
	}
	// A prediction job for the labelled name is answered by the label.
	if err := e.run(job("p1", map[string]any{"mask_name": "3m AURA 9205+ n95", "reply_to": "maskpredictor:reply:p1"})); err != nil {
		t.Fatal(err)
	}
	r := e.rdb.LRange(ctx, "maskpredictor:reply:p1", 0, -1).Val()
	if len(r) != 1 || !strings.Contains(r[0], `"source":"label"`) || !strings.Contains(r[0], `{"n95":"misc"}`) {
		t.Errorf("prediction of a labelled name: %v", r)
	}
	if st := e.h.Stats(); st.Labels != 3 || st.Dead != 0 || st.Poison != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := e.rdb.ZCard(ctx, "dead").Val(); n != 0 {
		t.Errorf("%d dead entries", n)
	}
}

// labelPoisonCases are MaskLabelJob payloads that can never be stored, with
// a part of their dead-set reason.
func labelPoisonCases() []struct {
	name string
	raw  []byte
	want string
} {
	good := bd("3M/brand", "Aura/model")
	return []struct {
		name string
		raw  []byte
		want string
	}{
		{"one arg", labelJob("x1", "3M Aura"), "MaskLabelJob args has 1 elements"},
		{"four args", labelJob("x2", "3M Aura", good, "me", "extra"), "MaskLabelJob args has 4 elements"},
		{"name not a string", labelJob("x3", 42, good), "args[0] must be the mask name"},
		{"empty name", labelJob("x4", "  ", good), "mask name is empty"},
		{"breakdown not a list", labelJob("x5", "3M Aura", map[string]string{"3M": "brand"}), "args[1] must be the breakdown"},
		{"entry with two keys", labelJob("x6", "3M Aura", []map[string]string{{"3M": "brand", "Aura": "model"}}), "breakdown entry 0 is not a {token: label} object"},
		{"entry not an object", labelJob("x7", "3M Aura", []string{"3M", "Aura"}), "breakdown entry 0 is not a {token: label} object"},
		{"token mismatch", labelJob("x8", "3M Aura", bd("3M/brand", "Aurora/model")), `breakdown token 1 is "Aurora", the tokenizer's is "Aura"`},
		{"too few entries", labelJob("x9", "3M Aura", bd("3M/brand")), "breakdown has 1 entries, the name has 2 tokens"},
		{"unknown label", labelJob("x10", "3M Aura", bd("3M/brand", "Aura/colour")), `has label "colour"`},
		{"empty breakdown", labelJob("x11", "3M Aura", []any{}), "breakdown has 0 entries"},
		{"no tokens", labelJob("x12", " - , ", []any{}), "has no tokens"},
		{"labelled_by not a string", labelJob("x13", "3M Aura", good, 7), "args[2] must be labelled_by"},
		{"labelled_by too long", labelJob("x14", "3M Aura", good, strings.Repeat("a", labels.MaxLabelledBy+1)), "labelled_by must be"},
		{"name too long", labelJob("x15", strings.Repeat("x", 2000), bd(strings.Repeat("x", 2000)+"/model")), "characters (at most"},
		{"payload over 1 MiB", labelJob("x16", "3M Aura", good, strings.Repeat("y", 1<<20)), "over the limit of 1048576"},
	}
}

func TestHandlerLabelJobPoisonGoesToDead(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, nil)
	cases := labelPoisonCases()
	for _, c := range cases {
		// The bridge's check refuses it before asynq...
		j, err := sidekiq.ParseJob(c.raw)
		if err != nil {
			t.Fatal(err)
		}
		reqs, _, err := j.Requests()
		if err == nil {
			err = e.h.Check(j, reqs)
		}
		if !errors.Is(err, sidekiq.ErrPoison) && !isPoison(err) {
			t.Errorf("%s: bridge check %v, want poison", c.name, err)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: bridge check %q, want it to contain %q", c.name, err, c.want)
		}
		// ...and the handler, should it arrive anyway, buries it.
		if err := e.run(c.raw); err != nil {
			t.Errorf("%s: err %v, want nil (ended in the dead set)", c.name, err)
		}
	}
	checkDeadReasons(t, e.rdb, cases)
	if n := e.rdb.HLen(ctx, labels.Key).Val(); n != 0 {
		t.Errorf("%d labels stored from poison jobs", n)
	}
	if keys := e.rdb.Keys(ctx, "maskpredictor:prediction:*").Val(); len(keys) != 0 {
		t.Errorf("cache entries %v", keys)
	}
	if st := e.h.Stats(); st.Labels != 0 || st.Dead != int64(len(cases)) {
		t.Errorf("stats %+v", st)
	}
}

func checkDeadReasons(t *testing.T, rdb *redis.Client, cases []struct {
	name string
	raw  []byte
	want string
}) {
	t.Helper()
	dead := rdb.ZRange(context.Background(), "dead", 0, -1).Val()
	if len(dead) != len(cases) {
		t.Errorf("%d dead entries, want %d", len(dead), len(cases))
	}
	for _, c := range cases {
		found := false
		for _, d := range dead {
			var m map[string]any
			if json.Unmarshal([]byte(d), &m) == nil && m["error_class"] == ErrorClassInvalid &&
				strings.Contains(fmt.Sprint(m["error_message"]), c.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no dead entry (%s) whose reason contains %q", c.name, ErrorClassInvalid, c.want)
		}
	}
}

func TestHandlerLabelJobStoreFull(t *testing.T) {
	ctx := context.Background()
	var store *labels.Store
	e := newHandlerEnv(t, func(c *HandlerConfig) {
		var err error
		if store, err = labels.New(c.Redis, labels.Config{MaxLabels: 1}); err != nil {
			t.Fatal(err)
		}
		c.Labels = store
	})
	if err := e.run(labelJob("f1", "3M Aura", bd("3M/brand", "Aura/model"))); err != nil {
		t.Fatal(err)
	}
	// Full: a new name is dead with the reason; relabelling the stored one works.
	if err := e.run(labelJob("f2", "Moldex 2200", bd("Moldex/brand", "2200/model"))); err != nil {
		t.Fatal(err)
	}
	if err := e.run(labelJob("f3", "3M aura", bd("3M/brand", "aura/misc"))); err != nil {
		t.Fatal(err)
	}
	dead := e.rdb.ZRange(ctx, "dead", 0, -1).Val()
	if len(dead) != 1 || !strings.Contains(dead[0], `"jid":"f2"`) || !strings.Contains(dead[0], "label store is full") ||
		!strings.Contains(dead[0], ErrorClassInvalid) {
		t.Errorf("dead %v", dead)
	}
	if n := e.rdb.HLen(ctx, labels.Key).Val(); n != 1 {
		t.Errorf("%d labels", n)
	}
	if l, _, _ := storedLabel(t, e.rdb, "3M Aura"); l.MaskName != "3M aura" {
		t.Errorf("relabel of a stored name refused: %+v", l)
	}
}

// A Redis error is transient: retried within RedisRetryFor, then into
// Sidekiq's retry set, never the dead set while retries are left.
func TestHandlerLabelJobRedisErrorIsRetried(t *testing.T) {
	ctx := context.Background()
	broken := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer broken.Close()
	e := newHandlerEnv(t, func(c *HandlerConfig) {
		var err error
		if c.Labels, err = labels.New(broken, labels.Config{}); err != nil {
			t.Fatal(err)
		}
		c.RedisRetryFor = 200 * time.Millisecond
	})
	start := time.Now()
	if err := e.run(labelJob("r1", "3M Aura", bd("3M/brand", "Aura/model"))); err != nil {
		t.Fatalf("err %v, want nil (in the retry set)", err)
	}
	if r := e.rdb.ZRange(ctx, "retry", 0, -1).Val(); len(r) != 1 || !strings.Contains(r[0], `"jid":"r1"`) {
		t.Errorf("retry set %v", r)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("gave up after %v: the connection error was not retried within RedisRetryFor", d)
	}
	if n := e.rdb.ZCard(ctx, "dead").Val(); n != 0 {
		t.Errorf("%d dead entries for a transient failure", n)
	}
	// Out of retries (retry: 0): the dead set, as for a prediction job.
	raw := []byte(strings.Replace(string(labelJob("r2", "3M Aura", bd("3M/brand", "Aura/model"))), `"retry":true`, `"retry":0`, 1))
	if err := e.run(raw); err != nil {
		t.Fatal(err)
	}
	dead := e.rdb.ZRange(ctx, "dead", 0, -1).Val()
	if len(dead) != 1 || !strings.Contains(dead[0], ErrorClassTransient) || !strings.Contains(dead[0], `"jid":"r2"`) {
		t.Errorf("dead %v", dead)
	}
}

// In a batch task, label jobs are stored first (a prediction of the same
// name in the batch is answered by the label), bad ones end alone, and the
// Busy page and stats see each job.
func TestHandlerBatchWithLabelJobs(t *testing.T) {
	ctx := context.Background()
	tr := &tracker{}
	e := newHandlerEnv(t, func(c *HandlerConfig) { c.Tracker = tr })
	raws := [][]byte{
		job("b1", map[string]any{"mask_name": "Honeywell DF300 N95", "reply_to": "maskpredictor:reply:b1"}),
		labelJob("b2", "Honeywell DF300 N95", bd("Honeywell/brand", "DF300/model", "N95/misc"), "ops"),
		labelJob("b3", "3M Aura", bd("3M/brand", "Aura/colour")), // unknown label: dead
		job("b4", "3M Aura 9205+"),
		// ActiveJob's wrapper, Sidekiq 8 class name and timestamps.
		[]byte(`{"retry":true,"queue":"mask_predictions","class":"Sidekiq::ActiveJob::Wrapper","wrapped":"MaskLabelJob",` +
			`"args":[{"job_class":"MaskLabelJob","job_id":"x","arguments":["Moldex 2200",[{"Moldex":"brand","_aj_symbol_keys":[]},{"2200":"model","_aj_symbol_keys":[]}],"aj"]}],` +
			`"jid":"b5","created_at":1764400000123,"enqueued_at":1764400000124}`),
	}
	if err := e.runBatch(ctx, raws); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"Honeywell DF300 N95", "Moldex 2200"} {
		if _, src, ok := storedLabel(t, e.rdb, n); !ok || src != "label" {
			t.Errorf("%s: stored %v, cache source %q", n, ok, src)
		}
	}
	if l, _, _ := storedLabel(t, e.rdb, "Moldex 2200"); l.LabelledBy != "aj" || l.Source != labels.SourceSidekiq {
		t.Errorf("ActiveJob label %+v", l)
	}
	r := e.rdb.LRange(ctx, "maskpredictor:reply:b1", 0, -1).Val()
	if len(r) != 1 || !strings.Contains(r[0], `"source":"label"`) {
		t.Errorf("the batch's prediction of the labelled name: %v", r)
	}
	dead := e.rdb.ZRange(ctx, "dead", 0, -1).Val()
	if len(dead) != 1 || !strings.Contains(dead[0], `"jid":"b3"`) || !strings.Contains(dead[0], `has label \"colour\"`) {
		t.Errorf("dead %v", dead)
	}
	if n := e.rdb.HLen(ctx, labels.Key).Val(); n != 2 {
		t.Errorf("%d labels, want 2", n)
	}
	if tr.begun != 5 || tr.ended != 5 || tr.processed != 5 || tr.fails != 0 || e.rdb.Get(ctx, "stat:failed").Val() != "1" {
		t.Errorf("tracker %+v, stat:failed %s: want 5 processed, 1 failed (counted with its dead-set entry)", tr, e.rdb.Get(ctx, "stat:failed").Val())
	}
	if st := e.h.Stats(); st.Labels != 2 || st.Dead != 1 {
		t.Errorf("stats %+v", st)
	}
}
