package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// startWorkerMain runs `maskpredictor worker args…` in-process until the
// test ends (or stop is called) and waits for its "worker started" line.
func startWorkerMain(t *testing.T, env map[string]string, args ...string) (stderr *syncBuffer, stop func() int) {
	t.Helper()
	e := map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "info"}
	for k, v := range env {
		e[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	stderr = &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, append([]string{"worker"}, args...), func(k string) string { return e[k] }, strings.NewReader(""), io.Discard, stderr)
	}()
	stopped := false
	stop = func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(30 * time.Second):
			t.Fatalf("worker did not stop within 30 s\n%s", stderr.String())
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"worker started"`) {
		select {
		case code := <-done:
			t.Fatalf("worker exited with %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not started after 10 s:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return stderr, stop
}

func TestWorkerAndEnqueue(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server; skipped with -short")
	}
	rs := redistest.Start(t, redistest.Options{})
	env := map[string]string{"REDIS_URL": rs.URL}
	stderr, stop := startWorkerMain(t, env, "--callback-class", "MaskPredictionCallbackJob", "--queues", "mask_predictions:2,other:1")

	// --wait prints the predictions, one JSON per line, in order.
	names := []string{"3M Aura 9205+ N95", "Moldex 2200 N95"}
	code, out, errOut := runMain(t, env, "", append([]string{"enqueue", "--wait", "--timeout", "20s"}, names...)...)
	if code != 0 {
		t.Fatalf("enqueue --wait: exit %d\n%s", code, errOut)
	}
	lines := decodeLines(t, out)
	if len(lines) != 2 {
		t.Fatalf("%d lines: %s", len(lines), out)
	}
	_, want, _ := runMain(t, nil, "", append([]string{"predict"}, names...)...)
	wantLines := decodeLines(t, want)
	for i, l := range lines {
		if l["mask_name"] != names[i] || !jsonEqual(l["breakdown"], wantLines[i]["breakdown"]) || l["model_version"] != wantLines[i]["model_version"] {
			t.Errorf("line %d: %v\nwant breakdown %v", i, l, wantLines[i]["breakdown"])
		}
	}
	if !regexp.MustCompile(`enqueued jid [0-9a-f]{24} on queue:mask_predictions`).MatchString(errOut) {
		t.Errorf("stderr of enqueue --wait: %q", errOut)
	}

	// Without --wait: the jids; the cache entry appears. WORKER_QUEUES with
	// weights (shared with the worker's env) still pushes to a queue it reads.
	wenv := map[string]string{"REDIS_URL": rs.URL, "WORKER_QUEUES": "mask_predictions:2,other:1"}
	code, out, errOut = runMain(t, wenv, "", "enqueue", "Honeywell DF300")
	if code != 0 || !regexp.MustCompile(`^[0-9a-f]{24}\n$`).MatchString(out) {
		t.Fatalf("enqueue: exit %d, stdout %q\n%s", code, out, errOut)
	}
	jid := strings.TrimSpace(out)
	rdb := rs.Client()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Exists(ctx, "maskpredictor:prediction:"+predictor.Normalize("Honeywell DF300")).Val() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no cache entry for the enqueued job\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// --batch: one job with mask_names; another queue of the weighted list.
	code, out, errOut = runMain(t, env, "", "enqueue", "--wait", "--batch", "--queue", "other", "GVS Elipse P100", "3M 8210")
	if code != 0 || len(decodeLines(t, out)) != 2 {
		t.Fatalf("enqueue --batch: exit %d\n%s\n%s", code, out, errOut)
	}

	// One log line per job with jid, queue, mask name, duration, cache hit, fallback.
	var found bool
	for _, line := range strings.Split(stderr.String(), "\n") {
		if !strings.Contains(line, `"msg":"job"`) || !strings.Contains(line, jid) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"jid", "queue", "mask_name", "duration", "cache_hit", "fallback"} {
			if _, ok := m[k]; !ok {
				t.Errorf("job line without %q: %s", k, line)
			}
		}
		found = true
	}
	if !found {
		t.Errorf("no job log line for %s:\n%s", jid, stderr.String())
	}
	if n := rdb.LLen(ctx, "queue:default").Val(); n != 5 {
		t.Errorf("%d callback jobs, want 5", n)
	}
	if code := stop(); code != 0 {
		t.Errorf("worker exit code %d after its context ended\n%s", code, stderr.String())
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// rediss:// with a self-signed certificate: refused unless
// REDIS_TLS_SKIP_VERIFY=true, which is logged as a warning.
func TestWorkerRedisTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server; skipped with -short")
	}
	rs := redistest.Start(t, redistest.Options{TLS: true, Private: true})
	env := map[string]string{"REDIS_TLS_URL": rs.URL, "REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_TLS_SKIP_VERIFY": "true"}
	stderr, _ := startWorkerMain(t, env)
	if !strings.Contains(stderr.String(), "NOT verified") {
		t.Errorf("no warning about REDIS_TLS_SKIP_VERIFY:\n%s", stderr.String())
	}
	code, out, errOut := runMain(t, env, "", "enqueue", "--wait", "--timeout", "20s", "3M Aura")
	if code != 0 || len(decodeLines(t, out)) != 1 {
		t.Fatalf("enqueue over TLS: exit %d\n%s\n%s\nworker:\n%s", code, out, errOut, stderr.String())
	}
	// Without the skip the certificate is checked, and enqueue fails.
	delete(env, "REDIS_TLS_SKIP_VERIFY")
	code, _, errOut = runMain(t, env, "", "enqueue", "3M Aura")
	if code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("enqueue to a self-signed rediss:// without skip: exit %d, %s", code, errOut)
	}
}

func TestRedisURLChoice(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(core)
	for _, c := range []struct {
		env        map[string]string
		flag, want string
		tls, skip  bool
	}{
		{env: nil, want: "localhost:6379"},
		{env: map[string]string{"REDIS_URL": "redis://h1:1/2"}, want: "h1:1"},
		{env: map[string]string{"REDIS_URL": "redis://h1:1", "REDIS_TLS_URL": "rediss://h2:2"}, want: "h2:2", tls: true},
		{env: map[string]string{"REDIS_TLS_URL": "rediss://h2:2", "REDIS_TLS_SKIP_VERIFY": "true"}, want: "h2:2", tls: true, skip: true},
		{env: map[string]string{"REDIS_URL": "redis://h1:1"}, flag: "redis://h3:3", want: "h3:3"},
	} {
		rf := redisFlags{url: c.flag}
		sys := IO{Env: func(k string) string { return c.env[k] }}
		opt, err := rf.options(sys, log)
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if opt.Addr != c.want || (opt.TLSConfig != nil) != c.tls || (c.tls && opt.TLSConfig.InsecureSkipVerify != c.skip) {
			t.Errorf("%v %q: addr %s tls %v", c.env, c.flag, opt.Addr, opt.TLSConfig)
		}
	}
	if logs.FilterMessageSnippet("NOT verified").Len() != 1 {
		t.Errorf("skip-verify warnings: %v", logs.All())
	}
	// A password never shows in errors or logs.
	rf := redisFlags{}
	_, err := rf.options(IO{Env: func(k string) string {
		if k == "REDIS_URL" {
			return "redis://user:s3cret@host:notaport/0"
		}
		return ""
	}}, log)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad URL error %v", err)
	}
	if got := redact("rediss://h:s3cret@host:1/0"); strings.Contains(got, "s3cret") {
		t.Errorf("redact: %s", got)
	}
}

func TestWorkerUsageErrors(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		args []string
	}{
		{nil, []string{"worker", "--queues", "a:0"}},
		{nil, []string{"worker", "--concurrency", "0"}},
		{nil, []string{"worker", "--shutdown-timeout", "10ms"}},
		{nil, []string{"worker", "extra-arg"}},
		{map[string]string{"REDIS_URL": "ftp://x"}, []string{"worker"}},
		{map[string]string{"REDIS_TLS_SKIP_VERIFY": "maybe"}, []string{"worker"}},
		{map[string]string{"WORKER_CONCURRENCY": "many"}, []string{"worker"}},
		{nil, []string{"enqueue"}},
		{nil, []string{"enqueue", "--queue", "a,b", "x"}},
		{nil, []string{"run", "--cache-ttl", "-1s"}},
		{nil, []string{"worker", "--jobs-per-task", "0"}},
		{nil, []string{"run", "--jobs-per-task", "1001"}},
		{map[string]string{"WORKER_JOBS_PER_TASK": "lots"}, []string{"worker"}},
	} {
		code, _, errOut := runMain(t, c.env, "", c.args...)
		if code != 2 {
			t.Errorf("%v %v: exit %d, want 2\n%s", c.env, c.args, code, errOut)
		}
	}
}
