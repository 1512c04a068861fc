package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// TestRequeueOrphans: a task a live asynq server runs is never requeued, even
// when its lease looks stale (the live workers hash lists it); once its
// process is gone (its workers hash expired) and its lease is stale, it goes
// back to the front of pending, as asynq's own Requeue leaves it. It runs on
// a real asynq server, so asynq's key layout and heartbeat are what is tested.
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
	if lease := rdb.ZScore(ctx, prefix+"lease", "held").Val(); lease == 0 {
		t.Fatalf("no lease at %slease", prefix)
	}
	// A lease not extended for 12 s ends before now + 18 s; staleIn(d) is
	// that cutoff d from now, as if the lease had not been extended for d
	// longer.
	staleIn := func(d time.Duration) time.Time { return time.Now().Add(18*time.Second + d) }
	for _, c := range []struct {
		name  string
		stale time.Time
	}{
		{"fresh lease, live process", staleIn(0)},
		{"stale lease, live process", staleIn(25 * time.Second)},
	} {
		n, err := requeueOrphans(ctx, rdb, q, time.Now(), c.stale)
		if err != nil || n != 0 {
			t.Fatalf("%s: requeued %d (%v), want 0", c.name, n, err)
		}
	}
	// The process dies: its workers hash expires. A fresh lease still waits.
	rdb.Del(ctx, workersKey)
	if n, err := requeueOrphans(ctx, rdb, q, time.Now(), staleIn(0)); err != nil || n != 0 {
		t.Fatalf("fresh lease, dead process: requeued %d (%v), want 0", n, err)
	}
	n, err := requeueOrphans(ctx, rdb, q, time.Now(), staleIn(20*time.Second))
	if err != nil || n != 1 {
		t.Fatalf("stale lease, dead process: requeued %d (%v), want 1", n, err)
	}
	if got := rdb.LRange(ctx, prefix+"pending", 0, -1).Val(); strings.Join(got, ",") != "held" {
		t.Errorf("pending %v", got)
	}
	if st := rdb.HGet(ctx, asynqTaskKey(q, "held"), "state").Val(); st != "pending" {
		t.Errorf("state %q", st)
	}
	if rdb.LLen(ctx, prefix+"active").Val() != 0 || rdb.ZCard(ctx, prefix+"lease").Val() != 0 {
		t.Errorf("still active or leased")
	}
	// Asked again: nothing more.
	if n, err := requeueOrphans(ctx, rdb, q, time.Now(), staleIn(20*time.Second)); err != nil || n != 0 {
		t.Errorf("second call requeued %d (%v)", n, err)
	}
}
