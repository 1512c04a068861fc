package sidekiq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// The tests run against a real redis-server: a private one this package starts on a free
// port (no persistence, in a temporary directory, killed at the end), or the one
// TEST_REDIS_URL names (not REDIS_URL: a developer's app Redis must never be flushed by a
// test run). Every test flushes the database first.
var (
	testRedisURL string
	testRedisErr error
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if url := os.Getenv("TEST_REDIS_URL"); url != "" {
		testRedisURL = url
	} else {
		srv, err := startRedisServer("")
		if err != nil {
			testRedisErr = err
		} else {
			testRedisURL = srv.url
			defer srv.stop()
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			return 1
		}
	}
	return code
}

type redisServer struct {
	url  string
	addr string
	cmd  *exec.Cmd
	dir  string
}

// startRedisServer starts `redis-server --port <free port> --save ” --appendonly no`
// in a fresh temporary directory; addr "" picks a free port.
func startRedisServer(addr string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not installed (apt-get install redis-server): %w", err)
	}
	if addr == "" {
		if addr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "sidekiq-test-redis-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	srv := &redisServer{url: "redis://" + addr + "/0", addr: addr, cmd: cmd, dir: dir}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			rdb := redis.NewClient(&redis.Options{Addr: addr})
			err = rdb.Ping(context.Background()).Err()
			rdb.Close()
			if err == nil {
				return srv, nil
			}
		}
		if time.Now().After(deadline) {
			srv.stop()
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return nil, fmt.Errorf("redis-server on %s did not come up: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
	os.RemoveAll(s.dir)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// newTestRedis returns a client on the test Redis, flushed, closed at the end of the test.
func newTestRedis(t testing.TB) *redis.Client {
	t.Helper()
	if testRedisErr != nil {
		// Skip only where redis-server is not installed at all; a server
		// that is installed but failed to start is a failure, not a skip.
		if _, err := exec.LookPath("redis-server"); err != nil {
			t.Skipf("no Redis for this test: %v", testRedisErr)
		}
		t.Fatalf("redis-server is installed but the test server did not start: %v", testRedisErr)
	}
	opt, err := redis.ParseURL(testRedisURL)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("flush test Redis: %v", err)
	}
	return rdb
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// observedLogger logs to the test's log and records every entry, for tests that wait
// for the event a line reports instead of sleeping.
func observedLogger(t testing.TB) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)), logs
}

// waitLogged waits until a line with message msg was logged to logs.
func waitLogged(t testing.TB, timeout time.Duration, logs *observer.ObservedLogs, msg string) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("the log line %q", msg), func() bool { return logs.FilterMessage(msg).Len() > 0 })
}

// commandCounter is a go-redis hook that counts the commands matching match once
// they have returned.
type commandCounter struct {
	match func(redis.Cmder) bool
	n     atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if c.match(cmd) {
			c.n.Add(1)
		}
		return err
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// pendingReads returns a client of rdb's server, to be the bridge's AsynqRedis, that
// counts the reads of asynq's pending count of q. The bridge's transfer loop makes one
// at the start of each round, before it decides how much to move; so once the count has
// grown by 2 since a moment, a round that began after that moment has ended, moves and
// enqueues included: what the bridge would have moved by then, it has.
func pendingReads(t testing.TB, rdb *redis.Client, q string) (*redis.Client, *atomic.Int64) {
	c := &commandCounter{match: func(cmd redis.Cmder) bool {
		args := cmd.Args()
		return cmd.Name() == "llen" && len(args) == 2 && args[1] == asynqPendingKey(q)
	}}
	ardb := redis.NewClient(rdb.Options())
	ardb.AddHook(c)
	t.Cleanup(func() { ardb.Close() })
	return ardb, &c.n
}

// waitRounds waits until the transfer loop counted by reads (pendingReads) has run a
// whole round that began after this call.
func waitRounds(t testing.TB, reads *atomic.Int64) {
	t.Helper()
	target := reads.Load() + 2
	waitFor(t, 5*time.Second, "a whole round of the transfer loop", func() bool { return reads.Load() >= target })
}

// runRuby runs a script of testdata/ruby with the Debian ruby-sidekiq against the test
// Redis and returns its stdout; it skips the test if Ruby or Sidekiq is missing.
func runRuby(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		t.Skip("ruby not installed: the check against the real Sidekiq client needs ruby and ruby-sidekiq (apt-get install ruby-sidekiq)")
	}
	if out, err := exec.Command(ruby, "-e", `require "sidekiq"`).CombinedOutput(); err != nil {
		t.Skipf("ruby cannot load sidekiq (apt-get install ruby-sidekiq): %v\n%s", err, out)
	}
	cmd := exec.Command(ruby, append([]string{filepath.Join("testdata", "ruby", script)}, args...)...)
	cmd.Env = append(os.Environ(), "REDIS_URL="+testRedisURL)
	var stderr []byte
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		stderr = ee.Stderr
	}
	if err != nil {
		t.Fatalf("ruby %s: %v\n%s", script, err, stderr)
	}
	return out
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("atoi(%q): %v", s, err)
	}
	return n
}
