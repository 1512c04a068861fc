package main

import (
	"context"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// TestChaosThreeWorkersSIGKILL: three worker processes share one Redis and
// 30,000 jobs while random ones are SIGKILLed and restarted. Nothing may be
// lost or called back twice, and the last job must be done within 35 s of
// the last kill: a dead process's jobs run again elsewhere once its asynq
// leases go unextended for 12 s and its bridge's alive key (15 s) expires
// (worker/orphans.go, BridgeConfig.AliveTTL), not after asynq's 54–61 s.
func TestChaosThreeWorkersSIGKILL(t *testing.T) {
	chaosPrereqs(t)
	t.Parallel()
	ctx := context.Background()
	bin := buildBinary(t)
	rs := redistest.Start(t, redistest.Options{Private: true})
	rdb := rs.Client()

	const total = 30000
	jobs := &pushed{jids: map[string]string{}}
	pushErr := make(chan error, 1)
	go func() { pushErr <- pushN(ctx, rdb, total, 2500, jobs) }()

	var ws [3]*workerProc
	for i := range ws {
		ws[i] = startWorkerProc(t, bin, rs.URL)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
	var lastKill time.Time
	dead := -1 // the worker killed last, not restarted
	const kills = 6
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(1000+rng.IntN(1500)) * time.Millisecond)
		i := rng.IntN(len(ws))
		ws[i].signal(syscall.SIGKILL)
		ws[i].wait(5 * time.Second)
		lastKill, dead = time.Now(), i
		t.Logf("kill %d (worker %d): %d jobs pushed, queue %d, callbacks %d", k+1, i, len(jobs.snapshot()),
			rdb.LLen(ctx, "queue:mask_predictions").Val(), rdb.LLen(ctx, "queue:default").Val())
		// Restarted a little later, as a supervisor would: its jobs must be
		// taken over by the two that are running, not by its successor.
		if k < kills-1 {
			time.Sleep(500 * time.Millisecond)
			ws[i] = startWorkerProc(t, bin, rs.URL)
		}
	}
	if err := <-pushErr; err != nil {
		t.Fatal(err)
	}
	all := jobs.snapshot()
	if len(all) != total {
		t.Fatalf("%d jobs pushed", len(all))
	}
	o := waitOutcome(ctx, t, rdb, all, 90*time.Second)
	since := time.Since(lastKill)
	t.Logf("all results %v after the last kill; %s; %d callback jobs for %d jobs", since.Round(100*time.Millisecond), o, o.callbacks, total)
	if !o.done() {
		t.Fatalf("jobs lost: %s (e.g. %v %v)", o, head(o.missingCache), head(o.missingCallback))
	}
	if since > 35*time.Second {
		t.Errorf("the last jobs were done %v after the last kill, want ≤ 35 s", since.Round(100*time.Millisecond))
	}
	if o.duplicates != 0 {
		t.Errorf("%d duplicate callbacks", o.duplicates)
	}
	if n := rdb.ZCard(ctx, "dead").Val(); n != 0 {
		t.Errorf("%d jobs in the dead set", n)
	}
	verifyPredictions(ctx, t, rdb, all)
	for _, w := range ws {
		w.signal(syscall.SIGTERM)
	}
	for i, w := range ws {
		if i == dead {
			continue
		}
		if code, ok := w.wait(30 * time.Second); !ok || (code != 0 && code != -1) {
			t.Errorf("SIGTERM: exit %d (exited %v)", code, ok)
		}
	}
}
