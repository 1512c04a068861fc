package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// reply is an error reply from Redis, as go-redis returns them.
type reply string

func (e reply) Error() string { return string(e) }
func (reply) RedisError()     {}

func TestClassify(t *testing.T) {
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name   string
		ctx    context.Context
		err    error
		want   fault
		reason string
	}{
		{"nil", nil, nil, faultNone, ""},
		{"redis.Nil", nil, redis.Nil, faultNone, ""},
		{"WRONGTYPE of a job's key", nil, reply("WRONGTYPE Operation against a key holding the wrong kind of value"), faultNone, ""},
		{"a script's own error", nil, reply("ERR user_script:3: reply_to is not a list script: 1a2b"), faultNone, ""},
		{"unknown command", nil, reply("ERR unknown command 'HELLO'"), faultNone, ""},
		{"BUSYKEY is per command", nil, reply("BUSYKEY Target key name already exists."), faultNone, ""},
		{"NOSCRIPT", nil, reply("NOSCRIPT No matching script. Please use EVAL."), faultNoScript, ""},
		{"WRONGPASS", nil, reply("WRONGPASS invalid username-password pair or user is disabled."), faultDown, "authentication failed (WRONGPASS)"},
		{"NOAUTH", nil, reply("NOAUTH Authentication required."), faultDown, "authentication failed (NOAUTH)"},
		{"wrapped by go-redis' initConn", nil, fmt.Errorf("failed to authenticate: %w", reply("WRONGPASS invalid username-password pair")), faultDown, "authentication failed (WRONGPASS)"},
		{"Redis 5 invalid password", nil, reply("ERR invalid password"), faultDown, "authentication failed"},
		{"AUTH without a password set", nil, reply("ERR AUTH <password> called without any password configured for the default user."), faultDown, "authentication failed"},
		{"DB index out of range", nil, fmt.Errorf("failed to initialize connection options: %w", reply("ERR DB index is out of range")), faultDown, "database index refused (check the /N in the Redis URL)"},
		{"invalid DB index", nil, reply("ERR invalid DB index"), faultDown, "database index refused (check the /N in the Redis URL)"},
		{"max clients", nil, reply("ERR max number of clients reached"), faultDown, "too many clients"},
		{"LOADING", nil, reply("LOADING Redis is loading the dataset in memory"), faultDown, "Redis is loading its data (LOADING)"},
		{"MASTERDOWN", nil, reply("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), faultDown, "replica without a master (MASTERDOWN)"},
		{"BUSY", nil, reply("BUSY Redis is busy running a script."), faultDown, "Redis busy running a script (BUSY)"},
		{"OOM in a script", nil, reply("OOM command not allowed when used memory > 'maxmemory'. script: a815, on @user_script:3."), faultPartial, "out of memory (OOM)"},
		{"READONLY", nil, reply("READONLY You can't write against a read only replica."), faultPartial, "read-only replica (READONLY)"},
		{"MISCONF", nil, reply("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), faultPartial, "persistence failing, writes refused (MISCONF)"},
		{"NOPERM", nil, reply("NOPERM User worker has no permissions to run the 'evalsha' command"), faultPartial, "command not permitted to this user (NOPERM)"},
		{"NOREPLICAS", nil, reply("NOREPLICAS Not enough good replicas to write."), faultPartial, "not enough replicas to write (NOREPLICAS)"},
		{"our own client closing", nil, fmt.Errorf("read: %w", net.ErrClosed), faultInconclusive, ""},
		{"connection refused", nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}, faultDown, "unreachable"},
		{"EOF", nil, io.EOF, faultDown, "unreachable"},
		{"TLS handshake", nil, errors.New("TLS handshake with redis at h:1 failed: is the port TLS?"), faultDown, "TLS handshake failed"},
		{"a dial's own timeout", context.Background(), context.DeadlineExceeded, faultDown, "unreachable (timeout)"},
		{"the caller gave up", expired, context.Canceled, faultInconclusive, ""},
		{"pool busy", nil, redis.ErrPoolTimeout, faultInconclusive, ""},
		{"client closed", nil, redis.ErrClosed, faultInconclusive, ""},
		{"another gate's answer", nil, &gateErr{reason: "x", err: reply("OOM command not allowed")}, faultInconclusive, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := c.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			f, reason, _ := classifyOne(ctx, c.err)
			if f != c.want || reason != c.reason {
				t.Errorf("classifyOne(%v) = %d %q, want %d %q", c.err, f, reason, c.want, c.reason)
			}
		})
	}
}

// fakeRedis stands in for Redis behind a gate: it counts the calls that
// reach it and answers with whatever answer() says.
type fakeRedis struct {
	calls  atomic.Int64
	mu     sync.Mutex
	answer func(cmd redis.Cmder) error
}

func (f *fakeRedis) set(answer func(cmd redis.Cmder) error) {
	f.mu.Lock()
	f.answer = answer
	f.mu.Unlock()
}

func (f *fakeRedis) do(g *gate, ctx context.Context, args ...any) error {
	cmd := redis.NewCmd(ctx, args...)
	return g.call(ctx, []redis.Cmder{cmd}, kindCmd, func(context.Context) error {
		f.calls.Add(1)
		f.mu.Lock()
		a := f.answer
		f.mu.Unlock()
		return a(cmd)
	})
}

func observed(level zapcore.Level) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(level)
	return zap.New(core), logs
}

