package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore/s3test"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// TestRedissToPlainPort: rediss:// to a Redis that speaks no TLS fails
// within the dial timeout with a message that says what is wrong, instead
// of go-redis' bare "context deadline exceeded"; and the caller's context
// still bounds the handshake.
func TestRedissToPlainPort(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Options{})
	rf := redisFlags{url: "rediss://" + rs.Addr + "/0?dial_timeout=1s"}
	opt, err := rf.options(IO{Env: func(string) string { return "" }}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	opt.MaxRetries = -1
	// A pool of 4 for the test's 2 failing dials: at PoolSize dial errors
	// go-redis starts a goroutine that redials once a second and notices
	// Close only after its sleep, which goleak (TestMain) would report when
	// this test runs last.
	rdb := newRedis(opt, 4)
	defer rdb.Close()
	for _, timeout := range []time.Duration{5 * time.Second, 300 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		err := rdb.Ping(ctx).Err()
		took := time.Since(start)
		cancel()
		t.Logf("caller timeout %v: %v after %v", timeout, err, took)
		if err == nil || !strings.Contains(err.Error(), "TLS handshake with redis at "+rs.Addr+" failed") ||
			!strings.Contains(err.Error(), "is the port TLS?") {
			t.Errorf("rediss:// to a plain port: %v, want a TLS handshake error that asks whether the port is TLS", err)
		}
		if took > min(timeout, time.Second)+500*time.Millisecond {
			t.Errorf("failed after %v, want within min(caller %v, dial timeout 1 s)", took, timeout)
		}
	}
}

// jsonLines checks that every line of out is a JSON object and returns them.
func jsonLines(t *testing.T, what, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("%s: not a JSON line: %q", what, sc.Text())
			continue
		}
		lines = append(lines, m)
	}
	return lines
}

// procOut runs the binary with its stdout and stderr in files.
type procOut struct {
	cmd            *exec.Cmd
	done           chan struct{}
	stdout, stderr string
}

func startProc(t *testing.T, bin string, env map[string]string, args ...string) *procOut {
	t.Helper()
	dir := t.TempDir()
	p := &procOut{done: make(chan struct{}), stdout: filepath.Join(dir, "stdout"), stderr: filepath.Join(dir, "stderr")}
	outF, err := os.Create(p.stdout)
	if err != nil {
		t.Fatal(err)
	}
	errF, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = os.Environ()
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = outF, errF
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); outF.Close(); errF.Close(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *procOut) read(which string) string {
	b, _ := os.ReadFile(which)
	return string(b)
}

