package worker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

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

// waitHandler is a handler with WaitReplicas 1 (WaitTimeout 200 ms) on a
// primary whose replica is in sync.
type waitHandler struct {
	h         *Handler
	rdb, rrdb *redis.Client // the primary's, the replica's
	replica   *redistest.Server
}

// startWaitHandler starts a primary and its replica and the handler;
// hook, when not nil, goes on the primary's client the handler uses.
func startWaitHandler(t *testing.T, retryFor time.Duration, hook redis.Hook) waitHandler {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server; skipped with -short")
	}
	primary, replica := startPrimaryReplica(t)
	rdb := primary.Client()
	waitReplicaSynced(t, rdb)
	if hook != nil {
		rdb.AddHook(hook)
	}
	h, err := NewHandler(HandlerConfig{Redis: rdb, Predictor: CRFPredictor(modeltest.DefaultCRF(t)),
		CallbackClass: "Cb", WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond, RedisRetryFor: retryFor})
	if err != nil {
		t.Fatal(err)
	}
	return waitHandler{h: h, rdb: rdb, rrdb: replica.Client(), replica: replica}
}

// TestHandlerWaitReplicas (issue 15 item 2): with WaitReplicas the
// write-back counts only once a replica has it. Without a replica the task
// fails with ErrNotReplicated after RedisRetryFor (its jobs are not done:
// asynq runs it again), and the run after the replica is back writes no
// second callback.
func TestHandlerWaitReplicas(t *testing.T) {
	ctx := context.Background()
	w := startWaitHandler(t, time.Second, nil)
	h, rdb, rrdb, replica := w.h, w.rdb, w.rrdb, w.replica
	waitSynced := func() { t.Helper(); waitReplicaSynced(t, rdb) }
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
	err := run(raw)
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
	if s := h.Stats(); s.Retrying != 0 || s.ReplicasShortSince.IsZero() || s.ReplicasShortSince.Before(start) {
		t.Errorf("stats %+v, want no retry and ReplicasShortSince set since the job started", s)
	}

	// The replica back: the run again finds its marker, waits, is done, and
	// writes no second callback.
	replica.StartAgain()
	waitSynced()
	if err := run(raw); err != nil {
		t.Fatalf("with the replica back: %v", err)
	}
	if s := h.Stats(); !s.ReplicasShortSince.IsZero() {
		t.Errorf("ReplicasShortSince %v after an acknowledged write-back, want zero", s.ReplicasShortSince)
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

// replyLoser is a go-redis hook for the WAIT pipeline (write-back script,
// barrier, WAIT): the first one whose script runs is sent and its answer
// dropped (a connection reset after Redis ran it), and every later one fails
// as if the connection were gone, until off.
type replyLoser struct {
	mu      sync.Mutex
	dropped bool
	off     bool
	failed  int
}

func (l *replyLoser) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *replyLoser) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}

func (l *replyLoser) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		isWait := len(cmds) == 3 && cmds[0].Name() == "evalsha" && cmds[2].Name() == "wait"
		l.mu.Lock()
		off, dropped := l.off, l.dropped
		l.mu.Unlock()
		if !isWait || off {
			return next(ctx, cmds)
		}
		reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		if !dropped {
			if err := next(ctx, cmds); err != nil || cmds[0].Err() != nil {
				return err // NOSCRIPT: the handler loads it and comes again
			}
			l.mu.Lock()
			l.dropped = true
			l.mu.Unlock()
		} else {
			l.mu.Lock()
			l.failed++
			l.mu.Unlock()
		}
		for _, c := range cmds {
			c.SetErr(reset)
		}
		return reset
	}
}

// TestHandlerWaitReplyLost (review of issue 15 item 2): with WaitReplicas,
// a write-back that ran on the primary (markers set) but whose answer was
// lost, followed by attempts that fail with connection errors past
// RedisRetryFor, is not done: the task fails with ErrNotReplicated (asynq
// runs it again) rather than going to Sidekiq's retry set, where the marker
// would make it a duplicate delivery and the task would complete without a
// replica's acknowledgement.
func TestHandlerWaitReplyLost(t *testing.T) {
	ctx := context.Background()
	loser := &replyLoser{}
	w := startWaitHandler(t, 500*time.Millisecond, loser)
	h, rdb, rrdb := w.h, w.rdb, w.rrdb
	raw := waitTestJob(t, "bbbbbbbbbbbbbbbbbbbbbbb1", "3M Aura 9205+ N95")
	run := func() error { return h.ProcessTask(ctx, asynq.NewTask(sidekiq.TaskType, raw)) }

	err := run()
	loser.mu.Lock()
	dropped, failed := loser.dropped, loser.failed
	loser.off = true
	loser.mu.Unlock()
	if !dropped || failed == 0 {
		t.Fatalf("the hook dropped an answer: %v, failed %d later attempts", dropped, failed)
	}
	if !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("answer lost, then connection errors past RedisRetryFor: %v, want ErrNotReplicated", err)
	}
	t.Logf("%v", err)
	if n := rdb.ZCard(ctx, "retry").Val() + rdb.ZCard(ctx, "dead").Val(); n != 0 {
		t.Errorf("%d entries in Sidekiq's retry/dead sets: an unacknowledged write-back goes back to asynq", n)
	}
	if s := h.Stats(); s.Retrying != 0 || s.Dead != 0 {
		t.Errorf("stats %+v: recorded as a failure", s)
	}

	// asynq runs it again: it finds its marker, writes nothing, waits for
	// the replica and is done; one callback on both.
	if err := run(); err != nil {
		t.Fatalf("run again: %v", err)
	}
	if n := rdb.LLen(ctx, "queue:default").Val(); n != 1 {
		t.Errorf("%d callbacks on the primary, want 1", n)
	}
	if n := rrdb.LLen(ctx, "queue:default").Val(); n != 1 {
		t.Errorf("%d callbacks on the replica when the job returned, want 1", n)
	}
}

// TestScriptMayHaveRun: only an error reply or a command never sent tell
// that the write-back script did not run.
func TestScriptMayHaveRun(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, true},
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{context.DeadlineExceeded, true},
		{errors.New("EOF"), true},
		{redis.ErrPoolTimeout, false},
		{redis.ErrClosed, false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{&gateErr{reason: "down", err: errors.New("connection refused")}, false},
	} {
		if got := scriptMayHaveRun(tc.err); got != tc.want {
			t.Errorf("scriptMayHaveRun(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{})
	err := rs.Client().Do(ctx, "evalsha", "0000000000000000000000000000000000000000", 0).Err()
	if err == nil || scriptMayHaveRun(err) {
		t.Errorf("NOSCRIPT reply %v: may have run", err)
	}
}

// startPrimaryReplica starts a private primary and a replica of it.
func startPrimaryReplica(t *testing.T) (primary, replica *redistest.Server) {
	t.Helper()
	primary = redistest.Start(t, redistest.Options{Private: true})
	host, port, _ := net.SplitHostPort(primary.Addr)
	replica = redistest.Start(t, redistest.Options{Private: true, Args: []string{"--replicaof", host, port}})
	return primary, replica
}

// waitReplicaSynced waits until the primary rdb reports one replica online.
func waitReplicaSynced(t *testing.T, rdb *redis.Client) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := rdb.Info(context.Background(), "replication").Result(); len(n) > 0 && replicasOnline(n) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("replica not in sync after 10 s")
		}
	}
}