// TestGatePacesCallers: 20 callers that retry at once on every error reach
// a failing Redis about once per backoff interval together, get errors
// meanwhile, see one log line when it fails and one when it recovers, and
// all go on once it answers again.
func TestGatePacesCallers(t *testing.T) {
	t.Parallel()
	log, logs := observed(zap.InfoLevel)
	g := newGate("test", log, 200*time.Millisecond)
	f := &fakeRedis{}
	f.set(func(redis.Cmder) error { return reply("WRONGPASS invalid username-password pair") })
	var failures, successes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := f.do(g, context.Background(), "get", "k"); err != nil {
					failures.Add(1)
				} else {
					successes.Add(1)
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	reached := f.calls.Load()
	// 50, 100, 200, 200, … ms ±20 %: about 9 probes in 1.5 s, plus the
	// calls already on their way when the first failure tripped the gate.
	if reached > 40 || reached < 5 {
		t.Errorf("%d calls reached the failing Redis in 1.5 s, want about one per interval (≈ 9 + the 20 in flight)", reached)
	}
	if ok, reason, since := stateOf(g); ok || reason != "authentication failed (WRONGPASS)" || since.IsZero() {
		t.Errorf("state while failing: ok=%v reason=%q since=%v", ok, reason, since)
	}
	f.set(func(redis.Cmder) error { return nil })
	deadline := time.Now().Add(time.Second)
	for successes.Load() < 1000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if successes.Load() < 1000 {
		t.Errorf("only %d calls succeeded within 1 s of Redis answering again", successes.Load())
	}
	if ok, _, _ := stateOf(g); !ok {
		t.Error("gate still failing after a success")
	}
	var lines []string
	for _, e := range logs.All() {
		lines = append(lines, e.Level.String()+" "+e.Message)
	}
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "warn Redis degraded") || !strings.HasPrefix(lines[1], "info Redis recovered") {
		t.Errorf("log lines %q, want one degraded and one recovered line", lines)
	}
	t.Logf("1.5 s of failure: %d calls reached Redis, %d calls answered with an error", reached, failures.Load())
}

func stateOf(g *gate) (bool, string, time.Time) {
	st := g.state()
	return st.OK, st.Reason, st.Since
}

