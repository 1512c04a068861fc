package sidekiq

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"
)

func newTestScheduler(t testing.TB, rdb redis.UniversalClient, queues string, mut ...func(*SchedulerConfig)) *Scheduler {
	t.Helper()
	qs, err := ParseQueues(queues)
	if err != nil {
		t.Fatal(err)
	}
	cfg := SchedulerConfig{Redis: rdb, Queues: qs, Logger: zaptest.NewLogger(t)}
	for _, m := range mut {
		m(&cfg)
	}
	s, err := NewScheduler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// topLevel returns the raw bytes of a top-level member of a JSON object.
func topLevel(t testing.TB, raw, key string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return string(m[key])
}

func TestSchedulerMovesDueEntriesOfOurQueuesOnly(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	now := float64(time.Now().UnixNano()) / 1e9
	sched7 := string(readFixture(t, "sidekiq73_scheduled.json")) // no enqueued_at, queue mask_predict
	sched8 := `{"retry":true,"queue":"mask_predict","class":"MaskNamePredictJob","args":["Later8"],"jid":"4003d34add801238de8072d8","created_at":1795936334037}`
	future := `{"retry":true,"queue":"mask_predict","class":"MaskNamePredictJob","args":["Future"],"jid":"ffffffffffffffffffffffff","created_at":1795936334.5}`
	otherDue := `{"retry":true,"queue":"default","class":"RailsJob","args":[1],"jid":"dddddddddddddddddddddddd","created_at":1795936334.5}`
	retry7 := string(readFixture(t, "sidekiq73_retry_entry.json")) // has an old enqueued_at
	otherRetry := `{"retry":true,"queue":"default","class":"RailsJob","args":[2],"jid":"eeeeeeeeeeeeeeeeeeeeeeee","created_at":1795936334.5,"enqueued_at":1795936334.5,"error_class":"E","failed_at":1795936334.6,"retry_count":0}`
	garbage := `not a job`
	rdb.ZAdd(ctx, "schedule",
		redis.Z{Score: now - 10, Member: sched7}, redis.Z{Score: now - 5, Member: sched8},
		redis.Z{Score: now + 3600, Member: future}, redis.Z{Score: now - 20, Member: otherDue}, redis.Z{Score: now - 30, Member: garbage})
	rdb.ZAdd(ctx, "retry", redis.Z{Score: now - 1, Member: retry7}, redis.Z{Score: now - 2, Member: otherRetry})

	s := newTestScheduler(t, rdb, "mask_predict")
	moved, err := s.Poll(ctx)
	if err != nil || moved != 3 {
		t.Fatalf("Poll = %d, %v; want 3 moved", moved, err)
	}
	if ok, _ := rdb.SIsMember(ctx, "queues", "mask_predict").Result(); !ok {
		t.Error("queue not added to the queues set")
	}
	got, _ := rdb.LRange(ctx, "queue:mask_predict", 0, -1).Result()
	if len(got) != 3 {
		t.Fatalf("queue:mask_predict = %v", got)
	}
	// Entries are pushed in score order per set (schedule first), LPUSH: newest at the left.
	for i, orig := range []string{sched7, sched8, retry7} {
		pushed := got[len(got)-1-i]
		enq := topLevel(t, pushed, "enqueued_at")
		millis := orig == sched8
		if millis == strings.Contains(enq, ".") || enq == "" {
			t.Errorf("enqueued_at %s in %s: wrong style for the payload", enq, pushed)
		}
		want, _ := setFields([]byte(orig), field{"enqueued_at", []byte(enq)})
		if pushed != string(want) {
			t.Errorf("pushed\n %s\nwant the entry with only enqueued_at changed:\n %s", pushed, want)
		}
		j, err := ParseJob([]byte(pushed))
		if err != nil || time.Since(j.EnqueuedAt) > time.Minute || time.Since(j.EnqueuedAt) < 0 {
			t.Errorf("pushed job: %+v, %v", j, err)
		}
	}
	left, _ := rdb.ZRange(ctx, "schedule", 0, -1).Result()
	if strings.Join(left, "|") != strings.Join([]string{garbage, otherDue, future}, "|") {
		t.Errorf("schedule left = %v", left)
	}
	if left, _ := rdb.ZRange(ctx, "retry", 0, -1).Result(); len(left) != 1 || left[0] != otherRetry {
		t.Errorf("retry left = %v", left)
	}
	if n, _ := rdb.Exists(ctx, "queue:default").Result(); n != 0 {
		t.Error("another queue's entry was moved")
	}
}

func TestSchedulerSkipsManyForeignEntriesAhead(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	now := float64(time.Now().Unix())
	var zs []redis.Z
	for i := range 55 {
		zs = append(zs, redis.Z{Score: now - 100 + float64(i)/100, Member: fmt.Sprintf(`{"queue":"default","class":"R","args":[%d],"jid":"f%d"}`, i, i)})
	}
	for i := range 5 {
		zs = append(zs, redis.Z{Score: now - 50 + float64(i), Member: fmt.Sprintf(`{"queue":"mask_predictions","class":"M","args":["m%d"],"jid":"o%d","created_at":1795936334.5}`, i, i)})
	}
	rdb.ZAdd(ctx, "schedule", zs...)
	s := newTestScheduler(t, rdb, "mask_predictions", func(c *SchedulerConfig) { c.BatchSize = 10 })
	if moved, err := s.Poll(ctx); err != nil || moved != 5 {
		t.Fatalf("Poll = %d, %v; want 5", moved, err)
	}
	if n, _ := rdb.ZCard(ctx, "schedule").Result(); n != 55 {
		t.Errorf("schedule has %d entries, want the 55 foreign ones", n)
	}
}

// TestSchedulerConcurrentPollers: several pollers (as several sidecars, or a sidecar next
// to Ruby Sidekiq's poller) move every due entry exactly once.
func TestSchedulerConcurrentPollers(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	now := float64(time.Now().Unix())
	const n = 300
	var zs []redis.Z
	for i := range n {
		zs = append(zs, redis.Z{Score: now - float64(i)/10, Member: fmt.Sprintf(`{"queue":"mask_predictions","class":"M","args":["m%d"],"jid":"%024d","created_at":1795936334.5}`, i, i)})
	}
	rdb.ZAdd(ctx, "retry", zs...)
	var total atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		s := newTestScheduler(t, rdb, "mask_predictions", func(c *SchedulerConfig) { c.BatchSize = 7 })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				m, err := s.Poll(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				total.Add(int64(m))
			}
		}()
	}
	wg.Wait()
	items, _ := rdb.LRange(ctx, "queue:mask_predictions", 0, -1).Result()
	seen := map[string]bool{}
	for _, it := range items {
		seen[topLevel(t, it, "jid")] = true
	}
	if total.Load() != n || len(items) != n || len(seen) != n {
		t.Errorf("moved %d, queue has %d (%d distinct), want %d each", total.Load(), len(items), len(seen), n)
	}
}

