package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// labelPushScript pushes MaskLabelJob jobs with Ruby's real Sidekiq client
// (and the Rails kit's MaskPredictor.label) and prints {"what": jid}.
//
//	ruby push.rb backlog|kit|one
const labelPushScript = `
require "json"
require "securerandom"
require "time"
require "sidekiq"
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), size: 2 } }
require File.join(ENV.fetch("KIT"), "mask_predictor")

Q = "mask_predictions"
def push(args, extra = {})
  Sidekiq::Client.push({ "class" => "MaskLabelJob", "queue" => Q, "args" => args }.merge(extra))
end

jids = {}
case ARGV.fetch(0)
when "backlog"
  jids["plain"] = push(["3M Aura 9205+ N95", [{ "3M" => "brand" }, { "Aura" => "model" }, { "9205+" => "model" }, { "N95" => "filter_type" }]])
  jids["labelled_by"] = push(["Moldex 2200 N95", [{ "Moldex" => "brand" }, { "2200" => "model" }, { "N95" => "filter_type" }], "ops@example.com"], "retry" => 3)
  # ActiveJob's adapter (Rails is not installed here): the JobWrapper payload it writes
  # for MaskLabelJob.perform_later(name, [{token => label}...], "aj").
  jids["activejob"] = Sidekiq::Client.push(
    "class" => "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper", "wrapped" => "MaskLabelJob", "queue" => Q,
    "args" => [{ "job_class" => "MaskLabelJob", "job_id" => SecureRandom.uuid, "provider_job_id" => nil,
                 "queue_name" => Q, "priority" => nil,
                 "arguments" => ["Honeywell DF300 Small",
                                 [{ "Honeywell" => "brand", "_aj_symbol_keys" => [] },
                                  { "DF300" => "model", "_aj_symbol_keys" => [] },
                                  { "Small" => { "_aj_serialized" => "ActiveJob::Serializers::SymbolSerializer", "value" => "size" },
                                    "_aj_symbol_keys" => [] }],
                                 "aj"],
                 "executions" => 0, "exception_executions" => {}, "locale" => "en", "timezone" => "UTC",
                 "enqueued_at" => Time.now.utc.iso8601 }])
  # A prediction of a name labelled just before it, in the same backlog.
  jids["predict"] = Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => Q, "args" => ["3m AURA 9205+ n95", 5])
  jids["bad_token"] = push(["3M Aura", [{ "3M" => "brand" }, { "Aurora" => "model" }]])
  jids["bad_label"] = push(["3M Aura", [{ "3M" => "brand" }, { "Aura" => "colour" }]])
  jids["bad_empty"] = push(["", []])
  big = "x" * (1 << 20)
  jids["bad_big"] = push([big, [{ big => "model" }]])
  jids["bad_arity"] = push(["3M Aura"])
  jids["bad_shape"] = push(["3M Aura", { "3M" => "brand", "Aura" => "model" }])
when "kit"
  jids["kit"] = MaskPredictor.label("Zimi ZM9233 Kids", [{ "Zimi" => "brand" }, { "ZM9233" => :model }, { Kids: :misc }], labelled_by: "kit")
when "one"
  jids["one"] = push(["3M Aura", [{ "3M" => "brand" }, { "Aura" => "model" }]])
end
puts JSON.generate(jids)
`

// rubyLabelPush runs labelPushScript with the given mode and returns its jids.
func rubyLabelPush(t *testing.T, ruby, redisURL, mode string) map[string]string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "push.rb")
	if err := os.WriteFile(script, []byte(labelPushScript), 0o644); err != nil {
		t.Fatal(err)
	}
	kit, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "rails"))
	cmd := exec.Command(ruby, script, mode)
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL, "KIT="+kit)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ruby push.rb %s: %v\n%s", mode, err, stderr.String())
	}
	var jids map[string]string
	if err := json.Unmarshal(out, &jids); err != nil {
		t.Fatalf("ruby push.rb %s printed %q: %v", mode, out, err)
	}
	return jids
}