// TestGateShutdownReleasesWaiters: a caller waiting out a 30 s backoff
// gets its answer at once when the gate is shut down, and later calls
// answer within gateStopWait without reaching Redis.
func TestGateShutdownReleasesWaiters(t *testing.T) {
	t.Parallel()
	g := newGate("test", zap.NewNop(), 30*time.Second)
	f := &fakeRedis{}
	f.set(func(redis.Cmder) error { return io.EOF })
	_ = f.do(g, context.Background(), "ping") // trips
	time.Sleep(100 * time.Millisecond)
	_ = f.do(g, context.Background(), "ping") // the first probe fails: next in ≈ 100 ms
	time.Sleep(150 * time.Millisecond)
	_ = f.do(g, context.Background(), "ping") // and the next: ≈ 200 ms
	done := make(chan error, 1)
	go func() { done <- f.do(g, context.Background(), "get", "k") }()
	time.Sleep(20 * time.Millisecond)
	before := f.calls.Load()
	start := time.Now()
	g.shutdown()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "not sent") {
			t.Errorf("released call: %v, want the outage's error, not sent", err)
		}
	case <-time.After(time.Second):
		t.Fatal("waiting caller not released by shutdown")
	}
	for i := 0; i < 5; i++ {
		if err := f.do(g, context.Background(), "get", "k"); err == nil {
			t.Fatal("call after shutdown succeeded against a failing Redis")
		}
	}
	if took := time.Since(start); took > 5*gateStopWait+200*time.Millisecond {
		t.Errorf("release and 5 calls after shutdown took %v", took)
	}
	if n := f.calls.Load() - before; n != 0 {
		t.Errorf("%d calls reached Redis after shutdown, want 0", n)
	}
}

// TestGateContextEndsWait: a caller's context ends its wait.
func TestGateContextEndsWait(t *testing.T) {
	t.Parallel()
	g := newGate("test", zap.NewNop(), 30*time.Second)
	f := &fakeRedis{}
	f.set(func(redis.Cmder) error { return io.EOF })
	_ = f.do(g, context.Background(), "ping")
	_ = f.do(g, context.Background(), "ping")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := f.do(g, ctx, "get", "k")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 500*time.Millisecond {
		t.Errorf("call with a 30 ms context: %v after %v", err, time.Since(start))
	}
}

// TestGatePartialFault: under OOM only the commands that met it wait (and
// only their success ends the outage); reads go on, and their success
// proves nothing. Per-command answers never trip the gate.
func TestGatePartialFault(t *testing.T) {
	t.Parallel()
	log, logs := observed(zap.InfoLevel)
	g := newGate("test", log, 100*time.Millisecond)
	f := &fakeRedis{}
	var oom atomic.Bool
	oom.Store(true)
	f.set(func(cmd redis.Cmder) error {
		switch cmd.Args()[0] {
		case "get":
			return redis.Nil
		case "hset":
			return reply("WRONGTYPE Operation against a key holding the wrong kind of value")
		case "evalsha":
			if oom.Load() {
				return reply("OOM command not allowed when used memory > 'maxmemory'.")
			}
			return redis.Nil
		}
		return nil
	})
	ctx := context.Background()
	for i := 0; i < 50; i++ { // per-command answers
		_ = f.do(g, ctx, "get", "k")
		_ = f.do(g, ctx, "hset", "k", "f", "v")
	}
	if ok, _, _ := stateOf(g); !ok || f.calls.Load() != 100 {
		t.Fatalf("per-command answers tripped the gate (ok=%v) or were held (%d calls)", ok, f.calls.Load())
	}
	_ = f.do(g, ctx, "evalsha", "aaaa", 0) // OOM: trips
	if ok, reason, _ := stateOf(g); ok || reason != "out of memory (OOM)" {
		t.Fatalf("after OOM: ok=%v reason %q", ok, reason)
	}
	calls := f.calls.Load()
	for i := 0; i < 50; i++ {
		if err := f.do(g, ctx, "get", "k"); !errors.Is(err, redis.Nil) {
			t.Fatalf("a read during OOM: %v, want Redis' answer", err)
		}
	}
	if n := f.calls.Load() - calls; n != 50 {
		t.Errorf("%d of 50 reads reached Redis during OOM, want all", n)
	}
	if ok, _, _ := stateOf(g); ok {
		t.Error("a read's success ended the OOM outage")
	}
	// The refused script waits for its probe and gets the OOM meanwhile.
	calls = f.calls.Load()
	start := time.Now()
	for time.Since(start) < 500*time.Millisecond {
		_ = f.do(g, ctx, "evalsha", "aaaa", 0)
	}
	if n := f.calls.Load() - calls; n > 8 {
		t.Errorf("%d refused scripts reached Redis in 0.5 s (backoff 50 → 100 ms), want ≤ 8", n)
	}
	oom.Store(false)
	time.Sleep(150 * time.Millisecond)
	if err := f.do(g, ctx, "evalsha", "aaaa", 0); !errors.Is(err, redis.Nil) {
		t.Errorf("script after memory was freed: %v", err)
	}
	if ok, _, _ := stateOf(g); !ok {
		t.Error("the script's success did not end the outage")
	}
	if n := logs.Len(); n != 2 {
		t.Errorf("%d log lines, want 2 (degraded, recovered)", n)
	}
}

