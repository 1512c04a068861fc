package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// The chaos tests run the real binary as a subprocess against a private
// redis-server and check that no job is ever lost. They run in parallel
// with each other and take about a minute together (a SIGKILLed worker's
// tasks run again once their lease has gone 12 s unextended and its asynq
// workers hash has expired: worker/orphans.go). -short skips them.

const chaosCallback = "ChaosCallbackJob"

// chaosLogLevel is the workers' LOG_LEVEL ("info" logs every job).
var chaosLogLevel = "warn"

// workerProc is a sidecar subprocess (worker, run, …) with its log in a file.
type workerProc struct {
	t      *testing.T
	what   string // its subcommand
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stderr *os.File
}

func startWorkerProc(t *testing.T, bin, redisURL string, extra ...string) *workerProc {
	t.Helper()
	args := append([]string{"worker", "--callback-class", chaosCallback, "--concurrency", "10"}, extra...)
	return startLoggedProc(t, bin, append(os.Environ(), "REDIS_URL="+redisURL, "LOG_LEVEL="+chaosLogLevel, "LOG_FORMAT=json"), args...)
}

// startLoggedProc starts bin with args and env, its output in one log file; the
// process is SIGKILLed at the end of the test (and with the test binary).
func startLoggedProc(t *testing.T, bin string, env []string, args ...string) *workerProc {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(t.TempDir(), "sidecar.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stderr = logf
	cmd.Stdout = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &workerProc{t: t, what: args[0], cmd: cmd, done: make(chan struct{}), stderr: logf}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.signal(syscall.SIGKILL); <-p.done; logf.Close() })
	return p
}

func (p *workerProc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// wait returns the exit code, or -1 when killed by a signal.
func (p *workerProc) wait(timeout time.Duration) (int, bool) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return 0, false
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode(), true
	}
	return 0, true
}

func (p *workerProc) log() string {
	b, _ := os.ReadFile(p.stderr.Name())
	return string(b)
}

// cpuTicks is the process's user+system time in clock ticks.
func (p *workerProc) cpuTicks() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return u + st
}

type pushed struct {
	mu   sync.Mutex
	jids map[string]string // jid → name
}

func (p *pushed) add(jid, name string) {
	p.mu.Lock()
	p.jids[jid] = name
	p.mu.Unlock()
}

func (p *pushed) snapshot() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]string, len(p.jids))
	for k, v := range p.jids {
		out[k] = v
	}
	return out
}

func chaosName(i int) string {
	brands := []string{"3M", "Moldex", "Honeywell", "Kimberly-Clark", "Makrite", "Powecom", "Zimi", "GVS", "Dentec", "Vitacore"}
	filters := []string{"N95", "KN95", "FFP2", "P100", "KF94"}
	return fmt.Sprintf("%s Chaos%d-%d %s", brands[i%len(brands)], i/7, i, filters[i%len(filters)])
}

