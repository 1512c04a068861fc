package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// tracker records what the handler tells the Busy page and the stats.
type tracker struct {
	mu               sync.Mutex
	begun, ended     int
	processed, fails int
}

func (tr *tracker) Begin([]byte) func() {
	tr.mu.Lock()
	tr.begun++
	tr.mu.Unlock()
	return func() { tr.mu.Lock(); tr.ended++; tr.mu.Unlock() }
}

func (tr *tracker) RecordResult(failed bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.processed++
	if failed {
		tr.fails++
	}
}

// batchJobs is a batch with one of each kind of job: plain, with an id,
// several names with a reply, a cache hit, a poison one and a duplicate
// delivery (its done marker is set before the run).
func batchJobs() [][]byte {
	return [][]byte{
		job("b1", "3M Aura 9205+ N95"),
		job("b2", "Honeywell DF300 N95 Small", 17),
		job("b3", map[string]any{"mask_names": []string{"Moldex 2200 N95", "BNX H95 Medium Black"}, "reply_to": "maskpredictor:reply:b3"}),
		job("b4", " - , "), // no tokens: poison
		job("b5", "3M aura 9205+ n95"),
		job("b6", "Kimberly Clark N95 Pouch"),
	}
}

func (e *handlerEnv) runBatch(ctx context.Context, raws [][]byte) error {
	return e.h.ProcessTask(ctx, asynq.NewTask(sidekiq.BatchTaskType, sidekiq.EncodeBatch(raws)))
}

// snapshot is what a run left in Redis, without the timestamps.
type snapshot struct {
	cache     map[string]string
	callbacks []string // args of the callback jobs, sorted
	replies   []string
	dead      []string // jid: error_message
	markers   int
}

func takeSnapshot(t *testing.T, rdb *redis.Client) snapshot {
	t.Helper()
	ctx := context.Background()
	s := snapshot{cache: map[string]string{}}
	keys, _ := rdb.Keys(ctx, "maskpredictor:prediction:*").Result()
	for _, k := range keys {
		s.cache[k] = rdb.Get(ctx, k).Val()
	}
	for _, cb := range rdb.LRange(ctx, "queue:default", 0, -1).Val() {
		var j struct {
			JID  string          `json:"jid"`
			Args json.RawMessage `json:"args"`
		}
		if err := json.Unmarshal([]byte(cb), &j); err != nil {
			t.Fatal(err)
		}
		s.callbacks = append(s.callbacks, j.JID+" "+string(j.Args))
	}
	slices.Sort(s.callbacks)
	s.replies = rdb.LRange(ctx, "maskpredictor:reply:b3", 0, -1).Val()
	for _, d := range rdb.ZRange(ctx, "dead", 0, -1).Val() {
		var j struct{ JID, ErrorMessage string }
		var m map[string]any
		_ = json.Unmarshal([]byte(d), &m)
		j.JID, _ = m["jid"].(string)
		j.ErrorMessage, _ = m["error_message"].(string)
		s.dead = append(s.dead, j.JID+": "+j.ErrorMessage)
	}
	slices.Sort(s.dead)
	markers, _ := rdb.Keys(ctx, "maskpredictor:done:*").Result()
	s.markers = len(markers)
	return s
}