// TestGateFlapKeepsBackoff: a fault that comes back right after a recovery
// continues the backoff instead of starting again at 50 ms.
func TestGateFlapKeepsBackoff(t *testing.T) {
	t.Parallel()
	g := newGate("test", zap.NewNop(), 400*time.Millisecond)
	f := &fakeRedis{}
	f.set(func(redis.Cmder) error { return reply("NOPERM no permissions") })
	ctx := context.Background()
	start := time.Now()
	for time.Since(start) < 1200*time.Millisecond {
		_ = f.do(g, ctx, "evalsha", "s", 0)
	}
	f.set(func(redis.Cmder) error { return nil })
	time.Sleep(450 * time.Millisecond)
	_ = f.do(g, ctx, "evalsha", "s", 0) // recovers
	f.set(func(redis.Cmder) error { return reply("NOPERM no permissions") })
	_ = f.do(g, ctx, "evalsha", "s", 0) // trips again
	g.mu.Lock()
	d := g.delay
	g.mu.Unlock()
	if d < 400*time.Millisecond {
		t.Errorf("backoff after a flap: %v, want it to go on at the cap (400 ms)", d)
	}
}

// TestIsDequeuePinsAsynq: the adaptive poll recognises asynq v0.26's dequeue
// script (and nothing else asynq runs at idle): the idle cost test would
// catch a miss, this says why.
func TestIsDequeuePinsAsynq(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{})
	rdb := rs.Client()
	var dequeues, others atomic.Int64
	rdb.AddHook(countHook{func(cmd redis.Cmder) {
		if isDequeue(cmd) {
			dequeues.Add(1)
		} else if n := cmd.Name(); n == "evalsha" || n == "eval" {
			others.Add(1)
		}
	}})
	srv := newTestServer(t, Config{Redis: rdb, IdlePollInterval: 10 * time.Millisecond})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if dequeues.Load() < 10 {
		t.Errorf("%d dequeue calls recognised in 0.5 s (idle poll 10 ms), want ≥ 10 (asynq's dequeue script changed?)", dequeues.Load())
	}
	t.Logf("0.5 s idle: %d dequeue scripts, %d other scripts", dequeues.Load(), others.Load())
}

