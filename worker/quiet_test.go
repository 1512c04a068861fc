package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// gatedPredictor holds every prediction of a name starting with "SLOW" (or every
// prediction, with all) until release is closed, and says which ones it holds.
type gatedPredictor struct {
	Predictor
	all     bool
	started chan string
	release chan struct{}
	delay   time.Duration
}

func (g *gatedPredictor) PredictTokens(name string, toks []string) (*predictor.Prediction, error) {
	if g.all || strings.HasPrefix(name, "SLOW") {
		select {
		case g.started <- name:
		default:
		}
		<-g.release
	}
	if g.delay > 0 {
		time.Sleep(g.delay)
	}
	return g.Predictor.PredictTokens(name, toks)
}

// sidekiqRuby says how to run a Ruby Sidekiq: Debian's 6.4.1, or 7.3's source when
// SIDEKIQ7_RUBYLIB names its lib directories (sidekiq, redis-client and
// connection_pool, colon-separated: fetch github:sidekiq/sidekiq v7.3.10 and its two
// dependencies and point it at their lib/ directories).
type sidekiqRuby struct {
	name    string
	rubylib string // "" for the installed gem
}

func sidekiqRubies(t *testing.T) []sidekiqRuby {
	redistest.RequireRubySidekiq(t)
	rubies := []sidekiqRuby{{name: "installed"}}
	if lib := os.Getenv("SIDEKIQ7_RUBYLIB"); lib != "" {
		rubies = append(rubies, sidekiqRuby{name: "rubylib", rubylib: lib})
	} else {
		t.Log("SIDEKIQ7_RUBYLIB unset: only the installed Sidekiq is tried (see sidekiqRuby)")
	}
	return rubies
}

type processesOut struct {
	Version   string `json:"version"`
	Error     string `json:"error"`
	Status    int    `json:"status"`
	Forms     []string
	Embedded  int `json:"embedded_labels"`
	Processes []struct {
		Identity    string `json:"identity"`
		Quiet       string `json:"quiet"`
		Stopping    bool   `json:"stopping"`
		Embedded    any    `json:"embedded"`
		Busy        int    `json:"busy"`
		Concurrency int    `json:"concurrency"`
	} `json:"processes"`
	TotalConcurrency int        `json:"total_concurrency"`
	WorkersSize      int        `json:"workers_size"`
	Work             [][]string `json:"work"`
}

// processes runs testdata/e2e/processes.rb ACTION with r's Sidekiq.
func (r sidekiqRuby) processes(t *testing.T, redisURL, action string) processesOut {
	t.Helper()
	path, _ := filepath.Abs(filepath.Join("testdata", "e2e", "processes.rb"))
	cmd := exec.Command("ruby", path, action)
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
	if r.rubylib != "" {
		cmd.Env = append(cmd.Env, "RUBYLIB="+r.rubylib)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ruby processes.rb %s: %v\n%s", action, err, stderr.String())
	}
	var p processesOut
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("processes.rb %s: %v\n%s", action, err, out)
	}
	return p
}

// addRubyProcess registers a Ruby Sidekiq process entry as Sidekiq 6.4/7.3 writes it
// (no one reads its signals: it stays as it is).
func addRubyProcess(t *testing.T, rdb redis.UniversalClient, id string) {
	t.Helper()
	ctx := context.Background()
	info := fmt.Sprintf(`{"hostname":"rubyhost","started_at":%d.5,"pid":77,"tag":"rails","concurrency":5,"queues":["default"],"labels":[],"identity":%q}`,
		time.Now().Unix(), id)
	if err := rdb.SAdd(ctx, "processes", id).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, id, "info", info, "busy", 0, "beat", strconv.FormatInt(time.Now().Unix(), 10), "quiet", "false", "rss", 1000, "rtt_us", 100).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.Expire(ctx, id, time.Minute)
}

// TestQuietAndStopFromSidekiq: the deploy hook Sidekiq::ProcessSet.new.each(&:quiet!)
// on a set holding the sidecar (sorted first) and a Ruby process does not raise and
// reaches both; the sidecar stops fetching within a heartbeat (jobs pushed afterwards
// stay in the queue), shows quiet, and finishes the job it was running; each(&:stop!)
// asks it to stop, and Shutdown then drains and takes it off the Busy page. With
// Sidekiq 6.4.1 and, when SIDEKIQ7_RUBYLIB is set, 7.3 (which refuses embedded
// processes and shows the Quiet/Stop buttons only for the others).
func TestQuietAndStopFromSidekiq(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Ruby Sidekiq (-short)")
	}
	for _, rb := range sidekiqRubies(t) {
		t.Run(rb.name, func(t *testing.T) {
			t.Parallel()
			testQuietAndStop(t, rb)
		})
	}
}

