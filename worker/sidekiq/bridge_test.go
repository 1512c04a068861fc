package sidekiq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

const testQueue = "mask_predictions"

// testBridgeConfig has short intervals so that recovery and shutdown happen in
// milliseconds, not the production tens of seconds.
func testBridgeConfig(t testing.TB, rdb redis.UniversalClient) BridgeConfig {
	return BridgeConfig{
		Redis:           rdb,
		Queues:          []QueueWeight{{Name: testQueue, Weight: 1}},
		MaxPending:      10_000,
		FetchTimeout:    100 * time.Millisecond,
		BeatInterval:    100 * time.Millisecond,
		AliveTTL:        2 * time.Second,
		RecoverInterval: 200 * time.Millisecond,
		MaxBackoff:      200 * time.Millisecond,
		Logger:          zaptest.NewLogger(t),
	}
}

func startBridge(t testing.TB, cfg BridgeConfig, setup ...func(*Bridge)) *Bridge {
	t.Helper()
	b, err := NewBridge(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(b)
	}
	if err := b.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.mu.Lock()
		running := b.state == 1
		b.mu.Unlock()
		if running && !b.killed.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := b.Shutdown(ctx); err != nil {
				t.Errorf("bridge shutdown: %v", err)
			}
		}
	})
	return b
}

func shutdownBridge(t testing.TB, b *Bridge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("bridge shutdown: %v", err)
	}
}

// pushRaw pushes payloads the way Sidekiq::Client does and returns them oldest first.
func pushRaw(t testing.TB, rdb redis.UniversalClient, q string, payloads ...string) {
	t.Helper()
	ctx := context.Background()
	for _, p := range payloads {
		if err := rdb.LPush(ctx, QueueKey(q), p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	rdb.SAdd(ctx, "queues", q)
}

// allTasks lists every asynq task of q, in any state.
func allTasks(t testing.TB, rdb redis.UniversalClient, q string) []*asynq.TaskInfo {
	t.Helper()
	in := asynq.NewInspectorFromRedisClient(rdb)
	var out []*asynq.TaskInfo
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		in.ListPendingTasks, in.ListActiveTasks, in.ListScheduledTasks, in.ListRetryTasks, in.ListArchivedTasks, in.ListCompletedTasks,
	} {
		tasks, err := list(q, asynq.PageSize(100_000))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tasks...)
	}
	return out
}

