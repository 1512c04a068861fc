package sidekiq

import (
	"testing"
	"time"
)

// TestBridgeRereadsItsOwnInflightList: jobs that appear in a live bridge's
// own in-flight list with no error seen by its loop (a Sentinel failover
// undid a hand-over: the new primary has the move, not the Enqueue and LREM)
// are handed to asynq within a RecoverInterval, not at the next restart.
func TestBridgeRereadsItsOwnInflightList(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		t.Run(map[bool]string{false: "running", true: "quiet"}[quiet], func(t *testing.T) { testRereadOwn(t, quiet) })
	}
}

// testRereadOwn: as TestBridgeRereadsItsOwnInflightList, with the bridge
// quieted (it fetches nothing more, but still hands over its own list).
func testRereadOwn(t *testing.T, quiet bool) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	c := NewClient(rdb)
	if _, err := c.Push(ctx, testQueue, "MaskPredictionJob", []any{"3M Aura 9205+ N95"}); err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, testBridgeConfig(t, rdb))
	waitFor(t, 10*time.Second, "the first job transferred", func() bool { return b.Stats().Transferred == 1 })

	if quiet {
		if err := b.Quiet(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The failover's leftover: a moved job back in the in-flight list.
	if _, err := c.Push(ctx, "elsewhere", "MaskPredictionJob", []any{"Moldex 2200 N95"}); err != nil {
		t.Fatal(err)
	}
	raw := rdb.RPop(ctx, QueueKey("elsewhere")).Val()
	rdb.LPush(ctx, b.keyInflight(b.Identity(), testQueue), raw)
	waitFor(t, 5*time.Second, "the leftover handed to asynq", func() bool {
		return b.Stats().Transferred == 2 && llen(rdb, b.keyInflight(b.Identity(), testQueue)) == 0
	})
	j, err := ParseJob([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, "asynq:{"+testQueue+"}:t:"+j.TaskID()).Val(); n != 1 {
		t.Errorf("no asynq task for the leftover job")
	}
}
