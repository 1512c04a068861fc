package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/maskpredictor/maskpredictor/internal/chromiumtest"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// TestSidekiqWebInChromium: Sidekiq Web itself (Debian's ruby-sidekiq 6.4.1 served
// by puma) on the Redis a running sidecar uses, looked at with headless Chromium.
// Jobs pushed with the Ruby Sidekiq client: three good ones, a poison one (dead), one
// whose write-back fails once (retry), then a backlog of jobs held in the predictor
// while the pages are taken. Busy lists the sidecar with its Quiet and Stop buttons,
// busy = concurrency and its running jobs; Retries the transient job with its error
// class; Dead (/morgue) the poison job with its reason; the dashboard's Failed count
// both failures. Screenshots: testdata/artifacts/sidekiqweb_*.png ($ARTIFACTS_DIR).
func TestSidekiqWebInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Ruby Sidekiq Web, puma and Chromium (-short)")
	}
	chrome := chromiumtest.Find(t)
	pumaBin, err := exec.LookPath("puma")
	if err != nil {
		t.Skip("puma is not installed (apt-get install puma): Sidekiq Web cannot be served")
	}
	ruby := redistest.RequireRubySidekiq(t)
	arts := chromiumtest.ArtifactsDir(t)
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{Private: true})
	web := skwStartWeb(t, pumaBin, rs.URL) // boots while the jobs run

	rdb := rs.Client()
	fails := &failJobs{times: map[string]int{}}
	rdb.AddHook(fails)
	const id, conc = "maskpredictor-web:4242:0123456789ab", 2
	g := &gatedPredictor{Predictor: CRFPredictor(defaultCRF(t)), started: make(chan string, 8), release: make(chan struct{})}
	srv, err := New(Config{
		Redis: rdb, AsynqRedis: rs.Client(), Identity: id, Concurrency: conc,
		// One job per task, so that each held job takes a worker slot of its own.
		Bridge: sidekiq.BridgeConfig{JobsPerTask: 1},
		Handler: HandlerConfig{Predictor: g, CallbackClass: callbackClass,
			// Long enough that the transient job is still in the retry set when looked at.
			RetryDelay: func(int) time.Duration { return 10 * time.Minute }},
		Scheduler: sidekiq.SchedulerConfig{Interval: 200 * time.Millisecond},
		Heartbeat: sidekiq.HeartbeatConfig{Interval: 200 * time.Millisecond, TTL: 5 * time.Second},
		Logger:    zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(g.release) }) }
	t.Cleanup(func() { release(); _ = srv.Shutdown(ctx) })

	// Good jobs, a poison one and a transient failure.
	fails.set("transient1", 1)
	skwPush(t, ruby, rs.URL, [][2]string{
		{"good1", "3M Aura 9205+ N95"}, {"good2", "Moldex 2200 N95"}, {"good3", "Honeywell DF300 N95"},
		{"poison1", " - , "}, // no tokens
		{"transient1", "3M 8210 Plus N95"},
	})
	waitFor(t, 10*time.Second, "3 processed, 1 retry, 1 dead", func() (bool, string) {
		r, d := rdb.ZCard(ctx, "retry").Val(), rdb.ZCard(ctx, "dead").Val()
		p, f := rdb.Get(ctx, "stat:processed").Val(), rdb.Get(ctx, "stat:failed").Val()
		return r == 1 && d == 1 && p == "5" && f == "2", fmt.Sprintf("retry %d, dead %d, processed %s, failed %s", r, d, p, f)
	})

	// A backlog held in the predictor: every slot busy while the pages are taken.
	held := [][2]string{}
	for i := range 4 {
		held = append(held, [2]string{fmt.Sprintf("held%d", i+1), fmt.Sprintf("SLOW 3M 1860 N95 size %d", i+1)})
	}
	skwPush(t, ruby, rs.URL, held)
	waitFor(t, 10*time.Second, "every slot busy", func() (bool, string) {
		b := rdb.HGet(ctx, id, "busy").Val()
		return b == strconv.Itoa(conc), "busy=" + b
	})
	waitBeats(t, rdb, id, 1)
	skwWaitWeb(t, web)

	// The pages: HTML over HTTP for the checks, Chromium for the screenshots.
	pages := []struct{ name, path string }{
		{"busy", "/busy"}, {"retries", "/retries"}, {"dead", "/morgue"}, {"dashboard", "/"},
	}
	html := map[string]string{}
	for _, p := range pages {
		html[p.name] = skwGet(t, web.url+p.path)
	}
	start := time.Now()
	errs := make([]error, len(pages))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2) // two Chromiums at a time
	for i, p := range pages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			shot := filepath.Join(arts, "sidekiqweb_"+p.name+".png")
			_ = os.Remove(shot)
			_, errs[i] = chromiumtest.Run(chrome, 60*time.Second, "--virtual-time-budget=2000", "--screenshot="+shot, web.url+p.path)
			if errs[i] == nil {
				errs[i] = chromiumtest.CheckScreenshot(shot)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("screenshot of %s: %v", pages[i].path, err)
		} else {
			t.Logf("screenshot: %s", filepath.Join(arts, "sidekiqweb_"+pages[i].name+".png"))
		}
	}
	t.Logf("4 screenshots in %v", time.Since(start).Round(time.Millisecond))
	// The held jobs were still held: what the Busy screenshot shows is what was checked.
	if b := rdb.HGet(ctx, id, "busy").Val(); b != strconv.Itoa(conc) {
		t.Errorf("busy %s after the screenshots, want %d", b, conc)
	}

	// Busy: the sidecar's row, its Quiet/Stop form, busy ≤ concurrency, its jobs.
	busy := html["busy"]
	row := skwRowWith(busy, `name="identity" value="`+id+`"`)
	if row == "" {
		t.Fatalf("/busy has no process row for %s:\n%s", id, busy)
	}
	for _, want := range []string{`name="quiet" value="1">Quiet</button>`, `name="stop" value="1">Stop</button>`, ">maskpredictor</span>"} {
		if !strings.Contains(row, want) {
			t.Errorf("/busy: the sidecar's row lacks %q:\n%s", want, row)
		}
	}
	if strings.Contains(row, ">quiet</span>") {
		t.Errorf("/busy shows the sidecar quiet:\n%s", row)
	}
	m := regexp.MustCompile(`<td>(\d+)</td>\s*<td>(\d+)</td>\s*<td>\s*<form`).FindStringSubmatch(row)
	if m == nil {
		t.Fatalf("/busy: no Threads/Busy cells in the sidecar's row:\n%s", row)
	}
	threads, busyN := skwAtoi(m[1]), skwAtoi(m[2])
	t.Logf("/busy: the sidecar with %d threads, %d busy", threads, busyN)
	if threads != conc || busyN != conc {
		t.Errorf("/busy: threads %d, busy %d; want %d and %d (every slot held)", threads, busyN, conc, conc)
	}
	stats := regexp.MustCompile(`<h3>(\d+)</h3>\s*<p>Busy</p>`).FindStringSubmatch(busy)
	if stats == nil || skwAtoi(stats[1]) > threads {
		t.Errorf("/busy: the Busy stat %v, want at most the %d threads", stats, threads)
	}
	running := 0
	for _, h := range held {
		if strings.Contains(busy, "<td>"+h[0]+"</td>") {
			running++
			if !strings.Contains(busy, h[1]) {
				t.Errorf("/busy: running job %s shown without its argument %q", h[0], h[1])
			}
		}
	}
	if running != conc || strings.Count(busy, "<td>"+id+"</td>") != conc {
		t.Errorf("/busy: %d held jobs listed, %d rows of %s; want %d", running, strings.Count(busy, "<td>"+id+"</td>"), id, conc)
	}

	// Retries: the transient job, its error class and message.
	row = skwRowWith(html["retries"], `-transient1"`)
	if row == "" || !strings.Contains(row, ErrorClassTransient+": ") || !strings.Contains(row, "injected failure") ||
		!strings.Contains(row, "MaskPredictionJob") {
		t.Errorf("/retries: the transient job's row %q, want its jid with %s", row, ErrorClassTransient)
	}
	if n := strings.Count(html["retries"], `name='key[]'`); n != 1 {
		t.Errorf("/retries lists %d jobs, want 1", n)
	}

	// Dead: the poison job and why.
	row = skwRowWith(html["dead"], `-poison1"`)
	if row == "" || !strings.Contains(row, ErrorClassInvalid+": ") || !strings.Contains(row, "no tokens") {
		t.Errorf("/morgue: the poison job's row %q, want its jid with %s: …no tokens", row, ErrorClassInvalid)
	}
	if n := strings.Count(html["dead"], `name='key[]'`); n != 1 {
		t.Errorf("/morgue lists %d jobs, want 1", n)
	}

	// Dashboard: Failed counts the poison job and the transient failure.
	count := func(id string) int {
		m := regexp.MustCompile(`id="` + id + `" class="count">([\d,]+)<`).FindStringSubmatch(html["dashboard"])
		if m == nil {
			t.Errorf("dashboard: no %s", id)
			return -1
		}
		return skwAtoi(strings.ReplaceAll(m[1], ",", ""))
	}
	if p, f := count("txtProcessed"), count("txtFailed"); p != 5 || f != 2 {
		t.Errorf("dashboard: processed %d, failed %d; want 5 and 2 (the poison job and the transient failure)", p, f)
	}

	// The backlog drains once let go.
	release()
	waitFor(t, 10*time.Second, "the held jobs done", func() (bool, string) {
		p := rdb.Get(ctx, "stat:processed").Val()
		return p == "9", "processed " + p
	})
}

func skwAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

// skwRowWith returns the table row (<tr>…</tr>) of html that contains s, or "".
func skwRowWith(html, s string) string {
	i := strings.Index(html, s)
	if i < 0 {
		return ""
	}
	start := strings.LastIndex(html[:i], "<tr")
	end := strings.Index(html[i:], "</tr>")
	if start < 0 || end < 0 {
		return ""
	}
	return html[start : i+end+len("</tr>")]
}

// skwPush pushes MaskPredictionJob jobs (jid, mask name) with the Ruby Sidekiq client.
func skwPush(t *testing.T, ruby, redisURL string, jobs [][2]string) {
	t.Helper()
	const script = `
require "json"
require "sidekiq"
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), size: 1 } }
JSON.parse(ARGV.fetch(0)).each do |jid, name|
  Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => "mask_predictions", "jid" => jid, "args" => [name])
end`
	b, _ := json.Marshal(jobs)
	cmd := exec.Command(ruby, "-e", script, string(b))
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pushing %v with Sidekiq::Client: %v\n%s", jobs, err, out)
	}
}

type skwWeb struct {
	url    string
	exited chan struct{}
	log    string
}

// skwStartWeb starts puma serving testdata/e2e/sidekiq_web.ru on a free port; it
// is stopped (SIGTERM, then SIGKILL) when the test ends.
func skwStartWeb(t *testing.T, pumaBin, redisURL string) *skwWeb {
	t.Helper()
	ru, _ := filepath.Abs(filepath.Join("testdata", "e2e", "sidekiq_web.ru"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	logPath := filepath.Join(t.TempDir(), "puma.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pumaBin, "-b", "tcp://"+addr, "-t", "1:4", "--environment", "production", ru)
	cmd.Dir = filepath.Dir(ru)
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("starting puma: %v", err)
	}
	w := &skwWeb{url: "http://" + addr, exited: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(w.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-w.exited
		}
	})
	return w
}

// skwWaitWeb waits until Sidekiq Web answers.
func skwWaitWeb(t *testing.T, w *skwWeb) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-w.exited:
			b, _ := os.ReadFile(w.log)
			t.Fatalf("puma exited:\n%s", b)
		default:
		}
		if resp, err := skwHTTP.Get(w.url + "/"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(w.log)
			t.Fatalf("Sidekiq Web did not answer at %s within 20 s:\n%s", w.url, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// skwHTTP keeps no idle connections (no goroutine outlives a request).
var skwHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func skwGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := skwHTTP.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, b)
	}
	return string(b)
}