type countHook struct{ f func(redis.Cmder) }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.f(cmd); return next(ctx, cmd) }
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Handler.Predictor = CRFPredictor(defaultCRF(t))
	if cfg.Handler.CallbackClass == "" {
		cfg.Handler.CallbackClass = callbackClass
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestIdleWorkerRedisCost: an idle worker with the default configuration
// (concurrency 10, one queue) costs Redis at most 50 commands/s, all
// components counted (asynq's poll, heartbeat, forwarder, janitor,
// recoverer; the bridge, the Sidekiq heartbeat, the scheduler); and a job
// pushed into the idle worker does not wait for the idle poll: the bridge
// wakes asynq's processor.
func TestIdleWorkerRedisCost(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s measurement (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{Private: true})
	rdb := rs.Client()
	asynqR := rs.Client()
	// The worker as cmd builds it: one client for the Sidekiq side, one for asynq.
	srv := newTestServer(t, Config{Redis: rdb, AsynqRedis: asynqR})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx) //nolint:errcheck
	time.Sleep(2 * time.Second)
	before := rs.Stats(ctx)
	const window = 10 * time.Second
	time.Sleep(window)
	d := rs.Stats(ctx).Sub(before)
	perSec := float64(d.Commands-1) / window.Seconds() // minus the first INFO
	t.Logf("idle worker: %.1f Redis commands/s over %v; by command: %v", perSec, window, d.Calls)
	if perSec > 50 {
		t.Errorf("idle worker costs %.1f Redis commands/s, want ≤ 50", perSec)
	}

	// A job into the idle worker: the bridge's blocking fetch and its wake
	// of the processor make it run at once, not at the next idle poll.
	client := sidekiq.NewClient(rdb)
	for i := 0; i < 3; i++ {
		start := time.Now()
		if _, err := client.Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{fmt.Sprintf("3M Aura 9205+ N95 idle %d", i)}); err != nil {
			t.Fatal(err)
		}
		for rdb.LLen(ctx, "queue:default").Val() <= int64(i) {
			if time.Since(start) > 5*time.Second {
				t.Fatal("job not done within 5 s")
			}
			time.Sleep(time.Millisecond)
		}
		t.Logf("job %d after idling: callback after %v", i, time.Since(start))
		time.Sleep(time.Second)
	}
}

// TestIdlePollWokenByBridge: with a long idle poll (3 s), a job pushed after
// the pool has idled long enough to sleep between looks runs within a
// fraction of that: the bridge's hand-over wakes the processor.
func TestIdlePollWokenByBridge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{})
	rdb := rs.Client()
	srv := newTestServer(t, Config{Redis: rdb, IdlePollInterval: 3 * time.Second})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx)             //nolint:errcheck
	time.Sleep(2500 * time.Millisecond) // the poll now sleeps ≈ 1–2 s between looks
	start := time.Now()
	if _, err := sidekiq.NewClient(rdb).Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{"Moldex 2200N95 Medium/Large"}); err != nil {
		t.Fatal(err)
	}
	for rdb.LLen(ctx, "queue:default").Val() == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("job not done within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
	if took := time.Since(start); took > 700*time.Millisecond {
		t.Errorf("job after idling took %v with a 3 s idle poll: the bridge did not wake the processor", took)
	} else {
		t.Logf("job after 2.5 s idle (3 s idle poll): done after %v", took)
	}
}

