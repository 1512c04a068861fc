package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a `maskpredictor serve|run` started in-process on a free port.
type running struct {
	base   string
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

// startCmd runs Main(args) with env and waits for its "http listening" log
// line (JSON logs), which names the port.
func startCmd(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	e := map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "info"}
	for k, v := range env {
		e[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		r.done <- Main(ctx, args, func(k string) string { return e[k] }, strings.NewReader(""), io.Discard, r.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("command did not stop")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(r.stderr.String()))
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "http listening" {
				r.base = "http://" + line.Addr
				return r
			}
		}
		select {
		case code := <-r.done:
			t.Fatalf("exited %d before listening:\n%s", code, r.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("never listened:\n%s", r.stderr.String())
	return nil
}

// stop cancels the command (SIGTERM) and returns its exit code.
func (r *running) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	select {
	case code := <-r.done:
		r.done <- code // for the cleanup
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30 s after SIGTERM")
		return -1
	}
}

func httpDo(t *testing.T, method, url, body string, hdr ...string) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, string(b)
}

func TestServe(t *testing.T) {
	r := startCmd(t, map[string]string{"ADMIN_TOKEN": "tok", "METRICS_TOKEN": "mtok"}, "serve", "--addr", "127.0.0.1:0")
	code, h, body := httpDo(t, "GET", r.base+"/health", "")
	if code != 200 || h["status"] != "ok" || h["model_loaded"] != true || h["redis"] != "disabled" || h["model_source"] != "embedded" {
		t.Errorf("health %d %s", code, body)
	}
	code, p, body := httpDo(t, "POST", r.base+"/predict", `{"mask_name":"3M Aura 9205+ N95"}`)
	if code != 200 || p["model_version"] != h["model_version"] || p["fallback"] != false {
		t.Errorf("predict %d %s", code, body)
	}
	if code, _, _ := httpDo(t, "GET", r.base+"/admin/", ""); code != 401 {
		t.Errorf("admin without token: %d", code)
	}
	if code, _, body := httpDo(t, "GET", r.base+"/admin/", "", "Authorization", "Bearer tok"); code != 200 || !strings.Contains(body, "not configured") {
		t.Errorf("admin: %d", code)
	}
	if code, _, _ := httpDo(t, "GET", r.base+"/admin/queues/", "", "Authorization", "Bearer tok"); code != 404 {
		t.Errorf("asynqmon without Redis: %d", code)
	}
	if code, _, _ := httpDo(t, "GET", r.base+"/metrics", ""); code != 401 {
		t.Errorf("metrics without token: %d", code)
	}
	if code, _, body := httpDo(t, "GET", r.base+"/metrics", "", "Authorization", "Bearer mtok"); code != 200 || !strings.Contains(body, `maskpredictor_predictions_total{source="model"} 1`) {
		t.Errorf("metrics: %d", code)
	}
	if code := r.stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, r.stderr.String())
	}
}

func TestServeWithoutAdmin(t *testing.T) {
	r := startCmd(t, nil, "serve", "--addr", "127.0.0.1:0", "--rules")
	if code, _, _ := httpDo(t, "GET", r.base+"/admin/", ""); code != 404 {
		t.Errorf("admin without credentials configured: %d", code)
	}
	if code, h, _ := httpDo(t, "GET", r.base+"/health", ""); code != 200 || h["status"] != "degraded" || h["fallback_reason"] != "--rules given" {
		t.Errorf("rules: %d %v", code, h)
	}
	if code, _, _ := httpDo(t, "GET", r.base+"/metrics", ""); code != 200 {
		t.Errorf("metrics without a token configured: %d", code)
	}
}

func TestServeWithRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	r := startCmd(t, map[string]string{"REDIS_URL": srv.URL, "ADMIN_USER": "u", "ADMIN_PASSWORD": "p", "ADMIN_READ_ONLY": "true"},
		"serve", "--addr", "127.0.0.1:0")
	if code, h, _ := httpDo(t, "GET", r.base+"/health", ""); code != 200 || h["redis"] != "ok" || h["status"] != "ok" {
		t.Errorf("health %d %v", code, h)
	}
	for i := 0; i < 2; i++ {
		if code, _, body := httpDo(t, "POST", r.base+"/predict", `{"mask_name":"Zimi ZM9233"}`); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	if n, _ := srv.Client().Exists(context.Background(), "maskpredictor:prediction:zimi zm9233").Result(); n != 1 {
		t.Error("no cache entry")
	}
	_, _, body := httpDo(t, "GET", r.base+"/metrics", "")
	if !strings.Contains(body, `maskpredictor_predictions_total{source="cache"} 1`) || !strings.Contains(body, `maskpredictor_ingress_queue_depth{queue="mask_predictions"} 0`) {
		t.Errorf("metrics:\n%s", body)
	}
	auth := []string{"Authorization", "Basic dTpw"} // u:p
	if code, _, _ := httpDo(t, "GET", r.base+"/admin/queues/api/queues", "", auth...); code != 200 {
		t.Errorf("asynqmon API: %d", code)
	}
	if code, _, _ := httpDo(t, "POST", r.base+"/admin/queues/api/queues/mask_predictions:pause", "", auth...); code != 405 {
		t.Errorf("read-only asynqmon accepted a POST: %d", code)
	}
	// --http-cache=false: predictions are not read through the cache.
	r2 := startCmd(t, map[string]string{"REDIS_URL": srv.URL}, "serve", "--addr", "127.0.0.1:0", "--http-cache=false")
	httpDo(t, "POST", r2.base+"/predict", `{"mask_name":"Zimi ZM9233"}`)
	if _, _, body := httpDo(t, "GET", r2.base+"/metrics", ""); !strings.Contains(body, `maskpredictor_predictions_total{source="model"} 1`) {
		t.Errorf("cache used with --http-cache=false")
	}
}

func TestServeUsageErrors(t *testing.T) {
	cases := []struct {
		env  map[string]string
		args []string
	}{
		{map[string]string{"ADMIN_USER": "u"}, nil},
		{map[string]string{"ADMIN_PASSWORD": "p"}, nil},
		{map[string]string{"HTTP_CACHE": "maybe"}, nil},
		{map[string]string{"ADMIN_READ_ONLY": "yes please"}, nil},
		{map[string]string{"CACHE_TIMEOUT": "soon"}, nil},
		{nil, []string{"--max-names", "0"}},
		{nil, []string{"--read-timeout", "0s"}},
		{nil, []string{"--shutdown-timeout", "10ms"}},
		{nil, []string{"--queues", "bad queue!"}},
		{nil, []string{"extra"}},
		{map[string]string{"REDIS_URL": "nope://x"}, nil},
	}
	for _, c := range cases {
		args := append([]string{"serve", "--addr", "127.0.0.1:0"}, c.args...)
		if code, _, errs := runMain(t, c.env, "", args...); code != 2 {
			t.Errorf("%v %v: exit %d, want 2\n%s", c.env, c.args, code, errs)
		}
	}
	// A port in use is an error at start (exit 1), not a hang.
	r := startCmd(t, nil, "serve", "--addr", "127.0.0.1:0")
	addr := strings.TrimPrefix(r.base, "http://")
	if code, _, errs := runMain(t, nil, "", "serve", "--addr", addr); code != 1 || !strings.Contains(errs, "listening on") {
		t.Errorf("port in use: exit %d\n%s", code, errs)
	}
}