// A batch task leaves exactly what its jobs run one by one leave: the same
// cache entries, callback jobs (jids included), replies, dead-set entries
// and done markers; and each job gets its own log line and Busy-page entry.
func TestHandlerBatchEqualsSingleJobs(t *testing.T) {
	ctx := context.Background()
	raws := batchJobs()
	dup := raws[5]

	single := newHandlerEnv(t, nil)
	for i, raw := range raws {
		if err := single.run(raw); err != nil { // the poison one (3) ends in the dead set
			t.Fatalf("single job %d: %v", i, err)
		}
	}
	if err := single.run(dup); err != nil { // redelivery: no second callback
		t.Fatal(err)
	}
	want := takeSnapshot(t, single.rdb)

	tr := &tracker{}
	core, logs := observer.New(zap.InfoLevel)
	batch := newHandlerEnv(t, func(c *HandlerConfig) { c.Tracker = tr; c.Logger = zap.New(core) })
	if err := batch.run(dup); err != nil { // delivered once before, alone
		t.Fatal(err)
	}
	if err := batch.runBatch(ctx, raws); err != nil {
		t.Fatalf("batch: %v", err)
	}
	got := takeSnapshot(t, batch.rdb)
	if len(want.cache) != 5 || len(want.callbacks) != 6 || len(want.replies) != 2 || len(want.dead) != 1 || want.markers != 5 {
		t.Fatalf("single-job runs left %d cache entries, %d callbacks, %d replies, %d dead, %d markers; the test expects 5, 6, 2, 1, 5",
			len(want.cache), len(want.callbacks), len(want.replies), len(want.dead), want.markers)
	}
	switch {
	case !maps.Equal(got.cache, want.cache):
		t.Errorf("cache entries differ:\nbatch  %v\nsingle %v", got.cache, want.cache)
	case !slices.Equal(got.callbacks, want.callbacks):
		t.Errorf("callbacks differ:\nbatch  %q\nsingle %q", got.callbacks, want.callbacks)
	case !slices.Equal(got.replies, want.replies):
		t.Errorf("replies differ:\nbatch  %q\nsingle %q", got.replies, want.replies)
	case !slices.Equal(got.dead, want.dead):
		t.Errorf("dead set differs:\nbatch  %q\nsingle %q", got.dead, want.dead)
	case got.markers != want.markers:
		t.Errorf("%d done markers, single jobs left %d", got.markers, want.markers)
	}

	if tr.begun != 6 || tr.ended != 6 || tr.processed != 6 || tr.fails != 1 {
		t.Errorf("tracker %+v, want 6 jobs begun and ended, 6 processed, 1 failed", tr)
	}
	lines := logs.FilterMessage("job").All()
	var seen []string
	for _, l := range lines {
		f := l.ContextMap()
		seen = append(seen, f["jid"].(string)+"="+f["outcome"].(string))
	}
	wantLines := []string{"b1=ok", "b2=ok", "b3=ok", "b4=dead", "b5=ok", "b6=ok"}
	if !slices.Equal(seen, wantLines) {
		t.Errorf("log lines %v, want one per job %v", seen, wantLines)
	}
	if f := lines[len(lines)-1].ContextMap(); f["duplicate_delivery"] != true {
		t.Errorf("the redelivered job's line does not say so: %v", f)
	}
	if f := lines[4].ContextMap(); f["cache_hit"] != true {
		t.Errorf("b5 (same name as b1) was not a cache hit: %v", f)
	}
}

// failWriteBack makes the write-back script fail with an error reply, as a
// Redis error would (not a lost connection, which the handler waits out).
type failWriteBack struct{}

type errorReply string

func (e errorReply) Error() string { return string(e) }
func (errorReply) RedisError()     {}