type deadEntry struct {
	JID          string `json:"jid"`
	Class        string `json:"class"`
	ErrorClass   string `json:"error_class"`
	ErrorMessage string `json:"error_message"`
}

func deadEntries(t *testing.T, rdb *redis.Client) map[string]deadEntry {
	t.Helper()
	out := map[string]deadEntry{}
	for _, d := range rdb.ZRange(context.Background(), "dead", 0, -1).Val() {
		var e deadEntry
		if err := json.Unmarshal([]byte(d), &e); err != nil {
			t.Fatalf("dead entry %.200s: %v", d, err)
		}
		out[e.JID] = e
	}
	return out
}

// TestLabelJobFromRuby: MaskLabelJob jobs pushed by Ruby's real Sidekiq client
// (plain, with labelled_by, ActiveJob-wrapped, through the Rails kit's
// MaskPredictor.label) are stored by `maskpredictor worker` (label hash, cache
// entry with source label) and leave no retry, dead or callback entry; bad
// ones end in the dead set with their reason and store nothing. The backlog
// is pushed before the worker starts, so it runs in batch tasks; the kit's
// job comes alone.
func TestLabelJobFromRuby(t *testing.T) {
	ruby := redistest.RequireRubySidekiq(t)
	rs := redistest.Start(t, redistest.Options{})
	rdb := rs.Client()
	ctx := context.Background()

	jids := rubyLabelPush(t, ruby, rs.URL, "backlog")
	stderr, stop := startWorkerMain(t, map[string]string{"REDIS_URL": rs.URL}, "--callback-class", "MaskPredictionResultJob")

	good := map[string]struct{ name, by string }{
		"plain":       {"3M Aura 9205+ N95", ""},
		"labelled_by": {"Moldex 2200 N95", "ops@example.com"},
		"activejob":   {"Honeywell DF300 Small", "aj"},
	}
	bad := map[string]string{
		"bad_token": `breakdown token 1 is "Aurora", the tokenizer's is "Aura"`,
		"bad_label": `token 1 "Aura" has label "colour"`,
		"bad_empty": "mask name is empty",
		"bad_big":   "over the limit of 1048576",
		"bad_arity": "MaskLabelJob args has 1 elements",
		"bad_shape": "args[1] must be the breakdown",
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the backlog", func() bool {
		return rdb.HLen(ctx, labels.Key).Val() == int64(len(good)) && rdb.ZCard(ctx, "dead").Val() == int64(len(bad)) &&
			rdb.LLen(ctx, "queue:default").Val() == 1 && rdb.LLen(ctx, sidekiq.QueueKey(sidekiq.DefaultQueue)).Val() == 0
	})

	// The backlog went through a batch task (asynq keeps completed tasks for
	// their Retention, under asynq:{<queue>}:t:<task id>; batch ids start with
	// "batch-").
	if keys := rdb.Keys(ctx, "asynq:{mask_predictions}:t:batch-*").Val(); len(keys) == 0 {
		t.Error("no batch task: the backlog did not take the batch path")
	}

	checkStored := func(what, name, by string) {
		t.Helper()
		norm := predictor.Normalize(name)
		b, err := rdb.HGet(ctx, labels.Key, norm).Bytes()
		if err != nil {
			t.Errorf("%s: no label for %q: %v", what, norm, err)
			return
		}
		var l labels.Label
		if err := l.UnmarshalJSON(b); err != nil || l.MaskName != name || l.LabelledBy != by || l.Source != labels.SourceSidekiq ||
			len(l.Breakdown) != len(predictor.Tokenize(name)) || l.LabelledAt.IsZero() {
			t.Errorf("%s: stored %s (%v)", what, b, err)
		}
		var entry map[string]any
		v, err := rdb.Get(ctx, "maskpredictor:prediction:"+norm).Bytes()
		if err != nil || json.Unmarshal(v, &entry) != nil || entry["source"] != "label" || entry["model_version"] != labels.ModelVersion {
			t.Errorf("%s: cache entry %s (%v)", what, v, err)
		}
	}
	for what, g := range good {
		checkStored(what, g.name, g.by)
	}
	if l, _ := rdb.HGet(ctx, labels.Key, "honeywell df300 small").Result(); !strings.Contains(l, `{"Small":"size"}`) {
		t.Errorf("ActiveJob Symbol label not unwrapped: %s", l)
	}

	dead := deadEntries(t, rdb)
	for what, reason := range bad {
		e, ok := dead[jids[what]]
		if !ok {
			t.Errorf("%s: jid %s not in the dead set", what, jids[what])
			continue
		}
		if e.Class != "MaskLabelJob" || e.ErrorClass != sidekiq.PoisonErrorClass || !strings.Contains(e.ErrorMessage, reason) {
			t.Errorf("%s: dead entry %+v, want %s with a reason containing %q", what, e, sidekiq.PoisonErrorClass, reason)
		}
	}
	for what := range good {
		if _, ok := dead[jids[what]]; ok {
			t.Errorf("%s is in the dead set", what)
		}
	}
	if n := rdb.ZCard(ctx, "retry").Val(); n != 0 {
		t.Errorf("%d retry entries", n)
	}
	// The one callback is the prediction's, answered by the label stored
	// before it.
	cbs := rdb.LRange(ctx, "queue:default", 0, -1).Val()
	if len(cbs) != 1 || !strings.Contains(cbs[0], `"jid":"`+jids["predict"]+`"`) || !strings.Contains(cbs[0], `"source":"label"`) {
		t.Errorf("callbacks %v", cbs)
	}

	// Through the Rails kit, to a running worker (a single-job task).
	kit := rubyLabelPush(t, ruby, rs.URL, "kit")
	waitFor("the kit's label", func() bool { return rdb.HExists(ctx, labels.Key, "zimi zm9233 kids").Val() })
	checkStored("kit", "Zimi ZM9233 Kids", "kit")

	// One log line per label job, marked as such (written just after the
	// label is stored, so waited for).
	labelLines := func() int {
		var lines int
		for _, line := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(line, `"msg":"job"`) && strings.Contains(line, `"label":true`) && strings.Contains(line, `"outcome":"ok"`) {
				lines++
			}
		}
		return lines
	}
	waitFor("the kit's job's log line", func() bool { return labelLines() >= len(good)+1 })
	if lines := labelLines(); lines != len(good)+1 {
		t.Errorf("%d ok label job lines, want %d\n%s", lines, len(good)+1, stderr.String())
	}
	if code := stop(); code != 0 {
		t.Errorf("worker exit %d", code)
	}
	if n := rdb.ZCard(ctx, "dead").Val(); n != int64(len(bad)) {
		t.Errorf("%d dead entries after the kit's job (%s), want %d", n, kit["kit"], len(bad))
	}
}

// TestLabelJobNotConfigured: with --classes naming only MaskPredictionJob, a
// MaskLabelJob is a foreign job: dead with MaskPredictor::ForeignJob, never
// stored.
func TestLabelJobNotConfigured(t *testing.T) {
	ruby := redistest.RequireRubySidekiq(t)
	rs := redistest.Start(t, redistest.Options{})
	rdb := rs.Client()
	ctx := context.Background()
	startWorkerMain(t, map[string]string{"REDIS_URL": rs.URL}, "--classes", "MaskPredictionJob")
	jid := rubyLabelPush(t, ruby, rs.URL, "one")["one"]
	deadline := time.Now().Add(15 * time.Second)
	for rdb.ZCard(ctx, "dead").Val() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	e, ok := deadEntries(t, rdb)[jid]
	if !ok || e.ErrorClass != sidekiq.ForeignErrorClass || !strings.Contains(e.ErrorMessage, `class "MaskLabelJob" is not run`) {
		t.Errorf("dead entry %+v (found %v)", e, ok)
	}
	if n := rdb.HLen(ctx, labels.Key).Val(); n != 0 {
		t.Errorf("%d labels stored", n)
	}
}
