// Command benchqueue measures the maskpredictor worker end to end against Ruby
// Sidekiq on the same machine and Redis. Run it through scripts/bench-queue.
//
//  1. drain: a queue pre-filled (by Ruby's Sidekiq::Client.push_bulk) with N
//     jobs is drained by `maskpredictor worker --concurrency 10` with a
//     callback class: every job predicts, writes the cache entry and pushes a
//     callback job. Names are realistic (built from testdata/train.json):
//     once all distinct (every job a cache miss), once the 236 training names
//     cycling (mostly cache hits).
//  2. latency: jobs pushed at a steady rate; the time from push to the
//     cache entry's SET, observed with Redis keyspace notifications.
//  3. Ruby Sidekiq (`sidekiq -r job.rb -c 10`) draining N jobs of a Ruby job
//     doing the equivalent work, and N no-op jobs.
//
// With -workers K (default 1) the drains run K `maskpredictor worker`
// processes, each with the same --concurrency, on the one redis-server, and
// a second report gives Redis' side of each drain: its CPU per job and its
// utilisation (CPU seconds per wall second from the first job done to the
// last, i.e. the fraction of one core), the rate at which one Redis core
// would saturate, commands per job by command (INFO commandstats deltas),
// the workers' summed CPU, and the load average. -detail prints that
// report for K = 1 too. The latency run always uses one worker; the Ruby
// drains one Sidekiq process.
//
// Both sides log with their defaults (one or two lines per job) to a file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

var (
	bin         = flag.String("bin", "", "maskpredictor binary (required)")
	scripts     = flag.String("scripts", "scripts/benchqueue", "directory of job.rb and fill.rb")
	work        = flag.String("work", "", "scratch directory (default: a temporary one)")
	n           = flag.Int("n", 50000, "jobs per drain")
	concurrency = flag.Int("concurrency", 10, "worker and Sidekiq concurrency")
	rate        = flag.Int("rate", 1000, "jobs/s for the latency run")
	latencyDur  = flag.Duration("latency-duration", 20*time.Second, "length of the latency run")
	trainPath   = flag.String("train", "testdata/train.json", "Rails export whose names are used")
	skipRuby    = flag.Bool("skip-ruby", false, "do not run the Ruby Sidekiq side")
	skipDrain   = flag.Bool("skip-drain", false, "only the latency run")
	workerArgs  = flag.String("worker-args", "", "extra arguments for `maskpredictor worker`, space-separated")
	workers     = flag.Int("workers", 1, "worker processes for the drains, each with -concurrency, on the one Redis")
	skipLatency = flag.Bool("skip-latency", false, "no latency run")
	detail      = flag.Bool("detail", false, "print Redis' side of each drain (implied by -workers > 1)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchqueue:", err)
		os.Exit(1)
	}
}

// redisStats reads Redis' own CPU time and command count.
func redisStats(ctx context.Context, rdb *redis.Client) (cpu time.Duration, cmds int64) {
	info := rdb.Info(ctx, "cpu", "stats").Val()
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "used_cpu_sys", "used_cpu_user":
			f, _ := strconv.ParseFloat(v, 64)
			cpu += time.Duration(f * float64(time.Second))
		case "total_commands_processed":
			cmds, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return cpu, cmds
}

// cmdStat is one command's line of INFO commandstats.
type cmdStat struct {
	calls int64
	usec  int64
}

// commandStats reads INFO commandstats. Redis 7 counts the commands a Lua
// script calls there too (under their own names), beside the EVALSHA whose
// usec includes theirs; total_commands_processed counts only what clients
// sent.
func commandStats(ctx context.Context, rdb *redis.Client) map[string]cmdStat {
	out := map[string]cmdStat{}
	for _, line := range strings.Split(rdb.Info(ctx, "commandstats").Val(), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var c cmdStat
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				c.calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec":
				c.usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = c
	}
	return out
}