// waitIdle waits until nothing of q is left to run: its Sidekiq queue and b's in-flight
// list are empty, and asynq holds no task of q pending, running or waiting to be retried
// (one atomic read). They are read in the order a job moves through them, so a job on its
// way is seen in one of them.
func waitIdle(t testing.TB, rdb redis.UniversalClient, b *Bridge, q string) {
	t.Helper()
	in := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(10 * time.Second)
	for {
		queued, inflight := llen(rdb, QueueKey(q)), llen(rdb, b.keyInflight(b.Identity(), q))
		qi, err := in.GetQueueInfo(q)
		if err == nil && queued == 0 && inflight == 0 && qi.Pending == 0 && qi.Active == 0 && qi.Scheduled == 0 && qi.Retry == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still something to run after 10 s: queued %d, in flight %d, asynq %+v (%v)", queued, inflight, qi, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func llen(rdb redis.UniversalClient, key string) int64 {
	n, _ := rdb.LLen(context.Background(), key).Result()
	return n
}

// checkOneTaskPerDelivery asserts that asynq holds exactly one task per payload, with
// the payload's bytes, its delivery id, the job's retry limit and a 24 h retention.
func checkOneTaskPerDelivery(t testing.TB, rdb redis.UniversalClient, q string, payloads []string) {
	t.Helper()
	tasks := allTasks(t, rdb, q)
	if len(tasks) != len(payloads) {
		t.Fatalf("%d asynq tasks for %d deliveries", len(tasks), len(payloads))
	}
	byID := map[string]*asynq.TaskInfo{}
	for _, ti := range tasks {
		byID[ti.ID] = ti
	}
	for _, p := range payloads {
		j, err := ParseJob([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		ti := byID[j.TaskID()]
		switch {
		case ti == nil:
			t.Errorf("no task for %s", p)
		case string(ti.Payload) != p || ti.Type != TaskType || ti.Queue != q || ti.MaxRetry != j.Retry || ti.Retention != 10*time.Minute:
			t.Errorf("task %s: type=%s queue=%s max_retry=%d retention=%s payload=%s; want the raw job with max_retry %d",
				ti.ID, ti.Type, ti.Queue, ti.MaxRetry, ti.Retention, ti.Payload, j.Retry)
		}
	}
}

func TestAsynqPendingKeyLayout(t *testing.T) {
	rdb := newTestRedis(t)
	c := asynq.NewClientFromRedisClient(rdb)
	if _, err := c.Enqueue(asynq.NewTask(TaskType, []byte("{}")), asynq.Queue(testQueue)); err != nil {
		t.Fatal(err)
	}
	if n := llen(rdb, asynqPendingKey(testQueue)); n != 1 {
		t.Fatalf("LLEN %s = %d after one Enqueue: asynq changed its key layout, fix asynqPendingKey", asynqPendingKey(testQueue), n)
	}
}

func TestBridgeTransfersEveryJobOnceInOrder(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	c := NewClient(rdb)
	const n = 300
	for i := range n {
		var opts []PushOption
		switch i % 3 {
		case 1:
			opts = append(opts, WithRetry(i%7))
		case 2:
			opts = append(opts, WithoutRetry())
		}
		if _, err := c.Push(ctx, testQueue, "MaskPredictionJob", []any{fmt.Sprintf("mask %d", i), i}, opts...); err != nil {
			t.Fatal(err)
		}
	}
	payloads, _ := rdb.LRange(ctx, QueueKey(testQueue), 0, -1).Result()
	slices.Reverse(payloads) // oldest first
	cfg := testBridgeConfig(t, rdb)
	cfg.BatchSize = 7
	b := startBridge(t, cfg)
	waitFor(t, 10*time.Second, "all jobs transferred", func() bool { return b.Stats().Transferred == n })
	checkOneTaskPerDelivery(t, rdb, testQueue, payloads)
	// FIFO: asynq LPUSHes pending ids, so its list reversed is the transfer order.
	ids, _ := rdb.LRange(ctx, asynqPendingKey(testQueue), 0, -1).Result()
	slices.Reverse(ids)
	for i, p := range payloads {
		if j, _ := ParseJob([]byte(p)); ids[i] != j.TaskID() {
			t.Fatalf("task %d is %s, want %s: order not kept", i, ids[i], j.TaskID())
		}
	}
	if q, in := llen(rdb, QueueKey(testQueue)), llen(rdb, b.keyInflight(b.Identity(), testQueue)); q != 0 || in != 0 {
		t.Errorf("queue=%d inflight=%d after the transfer", q, in)
	}
	shutdownBridge(t, b)
	if ok, _ := rdb.SIsMember(ctx, b.keyBridges(), b.Identity()).Result(); ok {
		t.Error("still registered after Shutdown")
	}
	if n, _ := rdb.Exists(ctx, b.keyAlive(b.Identity()), b.keyQueuesOf(b.Identity())).Result(); n != 0 {
		t.Error("alive key or queue set left after Shutdown")
	}
}

// TestBridgeRubyPushedJobs: jobs pushed by the real Sidekiq client (plain, retry options,
// every args form, ActiveJob wrapper payloads, a bulk push) each become one asynq task.
func TestBridgeRubyPushedJobs(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	var jids map[string]any
	out := runRuby(t, "push_jobs.rb", testQueue, "200")
	if err := json.Unmarshal(out, &jids); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	payloads, _ := rdb.LRange(ctx, QueueKey(testQueue), 0, -1).Result()
	if len(payloads) != 206 {
		t.Fatalf("Ruby pushed %d jobs, want 206", len(payloads))
	}
	wantRetry := map[string]int{"plain": 25, "name_and_id": 3, "hash": 0, "names": 0, "activejob_kwargs": 5, "activejob_positional": 25}
	wantReqs := map[string]string{
		"plain": `Flameshroud=null`, "name_and_id": `Voidgrin=42`, "hash": `Nightfang=7`,
		"names": `Ember Crown=null,Frost Veil=null`, "activejob_kwargs": `Dusk Warden=99`, "activejob_positional": `Ashen Mask=5`,
	}
	label := map[string]string{}
	for k, v := range jids {
		if s, ok := v.(string); ok {
			label[s] = k
		}
	}
	for _, p := range payloads {
		j, err := ParseJob([]byte(p))
		if err != nil {
			t.Fatalf("ParseJob(%s): %v", p, err)
		}
		reqs, replyTo, err := j.Requests()
		if err != nil {
			t.Fatalf("Requests(%s): %v", p, err)
		}
		var got []string
		for _, r := range reqs {
			got = append(got, r.MaskName+"="+string(r.MaskID))
		}
		if l, ok := label[j.JID]; ok {
			if strings.Join(got, ",") != wantReqs[l] || j.Retry != wantRetry[l] {
				t.Errorf("%s: requests %v retry %d, want %s retry %d", l, got, j.Retry, wantReqs[l], wantRetry[l])
			}
			if (l == "hash") != (replyTo == "maskpredictor:reply:1") {
				t.Errorf("%s: reply_to %q", l, replyTo)
			}
		} else if !strings.HasPrefix(got[0], "bulk mask ") || j.CreatedAt.IsZero() || j.EnqueuedAt.IsZero() {
			t.Errorf("bulk job: %v %+v", got, j)
		}
	}
	b := startBridge(t, testBridgeConfig(t, rdb))
	waitFor(t, 10*time.Second, "all jobs transferred", func() bool { return b.Stats().Transferred == 206 })
	checkOneTaskPerDelivery(t, rdb, testQueue, payloads)
}

// TestBridgeCrashRecovery kills a bridge between the steps of a transfer, as kill -9
// would, and checks that the surviving bridge ends with exactly one asynq task per
// delivery: at its start, and with its periodic recovery while it runs.
func TestBridgeCrashRecovery(t *testing.T) {
	for _, tc := range []struct {
		step          string
		survivorFirst bool
	}{
		{"moved", false}, {"enqueued", false}, {"moved", true}, {"enqueued", true},
	} {
		name := "crash after " + tc.step + ", recovered at start"
		if tc.survivorFirst {
			name = "crash after " + tc.step + ", recovered periodically"
		}
		t.Run(name, func(t *testing.T) {
			rdb := newTestRedis(t)
			ctx := testCtx(t)
			var payloads []string
			for i := range 5 {
				payloads = append(payloads, fmt.Sprintf(`{"retry":true,"queue":%q,"class":"MaskPredictionJob","args":["crash %d"],"jid":"%024x","created_at":1795936334.0,"enqueued_at":1795936334.0}`, testQueue, i, i))
			}
			var recoverer *Bridge
			if tc.survivorFirst {
				// A live bridge of another queue: recovery covers every queue of a dead
				// bridge, and it runs periodically, not only at start.
				cfg := testBridgeConfig(t, rdb)
				cfg.Queues = []QueueWeight{{Name: "other_queue", Weight: 1}}
				recoverer = startBridge(t, cfg)
			}
			doomed := startBridge(t, testBridgeConfig(t, rdb), func(b *Bridge) {
				b.crashAt = func(step string) bool { return step == tc.step }
			})
			pushRaw(t, rdb, testQueue, payloads...)
			waitFor(t, 5*time.Second, "the crash", func() bool { return doomed.killed.Load() })
			doomed.kill()

			inflight := doomed.keyInflight(doomed.Identity(), testQueue)
			stranded := llen(rdb, inflight)
			if stranded == 0 {
				t.Fatal("nothing stranded in the dead bridge's in-flight list: the crash came too late")
			}
			tasksBefore := len(allTasks(t, rdb, testQueue))
			if tc.step == "moved" && tasksBefore != 0 || tc.step == "enqueued" && tasksBefore != int(stranded) {
				t.Fatalf("after crash at %s: %d tasks for %d stranded jobs", tc.step, tasksBefore, stranded)
			}
			// The dead bridge's alive key would expire after AliveTTL; do not wait for it.
			rdb.Del(ctx, doomed.keyAlive(doomed.Identity()))

			if recoverer != nil {
				waitFor(t, 5*time.Second, "periodic recovery", func() bool { return recoverer.Stats().Recovered == stranded })
				if n := llen(rdb, QueueKey(testQueue)); n != int64(len(payloads)) {
					t.Fatalf("queue has %d jobs after recovery, want all %d back", n, len(payloads))
				}
			}
			transferer := startBridge(t, testBridgeConfig(t, rdb))
			if recoverer == nil {
				recoverer = transferer
			}
			// Recovery ends with the dead bridge's deregistration: nothing more comes
			// back from its in-flight list after that.
			waitFor(t, 10*time.Second, "the dead bridge's recovery and deregistration", func() bool {
				members, _ := rdb.SMembers(ctx, transferer.keyBridges()).Result()
				return !slices.Contains(members, doomed.Identity())
			})
			// Then every delivery has been handed to asynq once it has left the queue
			// and the transferer's in-flight list (a job only moves on, so reading
			// them in that order sees one on its way) and the transferer has counted
			// each, as a new task or as one asynq already had: a second task of a
			// delivery would exist by now.
			own := transferer.keyInflight(transferer.Identity(), testQueue)
			waitFor(t, 10*time.Second, "every delivery handed to asynq", func() bool {
				st := transferer.Stats()
				return llen(rdb, inflight) == 0 && llen(rdb, QueueKey(testQueue)) == 0 && llen(rdb, own) == 0 &&
					st.Transferred+st.Duplicates >= int64(len(payloads))
			})
			checkOneTaskPerDelivery(t, rdb, testQueue, payloads)
			if st := recoverer.Stats(); st.Recovered != stranded {
				t.Errorf("recovered %d, want %d", st.Recovered, stranded)
			}
			if st := transferer.Stats(); tc.step == "enqueued" && st.Duplicates != stranded {
				t.Errorf("%d duplicates detected, want %d (the stranded jobs were already in asynq)", st.Duplicates, stranded)
			}
			if n, _ := rdb.Exists(ctx, doomed.keyQueuesOf(doomed.Identity())).Result(); n != 0 {
				t.Error("the dead bridge's queue set was left behind")
			}
			shutdownBridge(t, transferer)
			checkOneTaskPerDelivery(t, rdb, testQueue, payloads)
		})
	}
}

// TestBridgeSidekiqWebRetry: Sidekiq Web's "Retry" re-pushes a finished job with the same
// jid and different bytes; that is a new delivery and must run again, while a re-delivery
// of the very same bytes (crash recovery) must not.
func TestBridgeSidekiqWebRetry(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	var runs sync.Map // payload → count
	var total atomic.Int32
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 2, Queues: map[string]int{testQueue: 1}, TaskCheckInterval: 20 * time.Millisecond,
		LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(TaskType, func(_ context.Context, task *asynq.Task) error {
		v, _ := runs.LoadOrStore(string(task.Payload()), new(atomic.Int32))
		v.(*atomic.Int32).Add(1)
		total.Add(1)
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	b := startBridge(t, testBridgeConfig(t, rdb))

	first := `{"retry":true,"queue":"mask_predictions","class":"MaskPredictionJob","args":["Flameshroud"],"jid":"aaaaaaaaaaaaaaaaaaaaaaaa","created_at":1795936334.1,"enqueued_at":1795936334.1}`
	pushRaw(t, rdb, testQueue, first)
	in := asynq.NewInspectorFromRedisClient(rdb)
	j1, _ := ParseJob([]byte(first))
	waitFor(t, 10*time.Second, "the first run to complete", func() bool {
		ti, err := in.GetTaskInfo(testQueue, j1.TaskID())
		return err == nil && ti.State == asynq.TaskStateCompleted
	})

	// Crash re-delivery: the same bytes come back (recovery moved them back to the queue).
	pushRaw(t, rdb, testQueue, first)
	waitFor(t, 5*time.Second, "the re-delivery to be handled", func() bool { return b.Stats().Duplicates == 1 })

	// Sidekiq Web "Retry": same jid, retry_count/enqueued_at/error fields changed.
	retried, err := setFields([]byte(first), field{"enqueued_at", []byte("1795937000.5")}, field{"retry_count", []byte("0")},
		field{"error_class", []byte(`"Predictor::Timeout"`)})
	if err != nil {
		t.Fatal(err)
	}
	pushRaw(t, rdb, testQueue, string(retried))
	waitFor(t, 10*time.Second, "the retried job to run", func() bool { return total.Load() == 2 })
	// Nothing is left to run: a third run would have happened.
	waitIdle(t, rdb, b, testQueue)
	for p, want := range map[string]int32{first: 1, string(retried): 1} {
		v, ok := runs.Load(p)
		if !ok || v.(*atomic.Int32).Load() != want {
			t.Errorf("payload %s ran %v times, want %d", p, v, want)
		}
	}
	if total.Load() != 2 {
		t.Errorf("%d runs, want 2", total.Load())
	}
	_ = ctx
}

func TestBridgePoisonGoesToDeadSet(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	good := func(i int) string {
		return fmt.Sprintf(`{"retry":true,"queue":"mask_predictions","class":"MaskPredictionJob","args":["good %d"],"jid":"%024x","created_at":1795936334.5,"enqueued_at":1795936334.5}`, i, i+100)
	}
	poison := map[string]string{
		"not json {":                 "not JSON",
		`[1,2]`:                      "not a JSON object",
		`{"class":"K","args":["x"]}`: `no "jid"`,
		`{"class":"MaskPredictionJob","jid":"p1","args":[42]}`:                                                                  "mask name (string) or a hash",
		`{"class":"MaskPredictionJob","jid":"p2","args":[]}`:                                                                    "args is empty",
		`{"class":"MaskPredictionJob","jid":"p3","args":[{"mask_names":[]}]}`:                                                   `"mask_names" is empty`,
		`{"class":"RailsMailerJob","jid":"p4","args":["Moldex 2200 N95"]}`:                                                      `class "RailsMailerJob" is not run by the maskpredictor sidecar`,
		`{"class":"MaskPredictionJob","jid":"p5","args":[{"mask_name":"a","reply_to":"queue:default"}]}`:                        `"reply_to" "queue:default" is not under`,
		`{"class":"MaskPredictionJob","jid":"p6","args":[{"mask_name":"vetoed by Check","reply_to":"maskpredictor:reply:p6"}]}`: "vetoed",
	}
	var goods []string
	for i := range 4 {
		goods = append(goods, good(i))
	}
	poisonPayloads := slices.Sorted(maps.Keys(poison))
	var all []string // poison and good interleaved: p g p g p g p g p p
	for i, p := range poisonPayloads {
		all = append(all, p)
		if i < len(goods) {
			all = append(all, goods[i])
		}
	}
	pushRaw(t, rdb, testQueue, all...)
	cfg := testBridgeConfig(t, rdb)
	cfg.Check = func(_ *Job, reqs []Request) error {
		if reqs[0].MaskName == "vetoed by Check" {
			return errors.New("vetoed") // wrapped into ErrPoison by the bridge
		}
		return nil
	}
	b := startBridge(t, cfg)
	waitFor(t, 10*time.Second, "every job handled", func() bool {
		st := b.Stats()
		return st.Poison == int64(len(poison)) && st.Transferred == int64(len(goods))
	})
	checkOneTaskPerDelivery(t, rdb, testQueue, goods)
	dead, _ := rdb.ZRange(ctx, "dead", 0, -1).Result()
	if len(dead) != len(poison) {
		t.Fatalf("dead set has %d entries, want %d", len(dead), len(poison))
	}
	reasons := map[string]bool{}
	for _, d := range dead {
		var e struct {
			JID, Queue, Class string
			ErrorClass        string  `json:"error_class"`
			ErrorMessage      string  `json:"error_message"`
			FailedAt          float64 `json:"failed_at"`
		}
		if err := json.Unmarshal([]byte(d), &e); err != nil {
			t.Fatalf("dead entry is not JSON: %s", d)
		}
		wantClass := PoisonErrorClass
		if e.JID == "p4" {
			wantClass = ForeignErrorClass
		}
		if e.ErrorClass != wantClass || e.JID == "" || e.Queue != testQueue || e.FailedAt == 0 {
			t.Errorf("dead entry: %s", d)
		}
		for _, want := range poison {
			if strings.Contains(e.ErrorMessage, want) {
				reasons[want] = true
			}
		}
	}
	if len(reasons) != len(poison) {
		t.Errorf("reasons found %v; dead set: %v", reasons, dead)
	}
	// A caller waiting on the refused job's reply_to learns why at once.
	if r := rdb.LRange(ctx, "maskpredictor:reply:p6", 0, -1).Val(); len(r) != 1 || !strings.Contains(r[0], `"error":"`+PoisonErrorClass) ||
		!strings.Contains(r[0], "vetoed") || !strings.Contains(r[0], `"jid":"p6"`) {
		t.Errorf("error reply %v", r)
	}
	if q, in := llen(rdb, QueueKey(testQueue)), llen(rdb, b.keyInflight(b.Identity(), testQueue)); q != 0 || in != 0 {
		t.Errorf("queue=%d inflight=%d", q, in)
	}
}

func TestBridgeBackpressure(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	c := NewClient(rdb)
	for i := range 40 {
		if _, err := c.Push(ctx, testQueue, "MaskPredictionJob", []any{fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testBridgeConfig(t, rdb)
	cfg.MaxPending = 5
	cfg.BatchSize = 0 // default: min(MaxPending, 50)
	var maxPending atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := llen(rdb, asynqPendingKey(testQueue)); n > maxPending.Load() {
				maxPending.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var reads *atomic.Int64
	cfg.AsynqRedis, reads = pendingReads(t, rdb, testQueue)
	b := startBridge(t, cfg)
	waitFor(t, 5*time.Second, "5 pending", func() bool { return llen(rdb, asynqPendingKey(testQueue)) == 5 })
	waitRounds(t, reads) // the bridge looked again, and moved nothing more
	if p, q := llen(rdb, asynqPendingKey(testQueue)), llen(rdb, QueueKey(testQueue)); p != 5 || q != 35 {
		t.Fatalf("pending=%d queue=%d, want the backlog of 35 left in %s", p, q, QueueKey(testQueue))
	}

	var done atomic.Int32
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 2, Queues: map[string]int{testQueue: 1}, TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(TaskType, func(context.Context, *asynq.Task) error { done.Add(1); return nil })
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "all 40 processed", func() bool { return done.Load() == 40 })
	srv.Shutdown()
	close(stop)
	sampler.Wait()
	if m := maxPending.Load(); m > 5 {
		t.Errorf("asynq pending reached %d, above MaxPending 5", m)
	}
	if b.Stats().Transferred != 40 || llen(rdb, QueueKey(testQueue)) != 0 {
		t.Errorf("transferred %d, queue %d", b.Stats().Transferred, llen(rdb, QueueKey(testQueue)))
	}
}

// deadRedis is a client for an address nothing listens on.
func deadRedis(t testing.TB) *redis.Client {
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestBridgeShutdownReturnsInflightWhenAsynqIsDown: jobs a previous life of this identity
// left in flight cannot go to asynq (its Redis is down); Shutdown puts them back at the
// pop end of their queue, oldest first, and deregisters.
func TestBridgeShutdownReturnsInflightWhenAsynqIsDown(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	cfg := testBridgeConfig(t, rdb)
	cfg.Identity = "host:1:fixed"
	cfg.AsynqRedis = deadRedis(t)
	var logs *observer.ObservedLogs
	cfg.Logger, logs = observedLogger(t)
	b, err := NewBridge(cfg)
	if err != nil {
		t.Fatal(err)
	}
	inflight := b.keyInflight(cfg.Identity, testQueue)
	pushRaw(t, rdb, testQueue, "newer-1", "newer-2") // waiting in the queue
	// BLMOVE RIGHT→LEFT: the in-flight list's LEFT end holds the newest.
	job := func(name string) string {
		return `{"retry":true,"queue":"mask_predictions","class":"MaskPredictionJob","args":["` + name + `"],"jid":"` + name + `","created_at":1795936334.5,"enqueued_at":1795936334.5}`
	}
	for _, p := range []string{"old-1", "old-2", "old-3"} {
		rdb.LPush(ctx, inflight, job(p))
	}
	rdb.SAdd(ctx, b.keyBridges(), cfg.Identity)
	rdb.SAdd(ctx, b.keyQueuesOf(cfg.Identity), testQueue)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The fetcher tried to hand its in-flight jobs to asynq and failed (it logs the
	// first failure of an outage, after the attempt).
	waitLogged(t, 5*time.Second, logs, "sidekiq bridge: handing in-flight jobs to asynq failed; retrying with backoff")
	if llen(rdb, inflight) != 3 || llen(rdb, QueueKey(testQueue)) != 2 {
		t.Fatalf("inflight=%d queue=%d while asynq is down", llen(rdb, inflight), llen(rdb, QueueKey(testQueue)))
	}
	shutdownBridge(t, b)
	q, _ := rdb.LRange(ctx, QueueKey(testQueue), 0, -1).Result()
	// Pop order is from the right: old-1, old-2, old-3, then newer-1, newer-2.
	if want := []string{"newer-2", "newer-1", job("old-3"), job("old-2"), job("old-1")}; !slices.Equal(q, want) {
		t.Errorf("queue after shutdown = %v, want %v", q, want)
	}
	if llen(rdb, inflight) != 0 {
		t.Error("in-flight list not empty")
	}
	if ok, _ := rdb.SIsMember(ctx, b.keyBridges(), cfg.Identity).Result(); ok {
		t.Error("still registered")
	}
}

// TestBridgeRestartWithFixedIdentity: a process that reuses its identity (Identity set
// in the config) finds its predecessor's in-flight jobs: those of a queue it serves go to
// asynq, those of a queue it no longer serves go back to that queue.
func TestBridgeRestartWithFixedIdentity(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	cfg := testBridgeConfig(t, rdb)
	cfg.Identity = "host:2:fixed"
	b, err := NewBridge(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := `{"retry":2,"queue":"mask_predictions","class":"MaskPredictionJob","args":["left over"],"jid":"bbbbbbbbbbbbbbbbbbbbbbbb","created_at":1795936334.5,"enqueued_at":1795936334.5}`
	rdb.LPush(ctx, b.keyInflight(cfg.Identity, testQueue), p)
	rdb.SAdd(ctx, b.keyQueuesOf(cfg.Identity), testQueue, "retired_queue")
	rdb.LPush(ctx, b.keyInflight(cfg.Identity, "retired_queue"), "from a queue no longer served")
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	waitFor(t, 5*time.Second, "leftovers handled", func() bool {
		return llen(rdb, b.keyInflight(cfg.Identity, "retired_queue")) == 0 && llen(rdb, b.keyInflight(cfg.Identity, testQueue)) == 0
	})
	shutdownBridge(t, b)
	checkOneTaskPerDelivery(t, rdb, testQueue, []string{p})
	if q, _ := rdb.LRange(ctx, QueueKey("retired_queue"), 0, -1).Result(); !slices.Equal(q, []string{"from a queue no longer served"}) {
		t.Errorf("leftover of a queue no longer served: %v, want it back in its queue", q)
	}
	if err := b.Shutdown(ctx); err == nil {
		t.Error("second Shutdown succeeded")
	}
}

// TestBridgeDrainHandsInflightToAsynq: at shutdown, what is still in flight (oldest first)
// goes to asynq, and a poison job among it to the dead set.
func TestBridgeDrainHandsInflightToAsynq(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	b, err := NewBridge(testBridgeConfig(t, rdb))
	if err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for i := range 3 {
		p := fmt.Sprintf(`{"retry":true,"queue":"mask_predictions","class":"MaskPredictionJob","args":["drained %d"],"jid":"%024x","created_at":1795936334.5,"enqueued_at":1795936334.5}`, i, i)
		payloads = append(payloads, p)
		rdb.LPush(ctx, b.keyInflight(b.Identity(), testQueue), p)
	}
	rdb.LPush(ctx, b.keyInflight(b.Identity(), testQueue), "poison")
	if err := b.drain(ctx, testQueue); err != nil {
		t.Fatal(err)
	}
	checkOneTaskPerDelivery(t, rdb, testQueue, payloads)
	ids, _ := rdb.LRange(ctx, asynqPendingKey(testQueue), 0, -1).Result()
	slices.Reverse(ids)
	for i, p := range payloads {
		if j, _ := ParseJob([]byte(p)); ids[i] != j.TaskID() {
			t.Errorf("drain order: task %d is %s", i, ids[i])
		}
	}
	if n, _ := rdb.ZCard(ctx, "dead").Result(); n != 1 || llen(rdb, b.keyInflight(b.Identity(), testQueue)) != 0 {
		t.Errorf("dead=%d inflight=%d", n, llen(rdb, b.keyInflight(b.Identity(), testQueue)))
	}
}

// TestBridgeRedisComesUpLate: Start does not fail while Redis is down; the bridge retries
// with capped backoff and transfers once Redis is there.
func TestBridgeRedisComesUpLate(t *testing.T) {
	if testRedisErr != nil {
		t.Skip(testRedisErr)
	}
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	started := time.Now()
	b := startBridge(t, testBridgeConfig(t, rdb))
	if d := time.Since(started); d > time.Second {
		t.Errorf("Start took %s with Redis down; it must not wait for Redis", d)
	}
	time.Sleep(500 * time.Millisecond)
	srv, err := startRedisServer(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	ctx := testCtx(t)
	if _, err := NewClient(rdb).Push(ctx, testQueue, "MaskPredictionJob", []any{"late"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the job to be transferred", func() bool { return b.Stats().Transferred == 1 })
	shutdownBridge(t, b)
}

func TestBridgeConfigValidation(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	d := BridgeConfig{Redis: rdb}.WithDefaults()
	if d.MaxPending != 20 || d.BatchSize != 20 || d.Queues[0].Name != DefaultQueue || d.Retention != 10*time.Minute ||
		d.AliveTTL != 15*time.Second || d.AsynqRedis != rdb || d.Client == nil || d.Identity == "" {
		t.Errorf("defaults: %+v", d)
	}
	if err := d.validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if d.JobsPerTask != 1 {
		t.Errorf("JobsPerTask default %d, want 1 (one task per job)", d.JobsPerTask)
	}
	if b := (BridgeConfig{Redis: rdb, JobsPerTask: 40}).WithDefaults(); b.BatchSize != 80 {
		t.Errorf("BatchSize default with 40 jobs per task: %d, want 80", b.BatchSize)
	}
	for want, mut := range map[string]func(*BridgeConfig){
		"Redis is required":   func(c *BridgeConfig) { c.Redis = nil },
		"AliveTTL":            func(c *BridgeConfig) { c.AliveTTL = 5 * time.Second },
		"Retention":           func(c *BridgeConfig) { c.Retention = time.Minute },
		"listed twice":        func(c *BridgeConfig) { c.Queues = []QueueWeight{{"a", 1}, {"a", 2}} },
		"only letters":        func(c *BridgeConfig) { c.Queues = []QueueWeight{{"a b", 1}} },
		"Concurrency":         func(c *BridgeConfig) { c.Concurrency = -1; c.MaxPending = 1 },
		"FetchTimeout":        func(c *BridgeConfig) { c.FetchTimeout = time.Minute },
		"TaskTimeout":         func(c *BridgeConfig) { c.TaskTimeout = -time.Second },
		"MaxPending is -1":    func(c *BridgeConfig) { c.MaxPending = -1 },
		"JobsPerTask is 1001": func(c *BridgeConfig) { c.JobsPerTask = 1001 },
		"below JobsPerTask":   func(c *BridgeConfig) { c.JobsPerTask = 20; c.BatchSize = 10 },
	} {
		c := BridgeConfig{Redis: rdb}
		mut(&c)
		_, err := NewBridge(c)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", want, err)
		}
	}
}

func TestParseQueues(t *testing.T) {
	tests := map[string][]QueueWeight{
		"mask_predictions":   {{"mask_predictions", 1}},
		"a:3,b:1":            {{"a", 3}, {"b", 1}},
		" a:3 , b ,":         {{"a", 3}, {"b", 1}},
		"ns:queue":           {{"ns:queue", 1}},
		"ns:queue:2":         {{"ns:queue", 2}},
		"mask.predict-v2:10": {{"mask.predict-v2", 10}},
	}
	for in, want := range tests {
		got, err := ParseQueues(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseQueues(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", " , ", "a:0", "a,a", "a:1,a:2", "bad queue", "ä", ":3"} {
		if _, err := ParseQueues(bad); err == nil {
			t.Errorf("ParseQueues(%q) accepted", bad)
		}
	}
	if m := AsynqQueues([]QueueWeight{{"a", 3}, {"b", 0}}); m["a"] != 3 || m["b"] != 1 {
		t.Errorf("AsynqQueues = %v", m)
	}
}

func TestBackoffHelperIsCapped(t *testing.T) {
	bo := backoff{min: 50 * time.Millisecond, max: time.Second}
	prev := time.Duration(0)
	for i := range 100 {
		d := bo.next()
		if d <= 0 || d > time.Second {
			t.Fatalf("attempt %d: %s", i, d)
		}
		if i < 3 && d < prev/2 {
			t.Errorf("attempt %d: %s after %s", i, d, prev)
		}
		prev = d
	}
}

// BenchmarkBridgeTransfer measures how fast one bridge moves a pre-filled queue into
// asynq (no asynq server running, so no backpressure).
func BenchmarkBridgeTransfer(b *testing.B) {
	rdb := newTestRedis(b)
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for i := range b.N {
		pipe.LPush(ctx, QueueKey(testQueue), fmt.Sprintf(`{"retry":true,"queue":"mask_predictions","class":"MaskPredictionJob","args":["Flameshroud Visor %d"],"jid":"%024x","created_at":1795936334.5,"enqueued_at":1795936334.5}`, i, i))
		if i%1000 == 999 {
			pipe.Exec(ctx)
		}
	}
	pipe.Exec(ctx)
	cfg := testBridgeConfig(b, rdb)
	cfg.MaxPending = b.N + 1
	cfg.Logger = nil
	b.ResetTimer()
	br := startBridge(b, cfg)
	waitFor(b, 5*time.Minute, "transfer", func() bool { return br.Stats().Transferred == int64(b.N) })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}