func (p *procOut) waitLog(t *testing.T, timeout time.Duration, snippet string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.read(p.stderr), snippet) {
		select {
		case <-p.done:
			t.Fatalf("exited before logging %q:\n%s", snippet, p.read(p.stderr))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q after %v:\n%s", snippet, timeout, p.read(p.stderr))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sigterm sends SIGTERM and returns how long the process took to exit.
func (p *procOut) sigterm(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("no exit %v after SIGTERM:\n%s", limit, p.read(p.stderr))
	}
	return time.Since(start)
}

// TestWorkerSIGTERMWhileRedisFails runs the binary against a Redis that
// refuses it (wrong password) or does not speak TLS (rediss:// to a plain
// port): it says so clearly, once per client, and SIGTERM still ends it
// well within the 25 s shutdown timeout. Every log line is JSON.
func TestWorkerSIGTERMWhileRedisFails(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary (-short)")
	}
	bin := buildBinary(t)
	cases := []struct {
		name    string
		opts    redistest.Options
		url     func(rs *redistest.Server) string
		snippet string // in the "Redis degraded" line
	}{
		{"wrong password", redistest.Options{Private: true, Password: "Right-Pass-1"},
			func(rs *redistest.Server) string { return rs.URLWith("Wrong-Pass-2", 0) }, `"reason":"authentication failed (WRONGPASS)"`},
		{"rediss to a plain port", redistest.Options{Private: true},
			func(rs *redistest.Server) string { return "rediss://" + rs.Addr + "/0" }, `is the port TLS?`},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			rs := redistest.Start(t, c.opts)
			p := startProc(t, bin, map[string]string{"REDIS_URL": c.url(rs), "LOG_FORMAT": "json", "LOG_LEVEL": "info"}, "worker")
			p.waitLog(t, 20*time.Second, `"msg":"worker started"`)
			p.waitLog(t, 20*time.Second, c.snippet)
			degradedLines := func() int { return strings.Count(p.read(p.stderr), `"msg":"Redis degraded`) }
			waitUntil(t, 20*time.Second, "both clients' 'Redis degraded' lines", func() bool { return degradedLines() >= 2 })
			// A few rounds of backoff: every attempt of the worker's is a connection
			// Redis accepts and then gets nothing useful from (wrong password, a TLS
			// handshake). Redis counts them; a repeated line would be logged by now.
			admin := rs.Client()
			conns := func() int64 { return redistest.ParseStats(admin.Info(context.Background(), "stats").Val()).Connections }
			from, since := conns(), time.Now() // admin's own connection included
			waitUntil(t, 20*time.Second, "3 more attempts to connect", func() bool { return conns() >= from+3 })
			t.Logf("%s: %d 'Redis degraded' lines after %d more attempts in %v", c.name, degradedLines(), conns()-from, time.Since(since))
			took := p.sigterm(t, 30*time.Second)
			t.Logf("%s: exit %v after SIGTERM", c.name, took)
			if took > 25*time.Second {
				t.Errorf("exit %v after SIGTERM, want within the 25 s shutdown timeout", took)
			}
			stderr := p.read(p.stderr)
			lines := jsonLines(t, "stderr", stderr)
			jsonLines(t, "stdout", p.read(p.stdout))
			degraded := 0
			for _, l := range lines {
				if strings.HasPrefix(fmt.Sprint(l["msg"]), "Redis degraded") {
					degraded++
				}
			}
			if degraded != 2 {
				t.Errorf("%d 'Redis degraded' lines, want one per client (2):\n%s", degraded, stderr)
			}
			if c.name == "rediss to a plain port" && strings.Contains(stderr, `"error":"context deadline exceeded"`) {
				t.Errorf("a bare 'context deadline exceeded' is logged:\n%s", stderr)
			}
		})
	}
}