func testQuietAndStop(t *testing.T, rb sidekiqRuby) {
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{Private: true})
	rdb := rs.Client()
	const id, rubyID = "aa-sidecar:1:0123456789ab", "zz-rails:77:ba9876543210"
	addRubyProcess(t, rdb, rubyID)
	g := &gatedPredictor{Predictor: CRFPredictor(defaultCRF(t)), started: make(chan string, 1), release: make(chan struct{})}
	srv, err := New(Config{
		Redis: rdb, AsynqRedis: rs.Client(), Identity: id, Concurrency: 2,
		Handler:   HandlerConfig{Predictor: g, CallbackClass: callbackClass},
		Heartbeat: sidekiq.HeartbeatConfig{Interval: 200 * time.Millisecond, TTL: 5 * time.Second},
		Logger:    zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var shutOnce, releaseOnce sync.Once
	shutdown := func() error {
		var err error
		shutOnce.Do(func() { err = srv.Shutdown(ctx) })
		return err
	}
	release := func() { releaseOnce.Do(func() { close(g.release) }) }
	t.Cleanup(func() { release(); _ = shutdown() })
	sk := sidekiq.NewClient(rdb)
	if _, err := sk.Push(ctx, sidekiq.DefaultQueue, sidekiq.PredictionClass, []any{"SLOW 3M 8210", 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first job never started")
	}

	// The Busy page before: a full process, with buttons (7.3 shows them only
	// for processes that are not embedded).
	before := rb.processes(t, rs.URL, "busy")
	t.Logf("Sidekiq %s, /busy %d, forms for %v", before.Version, before.Status, before.Forms)
	if before.Error != "" || before.Status != 200 {
		t.Fatalf("GET /busy: %+v", before)
	}
	if len(before.Forms) != 2 || before.Embedded != 0 {
		t.Errorf("Quiet/Stop forms for %v (%d embedded labels), want both processes and none embedded", before.Forms, before.Embedded)
	}
	for _, p := range before.Processes {
		if p.Identity == id && (p.Embedded == true || p.Stopping) {
			t.Errorf("sidecar before quiet: %+v", p)
		}
	}

	// The deploy hook.
	quietAt := time.Now()
	out := rb.processes(t, rs.URL, "quiet")
	if out.Error != "" {
		t.Fatalf("Sidekiq::ProcessSet.new.each(&:quiet!) raised %s", out.Error)
	}
	if n, _ := rdb.LLen(ctx, rubyID+"-signals").Result(); n != 1 {
		t.Errorf("the Ruby process's signals list holds %d, want its TSTP (the loop went past the sidecar)", n)
	}
	waitFor(t, 5*time.Second, "the sidecar to show quiet", func() (bool, string) {
		q, _ := rdb.HGet(ctx, id, "quiet").Result()
		return q == "true" && srv.Quieted(), "quiet=" + q
	})
	t.Logf("quiet shown %v after quiet! (heartbeat every 200 ms)", time.Since(quietAt).Round(time.Millisecond))
	if n, _ := rdb.LLen(ctx, id+"-signals").Result(); n != 0 {
		t.Errorf("the sidecar's signals list still holds %d", n)
	}

	// Jobs pushed now stay in the queue, beat after beat.
	for i := range 5 {
		if _, err := sk.Push(ctx, sidekiq.DefaultQueue, sidekiq.PredictionClass, []any{fmt.Sprintf("3M 8210 Plus %d", i), i}); err != nil {
			t.Fatal(err)
		}
	}
	waitBeats(t, rdb, id, 3)
	if n, _ := rdb.LLen(ctx, "queue:"+sidekiq.DefaultQueue).Result(); n != 5 {
		t.Errorf("queue holds %d jobs after 3 quiet beats, want the 5 pushed after quiet", n)
	}
	afterQuiet := rb.processes(t, rs.URL, "busy")
	for _, p := range afterQuiet.Processes {
		if p.Identity == id && (!p.Stopping || p.Busy != 1) {
			t.Errorf("quiet sidecar on the Busy page: %+v (want stopping, its running job busy)", p)
		}
	}
	if afterQuiet.WorkersSize != 1 {
		t.Errorf("Workers.size %d while the first job runs, want 1", afterQuiet.WorkersSize)
	}

	// The running job finishes and is written back.
	release()
	waitFor(t, 10*time.Second, "the running job's callback", func() (bool, string) {
		n, _ := rdb.LLen(ctx, "queue:default").Result()
		return n == 1, fmt.Sprintf("%d callbacks", n)
	})
	waitFor(t, 5*time.Second, "busy 0", func() (bool, string) {
		b, _ := rdb.HGet(ctx, id, "busy").Result()
		return b == "0", "busy=" + b
	})

	// Stop: the sidecar asks its owner to shut down; Shutdown drains.
	out = rb.processes(t, rs.URL, "stop")
	if out.Error != "" {
		t.Fatalf("Sidekiq::ProcessSet.new.each(&:stop!) raised %s", out.Error)
	}
	select {
	case <-srv.StopRequested():
	case <-time.After(5 * time.Second):
		t.Fatal("no stop request 5 s after stop!")
	}
	if err := shutdown(); err != nil {
		t.Fatalf("Shutdown after stop!: %v", err)
	}
	if ok, _ := rdb.SIsMember(ctx, "processes", id).Result(); ok {
		t.Error("the sidecar is still in processes after Shutdown")
	}
	if n, _ := rdb.LLen(ctx, "queue:"+sidekiq.DefaultQueue).Result(); n != 5 {
		t.Errorf("queue holds %d jobs after Shutdown, want the 5 pushed after quiet", n)
	}
	if n, _ := rdb.Get(ctx, "stat:processed").Int(); n != 1 {
		t.Errorf("stat:processed = %d, want the one job that ran", n)
	}
}

// waitBeats waits until the process hash's beat has changed n times.
func waitBeats(t *testing.T, rdb redis.UniversalClient, id string, n int) {
	t.Helper()
	last, _ := rdb.HGet(context.Background(), id, "beat").Result()
	for i := 0; i < n; i++ {
		waitFor(t, 5*time.Second, "a heartbeat", func() (bool, string) {
			b, _ := rdb.HGet(context.Background(), id, "beat").Result()
			if b != last {
				last = b
				return true, ""
			}
			return false, "beat=" + b
		})
	}
}

// TestBusyNeverAboveConcurrency: under a backlog, batch tasks of 20 jobs keep every
// worker slot busy; Sidekiq's Busy page (Workers.size, ProcessSet busy, the work
// hash) shows one running job per slot, never more than the advertised concurrency.
func TestBusyNeverAboveConcurrency(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Ruby Sidekiq (-short)")
	}
	rubies := sidekiqRubies(t)
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{Private: true})
	rdb := rs.Client()
	const id, conc, jobs = "busy-sidecar:1:0123456789ab", 3, 300
	sk := sidekiq.NewClient(rdb)
	for i := range jobs {
		if _, err := sk.Push(ctx, sidekiq.DefaultQueue, sidekiq.PredictionClass, []any{fmt.Sprintf("3M %d N95", 1000+i), i}); err != nil {
			t.Fatal(err)
		}
	}
	g := &gatedPredictor{Predictor: CRFPredictor(defaultCRF(t)), all: true, started: make(chan string, conc),
		release: make(chan struct{}), delay: 3 * time.Millisecond}
	srv, err := New(Config{
		Redis: rdb, AsynqRedis: rs.Client(), Identity: id, Concurrency: conc,
		Handler:   HandlerConfig{Predictor: g},
		Heartbeat: sidekiq.HeartbeatConfig{Interval: 50 * time.Millisecond, TTL: 5 * time.Second},
		Logger:    zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(g.release)
		}
		_ = srv.Shutdown(ctx)
	}()

	// Every slot holds a batch, held at its first prediction.
	waitFor(t, 10*time.Second, "every slot busy", func() (bool, string) {
		b, _ := rdb.HGet(ctx, id, "busy").Result()
		return b == strconv.Itoa(conc) && srv.hb.Busy() > conc, fmt.Sprintf("busy=%s, jobs in hand %d", b, srv.hb.Busy())
	})
	waitBeats(t, rdb, id, 1)
	t.Logf("%d slots busy with %d jobs in hand", conc, srv.hb.Busy())
	for _, rb := range rubies {
		p := rb.processes(t, rs.URL, "list")
		t.Logf("Sidekiq %s: Workers.size %d, total_concurrency %d, processes %+v", p.Version, p.WorkersSize, p.TotalConcurrency, p.Processes)
		if p.WorkersSize != conc || p.TotalConcurrency != conc || len(p.Work) != conc ||
			len(p.Processes) != 1 || p.Processes[0].Busy != conc || p.Processes[0].Concurrency != conc {
			t.Errorf("Sidekiq %s: busy %d of %d threads, %d work rows, want %d of %d", p.Version, p.WorkersSize, p.TotalConcurrency, len(p.Work), conc, conc)
		}
	}

	// The backlog drains: busy stays ≤ concurrency, the work hash as long as busy.
	close(g.release)
	released = true
	maxBusy, maxWork := 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		pipe := rdb.TxPipeline()
		b := pipe.HGet(ctx, id, "busy")
		w := pipe.HLen(ctx, id+":work")
		q := pipe.LLen(ctx, "queue:"+sidekiq.DefaultQueue)
		done := pipe.Get(ctx, "stat:processed")
		_, _ = pipe.Exec(ctx)
		processed, _ := done.Int()
		busy, _ := strconv.Atoi(b.Val())
		maxBusy, maxWork = max(maxBusy, busy), max(maxWork, int(w.Val()))
		if int(w.Val()) != busy {
			t.Errorf("busy %d but %d entries in %s:work", busy, w.Val(), id)
		}
		if q.Val() == 0 && processed >= jobs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not drained: %d in the queue, %d processed", q.Val(), processed)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("drained %d jobs; max busy %d, max work entries %d (concurrency %d)", jobs, maxBusy, maxWork, conc)
	if maxBusy > conc || maxWork > conc {
		t.Errorf("busy reached %d (work %d), above the concurrency %d", maxBusy, maxWork, conc)
	}
}
