package worker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

func waitTestJob(t *testing.T, jid, name string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"retry": true, "queue": "mask_predictions", "class": "MaskPredictionJob",
		"args": []any{name, 7}, "jid": jid, "created_at": 1764400000.123, "enqueued_at": 1764400000.125,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHandlerWaitReplicas (issue 15 item 2): with WaitReplicas the
// write-back counts only once a replica has it. Without a replica the task
// fails with ErrNotReplicated after RedisRetryFor (its jobs are not done:
// asynq runs it again), and the run after the replica is back writes no
// second callback.
func TestHandlerWaitReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server; skipped with -short")
	}
	ctx := context.Background()
	primary := redistest.Start(t, redistest.Options{Private: true})
	host, port, _ := net.SplitHostPort(primary.Addr)
	replica := redistest.Start(t, redistest.Options{Private: true, Args: []string{"--replicaof", host, port}})
	rdb, rrdb := primary.Client(), replica.Client()
	waitSynced := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if n, _ := rdb.Info(ctx, "replication").Result(); len(n) > 0 && replicasOnline(n) == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("replica not in sync after 10 s")
			}
		}
	}
	waitSynced()
	h, err := NewHandler(HandlerConfig{Redis: rdb, Predictor: CRFPredictor(modeltest.DefaultCRF(t)),
		CallbackClass: "Cb", WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond, RedisRetryFor: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	run := func(raw []byte) error {
		return h.ProcessTask(ctx, asynq.NewTask(sidekiq.TaskType, raw))
	}

	// A replica acknowledges: done, and the callback is on the replica
	// when the handler returns.
	if err := run(waitTestJob(t, "aaaaaaaaaaaaaaaaaaaaaaa1", "3M Aura 9205+ N95")); err != nil {
		t.Fatal(err)
	}
	if n := rrdb.LLen(ctx, "queue:default").Val(); n != 1 {
		t.Fatalf("%d callbacks on the replica when the job returned, want 1", n)
	}

	// A new primary has no scripts: the pipeline loads it and goes on.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := run(waitTestJob(t, "aaaaaaaaaaaaaaaaaaaaaaa2", "Moldex 2200 N95")); err != nil {
		t.Fatalf("after SCRIPT FLUSH: %v", err)
	}

	// No replica: not done, within about RedisRetryFor.
	replica.Kill()
	raw := waitTestJob(t, "aaaaaaaaaaaaaaaaaaaaaaa3", "Honeywell DF300")
	start := time.Now()
	err = run(raw)
	took := time.Since(start)
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("without a replica: %v, want ErrNotReplicated", err)
	}
	t.Logf("without a replica: %v after %v", err, took.Round(time.Millisecond))
	if took < time.Second || took > 4*time.Second {
		t.Errorf("gave up after %v, want about RedisRetryFor (1 s) + one WAIT", took)
	}
	if n := rdb.ZCard(ctx, "retry").Val(); n != 0 {
		t.Errorf("%d entries in Sidekiq's retry set: an unreplicated job goes back to asynq, not there", n)
	}
	if s := h.Stats(); s.Retrying != 0 {
		t.Errorf("stats %+v", s)
	}

	// The replica back: the run again finds its marker, waits, is done, and
	// writes no second callback.
	replica.StartAgain()
	waitSynced()
	if err := run(raw); err != nil {
		t.Fatalf("with the replica back: %v", err)
	}
	if n := rdb.LLen(ctx, "queue:default").Val(); n != 3 {
		t.Errorf("%d callbacks on the primary for 3 jobs", n)
	}
	if n := rrdb.LLen(ctx, "queue:default").Val(); n != 3 {
		t.Errorf("%d callbacks on the replica for 3 jobs", n)
	}
}

// replicasOnline counts the replicas INFO replication lists as online.
func replicasOnline(info string) int {
	n := 0
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "slave") && strings.Contains(line, "state=online") {
			n++
		}
	}
	return n
}
