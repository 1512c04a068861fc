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
	if len(want.cache) != 5 || len(want.callbacks) != 6 || len(want.replies) != 2 || len(want.dead) != 1 || want.markers != 6 {
		// Six markers: five write-backs, and the poison job's dead-set entry.
		t.Fatalf("single-job runs left %d cache entries, %d callbacks, %d replies, %d dead, %d markers; the test expects 5, 6, 2, 1, 6",
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

	// Seven: the redelivered job's own single-job task first, then the
	// batch's six (a single-job task is a batch of one, tracked the same way).
	if tr.begun != 7 || tr.ended != 7 || tr.processed != 7 || tr.fails != 0 {
		t.Errorf("tracker %+v, want 7 jobs begun and ended, 7 processed (failures are counted with their entry)", tr)
	}
	for _, env := range []*handlerEnv{single, batch} {
		if n := env.rdb.Get(ctx, "stat:failed").Val(); n != "1" {
			t.Errorf("stat:failed = %q, want 1 (the poison job)", n)
		}
	}
	lines := logs.FilterMessage("job").All()[1:] // the first is dup's own run, alone
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
				if s, ok := a.(string); ok && s == "queues" { // the write-back script's KEYS[2]
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

// failRecord makes the script that records failures (sidekiq.Client.Fail)
// fail too: Redis refusing every write.
type failRecord struct{ failWriteBack }

func (failRecord) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			for _, a := range cmd.Args() {
				if s, ok := a.(string); ok && (s == "queues" || s == "retry") {
					err := errorReply("ERR injected failure of the write")
					cmd.SetErr(err)
					return err
				}
			}
		}
		return next(ctx, cmd)
	}
}

// retryEntries reads Sidekiq's retry set: jid → entry, and the scores.
func retryEntries(t *testing.T, rdb *redis.Client) (map[string]map[string]any, map[string]float64) {
	t.Helper()
	entries, scores := map[string]map[string]any{}, map[string]float64{}
	for _, z := range rdb.ZRangeWithScores(context.Background(), "retry", 0, -1).Val() {
		var m map[string]any
		if err := json.Unmarshal([]byte(z.Member.(string)), &m); err != nil {
			t.Fatal(err)
		}
		jid := fmt.Sprint(m["jid"])
		if _, dup := entries[jid]; dup {
			t.Errorf("two retry entries for %s", jid)
		}
		entries[jid], scores[jid] = m, z.Score
	}
	return entries, scores
}