func TestSchedulerRunsPeriodically(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	s := newTestScheduler(t, rdb, "mask_predictions", func(c *SchedulerConfig) { c.Interval = 30 * time.Millisecond })
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	_, err := NewClient(rdb).Push(ctx, "mask_predictions", "M", []any{"soon"}, WithAt(time.Now().Add(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the scheduled job in its queue", func() bool { return llen(rdb, "queue:mask_predictions") == 1 })
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err == nil {
		t.Error("second Shutdown succeeded")
	}
	if _, err := NewScheduler(SchedulerConfig{}); err == nil {
		t.Error("no Redis accepted")
	}
	if _, err := NewScheduler(SchedulerConfig{Redis: rdb, BatchSize: 10, MaxScan: 5}); err == nil {
		t.Error("MaxScan < BatchSize accepted")
	}
}

// TestSchedulerWithRubyPerformAt: jobs Ruby's Sidekiq client scheduled with "at" reach
// their queue, and Sidekiq's API reads them there.
func TestSchedulerWithRubyPerformAt(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	var jids map[string]any
	if err := json.Unmarshal(runRuby(t, "push_jobs.rb", "mask_predictions", "0", "with_scheduled"), &jids); err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, "queue:mask_predictions") // keep only what the scheduler moves
	s := newTestScheduler(t, rdb, "mask_predictions")
	if moved, err := s.Poll(ctx); err != nil || moved != 1 {
		t.Fatalf("Poll = %d, %v; want 1 (the due job of our queue)", moved, err)
	}
	var got struct {
		Queue []struct {
			JID        string
			Args       []any
			EnqueuedAt float64 `json:"enqueued_at"`
		}
		Scheduled []string
	}
	out := runRuby(t, "read_back.rb", "mask_predictions")
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Queue) != 1 || got.Queue[0].JID != jids["scheduled_due"] || time.Since(time.Unix(int64(got.Queue[0].EnqueuedAt), 0)) > time.Minute {
		t.Errorf("Sidekiq::Queue after the move: %s", out)
	}
	if len(got.Scheduled) != 2 {
		t.Errorf("Sidekiq::ScheduledSet keeps the future job and the other queue's: %v", got.Scheduled)
	}
}