// TestLogFormatJSONOnly runs `maskpredictor run` (worker, HTTP API, /metrics
// with asynq's collector, /admin/ with asynqmon, the model from S3 with hot
// reload) with LOG_FORMAT=json and LOG_LEVEL=debug through a job, a scrape,
// an admin call, a model reload (SIGHUP), a Redis crash (the collector and
// go-redis log their trouble) and SIGTERM: every line on stdout and stderr
// is JSON.
func TestLogFormatJSONOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary (-short)")
	}
	t.Parallel()
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{Private: true})
	s3 := s3test.Start(t, "models")
	uri := s3.URI("prod/model.bin")
	st, err := modelstore.Open(ctx, uri, modelstore.Config{Getenv: s3.Getenv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	vs := modelVariants(t)
	if _, err := st.Put(ctx, vs[0].Data); err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	addr := freeAddr(t)
	env := map[string]string{
		"REDIS_URL": rs.URL, "MODEL_URI": uri, "LOG_FORMAT": "json", "LOG_LEVEL": "debug",
		"ADMIN_TOKEN": "admin-token-1", "MODEL_POLL": "1s",
	}
	for k, v := range s3.Env() {
		env[k] = v
	}
	p := startProc(t, bin, env, "run", "--addr", addr, "--callback-class", "JSONLogCallbackJob")
	p.waitLog(t, 20*time.Second, `"msg":"worker started"`)
	base := "http://" + addr
	get := func(path string, auth bool) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer admin-token-1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Logf("GET %s: %v", path, err)
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for get("/health", false) != http.StatusOK && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	rdb := rs.Client()
	if _, err := sidekiq.NewClient(rdb).Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{"3M Aura 9205+ N95", 7}); err != nil {
		t.Fatal(err)
	}
	for rdb.LLen(ctx, "queue:default").Val() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("job not done:\n%s", p.read(p.stderr))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("/metrics %d, /admin/ %d, /admin/api/queues %d", get("/metrics", true), get("/admin/", true), get("/admin/api/queues", true))
	if _, err := st.Put(ctx, vs[1].Data); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, 10*time.Second, vs[1].Version)
	rs.Kill() // Redis gone: asynq's collector, go-redis and the gates have something to say
	time.Sleep(500 * time.Millisecond)
	t.Logf("with Redis down: /metrics %d, /health %d", get("/metrics", true), get("/health", false))
	time.Sleep(1500 * time.Millisecond)
	took := p.sigterm(t, 30*time.Second)
	t.Logf("exit %v after SIGTERM", took)
	stderr, stdout := p.read(p.stderr), p.read(p.stdout)
	lines := jsonLines(t, "stderr", stderr)
	jsonLines(t, "stdout", stdout)
	loggers := map[string]int{}
	for _, l := range lines {
		loggers[fmt.Sprint(l["logger"])]++
	}
	t.Logf("%d JSON lines on stderr, %d bytes on stdout; by logger: %v", len(lines), len(stdout), loggers)
	if len(lines) < 10 {
		t.Errorf("only %d log lines:\n%s", len(lines), stderr)
	}
	if !bytes.Contains([]byte(stderr), []byte("Failed to collect metrics data")) {
		t.Logf("note: asynq's collector logged nothing this run")
	}

	// The AWS SDK's own logger: no credentials configured, an EC2 metadata
	// service that refuses IMDSv2 tokens → "falling back to IMDSv1".
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	defer imds.Close()
	env = map[string]string{
		"MODEL_URI": uri, "LOG_FORMAT": "json", "AWS_ENDPOINT_URL": s3.URL, "AWS_REGION": "us-east-1",
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": filepath.Join(t.TempDir(), "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "none"),
		"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.URL,
	}
	p = startProc(t, bin, env, "serve", "--addr", freeAddr(t))
	p.waitLog(t, 20*time.Second, `"msg":"http configured"`)
	p.sigterm(t, 30*time.Second)
	stderr = p.read(p.stderr)
	jsonLines(t, "stderr (serve, no AWS credentials)", stderr)
	if !strings.Contains(stderr, `"msg":"aws sdk: `) {
		t.Logf("note: the AWS SDK logged nothing this run:\n%s", stderr)
	}
}

// TestExplainSentinelError: only unanimous answers are named; anything
// mixed or unreachable keeps go-redis' own message.
func TestExplainSentinelError(t *testing.T) {
	const pre = "redis: all sentinels specified in configuration are unreachable: "
	for _, c := range []struct {
		msg, want string
	}{
		{pre + "redis: nil", "no sentinel knows the master name (REDIS_SENTINEL_MASTER)"},
		{pre + "redis: nil\nredis: nil\nredis: nil", "no sentinel knows the master name (REDIS_SENTINEL_MASTER)"},
		{pre + "WRONGPASS invalid username-password pair or user is disabled.\nNOAUTH Authentication required.", "sentinel authentication failed (REDIS_SENTINEL_PASSWORD)"},
		{pre + "redis: nil\nWRONGPASS invalid username-password pair", ""},
		{pre + "redis: nil\ndial tcp 10.0.0.2:26379: connect: connection refused", ""},
		{pre + "dial tcp 10.0.0.1:26379: i/o timeout", ""},
		{"dial tcp 10.0.0.1:6379: connect: connection refused", ""},
	} {
		err := explainSentinelError(errors.New(c.msg), "mymaster")
		var se *sentinelError
		got := ""
		if errors.As(err, &se) {
			got = se.RedisFaultReason()
		}
		if got != c.want || err.Error() == "" {
			t.Errorf("%q: reason %q, want %q", c.msg, got, c.want)
		}
	}
}