func (failWriteBack) DialHook(next redis.DialHook) redis.DialHook { return next }
func (failWriteBack) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			for _, a := range cmd.Args() {
				if s, ok := a.(string); ok && strings.HasPrefix(s, "maskpredictor:done:") {
					err := errorReply("ERR injected failure of the write-back")
					cmd.SetErr(err)
					return err
				}
			}
		}
		return next(ctx, cmd)
	}
}
func (failWriteBack) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A batch whose write-back fails hands its jobs, the poison ones too, to
// asynq one by one (Split) and ends without error. If the split fails too,
// the batch is retried whole.
func TestHandlerBatchSplitsOnTransientFailure(t *testing.T) {
	ctx := context.Background()
	raws := batchJobs()
	var splitQueue string
	var split [][]byte
	var splitErr error
	tr := &tracker{}
	core, logs := observer.New(zap.InfoLevel)
	e := newHandlerEnv(t, func(c *HandlerConfig) {
		c.Tracker = tr
		c.Logger = zap.New(core)
		c.Split = func(_ context.Context, q string, r [][]byte) error {
			splitQueue, split = q, r
			return splitErr
		}
	})
	if err := e.run(raws[5]); err != nil { // b6 is done before the batch
		t.Fatal(err)
	}
	e.rdb.AddHook(failWriteBack{})
	qctx := ctx // outside asynq there is no queue name: the jobs' own is used
	if err := e.runBatch(qctx, raws); err != nil {
		t.Fatalf("batch with a failing write-back: %v, want nil after the split", err)
	}
	// The poison job too (its own task sends it to the dead set, once), and
	// b6, whose write-back happened before: whether it did is checked only
	// as part of the write, which failed; its own task will find its marker.
	want := raws
	if splitQueue != "mask_predictions" || !slices.EqualFunc(split, want, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Errorf("split into %s: %q, want b1–b6", splitQueue, split)
	}
	if n := e.rdb.ZCard(ctx, "dead").Val(); n != 0 {
		t.Errorf("the batch wrote %d dead-set entries itself", n)
	}
	if n := e.rdb.LLen(ctx, "queue:default").Val(); n != 1 { // b6's, from before
		t.Errorf("%d callbacks, want only the one from before the batch", n)
	}
	var outcomes []string
	for _, l := range logs.FilterMessage("job").All() { // the single run before has no middleware, no line
		outcomes = append(outcomes, l.ContextMap()["outcome"].(string))
	}
	if !slices.Equal(outcomes, []string{"split", "split", "split", "split", "split", "split"}) {
		t.Errorf("outcomes %v", outcomes)
	}
	if tr.processed != 0 || tr.fails != 0 {
		t.Errorf("tracker %+v: split jobs must be counted by their own tasks only", tr)
	}

	splitErr = errors.New("asynq unreachable")
	err := e.runBatch(qctx, raws)
	if err == nil || errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "handing the batch's jobs over as single tasks failed") {
		t.Errorf("batch whose split fails: %v, want an error asynq retries", err)
	}
}

func TestHandlerBatchUndecodable(t *testing.T) {
	e := newHandlerEnv(t, nil)
	err := e.h.ProcessTask(context.Background(), asynq.NewTask(sidekiq.BatchTaskType, []byte("mpbatch1\n5:{}\n")))
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, sidekiq.ErrBatchFormat) {
		t.Errorf("undecodable batch: %v, want SkipRetry (archived, visible in asynqmon)", err)
	}
}