// TestRedisFaultsBackoff: a worker whose Redis refuses it (wrong password,
// no password, a database index out of range, full with noeviction) costs
// that Redis about one attempt per backoff interval per client after the
// warm-up, however busy its loops are; it logs one line per client when
// the fault starts and nothing per attempt; RedisState says degraded with a
// generic reason; and once the fault is fixed it recovers by itself and
// works a job. Shutdown while Redis still fails takes well under its
// timeout. RedisMaxBackoff is 4 s here to keep the test short (default 30 s:
// one attempt per client per 30 s after the first minute).
func TestRedisFaultsBackoff(t *testing.T) {
	if testing.Short() {
		t.Skip("≈ 18 s per case (-short)")
	}
	const (
		password  = "Right-Pass-77"
		wrong     = "Wrong-Pass-42"
		maxDelay  = 4 * time.Second
		warmUp    = 7 * time.Second // past the ramp: 50 ms doubling reaches 4 s after ≈ 6.4 s
		window    = 6 * time.Second
		fullBytes = 4 << 20
	)
	cases := []struct {
		name     string
		password string // the server's
		url      func(rs *redistest.Server) string
		fill     bool
		reason   string
		// fix ends the fault and returns a client that works afterwards.
		fix func(ctx context.Context, t *testing.T, rs *redistest.Server) *redis.Client
	}{
		{
			name: "wrong password", password: password,
			url:    func(rs *redistest.Server) string { return rs.URLWith(wrong, 0) },
			reason: "authentication failed (WRONGPASS)",
			fix: func(ctx context.Context, t *testing.T, rs *redistest.Server) *redis.Client {
				if err := rs.Client().ConfigSet(ctx, "requirepass", wrong).Err(); err != nil {
					t.Fatal(err)
				}
				c := redis.NewClient(&redis.Options{Addr: rs.Addr, Password: wrong})
				t.Cleanup(func() { c.Close() })
				return c
			},
		},
		{
			name: "no password", password: password,
			url:    func(rs *redistest.Server) string { return rs.URLWith("", 0) },
			reason: "authentication failed (NOAUTH)",
		},
		{
			name:   "database index out of range",
			url:    func(rs *redistest.Server) string { return rs.URLWith("", 99) },
			reason: "database index refused (check the /N in the Redis URL)",
		},
		{
			name: "full (maxmemory, noeviction)", fill: true,
			url:    func(rs *redistest.Server) string { return rs.URLWith("", 0) },
			reason: "out of memory (OOM)",
			fix: func(ctx context.Context, t *testing.T, rs *redistest.Server) *redis.Client {
				c := rs.Client()
				if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
					t.Fatal(err)
				}
				return c
			},
		},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rs := redistest.Start(t, redistest.Options{Private: true, Password: c.password})
			if c.fill {
				rs.Fill(ctx, fullBytes)
			}
			opt, err := redis.ParseURL(c.url(rs))
			if err != nil {
				t.Fatal(err)
			}
			rdb, asynqR := redis.NewClient(opt), redis.NewClient(opt)
			t.Cleanup(func() { rdb.Close(); asynqR.Close() })
			log, logs := observed(zap.InfoLevel)
			srv := newTestServer(t, Config{Redis: rdb, AsynqRedis: asynqR, RedisMaxBackoff: maxDelay, Logger: log})
			start := time.Now()
			if err := srv.Start(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(warmUp)
			before := rs.Stats(ctx)
			linesBefore := logs.FilterLevelExact(zap.WarnLevel).Len() + logs.FilterLevelExact(zap.ErrorLevel).Len()
			time.Sleep(window)
			d := rs.Stats(ctx).Sub(before)
			linesDuring := logs.FilterLevelExact(zap.WarnLevel).Len() + logs.FilterLevelExact(zap.ErrorLevel).Len() - linesBefore
			secs := window.Seconds()
			scripts := d.Failed["evalsha"] + d.Failed["eval"] + d.Rejected["evalsha"] + d.Rejected["eval"]
			errorsOf := int64(0)
			for _, n := range d.Errors {
				errorsOf += n
			}
			t.Logf("%s, after %v of warm-up, over %v: %.2f connections/s, %.2f failing scripts/s, %.2f error replies/s %v, %.1f commands/s; %d warn/error lines",
				c.name, warmUp, window, float64(d.Connections-1)/secs, float64(scripts)/secs, float64(errorsOf)/secs, d.Errors, float64(d.Commands-1)/secs, linesDuring)
			// Two clients (Sidekiq side, asynq), one attempt each per interval (≥ 3.2 s here).
			if float64(d.Connections-1)/secs > 1 {
				t.Errorf("%.2f connections/s to the Redis refusing us, want ≤ 1", float64(d.Connections-1)/secs)
			}
			if float64(scripts)/secs > 1 {
				t.Errorf("%.2f failing scripts/s, want ≤ 1", float64(scripts)/secs)
			}
			// An attempt may be answered with several errors (HELLO, AUTH and
			// CLIENT SETINFO on a new connection; each command of a MULTI).
			if float64(errorsOf)/secs > 5 {
				t.Errorf("%.2f error replies/s, want ≤ 5 (one attempt per client per interval)", float64(errorsOf)/secs)
			}
			if linesDuring != 0 {
				t.Errorf("%d warn/error lines while the fault lasted, want 0 (one per state change)", linesDuring)
			}
			degraded := logs.FilterMessageSnippet("Redis degraded").All()
			if len(degraded) != 2 {
				t.Errorf("%d 'Redis degraded' lines, want one per client (2)", len(degraded))
				for _, e := range logs.All() {
					t.Logf("%s %s %v", e.Level, e.Message, e.ContextMap())
				}
			}
			ok, reason, since := srv.RedisState()
			if ok || reason != c.reason || since.IsZero() || since.Before(start) {
				t.Errorf("RedisState() = %v %q %v, want degraded, %q", ok, reason, since, c.reason)
			}
			for _, secret := range []string{rs.Addr, password, wrong, "127.0.0.1"} {
				if strings.Contains(reason, secret) {
					t.Errorf("RedisState reason %q contains %q", reason, secret)
				}
			}

			if c.fix == nil {
				// Shutdown while Redis still refuses us.
				sctx, cancel := context.WithTimeout(ctx, 25*time.Second)
				defer cancel()
				began := time.Now()
				_ = srv.Shutdown(sctx)
				took := time.Since(began)
				t.Logf("shutdown while Redis refuses us: %v", took)
				if took > 5*time.Second {
					t.Errorf("shutdown while Redis fails took %v, want well under the 25 s timeout", took)
				}
				return
			}
			defer srv.Shutdown(ctx) //nolint:errcheck
			admin := c.fix(ctx, t, rs)
			fixed := time.Now()
			if _, err := sidekiq.NewClient(admin).Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{"3M Aura 9205+ N95"}); err != nil {
				t.Fatal(err)
			}
			for admin.LLen(ctx, "queue:default").Val() == 0 {
				if time.Since(fixed) > 30*time.Second {
					t.Fatalf("no callback 30 s after the fix; RedisState %v", fmt.Sprint(srv.RedisState()))
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("fixed → job done after %v", time.Since(fixed))
			if ok, _, _ := srv.RedisState(); !ok {
				t.Error("RedisState still degraded after a job went through")
			}
			recovered := logs.FilterMessageSnippet("Redis recovered").All()
			if len(recovered) == 0 {
				t.Error("no 'Redis recovered' line")
			}
			for _, e := range recovered {
				if _, ok := e.ContextMap()["degraded_for"]; !ok {
					t.Errorf("recovered line without how long: %v", e.ContextMap())
				}
			}
		})
	}
}

