package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// procState is the state letter of /proc/<pid>/stat ("T" when stopped by SIGTSTP).
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "?"
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return "?"
}

// TestWorkerSIGTSTPQuietsAndSidekiqStopEnds runs the binary: `kill -TSTP` quiets the
// worker instead of suspending it (it keeps beating, Sidekiq's Busy page shows it
// quiet, a job pushed afterwards stays in the queue), and Sidekiq's stop!
// (Process#stop!, the Stop button) ends it as SIGTERM does: drained, off the Busy
// page, exit 0, the waiting job still in its queue.
func TestWorkerSIGTSTPQuietsAndSidekiqStopEnds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{Private: true})
	rdb := rs.Client()
	bin := buildBinary(t)
	p := startProc(t, bin, map[string]string{"REDIS_URL": rs.URL, "LOG_FORMAT": "json", "LOG_LEVEL": "info"},
		"worker", "--concurrency", "2", "--callback-class", "QuietTestCallbackJob")
	p.waitLog(t, 20*time.Second, `"msg":"worker started"`)
	var id string
	for _, l := range jsonLines(t, "stderr", p.read(p.stderr)) {
		if l["msg"] == "worker started" {
			id, _ = l["identity"].(string)
		}
	}
	if id == "" {
		t.Fatalf("no identity in the start line:\n%s", p.read(p.stderr))
	}
	pid := p.cmd.Process.Pid
	sk := sidekiq.NewClient(rdb)
	if _, err := sk.Push(ctx, sidekiq.DefaultQueue, sidekiq.PredictionClass, []any{"3M Aura 9205+ N95", 1}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the first job's callback", func() bool { return rdb.LLen(ctx, "queue:default").Val() == 1 })

	if err := p.cmd.Process.Signal(syscall.SIGTSTP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, 10*time.Second, "worker quiet: no new jobs are taken")
	waitUntil(t, 15*time.Second, "the Busy page to show quiet", func() bool { return rdb.HGet(ctx, id, "quiet").Val() == "true" })
	if st := procState(t, pid); st == "T" {
		t.Fatalf("process state %s after SIGTSTP: suspended", st)
	}
	// Still beating (a suspended process would not), and a job pushed now stays.
	if _, err := sk.Push(ctx, sidekiq.DefaultQueue, sidekiq.PredictionClass, []any{"3M 8210 N95", 2}); err != nil {
		t.Fatal(err)
	}
	beat := rdb.HGet(ctx, id, "beat").Val()
	waitUntil(t, 15*time.Second, "a heartbeat after SIGTSTP", func() bool {
		b := rdb.HGet(ctx, id, "beat").Val()
		return b != "" && b != beat
	})
	if st := procState(t, pid); st == "T" {
		t.Fatalf("process state %s after SIGTSTP: suspended", st)
	}
	if n := rdb.LLen(ctx, "queue:"+sidekiq.DefaultQueue).Val(); n != 1 {
		t.Errorf("queue holds %d jobs a beat after quiet, want the one pushed after it", n)
	}

	// Sidekiq's Stop: through Ruby's API where it is installed, else what it writes.
	start := time.Now()
	if ruby, err := exec.LookPath("ruby"); err == nil && exec.Command(ruby, "-e", `require "sidekiq/api"`).Run() == nil {
		script, _ := filepath.Abs(filepath.Join("..", "..", "worker", "testdata", "e2e", "processes.rb"))
		cmd := exec.Command(ruby, script, "stop")
		cmd.Env = append(os.Environ(), "REDIS_URL="+rs.URL)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), `"error"`) {
			t.Fatalf("Sidekiq::ProcessSet.new.each(&:stop!): %v\n%s", err, out)
		}
	} else {
		t.Log("no Ruby Sidekiq: pushing TERM to the signals list as Process#stop! does")
		rdb.LPush(ctx, id+"-signals", "TERM")
		rdb.Expire(ctx, id+"-signals", time.Minute)
	}
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		t.Fatalf("still running 40 s after stop!:\n%s", p.read(p.stderr))
	}
	t.Logf("exited %v after stop! (heartbeat every 5 s)", time.Since(start).Round(time.Millisecond))
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after stop!, want 0:\n%s", code, p.read(p.stderr))
	}
	stderr := p.read(p.stderr)
	if !strings.Contains(stderr, "Sidekiq asked this process to stop") {
		t.Errorf("no stop line:\n%s", stderr)
	}
	if rdb.SIsMember(ctx, "processes", id).Val() {
		t.Error("still in processes after exit")
	}
	if n := rdb.LLen(ctx, "queue:"+sidekiq.DefaultQueue).Val(); n != 1 {
		t.Errorf("queue holds %d jobs after exit, want the waiting one", n)
	}
	if n, _ := strconv.Atoi(rdb.Get(ctx, "stat:processed").Val()); n != 1 {
		t.Errorf("stat:processed %d, want 1", n)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