// A batch whose write-back fails puts each of its jobs where a Ruby Sidekiq
// server would: the jobs that may retry into Sidekiq's retry set (retry_count,
// error fields, failed_at, Sidekiq's backoff), the poison one into the dead
// set; and completes. Running it again (a crash after the entries were
// written, before the task completed) writes no second entry. If the entries
// cannot be written either, the task fails for asynq to retry it whole.
func TestHandlerBatchTransientFailureGoesToRetrySet(t *testing.T) {
	ctx := context.Background()
	raws := batchJobs()
	tr := &tracker{}
	core, logs := observer.New(zap.InfoLevel)
	e := newHandlerEnv(t, func(c *HandlerConfig) {
		c.Tracker = tr
		c.Logger = zap.New(core)
	})
	if err := e.run(raws[5]); err != nil { // b6 is done before the batch
		t.Fatal(err)
	}
	e.rdb.AddHook(failWriteBack{})
	before := float64(time.Now().UnixNano()) / 1e9
	if err := e.runBatch(ctx, raws); err != nil {
		t.Fatalf("batch with a failing write-back: %v, want nil once its jobs are in the retry set", err)
	}
	entries, scores := retryEntries(t, e.rdb)
	if len(entries) != 4 {
		t.Fatalf("retry set %v, want b1, b2, b3, b5", entries)
	}
	for _, jid := range []string{"b1", "b2", "b3", "b5"} {
		m := entries[jid]
		if m == nil || m["retry_count"] != float64(0) || m["error_class"] != ErrorClassTransient || m["failed_at"] == nil ||
			!strings.Contains(fmt.Sprint(m["error_message"]), "injected failure") || m["queue"] != "mask_predictions" {
			t.Errorf("%s: retry entry %v", jid, m)
		}
		if d := scores[jid] - before; d < 15 || d > 25 {
			t.Errorf("%s: due in %.1f s, want Sidekiq's first delay, 15–24 s", jid, d)
		}
	}
	dead := e.rdb.ZRange(ctx, "dead", 0, -1).Val()
	if len(dead) != 1 || !strings.Contains(dead[0], `"jid":"b4"`) || !strings.Contains(dead[0], ErrorClassInvalid) {
		t.Errorf("dead set %v, want the poison b4", dead)
	}
	if n := e.rdb.LLen(ctx, "queue:default").Val(); n != 1 { // b6's, from before
		t.Errorf("%d callbacks, want only the one from before the batch", n)
	}
	var outcomes []string
	for _, l := range logs.FilterMessage("job").All()[1:] { // the first line is b6's single run
		outcomes = append(outcomes, l.ContextMap()["jid"].(string)+"="+l.ContextMap()["outcome"].(string))
	}
	if want := []string{"b1=retrying", "b2=retrying", "b3=retrying", "b4=dead", "b5=retrying", "b6=duplicate"}; !slices.Equal(outcomes, want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}
	// Seven processed: b6's own single-job run before the batch, then the six.
	if tr.processed != 7 || tr.fails != 0 || e.rdb.Get(ctx, "stat:failed").Val() != "5" {
		t.Errorf("tracker %+v, stat:failed %s: want 7 processed, 5 failed counted with their entries", tr, e.rdb.Get(ctx, "stat:failed").Val())
	}
	if st := e.h.Stats(); st.Retrying != 4 || st.Dead != 1 || st.Poison != 1 {
		t.Errorf("stats %+v", st)
	}

	// The same task again: every job's delivery has ended (marker), nothing new.
	if err := e.runBatch(ctx, raws); err != nil {
		t.Fatal(err)
	}
	if again, _ := retryEntries(t, e.rdb); len(again) != 4 || e.rdb.ZCard(ctx, "dead").Val() != 1 || e.rdb.Get(ctx, "stat:failed").Val() != "5" {
		t.Errorf("after the same task ran again: %d retry entries, %d dead, stat:failed %s; want 4, 1, 5",
			len(again), e.rdb.ZCard(ctx, "dead").Val(), e.rdb.Get(ctx, "stat:failed").Val())
	}

	e2 := newHandlerEnv(t, nil)
	e2.rdb.AddHook(failRecord{})
	err := e2.runBatch(ctx, raws)
	if err == nil || errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "retry or dead set") {
		t.Errorf("batch whose failures cannot be recorded: %v, want an error asynq retries", err)
	}
	if n := e2.rdb.ZCard(ctx, "retry").Val() + e2.rdb.ZCard(ctx, "dead").Val(); n != 0 {
		t.Errorf("%d entries although nothing could be written", n)
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
// as it would alone and in Sidekiq: "retry": 0 in the dead set (retry_count
// 0), "retry": false nowhere; the others wait in the retry set.
func TestHandlerBatchFailureEndsNoRetryJobs(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, nil)
	e.rdb.AddHook(failWriteBack{})
	noRetry := []byte(strings.Replace(string(job("r0", "3M Aura")), `"retry":true`, `"retry":0`, 1))
	discard := []byte(strings.Replace(string(job("rf", "3M Aura")), `"retry":true`, `"retry":false`, 1))
	normal := job("r25", "3M Aura")
	if err := e.runBatch(ctx, [][]byte{noRetry, discard, normal}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := retryEntries(t, e.rdb); len(entries) != 1 || entries["r25"] == nil {
		t.Errorf("retry set %v, want only the job that may retry", entries)
	}
	dead := e.rdb.ZRange(ctx, "dead", 0, -1).Val()
	if len(dead) != 1 || !strings.Contains(dead[0], `"jid":"r0"`) || !strings.Contains(dead[0], ErrorClassTransient) ||
		!strings.Contains(dead[0], `"retry_count":0`) {
		t.Errorf("dead set %v, want r0 alone, out of retries after 1 failure", dead)
	}
	if st := e.h.Stats(); st.Discarded != 1 || st.Dead != 1 || st.Retrying != 1 || e.rdb.Get(ctx, "stat:failed").Val() != "3" {
		t.Errorf("stats %+v, stat:failed %s", st, e.rdb.Get(ctx, "stat:failed").Val())
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
// and records its jobs in the retry set while the task is still live; once
// the task's context has ended (shutdown, or asynq's deadline) it leaves the
// batch to asynq, which requeues or retries it whole.
func TestHandlerBatchDeadlineAndShutdown(t *testing.T) {
	e := newHandlerEnv(t, nil)
	e.rdb.AddHook(blockLookup{})
	raws := batchJobs()[:3]
	dctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if err := e.runBatch(dctx, raws); err != nil {
		t.Errorf("batch that ran into its deadline: %v, want nil once its jobs are in the retry set", err)
	}
	entries, _ := retryEntries(t, e.rdb)
	if len(entries) != 3 || !strings.Contains(fmt.Sprint(entries["b1"]["error_message"]), "deadline") {
		t.Errorf("retry set %v, want the 3 jobs, failed at the deadline", entries)
	}

	sctx, stop := context.WithCancel(context.Background())
	stop()
	raws = batchJobs()[3:]
	if err := e.runBatch(sctx, raws); err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Errorf("batch at shutdown: %v, want an error (asynq requeues it)", err)
	}
	if n := e.rdb.ZCard(context.Background(), "retry").Val() + e.rdb.ZCard(context.Background(), "dead").Val(); n != 3 {
		t.Errorf("batch at shutdown recorded %d failures", n-3)
	}
}

// One bad job in a batch fails alone: a batch holding one job of each bad
// kind beside good "retry": false, "retry": 0 and default jobs completes
// every good job (callback, reply, cache entry), and each bad one ends in the
// dead set with its own reason. A reply key of the wrong type is left as it
// was.
func TestBatchIsolatesEachBadJob(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, func(c *HandlerConfig) { c.MaxNames = 5 })
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