// TestRunWorkerAndHTTP runs the worker and the HTTP server in one process: a job Rails
// pushes is predicted, and the HTTP side sees it (cache, job metrics).
func TestRunWorkerAndHTTP(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	r := startCmd(t, map[string]string{"REDIS_URL": srv.URL, "ADMIN_TOKEN": "t"}, "run", "--addr", "127.0.0.1:0", "--concurrency", "2")
	ctx := context.Background()
	rdb := srv.Client()
	if _, err := sidekiq.NewClient(rdb).Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{"Honeywell DF300 N95"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := rdb.Exists(ctx, "maskpredictor:prediction:honeywell df300 n95").Result(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not processed:\n%s", r.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The HTTP API answers the worker's name from the cache.
	httpDo(t, "POST", r.base+"/predict", `{"mask_name":"honeywell DF300 n95"}`)
	_, _, body := httpDo(t, "GET", r.base+"/metrics", "")
	for _, want := range []string{
		`maskpredictor_predictions_total{source="cache"} 1`,
		`maskpredictor_job_duration_seconds_count{outcome="ok",queue="mask_predictions"} 1`,
		`maskpredictor_cache_requests_total{origin="worker",result="miss"} 1`,
		`asynq_queue_size{queue="mask_predictions"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if code, _, body := httpDo(t, "GET", r.base+"/admin/", "", "Authorization", "Bearer t"); code != 200 || !strings.Contains(body, "Worker hits / misses</th><td class=\"num\">0 / 1") {
		t.Errorf("admin %d:\n%s", code, body)
	}
	if code, h, _ := httpDo(t, "GET", r.base+"/health", ""); code != 200 || h["redis"] != "ok" {
		t.Errorf("health %d %v", code, h)
	}
	start := time.Now()
	if code := r.stop(t); code != 0 {
		t.Errorf("exit %d:\n%s", code, r.stderr.String())
	}
	t.Logf("run stopped in %v", time.Since(start))
	if !strings.Contains(r.stderr.String(), `"worker stopped"`) {
		t.Error("worker not shut down")
	}
}

// TestServeGracefulShutdown: a request in flight when SIGTERM arrives is
// answered; the process then exits 0.
func TestServeGracefulShutdown(t *testing.T) {
	r := startCmd(t, nil, "serve", "--addr", "127.0.0.1:0")
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", r.base+"/predict", pr)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- result{code: resp.StatusCode, body: string(b)}
	}()
	if _, err := io.WriteString(pw, `{"mask_name":"3M Aura`); err != nil { // half the body: the request is in flight
		t.Fatal(err)
	}
	// The server has accepted its connection: /metrics counts it beside the one
	// asking (a client of its own, so that one connection is reused).
	metricsClient := &http.Client{Transport: &http.Transport{}}
	defer metricsClient.CloseIdleConnections()
	waitUntil(t, 10*time.Second, "the in-flight request's connection to be accepted", func() bool {
		resp, err := metricsClient.Get(r.base + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "maskpredictor_http_open_connections "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return n >= 2
			}
		}
		return false
	})
	metricsClient.CloseIdleConnections()
	exited := make(chan int, 1)
	go func() { // SIGTERM; not r.stop, which may t.Fatal (test goroutine only)
		r.cancel()
		c := <-r.done
		r.done <- c // for the cleanup
		exited <- c
	}()
	// The shutdown is under way once the listener is closed (http.Server's
	// Shutdown does that first, then waits for requests in flight).
	addr := strings.TrimPrefix(r.base, "http://")
	waitUntil(t, 10*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case code := <-exited:
		t.Fatalf("exited (%d) with a request in flight", code)
	default:
	}
	if _, err := io.WriteString(pw, ` 9205+ N95"}`); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	got := <-res
	if got.err != nil || got.code != 200 || !strings.Contains(got.body, `"mask_name":"3M Aura 9205+ N95"`) {
		t.Fatalf("in-flight request: %+v", got)
	}
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after the last request")
	}
	// New connections are refused once it is down.
	if _, err := http.Get(r.base + "/health"); err == nil {
		t.Error("still serving after shutdown")
	}
}

// TestRunHealthShowsWorkerRedisFault: a Redis that refuses writes (full,
// OOM) still answers /health's PING, so the worker's own view is what tells:
// /health is "degraded" with a generic worker_error while the worker's Redis
// gate holds its writes back, and "ok" again once Redis has room.
func TestRunHealthShowsWorkerRedisFault(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Private: true})
	r := startCmd(t, map[string]string{"REDIS_URL": srv.URL}, "run", "--addr", "127.0.0.1:0", "--concurrency", "2",
		"--callback-class", "MaskPredictionCallbackJob")
	ctx := context.Background()
	rdb := srv.Client()
	if code, h, _ := httpDo(t, "GET", r.base+"/health", ""); code != 200 || h["status"] != "ok" || h["worker"] != "ok" {
		t.Fatalf("health before %d %v", code, h)
	}
	// Push first, then fill Redis: the job's write-back meets OOM.
	if _, err := sidekiq.NewClient(rdb).Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{"Honeywell DF300 N95"}); err != nil {
		t.Fatal(err)
	}
	used, _ := strconv.ParseInt(rdb.InfoMap(ctx, "memory").Val()["Memory"]["used_memory"], 10, 64)
	srv.Fill(ctx, used+2<<20)
	start := time.Now()
	var h map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, h, _ = httpDo(t, "GET", r.base+"/health", "")
		if h["worker"] == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never showed the worker's fault: %v\n%s", h, r.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h["status"] != "degraded" || h["redis"] != "ok" || !strings.Contains(fmt.Sprint(h["worker_error"]), "OOM") ||
		strings.Contains(fmt.Sprint(h["worker_error"]), srv.Addr) {
		t.Errorf("health while full: %v", h)
	}
	// Room again: the job goes through and /health recovers.
	t.Logf("degraded %v after the fill", time.Since(start))
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, h, _ = httpDo(t, "GET", r.base+"/health", "")
		if h["worker"] == "ok" && rdb.LLen(ctx, "queue:default").Val() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: health %v, %d callbacks\n%s", h, rdb.LLen(ctx, "queue:default").Val(), r.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("recovered %v after Redis had room", time.Since(start))
}

