package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// TestRequeueOrphans: a task a live asynq server runs is never requeued, even
// when its lease looks stale to a skewed clock (the live workers hash lists
// it); once its process is gone (its workers hash expired) and its lease
// score has been seen unchanged for OrphanAfter, it goes back to the front
// of pending, as asynq's own Requeue leaves it. It runs on a real asynq
// server, so asynq's key layout and heartbeat are what is tested.
func TestRequeueOrphans(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t, redistest.Options{}).Client()
	const q = "orphans"
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Queues: map[string]int{q: 1}, Concurrency: 1, Logger: zap.NewNop().Sugar(),
		TaskCheckInterval: 10 * time.Millisecond, ShutdownTimeout: time.Second,
	})
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	defer close(release)
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("t", nil), asynq.Queue(q), asynq.TaskID("held")); err != nil {
		t.Fatal(err)
	}
	<-started
	// asynq's heartbeat lists the running task in its workers hash (≤ 5 s).
	var workersKey string
	for deadline := time.Now().Add(10 * time.Second); workersKey == ""; time.Sleep(20 * time.Millisecond) {
		for _, k := range rdb.ZRange(ctx, "asynq:workers", 0, -1).Val() {
			if rdb.HExists(ctx, k, "held").Val() {
				workersKey = k
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("asynq's heartbeat never listed the running task")
		}
	}
	prefix := asynqQueueKeyPrefix(q)
	score := rdb.ZScore(ctx, prefix+"lease", "held").Val()
	if score == 0 {
		t.Fatalf("no lease at %slease", prefix)
	}
	// The looks below run within a second of the beat that listed the task,
	// before the next beat (5 s) changes its lease score.
	const after = 12 * time.Second
	w := &orphanWatch{queue: q}
	t0 := time.Now()
	look := func(what string, now time.Time, want int) {
		t.Helper()
		n, err := w.look(ctx, rdb, now, after, true)
		if err != nil || n != want {
			t.Fatalf("%s: requeued %d (%v), want %d", what, n, err, want)
		}
	}
	look("first look: nothing seen before", t0, 0)
	// A clock minutes ahead of the hosts that stamped the scores changes
	// nothing: a listed task is never an orphan, however old its lease looks.
	look("lease unchanged for 20 s, live process, clock 5 min ahead", t0.Add(20*time.Second+5*time.Minute), 0)
	// The process dies: its workers hash expires.
	rdb.Del(ctx, workersKey)
	w = &orphanWatch{queue: q}
	look("dead process, lease first seen now", t0, 0)
	look("dead process, lease unchanged for 11 s", t0.Add(11*time.Second), 0)
	look("dead process, lease unchanged for 12 s", t0.Add(12*time.Second), 1)
	if got := rdb.LRange(ctx, prefix+"pending", 0, -1).Val(); strings.Join(got, ",") != "held" {
		t.Errorf("pending %v", got)
	}
	if st := rdb.HGet(ctx, asynqTaskKey(q, "held"), "state").Val(); st != "pending" {
		t.Errorf("state %q", st)
	}
	if rdb.LLen(ctx, prefix+"active").Val() != 0 || rdb.ZCard(ctx, prefix+"lease").Val() != 0 {
		t.Errorf("still active or leased")
	}
	look("asked again", t0.Add(20*time.Second), 0)
}

// TestOrphanWatchLeaseExtended: a lease whose score changes (a beat
// extended it) is never an orphan, even unlisted.
func TestOrphanWatchLeaseExtended(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t, redistest.Options{}).Client()
	const q = "ext"
	prefix := asynqQueueKeyPrefix(q)
	rdb.RPush(ctx, prefix+"active", "t1")
	rdb.HSet(ctx, asynqTaskKey(q, "t1"), "state", "active")
	w := &orphanWatch{queue: q}
	t0 := time.Now()
	for i, d := range []time.Duration{0, 5 * time.Second, 10 * time.Second, 15 * time.Second, 20 * time.Second} {
		rdb.ZAdd(ctx, prefix+"lease", redis.Z{Score: float64(t0.Unix() + 30 + int64(5*i)), Member: "t1"})
		if n, err := w.look(ctx, rdb, t0.Add(d), 12*time.Second, true); err != nil || n != 0 {
			t.Fatalf("look at +%v: requeued %d (%v)", d, n, err)
		}
	}
	// No more beats: an orphan 12 s after the last change was seen.
	if n, _ := w.look(ctx, rdb, t0.Add(31*time.Second), 12*time.Second, true); n != 0 {
		t.Fatalf("requeued 11 s after the last change")
	}
	if n, _ := w.look(ctx, rdb, t0.Add(32*time.Second), 12*time.Second, true); n != 1 {
		t.Fatalf("not requeued 12 s after the last change")
	}
	// Watching only (after an outage): nothing is requeued.
	rdb.RPush(ctx, prefix+"active", "t2")
	rdb.ZAdd(ctx, prefix+"lease", redis.Z{Score: float64(t0.Unix()), Member: "t2"})
	w = &orphanWatch{queue: q}
	for _, d := range []time.Duration{0, time.Minute} {
		if n, _ := w.look(ctx, rdb, t0.Add(d), 12*time.Second, false); n != 0 {
			t.Fatalf("requeued while only watching")
		}
	}
}

// TestRetryDelayOfCrashesAndWaits: a task whose worker died or whose
// write-back the replicas did not acknowledge runs again soon and keeps its
// retries; any other failure takes Sidekiq's backoff and uses one.
func TestRetryDelayOfCrashesAndWaits(t *testing.T) {
	notRepl := fmt.Errorf("writing: %w", ErrNotReplicated)
	for _, c := range []struct {
		err     error
		delay   time.Duration
		failure bool
	}{
		{asynq.ErrLeaseExpired, time.Second, false},
		{notRepl, 2 * time.Second, false},
		{errors.New("boom"), 0, true}, // Sidekiq's backoff for 3: 96–135 s
	} {
		d := retryDelay(3, c.err, nil)
		if c.delay == 0 && (d < 96*time.Second || d > 135*time.Second) || c.delay != 0 && d != c.delay {
			t.Errorf("%v: delay %v, want %v", c.err, d, c.delay)
		}
		if f := isFailure(c.err); f != c.failure {
			t.Errorf("%v: isFailure %v, want %v", c.err, f, c.failure)
		}
	}
}