// On shutdown, pending batch tasks go back to their Sidekiq queue as their
// jobs, exact bytes, in order (the oldest at the pop end).
func TestReturnPendingUnpacksBatches(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, nil)
	srv, err := New(Config{Redis: e.rdb, Handler: HandlerConfig{Predictor: CRFPredictor(e.crf)}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.insp.Close()
	c := asynq.NewClientFromRedisClient(e.rdb)
	raws := batchJobs()
	for _, task := range []*asynq.Task{
		asynq.NewTask(sidekiq.BatchTaskType, sidekiq.EncodeBatch(raws[:3])),
		asynq.NewTask(sidekiq.TaskType, raws[3]),
		asynq.NewTask(sidekiq.BatchTaskType, sidekiq.EncodeBatch(raws[4:])),
	} {
		if _, err := c.Enqueue(task, asynq.Queue("mask_predictions")); err != nil {
			t.Fatal(err)
		}
	}
	n, err := srv.returnPending(ctx)
	if err != nil || n != 6 {
		t.Fatalf("returned %d jobs (%v), want 6", n, err)
	}
	// Sidekiq pops from the right: the list read right to left is the order
	// the jobs will run in again.
	got := e.rdb.LRange(ctx, "queue:mask_predictions", 0, -1).Val()
	slices.Reverse(got)
	var want []string
	for _, r := range raws {
		want = append(want, string(r))
	}
	if !slices.Equal(got, want) {
		t.Errorf("queue after returning, pop order:\n%q\nwant\n%q", got, want)
	}
	if p := e.rdb.LLen(ctx, "asynq:{mask_predictions}:pending").Val(); p != 0 {
		t.Errorf("%d tasks still pending in asynq", p)
	}
}

// BenchmarkHandlerBatch: one batch task of 20 distinct-name jobs with a
// callback, against a real redis-server (the per-job figure is ns/op / 20).
func BenchmarkHandlerBatch(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	rdb := srv.Client()
	h, err := NewHandler(HandlerConfig{Redis: rdb, Predictor: CRFPredictor(defaultCRF(b)), CallbackClass: "MaskPredictionCallbackJob"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	names := []string{"3M Aura 9205+ N95", "Honeywell DF300 N95 Small", "Moldex 2200 N95", "BNX H95 Medium Black", "Kimberly Clark N95 Pouch"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		raws := make([][]byte, 20)
		for k := range raws {
			raws[k] = job(fmt.Sprintf("j%d-%d", i, k), fmt.Sprintf("%s v%d", names[k%len(names)], i*20+k))
		}
		if err := h.ProcessTask(ctx, asynq.NewTask(sidekiq.BatchTaskType, sidekiq.EncodeBatch(raws))); err != nil {
			b.Fatal(err)
		}
	}
}

// A job whose retry setting allows no retry ends with the batch's failure,
// as it would alone: "retry": 0 in the dead set, "retry": false nowhere;
// it is not handed over for a second attempt.
func TestHandlerBatchFailureEndsNoRetryJobs(t *testing.T) {
	ctx := context.Background()
	var split [][]byte
	e := newHandlerEnv(t, func(c *HandlerConfig) {
		c.Split = func(_ context.Context, _ string, r [][]byte) error { split = r; return nil }
	})
	e.rdb.AddHook(failWriteBack{})
	noRetry := []byte(strings.Replace(string(job("r0", "3M Aura")), `"retry":true`, `"retry":0`, 1))
	discard := []byte(strings.Replace(string(job("rf", "3M Aura")), `"retry":true`, `"retry":false`, 1))
	normal := job("r25", "3M Aura")
	if err := e.runBatch(ctx, [][]byte{noRetry, discard, normal}); err != nil {
		t.Fatal(err)
	}
	if len(split) != 1 || string(split[0]) != string(normal) {
		t.Errorf("handed over %q, want only the job that may retry", split)
	}
	dead := e.rdb.ZRange(ctx, "dead", 0, -1).Val()
	if len(dead) != 1 || !strings.Contains(dead[0], `"jid":"r0"`) || !strings.Contains(dead[0], ErrorClassExhausted) ||
		!strings.Contains(dead[0], "failed 1 times") {
		t.Errorf("dead set %v, want r0 alone, exhausted after 1 failure", dead)
	}
	// Only once the others are handed over: if that fails, they all run
	// again with the batch, and nothing is in the dead set yet.
	e2 := newHandlerEnv(t, func(c *HandlerConfig) {
		c.Split = func(context.Context, string, [][]byte) error { return errors.New("asynq unreachable") }
	})
	e2.rdb.AddHook(failWriteBack{})
	if err := e2.runBatch(ctx, [][]byte{noRetry, discard, normal}); err == nil {
		t.Error("batch whose hand-over failed: nil, want an error (asynq retries it)")
	}
	if n := e2.rdb.ZCard(ctx, "dead").Val(); n != 0 {
		t.Errorf("%d dead-set entries although the batch will run again", n)
	}
}

// The same delivery in two batches running at the same time (a regrouped
// crash recovery, a job pushed twice with the same bytes): its callback is
// written once, and the other jobs' write-backs are not lost.
func TestHandlerConcurrentDuplicateDeliveries(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, nil)
	const rounds = 60
	for r := range rounds {
		x := job(fmt.Sprintf("x%d", r), fmt.Sprintf("3M Aura 9205+ N95 r%d", r))
		a := job(fmt.Sprintf("a%d", r), fmt.Sprintf("Moldex 2200 N95 r%d", r))
		b := job(fmt.Sprintf("b%d", r), fmt.Sprintf("BNX H95 Medium r%d", r))
		var wg sync.WaitGroup
		for _, batch := range [][][]byte{{x, a}, {x, b}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := e.runBatch(ctx, batch); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	counts := map[string]int{}
	for _, cb := range e.rdb.LRange(ctx, "queue:default", 0, -1).Val() {
		var j struct {
			Args []struct{ JID string } `json:"args"`
		}
		if err := json.Unmarshal([]byte(cb), &j); err != nil {
			t.Fatal(err)
		}
		counts[j.Args[0].JID]++
	}
	for r := range rounds {
		for _, id := range []string{"x", "a", "b"} {
			if n := counts[fmt.Sprintf("%s%d", id, r)]; n != 1 {
				t.Errorf("round %d: %d callbacks for %s%d, want 1", r, n, id, r)
			}
		}
	}
}

// blockLookup holds the cache lookup until its context ends: a slow Redis.
type blockLookup struct{}

func (blockLookup) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (blockLookup) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (blockLookup) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == "mget" {
			<-ctx.Done()
			return ctx.Err()
		}
		return next(ctx, cmds)
	}
}

// A batch whose work runs into the task's deadline stops a little before it
// and hands its jobs over while the task is still live; once the task's
// context has ended (shutdown, or asynq's deadline) it leaves the batch to
// asynq, which requeues or retries it whole.
func TestHandlerBatchDeadlineAndShutdown(t *testing.T) {
	var split [][]byte
	var splitCtxErr error
	e := newHandlerEnv(t, func(c *HandlerConfig) {
		c.Split = func(ctx context.Context, _ string, r [][]byte) error { split, splitCtxErr = r, ctx.Err(); return nil }
	})
	e.rdb.AddHook(blockLookup{})
	raws := batchJobs()[:3]
	dctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if err := e.runBatch(dctx, raws); err != nil {
		t.Errorf("batch that ran into its deadline: %v, want nil after handing over", err)
	}
	if len(split) != 3 || splitCtxErr != nil {
		t.Errorf("handed over %d jobs with a context error %v, want 3 before the deadline", len(split), splitCtxErr)
	}

	split = nil
	sctx, stop := context.WithCancel(context.Background())
	stop()
	if err := e.runBatch(sctx, raws); err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Errorf("batch at shutdown: %v, want an error (asynq requeues it)", err)
	}
	if split != nil {
		t.Errorf("batch at shutdown handed over %d jobs", len(split))
	}
}

// One bad job in a batch fails alone: a batch holding one job of each bad
// kind beside good "retry": false, "retry": 0 and default jobs completes
// every good job (callback, reply, cache entry), and each bad one ends in the
// dead set with its own reason (after its hand-over to a single-job task, as
// the Server's bridge does). A reply key of the wrong type is left as it was.
func TestBatchIsolatesEachBadJob(t *testing.T) {
	ctx := context.Background()
	var e *handlerEnv
	var handed [][]byte
	e = newHandlerEnv(t, func(c *HandlerConfig) {
		c.MaxNames = 5
		c.Split = func(_ context.Context, _ string, r [][]byte) error { handed = append(handed, r...); return nil }
	})
	if err := e.rdb.Set(ctx, "maskpredictor:reply:str", "mine", 0).Err(); err != nil {
		t.Fatal(err)
	}
	withRetry := func(raw []byte, retry string) []byte {
		return []byte(strings.Replace(string(raw), `"retry":true`, `"retry":`+retry, 1))
	}
	good := map[string][]byte{
		"g-false":   withRetry(job("g-false", map[string]any{"mask_name": "3M Aura 9205+ N95", "reply_to": "maskpredictor:reply:g1"}), "false"),
		"g-zero":    withRetry(job("g-zero", map[string]any{"mask_name": "Moldex 2200 N95", "reply_to": "maskpredictor:reply:g2"}), "0"),
		"g-default": job("g-default", map[string]any{"mask_name": "Honeywell DF300 N95", "reply_to": "maskpredictor:reply:g3"}),
	}
	bad := map[string]struct {
		raw    []byte
		reason string
	}{
		"x-wrongtype": {withRetry(job("x-wrongtype", map[string]any{"mask_name": "BNX H95", "reply_to": "maskpredictor:reply:str"}), "false"),
			"holds a Redis string, not a list"},
		"x-notokens": {withRetry(job("x-notokens", " - , "), "0"), "no tokens"},
		"x-toomany":  {job("x-toomany", map[string]any{"mask_names": []string{"a", "b", "c", "d", "e", "f"}}), "over the limit of 5"},
		"x-foreign":  {[]byte(`{"class":"UserMailerJob","jid":"x-foreign","args":["3M Aura"],"retry":false}`), `class "UserMailerJob" is not run`},
		"x-replyto":  {job("x-replyto", map[string]any{"mask_name": "3M Aura", "reply_to": "queue:default"}), "is not under"},
		"x-args":     {job("x-args", 1, 2, 3), "args has 3 elements"},
	}
	var raws [][]byte
	for _, k := range slices.Sorted(maps.Keys(good)) {
		raws = append(raws, good[k])
	}
	for _, k := range slices.Sorted(maps.Keys(bad)) {
		raws = append(raws, bad[k].raw)
	}
	if err := e.runBatch(ctx, raws); err != nil {
		t.Fatalf("batch: %v", err)
	}
	if len(handed) != len(bad) {
		t.Fatalf("%d jobs handed over, want the %d bad ones", len(handed), len(bad))
	}
	for _, raw := range handed { // their own single-job tasks
		if err := e.run(raw); err != nil {
			t.Errorf("single task: %v", err)
		}
	}

	// Every good job completed: a callback each, a reply each, a cache entry.
	cbs := e.rdb.LRange(ctx, "queue:default", 0, -1).Val()
	if len(cbs) != len(good) {
		t.Errorf("%d callbacks, want %d", len(cbs), len(good))
	}
	for jid := range good {
		n := 0
		for _, cb := range cbs {
			if strings.Contains(cb, `"jid":"`+jid+`"`) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d callbacks", jid, n)
		}
	}
	for _, k := range []string{"maskpredictor:reply:g1", "maskpredictor:reply:g2", "maskpredictor:reply:g3"} {
		if r := e.rdb.LRange(ctx, k, 0, -1).Val(); len(r) != 1 || !strings.Contains(r[0], `"breakdown"`) {
			t.Errorf("%s: %v", k, r)
		}
	}
	// Every bad job is dead alone, with its own reason; no good one is.
	dead := map[string]string{}
	for _, d := range e.rdb.ZRange(ctx, "dead", 0, -1).Val() {
		var m map[string]any
		if err := json.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		dead[fmt.Sprint(m["jid"])] = fmt.Sprint(m["error_message"])
	}
	if len(dead) != len(bad) {
		t.Errorf("dead set %v, want the %d bad jobs", dead, len(bad))
	}
	for jid, b := range bad {
		if !strings.Contains(dead[jid], b.reason) {
			t.Errorf("%s: dead with %q, want a reason containing %q", jid, dead[jid], b.reason)
		}
	}
	if v, ttl := e.rdb.Get(ctx, "maskpredictor:reply:str").Val(), e.rdb.TTL(ctx, "maskpredictor:reply:str").Val(); v != "mine" || ttl != -1 {
		t.Errorf("the wrong-type reply key was touched: %q ttl %v", v, ttl)
	}
	if ttl := e.rdb.TTL(ctx, "queue:default").Val(); ttl != -1 {
		t.Errorf("queue:default got a TTL: %v", ttl)
	}
	if st := e.h.Stats(); st.Dead != int64(len(bad)) || st.Discarded != 0 {
		t.Errorf("stats %+v", st)
	}
}