func commandDelta(before, after map[string]cmdStat) map[string]cmdStat {
	d := map[string]cmdStat{}
	for k, a := range after {
		b := before[k]
		if a.calls > b.calls {
			d[k] = cmdStat{calls: a.calls - b.calls, usec: a.usec - b.usec}
		}
	}
	return d
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

type result struct {
	what        string
	jobs        int
	firstToLast time.Duration
	startToLast time.Duration
	rssPeakKB   int64
	cpu         time.Duration
	extra       string
	latencies   []time.Duration
	lost        int
	redisCPU    time.Duration
	redisCmds   int64

	// Redis' side (the drains of the worker).
	procs         int
	redisCPUDrain time.Duration // Redis CPU from the first job done to the last
	cmdStats      map[string]cmdStat
	load0, load1  float64
}

// redisUtil is Redis' CPU seconds per wall second while the jobs were done:
// the fraction of one core it used.
func (r result) redisUtil() float64 {
	if r.firstToLast <= 0 {
		return 0
	}
	return r.redisCPUDrain.Seconds() / r.firstToLast.Seconds()
}

func (r result) rate() float64 { return float64(r.jobs) / r.firstToLast.Seconds() }

func run() error {
	if *bin == "" {
		return errors.New("-bin is required")
	}
	if *work == "" {
		d, err := os.MkdirTemp("", "benchqueue-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*work = d
	}
	train, err := trainNames(*trainPath)
	if err != nil {
		return err
	}
	rs, err := startRedis(*work)
	if err != nil {
		return err
	}
	defer rs.stop()
	rdb := redis.NewClient(&redis.Options{Addr: rs.addr, PoolSize: 4})
	defer rdb.Close()
	ctx := context.Background()

	cold := distinctNames(train, *n, 0)
	warm := make([]string, *n)
	for i := range warm {
		warm[i] = train[i%len(train)]
	}
	var results []result
	report := func(r result, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", r.what, err)
		}
		fmt.Fprintf(os.Stderr, "  %-58s %8.0f jobs/s  (%v first→last, %v incl. start)  peak RSS %.1f MB  CPU %v  Redis %.0f µs, %.1f commands per job\n",
			r.what, r.rate(), r.firstToLast.Round(time.Millisecond), r.startToLast.Round(time.Millisecond),
			float64(r.rssPeakKB)/1024, r.cpu.Round(10*time.Millisecond), perJobMicros(r.redisCPU, r.jobs), float64(r.redisCmds)/float64(r.jobs))
		if showDetail() && r.procs > 0 {
			fmt.Fprintf(os.Stderr, "  %-58s %d worker processes: Redis at %.0f%% of a core, workers' CPU %v, load average %.2f → %.2f\n",
				"", r.procs, 100*r.redisUtil(), r.cpu.Round(10*time.Millisecond), r.load0, r.load1)
		}
		results = append(results, r)
		return nil
	}
	fmt.Fprintf(os.Stderr, "benchqueue: %d jobs per drain, concurrency %d, redis-server %s, GOMAXPROCS %d\n",
		*n, *concurrency, rs.addr, runtime.GOMAXPROCS(0))
	if showDetail() {
		fmt.Fprintf(os.Stderr, "benchqueue: %d worker processes for the drains, %d CPUs, load average %.2f\n",
			max(*workers, 1), runtime.NumCPU(), loadAvg())
	}

	if !*skipDrain {
		if err := report(goDrain(ctx, rs, rdb, "maskpredictor worker: distinct names (all cache misses)", cold)); err != nil {
			return err
		}
		if err := report(goDrain(ctx, rs, rdb, "maskpredictor worker: training names cycling (cache hits)", warm)); err != nil {
			return err
		}
	}
	if !*skipRuby && !*skipDrain {
		if err := report(rubyDrain(ctx, rs, rdb, "Ruby Sidekiq: equivalent job (split, JSON, SET, LPUSH)", "BenchPredictJob", cold)); err != nil {
			return err
		}
		if err := report(rubyDrain(ctx, rs, rdb, "Ruby Sidekiq: no-op job", "NoopJob", cold)); err != nil {
			return err
		}
	}
	var lat *result
	if !*skipLatency {
		l, err := latencyRun(ctx, rs, rdb, distinctNames(train, *rate*int(latencyDur.Seconds())+1000, 1))
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		lat = &l
	}
	printMarkdown(results, lat)
	if showDetail() {
		printRedisDetail(results)
	}
	return nil
}

func showDetail() bool { return *detail || *workers > 1 }

// --- names -----------------------------------------------------------------

func trainNames(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var recs []struct {
		MaskName string `json:"mask_name"`
	}
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.MaskName
	}
	return out, nil
}

