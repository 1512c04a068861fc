package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// TestAsynqKeyLayout pins asynq v0.26's task key layout that returnTaskScript
// relies on: a pending task is a hash with state "pending" at asynqTaskKey
// and its id is in the queue's pending list.
func TestAsynqKeyLayout(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, nil)
	c := asynq.NewClientFromRedisClient(e.rdb)
	if _, err := c.Enqueue(asynq.NewTask(sidekiq.TaskType, batchJobs()[0]), asynq.Queue("q1"), asynq.TaskID("tid-1")); err != nil {
		t.Fatal(err)
	}
	if st := e.rdb.HGet(ctx, asynqTaskKey("q1", "tid-1"), "state").Val(); st != "pending" {
		t.Fatalf("state at %s = %q, want pending", asynqTaskKey("q1", "tid-1"), st)
	}
	if ids := e.rdb.LRange(ctx, asynqQueueKeyPrefix("q1")+"pending", 0, -1).Val(); len(ids) != 1 || ids[0] != "tid-1" {
		t.Fatalf("pending list %v", ids)
	}
}

// TestReturnedTaskIdIsFree: once a pending task is returned, its id is
// free at the same moment its job is back in the Sidekiq queue, so another
// sidecar's bridge that takes the job hands it over anew instead of meeting
// the old task and dropping the job as already transferred (the loss the
// two-step return allowed). A task no longer pending is not returned.
func TestReturnedTaskIdIsFree(t *testing.T) {
	ctx := context.Background()
	e := newHandlerEnv(t, nil)
	raw := batchJobs()[0]
	c := asynq.NewClientFromRedisClient(e.rdb)
	if _, err := c.Enqueue(asynq.NewTask(sidekiq.TaskType, raw), asynq.Queue("q1"), asynq.TaskID("tid-1")); err != nil {
		t.Fatal(err)
	}
	keys := []string{asynqTaskKey("q1", "tid-1"), asynqQueueKeyPrefix("q1") + "pending", sidekiq.QueueKey("q1")}
	ok, err := returnTaskScript.Run(ctx, e.rdb, keys, "tid-1", raw).Int()
	if err != nil || ok != 1 {
		t.Fatalf("return: %d %v", ok, err)
	}
	if got := e.rdb.LRange(ctx, sidekiq.QueueKey("q1"), 0, -1).Val(); len(got) != 1 || got[0] != string(raw) {
		t.Fatalf("queue %q", got)
	}
	// The same id can be enqueued again at once: no conflict.
	if _, err := c.Enqueue(asynq.NewTask(sidekiq.TaskType, raw), asynq.Queue("q1"), asynq.TaskID("tid-1")); errors.Is(err, asynq.ErrTaskIDConflict) || err != nil {
		t.Fatalf("re-enqueue after return: %v", err)
	}
	// Not pending any more (say a worker took it): nothing returned.
	e.rdb.HSet(ctx, asynqTaskKey("q1", "tid-1"), "state", "active")
	if ok, err := returnTaskScript.Run(ctx, e.rdb, keys, "tid-1", raw).Int(); err != nil || ok != 0 {
		t.Fatalf("return of an active task: %d %v", ok, err)
	}
	if n := e.rdb.LLen(ctx, sidekiq.QueueKey("q1")).Val(); n != 1 {
		t.Fatalf("queue holds %d jobs, want 1", n)
	}
}