// TestRecoversAfterRedisRestart: Redis stops for 3 s (every call fails to
// dial; go-redis' pool then answers from its cache of the last dial error
// until its background dialer gets through) and comes back: the worker
// works a job within a backoff interval or two, by itself.
func TestRecoversAfterRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts redis-server (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{Private: true})
	admin := rs.Client()
	rdb, asynqR := rs.Client(), rs.Client()
	log, logs := observed(zap.InfoLevel)
	srv := newTestServer(t, Config{Redis: rdb, AsynqRedis: asynqR, Logger: log})
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx) //nolint:errcheck
	client := sidekiq.NewClient(admin)
	done := func(n int64) func() bool {
		return func() bool { return admin.LLen(ctx, "queue:default").Val() >= n }
	}
	if _, err := client.Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{"3M 1860s"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the first job", done(1))
	rs.Stop()
	time.Sleep(3 * time.Second)
	rs.StartAgain()
	back := time.Now()
	if _, err := client.Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{"Zimi ZM9233"}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("%s %s %v", e.Level, e.Message, e.ContextMap())
			}
		}
	}()
	waitUntil(t, 20*time.Second, "a job after the restart", done(1)) // the restart emptied Redis
	t.Logf("job done %v after Redis came back", time.Since(back))
	if n := logs.FilterMessageSnippet("Redis recovered").Len(); n == 0 {
		t.Error("no 'Redis recovered' line")
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