// distinctNames builds n realistic names with distinct cache keys by
// recombining the training names' tokens (brand + a model-like token +
// the rest of another name); seed varies the set.
func distinctNames(train []string, n, seed int) []string {
	toks := make([][]string, len(train))
	for i, s := range train {
		toks[i] = predictor.Tokenize(s)
	}
	seen := map[string]bool{}
	out := make([]string, 0, n)
	for i := 0; len(out) < n; i++ {
		a := toks[(i+seed*31)%len(toks)]
		b := toks[(i*7+3+seed)%len(toks)]
		rest := b[min(1, len(b)-1):]
		name := fmt.Sprintf("%s %s%d %s", a[0], strings.ToUpper(a[len(a)-1][:min(2, len(a[len(a)-1]))]), i+seed*1_000_000, strings.Join(rest, " "))
		k := predictor.Normalize(name)
		if k != "" && !seen[k] {
			seen[k] = true
			out = append(out, name)
		}
	}
	return out
}

// --- redis-server ----------------------------------------------------------

type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

func startRedis(dir string) (*redisServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	rdir := filepath.Join(dir, "redis")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", rdir, "--logfile", filepath.Join(rdir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	rs := &redisServer{addr: "127.0.0.1:" + port, cmd: cmd}
	c := redis.NewClient(&redis.Options{Addr: rs.addr})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return rs, nil
		}
		if i > 100 {
			rs.stop()
			return nil, errors.New("redis-server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *redisServer) stop() {
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}

func (r *redisServer) url() string { return "redis://" + r.addr + "/0" }

// --- processes -------------------------------------------------------------

func workerCmd() []string {
	args := []string{"worker", "--callback-class", "BenchCallback", "--concurrency", strconv.Itoa(*concurrency)}
	return append(args, strings.Fields(*workerArgs)...)
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(logName string, env []string, name string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(*work, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func procStatusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// procCPU is the user+system CPU time of pid.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100 // USER_HZ
}

func ruby(env []string, args ...string) error {
	cmd := exec.Command("ruby", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ruby %v: %w\n%s", args, err, out)
	}
	return nil
}

func writeNames(names []string) (string, error) {
	b, err := json.Marshal(names)
	if err != nil {
		return "", err
	}
	f := filepath.Join(*work, "names.json")
	return f, os.WriteFile(f, b, 0o644)
}

// measure watches ps (already started at start) until done() is true,
// sampling their RSS; onFirst, if not nil, runs when first() becomes true.
// rssPeakKB is the largest process' peak, cpu the processes' sum.
func measure(ps []*proc, start time.Time, first, done func() bool, onFirst func()) (res result, err error) {
	var firstAt time.Time
	deadline := time.Now().Add(10 * time.Minute)
	peak := make([]int64, len(ps))
	for {
		for i, p := range ps {
			select {
			case <-p.done:
				return res, errors.New("process exited early (see its log in the scratch directory)")
			default:
			}
			if rss := procStatusKB(p.cmd.Process.Pid, "VmRSS"); rss > peak[i] {
				peak[i] = rss
			}
		}
		if firstAt.IsZero() && first() {
			firstAt = time.Now()
			if onFirst != nil {
				onFirst()
			}
		}
		if !firstAt.IsZero() && done() {
			now := time.Now()
			res.firstToLast, res.startToLast = now.Sub(firstAt), now.Sub(start)
			break
		}
		if time.Now().After(deadline) {
			return res, errors.New("not done after 10 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, p := range ps {
		pid := p.cmd.Process.Pid
		res.rssPeakKB = max(res.rssPeakKB, peak[i], procStatusKB(pid, "VmHWM"))
		res.cpu += procCPU(pid)
	}
	return res, nil
}

func goDrain(ctx context.Context, rs *redisServer, rdb *redis.Client, what string, names []string) (result, error) {
	r := result{what: what, jobs: len(names)}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return r, err
	}
	f, err := writeNames(names)
	if err != nil {
		return r, err
	}
	if err := ruby([]string{"REDIS_URL=" + rs.url()}, filepath.Join(*scripts, "fill.rb"), "MaskPredictionJob", sidekiq.DefaultQueue, f); err != nil {
		return r, err
	}
	if got := rdb.LLen(ctx, sidekiq.QueueKey(sidekiq.DefaultQueue)).Val(); got != int64(len(names)) {
		return r, fmt.Errorf("pre-filled %d jobs, want %d", got, len(names))
	}
	load0 := loadAvg()
	cs0 := commandStats(ctx, rdb)
	rcpu0, rcmd0 := redisStats(ctx, rdb)
	start := time.Now()
	var ps []*proc
	defer func() {
		var wg sync.WaitGroup
		for _, p := range ps {
			wg.Add(1)
			go func() { defer wg.Done(); p.stop() }()
		}
		wg.Wait()
	}()
	for i := range max(*workers, 1) {
		logName := "worker-drain.log"
		if *workers > 1 {
			logName = fmt.Sprintf("worker-drain-%d.log", i+1)
		}
		p, err := startProc(logName, []string{"REDIS_URL=" + rs.url()}, *bin, workerCmd()...)
		if err != nil {
			return r, err
		}
		ps = append(ps, p)
	}
	want := int64(len(names))
	var rcpuFirst time.Duration
	m, err := measure(ps, start,
		func() bool { return rdb.LLen(ctx, "queue:default").Val() > 0 },
		func() bool { return rdb.LLen(ctx, "queue:default").Val() >= want },
		func() { rcpuFirst, _ = redisStats(ctx, rdb) })
	m.what, m.jobs, m.procs = what, len(names), len(ps)
	rcpu1, rcmd1 := redisStats(ctx, rdb)
	m.redisCPU, m.redisCmds, m.redisCPUDrain = rcpu1-rcpu0, rcmd1-rcmd0, rcpu1-rcpuFirst
	m.cmdStats = commandDelta(cs0, commandStats(ctx, rdb))
	m.load0, m.load1 = load0, loadAvg()
	return m, err
}

func rubyDrain(ctx context.Context, rs *redisServer, rdb *redis.Client, what, class string, names []string) (result, error) {
	r := result{what: what, jobs: len(names)}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return r, err
	}
	f, err := writeNames(names)
	if err != nil {
		return r, err
	}
	if err := ruby([]string{"REDIS_URL=" + rs.url()}, filepath.Join(*scripts, "fill.rb"), class, "bench", f); err != nil {
		return r, err
	}
	want := int64(len(names))
	if got := rdb.LLen(ctx, "queue:bench").Val(); got != want {
		return r, fmt.Errorf("pre-filled %d jobs, want %d", got, want)
	}
	jobrb, _ := filepath.Abs(filepath.Join(*scripts, "job.rb"))
	rcpu0, rcmd0 := redisStats(ctx, rdb)
	start := time.Now()
	p, err := startProc("sidekiq-"+class+".log", []string{"REDIS_URL=" + rs.url()}, "sidekiq",
		"-r", jobrb, "-c", strconv.Itoa(*concurrency), "-q", "bench")
	if err != nil {
		return r, err
	}
	defer p.stop()
	var first, done func() bool
	if class == "NoopJob" {
		// No trace of a no-op: done when the queue is empty (≤ concurrency
		// jobs of a few µs may still run).
		first = func() bool { return rdb.LLen(ctx, "queue:bench").Val() < want }
		done = func() bool { return rdb.LLen(ctx, "queue:bench").Val() == 0 }
	} else {
		first = func() bool { return rdb.LLen(ctx, "queue:default").Val() > 0 }
		done = func() bool { return rdb.LLen(ctx, "queue:default").Val() >= want }
	}
	m, err := measure([]*proc{p}, start, first, done, nil)
	m.what, m.jobs = what, len(names)
	rcpu1, rcmd1 := redisStats(ctx, rdb)
	m.redisCPU, m.redisCmds = rcpu1-rcpu0, rcmd1-rcmd0
	return m, err
}

// --- latency -----------------------------------------------------------------

func latencyRun(ctx context.Context, rs *redisServer, rdb *redis.Client, names []string) (result, error) {
	r := result{what: fmt.Sprintf("latency at %d jobs/s", *rate)}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return r, err
	}
	if err := rdb.ConfigSet(ctx, "notify-keyspace-events", "K$").Err(); err != nil {
		return r, err
	}
	defer rdb.ConfigSet(ctx, "notify-keyspace-events", "")
	p, err := startProc("worker-latency.log", []string{"REDIS_URL=" + rs.url()}, *bin, workerCmd()...)
	if err != nil {
		return r, err
	}
	defer p.stop()
	// Ready when the process shows on Sidekiq's Busy page.
	for i := 0; rdb.SCard(ctx, "processes").Val() == 0; i++ {
		if i > 200 {
			return r, errors.New("worker did not register within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)

	sub := redis.NewClient(&redis.Options{Addr: rs.addr})
	defer sub.Close()
	ps := sub.PSubscribe(ctx, "__keyspace@0__:maskpredictor:prediction:*")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return r, err
	}
	const prefix = "__keyspace@0__:maskpredictor:prediction:"
	var mu sync.Mutex
	pushedAt := map[string]time.Time{}
	var lat []time.Duration
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for msg := range ps.Channel(redis.WithChannelSize(100000)) {
			now := time.Now()
			key := strings.TrimPrefix(msg.Channel, prefix)
			mu.Lock()
			if t, ok := pushedAt[key]; ok {
				lat = append(lat, now.Sub(t))
				delete(pushedAt, key)
			}
			mu.Unlock()
		}
	}()

	client := sidekiq.NewClient(rdb)
	total := *rate * int(latencyDur.Seconds())
	cpu0 := procCPU(p.cmd.Process.Pid)
	start := time.Now()
	var rssPeak int64
	for i := 0; i < total; i++ {
		if due := start.Add(time.Duration(i) * time.Second / time.Duration(*rate)); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
		name := names[i]
		key := predictor.Normalize(name)
		mu.Lock()
		pushedAt[key] = time.Now()
		mu.Unlock()
		if _, err := client.Push(ctx, sidekiq.DefaultQueue, "MaskPredictionJob", []any{name, i}); err != nil {
			return r, err
		}
		if i%1000 == 0 {
			if rss := procStatusKB(p.cmd.Process.Pid, "VmRSS"); rss > rssPeak {
				rssPeak = rss
			}
		}
	}
	elapsed := time.Since(start)
	time.Sleep(2 * time.Second)
	r.cpu = procCPU(p.cmd.Process.Pid) - cpu0
	ps.Close()
	<-recvDone
	mu.Lock()
	defer mu.Unlock()
	r.latencies, r.lost, r.jobs = lat, len(pushedAt), total
	r.firstToLast = elapsed
	r.rssPeakKB = max(rssPeak, procStatusKB(p.cmd.Process.Pid, "VmHWM"))
	sort.Slice(r.latencies, func(a, b int) bool { return r.latencies[a] < r.latencies[b] })
	fmt.Fprintf(os.Stderr, "  %-58s p50 %v  p90 %v  p99 %v  p99.9 %v  max %v  (%d jobs in %v, %d without an entry)  peak RSS %.1f MB  CPU %.0f%% of a core\n",
		r.what, pct(r.latencies, 50), pct(r.latencies, 90), pct(r.latencies, 99), pct(r.latencies, 99.9),
		pct(r.latencies, 100), r.jobs, elapsed.Round(time.Millisecond), r.lost, float64(r.rssPeakKB)/1024,
		100*r.cpu.Seconds()/(elapsed.Seconds()+2))
	return r, nil
}

func perJobMicros(d time.Duration, jobs int) float64 {
	if jobs == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(jobs)
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i].Round(10 * time.Microsecond)
}

func printMarkdown(rs []result, lat *result) {
	fmt.Printf("Drains of %d pre-filled jobs, concurrency %d (jobs/s from the first job done to the last):\n\n", *n, *concurrency)
	fmt.Println("| run | jobs/s | first→last | incl. process start | peak RSS | process CPU per job | Redis CPU per job | Redis commands per job |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rs {
		fmt.Printf("| %s | **%.0f** | %.2f s | %.2f s | %.1f MB | %.0f µs | %.0f µs | %.1f |\n", r.what, r.rate(),
			r.firstToLast.Seconds(), r.startToLast.Seconds(), float64(r.rssPeakKB)/1024,
			perJobMicros(r.cpu, r.jobs), perJobMicros(r.redisCPU, r.jobs), float64(r.redisCmds)/float64(r.jobs))
	}
	if lat == nil {
		return
	}
	fmt.Printf("\nLatency from Sidekiq::Client-style push to the cache entry's SET, %d jobs at %d jobs/s (distinct names):\n\n", lat.jobs, *rate)
	fmt.Println("| p50 | p90 | p99 | p99.9 | max | lost | peak RSS | worker CPU |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	fmt.Printf("| %v | %v | **%v** | %v | %v | %d | %.1f MB | %.0f%% of a core |\n",
		pct(lat.latencies, 50), pct(lat.latencies, 90), pct(lat.latencies, 99), pct(lat.latencies, 99.9),
		pct(lat.latencies, 100), lat.lost, float64(lat.rssPeakKB)/1024, 100*lat.cpu.Seconds()/(lat.firstToLast.Seconds()+2))
}

// printRedisDetail gives Redis' side of the worker's drains: what one job
// costs it and at what rate one Redis core would be saturated, estimated
// twice: 1 s / (Redis CPU per job), and the rate reached divided by the
// fraction of a core Redis used while reaching it.
func printRedisDetail(rs []result) {
	fmt.Printf("\nRedis during the drains (%d CPUs; the worker processes, redis-server and this program share them):\n\n", runtime.NumCPU())
	fmt.Println("| run | worker processes | jobs/s | Redis CPU per job | Redis utilisation (first→last) | ⇒ 1 core saturated at (1 s / CPU per job) | ⇒ (jobs/s ÷ utilisation) | Redis commands per job | workers' CPU (sum) | workers' CPU per job | load average (start → end) |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rs {
		if r.procs == 0 {
			continue
		}
		perJob := perJobMicros(r.redisCPU, r.jobs)
		sat1, sat2 := 0.0, 0.0
		if perJob > 0 {
			sat1 = 1e6 / perJob
		}
		if u := r.redisUtil(); u > 0 {
			sat2 = r.rate() / u
		}
		fmt.Printf("| %s | %d | **%.0f** | %.1f µs | %.0f %% | %.0f jobs/s | %.0f jobs/s | %.1f | %.2f s | %.0f µs | %.2f → %.2f |\n",
			r.what, r.procs, r.rate(), perJob, 100*r.redisUtil(), sat1, sat2, float64(r.redisCmds)/float64(r.jobs),
			r.cpu.Seconds(), perJobMicros(r.cpu, r.jobs), r.load0, r.load1)
	}
	for _, r := range rs {
		if r.procs == 0 || len(r.cmdStats) == 0 {
			continue
		}
		type row struct {
			name string
			cmdStat
		}
		var rows []row
		var scripts, others int64
		for k, v := range r.cmdStats {
			rows = append(rows, row{k, v})
			if isScriptCall(k) {
				scripts += v.usec
			} else {
				others += v.usec
			}
		}
		sort.Slice(rows, func(a, b int) bool {
			if rows[a].calls != rows[b].calls {
				return rows[a].calls > rows[b].calls
			}
			return rows[a].name < rows[b].name
		})
		fmt.Printf("\nINFO commandstats, %s, %d worker processes, per job. Redis counts the commands a Lua script calls under their own names too (and in total_commands_processed); a script's usec includes theirs. Scripts (EVAL/EVALSHA, their commands included): %.1f µs per job; every other line: %.1f µs per job; Redis CPU: %.1f µs per job (the rest is network I/O and the event loop).\n\n",
			r.what, r.procs, float64(scripts)/float64(r.jobs), float64(others)/float64(r.jobs), perJobMicros(r.redisCPU, r.jobs))
		fmt.Println("| command | calls per job | µs per job | µs per call |")
		fmt.Println("| --- | ---: | ---: | ---: |")
		for _, w := range rows {
			fmt.Printf("| %s | %.3f | %.2f | %.2f |\n", w.name, float64(w.calls)/float64(r.jobs),
				float64(w.usec)/float64(r.jobs), float64(w.usec)/float64(w.calls))
		}
	}
}

func isScriptCall(cmd string) bool {
	switch cmd {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
		return true
	}
	return false
}