// pushN pushes n jobs at about rate per second (0: as fast as possible),
// retrying each push until it succeeds (Redis may be restarting).
func pushN(ctx context.Context, rdb redis.UniversalClient, n, rate int, into *pushed) error {
	c := sidekiq.NewClient(rdb)
	start := time.Now()
	for i := 0; i < n; i++ {
		name := chaosName(i)
		for {
			var opts []sidekiq.PushOption
			if i%5 == 0 {
				// retry: 0, which asynq archives when its worker dies: the
				// worker's rescue must bring such jobs back.
				opts = append(opts, sidekiq.WithRetry(0))
			}
			jid, err := c.Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{name, i}, opts...)
			if err == nil {
				into.add(jid, name)
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(50 * time.Millisecond)
		}
		if rate > 0 {
			if ahead := time.Duration(i+1)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	return nil
}

type outcome struct {
	missingCache     []string
	missingCallback  []string
	duplicates       int // callbacks beyond the first for a jid
	unrecorded       int // callbacks of pushes whose reply the pusher never got
	callbacks        int
	queued, inflight int64
}

func (o outcome) done() bool {
	return len(o.missingCache) == 0 && len(o.missingCallback) == 0 && o.queued == 0
}

func (o outcome) String() string {
	return fmt.Sprintf("missing cache entries %d, missing callbacks %d, duplicate callbacks %d, unrecorded pushes %d, queue %d",
		len(o.missingCache), len(o.missingCallback), o.duplicates, o.unrecorded, o.queued)
}

func check(ctx context.Context, t *testing.T, rdb *redis.Client, jobs map[string]string) outcome {
	t.Helper()
	var o outcome
	o.queued = rdb.LLen(ctx, sidekiq.QueueKey(sidekiq.DefaultQueue)).Val()
	cbs, err := rdb.LRange(ctx, "queue:default", 0, -1).Result()
	if err != nil {
		o.missingCallback = []string{"(redis error)"}
		return o
	}
	o.callbacks = len(cbs)
	seen := map[string]int{}
	for _, raw := range cbs {
		var cb struct {
			Class string `json:"class"`
			Args  []struct {
				JID      string `json:"jid"`
				MaskName string `json:"mask_name"`
			} `json:"args"`
		}
		if err := json.Unmarshal([]byte(raw), &cb); err != nil || cb.Class != chaosCallback || len(cb.Args) != 1 {
			t.Fatalf("bad callback job %s", raw)
		}
		if name, ok := jobs[cb.Args[0].JID]; !ok {
			// A push whose reply was lost (Redis went down after executing it)
			// was retried under a new jid: the first copy is a job too.
			o.unrecorded++
		} else if name != cb.Args[0].MaskName {
			t.Fatalf("callback for jid %s names %q, pushed %q", cb.Args[0].JID, cb.Args[0].MaskName, name)
		}
		seen[cb.Args[0].JID]++
	}
	var names, keys []string
	for jid, name := range jobs {
		switch n := seen[jid]; {
		case n == 0:
			o.missingCallback = append(o.missingCallback, jid)
		case n > 1:
			o.duplicates += n - 1
		}
		names = append(names, name)
		keys = append(keys, "maskpredictor:prediction:"+predictor.Normalize(name))
	}
	for i := 0; i < len(keys); i += 500 {
		end := min(i+500, len(keys))
		vals, err := rdb.MGet(ctx, keys[i:end]...).Result()
		if err != nil {
			o.missingCache = append(o.missingCache, "(redis error)")
			return o
		}
		for k, v := range vals {
			if v == nil {
				o.missingCache = append(o.missingCache, names[i+k])
			}
		}
	}
	return o
}

func waitOutcome(ctx context.Context, t *testing.T, rdb *redis.Client, jobs map[string]string, timeout time.Duration) outcome {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o := check(ctx, t, rdb, jobs)
		if o.done() || time.Now().After(deadline) {
			return o
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// verifyPredictions checks a sample of cache entries against the predictor.
func verifyPredictions(ctx context.Context, t *testing.T, rdb *redis.Client, jobs map[string]string) {
	t.Helper()
	crf := modeltest.DefaultCRF(t)
	n := 0
	for _, name := range jobs {
		if n++; n > 200 {
			break
		}
		want, _ := crf.Predict(name)
		want.NormalizedName = predictor.Normalize(name)
		got := rdb.Get(ctx, "maskpredictor:prediction:"+want.NormalizedName).Val()
		if got != string(want.AppendJSON(nil)) {
			t.Errorf("cache entry for %q:\n got %s\nwant %s", name, got, want.AppendJSON(nil))
		}
	}
}

func chaosPrereqs(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("chaos test; skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs Linux /proc")
	}
}

// TestChaosSIGKILL: 5,000 jobs while the worker is SIGKILLed five times at
// random moments and restarted. Every job's result must arrive.
func TestChaosSIGKILL(t *testing.T) {
	chaosPrereqs(t)
	t.Parallel()
	ctx := context.Background()
	bin := buildBinary(t)
	rs := redistest.Start(t, redistest.Options{Private: true})
	rdb := rs.Client()

	jobs := &pushed{jids: map[string]string{}}
	pushErr := make(chan error, 1)
	go func() { pushErr <- pushN(ctx, rdb, 5000, 1000, jobs) }()

	w := startWorkerProc(t, bin, rs.URL)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for k := 0; k < 5; k++ {
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		w.signal(syscall.SIGKILL)
		w.wait(5 * time.Second)
		t.Logf("kill %d: %d jobs pushed, queue %d, callbacks %d", k+1, len(jobs.snapshot()),
			rdb.LLen(ctx, "queue:mask_predictions").Val(), rdb.LLen(ctx, "queue:default").Val())
		w = startWorkerProc(t, bin, rs.URL)
	}
	if err := <-pushErr; err != nil {
		t.Fatal(err)
	}
	all := jobs.snapshot()
	if len(all) != 5000 {
		t.Fatalf("%d jobs pushed", len(all))
	}
	start := time.Now()
	o := waitOutcome(ctx, t, rdb, all, 150*time.Second)
	t.Logf("after the last restart: all results after %v; %s; %d callback jobs for 5000 jobs",
		time.Since(start).Round(time.Second), o, o.callbacks)
	if !o.done() {
		t.Fatalf("jobs lost: %s (e.g. %v %v)\nworker log:\n%s", o, head(o.missingCache), head(o.missingCallback), tail(w.log(), 30))
	}
	t.Logf("duplicate callbacks after 5 SIGKILLs: %d of %d jobs", o.duplicates, len(all))
	if o.duplicates != 0 {
		t.Errorf("%d duplicate callbacks: the write-back MULTI should make them exactly-once", o.duplicates)
	}
	verifyPredictions(ctx, t, rdb, all)
	if n := rdb.ZCard(ctx, "dead").Val(); n != 0 {
		t.Errorf("%d jobs in the dead set", n)
	}
	// A retry: 0 task whose worker died after its write-back is archived by
	// asynq's recoverer; the worker's rescue runs it again (a no-op then).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		n := rdb.ZCard(ctx, "asynq:{mask_predictions}:archived").Val()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d tasks left in asynq's archive", n)
			break
		}
	}
	w.signal(syscall.SIGTERM)
	if code, ok := w.wait(30 * time.Second); !ok || code != 0 {
		t.Errorf("final SIGTERM: exit %d (exited %v)", code, ok)
	}
}

// TestChaosSIGTERMUnderLoad: SIGTERM while 20,000 jobs are queued: the
// worker exits 0 within the 25 s shutdown timeout, and a restarted worker
// finishes every job.
func TestChaosSIGTERMUnderLoad(t *testing.T) {
	chaosPrereqs(t)
	t.Parallel()
	ctx := context.Background()
	bin := buildBinary(t)
	rs := redistest.Start(t, redistest.Options{Private: true})
	rdb := rs.Client()
	jobs := &pushed{jids: map[string]string{}}
	if err := pushN(ctx, rdb, 20000, 0, jobs); err != nil {
		t.Fatal(err)
	}
	w := startWorkerProc(t, bin, rs.URL)
	// Mid-drain: the worker does 10,000+ jobs/s, so wait for the first
	// callbacks rather than a fixed time.
	for deadline := time.Now().Add(20 * time.Second); rdb.LLen(ctx, "queue:default").Val() < 2000 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	before := rdb.LLen(ctx, "queue:default").Val()
	sent := time.Now()
	w.signal(syscall.SIGTERM)
	code, ok := w.wait(30 * time.Second)
	took := time.Since(sent)
	if !ok {
		t.Fatalf("worker did not exit within 30 s of SIGTERM")
	}
	if code != 0 || took > 25*time.Second {
		t.Errorf("SIGTERM: exit code %d after %v, want 0 within 25 s\n%s", code, took, tail(w.log(), 20))
	}
	left := rdb.LLen(ctx, "queue:mask_predictions").Val()
	asynqPending := rdb.LLen(ctx, "asynq:{mask_predictions}:pending").Val()
	asynqActive := rdb.LLen(ctx, "asynq:{mask_predictions}:active").Val()
	t.Logf("SIGTERM after %d callbacks: exit %d in %v; %d jobs back in queue:mask_predictions, asynq pending %d, active %d",
		before, code, took.Round(time.Millisecond), left, asynqPending, asynqActive)
	if asynqActive != 0 {
		t.Errorf("%d asynq tasks still active after a graceful shutdown", asynqActive)
	}
	if n := rdb.SCard(ctx, "processes").Val(); n != 0 {
		t.Errorf("process still on the Busy page after shutdown")
	}
	w2 := startWorkerProc(t, bin, rs.URL)
	o := waitOutcome(ctx, t, rdb, jobs.snapshot(), 60*time.Second)
	if !o.done() {
		t.Fatalf("jobs lost across SIGTERM: %s\n%s", o, tail(w2.log(), 20))
	}
	t.Logf("all 20000 done after restart; duplicate callbacks %d", o.duplicates)
	if o.duplicates != 0 {
		t.Errorf("%d duplicate callbacks after a graceful shutdown", o.duplicates)
	}
	w2.signal(syscall.SIGTERM)
	w2.wait(30 * time.Second)
}

// TestChaosRedisRestart: Redis is restarted while jobs flow. The worker
// recovers by itself, does not spin while Redis is away, and no job is lost.
func TestChaosRedisRestart(t *testing.T) {
	chaosPrereqs(t)
	t.Parallel()
	ctx := context.Background()
	bin := buildBinary(t)
	rs := redistest.Start(t, redistest.Options{Private: true, Persistent: true})
	rdb := rs.Client()
	w := startWorkerProc(t, bin, rs.URL)

	jobs := &pushed{jids: map[string]string{}}
	pushErr := make(chan error, 1)
	go func() { pushErr <- pushN(ctx, rdb, 6000, 1000, jobs) }()
	time.Sleep(2 * time.Second)
	rs.Stop()
	down := time.Now()
	cpu0 := w.cpuTicks()
	time.Sleep(4 * time.Second)
	cpu := w.cpuTicks() - cpu0
	rs.StartAgain()
	t.Logf("Redis down for %v; worker CPU meanwhile %d ticks (%.0f%% of one core)",
		time.Since(down).Round(time.Millisecond), cpu, float64(cpu)/4)
	if cpu > 100 { // 1 s of CPU in 4 s: spinning
		t.Errorf("worker used %d ticks of CPU in 4 s without Redis: it spins", cpu)
	}
	if err := <-pushErr; err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	o := waitOutcome(ctx, t, rdb, jobs.snapshot(), 15*time.Second)
	if !o.done() {
		// Slow path: a task whose outcome asynq could not record during the
		// outage waits for asynq's recoverer (lease 30 s + up to 1 min).
		t.Logf("not all done 15 s after the restart (%s); asynq: active %d, retry %d, lease %v",
			o, rdb.LLen(ctx, "asynq:{mask_predictions}:active").Val(), rdb.ZCard(ctx, "asynq:{mask_predictions}:retry").Val(),
			rdb.ZRangeWithScores(ctx, "asynq:{mask_predictions}:lease", 0, -1).Val())
		for _, z := range rdb.ZRange(ctx, "asynq:{mask_predictions}:lease", 0, -1).Val() {
			jid, _, _ := strings.Cut(z, "-")
			for _, line := range strings.Split(w.log(), "\n") {
				if strings.Contains(line, jid) {
					t.Logf("  %s", line)
				}
			}
		}
		o = waitOutcome(ctx, t, rdb, jobs.snapshot(), 150*time.Second)
	}
	t.Logf("after the restart: %s after %v", o, time.Since(start).Round(time.Second))
	if !o.done() {
		t.Fatalf("jobs lost across a Redis restart: %s\n%s\nworker log:\n%s", o, whereAre(ctx, rdb, head(o.missingCallback)), tail(w.log(), 60))
	}
	select {
	case <-w.done:
		t.Fatal("worker exited during the Redis outage")
	default:
	}
	w.signal(syscall.SIGTERM)
	if code, ok := w.wait(30 * time.Second); !ok || code != 0 {
		t.Errorf("SIGTERM: exit %d (exited %v)", code, ok)
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// whereAre reports where in Redis the given jids can be found.
func whereAre(ctx context.Context, rdb *redis.Client, jids []string) string {
	var b strings.Builder
	lists, _ := rdb.Keys(ctx, "*").Result()
	for _, jid := range jids {
		fmt.Fprintf(&b, "jid %s:", jid)
		for _, k := range lists {
			switch rdb.Type(ctx, k).Val() {
			case "list":
				for _, v := range rdb.LRange(ctx, k, 0, -1).Val() {
					if strings.Contains(v, jid) {
						fmt.Fprintf(&b, " list %s;", k)
					}
				}
			case "zset":
				for _, v := range rdb.ZRange(ctx, k, 0, -1).Val() {
					if strings.Contains(v, jid) {
						fmt.Fprintf(&b, " zset %s;", k)
					}
				}
			case "hash":
				if strings.Contains(k, jid) {
					fmt.Fprintf(&b, " hash %s state=%s;", k, rdb.HGet(ctx, k, "state").Val())
				}
			case "string":
				if strings.Contains(k, jid) {
					fmt.Fprintf(&b, " key %s;", k)
				}
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var _ = bytes.MinRead