// TestRunHealthShowsReplicaStall (red team of issue 15): with
// REDIS_WAIT_REPLICAS=1 and no replica, jobs are never done; /health and
// /metrics say so after 5 s instead of "ok".
func TestRunHealthShowsReplicaStall(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Private: true})
	r := startCmd(t, map[string]string{"REDIS_URL": srv.URL, "REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT": "100ms"},
		"run", "--addr", "127.0.0.1:0", "--concurrency", "2", "--callback-class", "MaskPredictionCallbackJob")
	if _, err := sidekiq.NewClient(srv.Client()).Push(context.Background(), sidekiq.DefaultQueue, "MaskPredictionJob",
		[]any{"Honeywell DF300 N95"}); err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	start := time.Now()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, h, _ = httpDo(t, "GET", r.base+"/health", "")
		if h["worker"] == "degraded" {
			t.Logf("/health degraded %v after the push", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health never showed the stall: %v\n%s", h, lastLines(r.stderr.String(), 10))
		}
	}
	if h["status"] != "degraded" || !strings.Contains(fmt.Sprint(h["worker_error"]), "REDIS_WAIT_REPLICAS") {
		t.Errorf("/health while no replica acknowledges: %v", h)
	}
	if _, _, body := httpDo(t, "GET", r.base+"/metrics", ""); !strings.Contains(body, "maskpredictor_worker_waiting_for_replicas 1") {
		t.Errorf("/metrics does not show the stall:\n%s", body)
	}
	// SIGTERM: the waiting write-back gives up at once (not after the rest
	// of RedisRetryFor, 20 s), and its job stays for another run.
	stopped := time.Now()
	if code := r.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}
	took := time.Since(stopped)
	t.Logf("stopped in %v", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("stopping took %v: a write-back waiting for replicas held the shutdown", took)
	}
	rdb := srv.Client()
	ctx := context.Background()
	keys := rdb.Keys(ctx, "*").Val()
	held := rdb.LLen(ctx, "queue:"+sidekiq.DefaultQueue).Val()
	for _, k := range keys {
		if strings.HasPrefix(k, "asynq:{") && (strings.HasSuffix(k, "}:retry") || strings.HasSuffix(k, "}:pending")) {
			held += rdb.ZCard(ctx, k).Val() + rdb.LLen(ctx, k).Val()
		}
	}
	if held != 1 {
		t.Errorf("the job is held %d times after the stop, want once (keys %v)", held, keys)
	}
}

// TestServeHungRedis (red team of issue 15): a Redis that stops answering
// (SIGSTOP: its host frozen) must not hold /predict past CACHE_TIMEOUT or
// /health past its 1 s: go-redis would wait its 3 s read timeout per call.
func TestServeHungRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Private: true})
	r := startCmd(t, map[string]string{"REDIS_URL": srv.URL}, "serve", "--addr", "127.0.0.1:0")
	if code, h, _ := httpDo(t, "GET", r.base+"/health", ""); code != 200 || h["redis"] != "ok" {
		t.Fatalf("health before: %d %v", code, h)
	}
	srv.Pause()
	t.Cleanup(srv.Resume) // runs before the command's cleanup: its abandoned calls end
	for i := range 3 {
		start := time.Now()
		code, body, _ := httpDo(t, "POST", r.base+"/predict", fmt.Sprintf(`{"mask_name":"3M Aura 9205+ N95 hung %d"}`, i))
		took := time.Since(start)
		hstart := time.Now()
		_, h, _ := httpDo(t, "GET", r.base+"/health", "")
		htook := time.Since(hstart)
		t.Logf("Redis hung: /predict %d in %v, /health %v in %v", code, took.Round(time.Millisecond), h["redis_error"], htook.Round(time.Millisecond))
		// Bounds far above CACHE_TIMEOUT (100 ms, a lookup and a write) and
		// the health timeout (1 s), far below the 3 s read timeout.
		if code != 200 || body["breakdown"] == nil || took > 1500*time.Millisecond {
			t.Errorf("/predict with Redis hung: %d in %v, want 200 from the model within CACHE_TIMEOUT", code, took)
		}
		if h["status"] != "degraded" || htook > 2*time.Second {
			t.Errorf("/health with Redis hung: %v in %v, want degraded within its 1 s timeout", h, htook)
		}
	}
}

// TestServeHealthWithoutInfo: a Redis user that may not run INFO (an ACL)
// still gets "ok" from /health, only without redis_primary and redis_role.
func TestServeHealthWithoutInfo(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Private: true})
	if err := srv.Client().Do(context.Background(), "acl", "setuser", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info").Err(); err != nil {
		t.Fatal(err)
	}
	r := startCmd(t, map[string]string{"REDIS_URL": "redis://noinfo:pw@" + srv.Addr + "/0"}, "serve", "--addr", "127.0.0.1:0")
	code, h, _ := httpDo(t, "GET", r.base+"/health", "")
	if code != 200 || h["status"] != "ok" || h["redis"] != "ok" || h["redis_primary"] != nil || h["redis_role"] != nil {
		t.Errorf("/health for a user without INFO: %d %v, want ok without redis_primary", code, h)
	}
}
