package sidekiq

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// HeartbeatConfig configures a Heartbeat; WithDefaults fills in unset fields.
type HeartbeatConfig struct {
	// Redis is the Redis Rails' Sidekiq (and its Web UI) uses. Required.
	Redis redis.UniversalClient

	// Identity is the process entry's name; use the Bridge's. Default: NewIdentity().
	Identity string

	// Queues are listed on the Busy page. Default: DefaultQueue.
	Queues []QueueWeight

	// Concurrency is shown as the process's thread count. Default: 10.
	Concurrency int

	// Tag and Labels are shown next to the process. Default tag: "maskpredictor".
	Tag    string
	Labels []string

	// Version is shown when it differs from the Web UI's own Sidekiq version.
	// Default: "maskpredictor".
	Version string

	// Interval between beats. Sidekiq uses 5 s (6.x) or 10 s (7+); it must stay well
	// below TTL. Default: 5 s.
	Interval time.Duration

	// TTL of the process entry: Sidekiq Web drops a process whose entry expired.
	// Default: 60 s, as Sidekiq.
	TTL time.Duration

	// RedisFault, when set, reports whether an error is a Redis-wide fault that something
	// else already logs (worker.Server's gate): beat failures and recoveries caused by it
	// are then logged at debug level only.
	RedisFault func(error) bool

	// Logger receives beat failures. Default: zap.NewNop().
	Logger *zap.Logger
}

// WithDefaults returns a copy of c with every unset field given its default.
func (c HeartbeatConfig) WithDefaults() HeartbeatConfig {
	if c.Identity == "" {
		c.Identity = NewIdentity()
	}
	if len(c.Queues) == 0 {
		c.Queues = []QueueWeight{{Name: DefaultQueue, Weight: 1}}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 10
	}
	if c.Tag == "" {
		c.Tag = "maskpredictor"
	}
	if c.Labels == nil {
		c.Labels = []string{}
	}
	if c.Version == "" {
		c.Version = "maskpredictor"
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.TTL == 0 {
		c.TTL = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c HeartbeatConfig) validate() error {
	switch {
	case c.Redis == nil:
		return errors.New("sidekiq heartbeat: Redis is required: pass the go-redis client of the Redis Rails' Sidekiq uses")
	case c.Concurrency < 1:
		return fmt.Errorf("sidekiq heartbeat: Concurrency is %d, must be ≥ 1", c.Concurrency)
	case c.Interval <= 0 || c.TTL < 2*c.Interval:
		return fmt.Errorf("sidekiq heartbeat: TTL (%s) must be at least 2 × Interval (%s), or the process flickers off the Busy page", c.TTL, c.Interval)
	}
	for _, q := range c.Queues {
		if err := validateQueueName(q.Name); err != nil {
			return fmt.Errorf("sidekiq heartbeat: Queues: %w", err)
		}
	}
	return nil
}

// Heartbeat keeps this process on Sidekiq Web's Busy page, with its running jobs, and
// feeds the dashboard's processed/failed counters, the way a Sidekiq process does
// (reference §4.3): every Interval one MULTI writes `SADD processes <identity>`, the
// `<identity>` hash (info, busy, beat, quiet, rss, rtt_us, concurrency; EXPIRE TTL), the
// `<identity>:work` hash of running jobs (Sidekiq ≥ 6.5) and the same under
// `<identity>:workers` (what Sidekiq 6.4 reads), and the stat counters accumulated since
// the last beat. The process is marked "embedded", so the Web UI offers no Quiet/Stop
// buttons, whose signals this process would not read.
type Heartbeat struct {
	cfg     HeartbeatConfig
	log     *zap.Logger
	rdb     redis.UniversalClient
	info    []byte
	started time.Time

	mu      sync.Mutex
	running map[string]work
	nextTID atomic.Uint64
	quiet   atomic.Bool

	processed, failed atomic.Int64

	lifeMu sync.Mutex
	state  int // 0 new, 1 running, 2 stopped
	stop   chan struct{}
	wg     sync.WaitGroup
}

type work struct {
	raw   []byte
	runAt time.Time
}

// NewHeartbeat validates cfg (after WithDefaults) and returns a Heartbeat ready to Start.
func NewHeartbeat(cfg HeartbeatConfig) (*Heartbeat, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &Heartbeat{
		cfg:     cfg,
		log:     cfg.Logger.With(zap.String("component", "sidekiq-heartbeat"), zap.String("identity", cfg.Identity)),
		rdb:     cfg.Redis,
		started: time.Now(),
		running: map[string]work{},
		stop:    make(chan struct{}),
	}
	weights := map[string]int{}
	for _, q := range cfg.Queues {
		weights[q.Name] = q.Weight
	}
	info, err := marshalNoEscape(struct {
		Hostname    string           `json:"hostname"`
		StartedAt   rawJSON          `json:"started_at"`
		PID         int              `json:"pid"`
		Tag         string           `json:"tag"`
		Concurrency int              `json:"concurrency"`
		Queues      []string         `json:"queues"`
		Weights     []map[string]int `json:"weights"`
		Labels      []string         `json:"labels"`
		Identity    string           `json:"identity"`
		Version     string           `json:"version"`
		Embedded    bool             `json:"embedded"`
	}{
		Hostname:    hostname(),
		StartedAt:   floatSeconds(h.started),
		PID:         os.Getpid(),
		Tag:         cfg.Tag,
		Concurrency: cfg.Concurrency,
		Queues:      QueueNames(cfg.Queues),
		Weights:     []map[string]int{weights},
		Labels:      cfg.Labels,
		Identity:    cfg.Identity,
		Version:     cfg.Version,
		Embedded:    true,
	})
	if err != nil {
		return nil, fmt.Errorf("sidekiq heartbeat: encode info: %w", err)
	}
	h.info = info
	return h, nil
}

// Identity is the process entry's name.
func (h *Heartbeat) Identity() string { return h.cfg.Identity }

// Begin registers a running job (its raw Sidekiq payload) for the Busy page and returns
// the function to call when it ends; calling that more than once is harmless. The job
// shows from the next beat on. Call RecordResult as well to count it in the stats.
func (h *Heartbeat) Begin(raw []byte) (done func()) {
	tid := strconv.FormatUint(h.nextTID.Add(1), 36)
	h.mu.Lock()
	h.running[tid] = work{raw: raw, runAt: time.Now()}
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.running, tid)
			h.mu.Unlock()
		})
	}
}

// Busy is the number of jobs between Begin and done.
func (h *Heartbeat) Busy() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.running)
}

// RecordResult counts one job execution for stat:processed (and stat:failed if it
// failed), flushed at the next beat, as Sidekiq flushes its counters with its heartbeat.
func (h *Heartbeat) RecordResult(failed bool) {
	h.processed.Add(1)
	if failed {
		h.failed.Add(1)
	}
}

// Quiet marks the process as quiet (no longer fetching) from the next beat on, as Sidekiq
// does between TSTP and TERM.
func (h *Heartbeat) Quiet() { h.quiet.Store(true) }

// Start writes the first beat and keeps beating every Interval until Shutdown. A failing
// beat is logged and retried at the next interval; Start itself fails only if called
// twice. The first beat is bounded by ctx, Interval and 2 s, so an unreachable Redis does
// not hold Start up.
func (h *Heartbeat) Start(ctx context.Context) error {
	h.lifeMu.Lock()
	defer h.lifeMu.Unlock()
	if h.state != 0 {
		return errors.New("sidekiq heartbeat: Start called twice")
	}
	h.state = 1
	bctx, cancel := context.WithTimeout(ctx, min(h.cfg.Interval, startCallTimeout))
	defer cancel()
	if err := h.Beat(bctx); err != nil {
		h.log.Log(faultLevel(h.cfg.RedisFault, err), "sidekiq heartbeat: first beat failed; retrying every interval", zap.Error(err))
	}
	h.wg.Add(1)
	go h.loop()
	return nil
}

func (h *Heartbeat) loop() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	failing := false
	var lvl zapcore.Level
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Interval)
		err := h.Beat(ctx)
		cancel()
		switch {
		case err != nil && !failing:
			lvl = faultLevel(h.cfg.RedisFault, err)
			h.log.Log(lvl, "sidekiq heartbeat: beat failed; retrying every interval", zap.Error(err))
			failing = true
		case err == nil && failing:
			h.log.Log(min(lvl, zapcore.InfoLevel), "sidekiq heartbeat: beating again")
			failing = false
		}
	}
}

// Beat writes one heartbeat now.
func (h *Heartbeat) Beat(ctx context.Context) error {
	start := time.Now()
	if err := h.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("sidekiq heartbeat: %w", err)
	}
	rtt := time.Since(start)

	h.mu.Lock()
	entries := make(map[string]any, len(h.running))
	for tid, w := range h.running {
		entries[tid] = workEntry(w)
	}
	busy := len(h.running)
	h.mu.Unlock()
	processed, failed := h.processed.Swap(0), h.failed.Swap(0)

	id := h.cfg.Identity
	now := time.Now()
	pipe := h.rdb.TxPipeline()
	for _, key := range []string{id + ":work", id + ":workers"} {
		pipe.Unlink(ctx, key)
		if len(entries) > 0 {
			pipe.HSet(ctx, key, entries)
			pipe.Expire(ctx, key, h.cfg.TTL)
		}
	}
	pipe.SAdd(ctx, keyProcesses, id)
	pipe.HSet(ctx, id,
		"info", h.info,
		"busy", busy,
		"beat", string(floatSeconds(now)),
		"quiet", strconv.FormatBool(h.quiet.Load()),
		"rss", rssKB(),
		"rtt_us", rtt.Microseconds(),
		"concurrency", h.cfg.Concurrency,
	)
	pipe.Expire(ctx, id, h.cfg.TTL)
	addStats(ctx, pipe, now, int(processed), int(failed))
	if _, err := pipe.Exec(ctx); err != nil {
		// MULTI is all or nothing; count these again at the next beat.
		h.processed.Add(processed)
		h.failed.Add(failed)
		return fmt.Errorf("sidekiq heartbeat: %w", err)
	}
	return nil
}

// workEntry is one field of <identity>:work, as Sidekiq's processor writes it:
// {"queue": q, "payload": "<the job JSON as a string>", "run_at": <epoch seconds>}.
func workEntry(w work) string {
	var q struct {
		Queue string `json:"queue"`
	}
	_ = json.Unmarshal(w.raw, &q) // a job without a readable queue still shows
	b, _ := marshalNoEscape(struct {
		Queue   string `json:"queue"`
		Payload string `json:"payload"`
		RunAt   int64  `json:"run_at"`
	}{q.Queue, strings.ToValidUTF8(string(w.raw), "\uFFFD"), w.runAt.Unix()})
	return string(b)
}

// Shutdown stops beating and removes the process entry and its work hashes, after
// flushing the stat counters. Sidekiq leaves its hash to expire; removing it at once
// takes the process off the Busy page at once.
func (h *Heartbeat) Shutdown(ctx context.Context) error {
	h.lifeMu.Lock()
	if h.state != 1 {
		h.lifeMu.Unlock()
		return errors.New("sidekiq heartbeat: Shutdown without a running Start")
	}
	h.state = 2
	close(h.stop)
	h.lifeMu.Unlock()
	h.wg.Wait()

	id := h.cfg.Identity
	processed, failed := h.processed.Swap(0), h.failed.Swap(0)
	pipe := h.rdb.TxPipeline()
	addStats(ctx, pipe, time.Now(), int(processed), int(failed))
	pipe.SRem(ctx, keyProcesses, id)
	pipe.Unlink(ctx, id+":work", id+":workers", id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("sidekiq heartbeat shutdown: %w", err)
	}
	return nil
}

// addStats queues the stat:processed / stat:failed increments of Client.IncrStats.
func addStats(ctx context.Context, pipe redis.Pipeliner, now time.Time, processed, failed int) {
	day := now.UTC().Format("2006-01-02")
	for _, s := range []struct {
		key string
		n   int
	}{{statProcessedKey, processed}, {statFailedKey, failed}} {
		if s.n == 0 {
			continue
		}
		pipe.IncrBy(ctx, s.key, int64(s.n))
		pipe.IncrBy(ctx, s.key+":"+day, int64(s.n))
		pipe.Expire(ctx, s.key+":"+day, statsTTL)
	}
}

// rssKB is the resident set size in KB, as Sidekiq reports it; 0 where /proc is missing.
func rssKB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			fields := strings.Fields(string(rest))
			if len(fields) > 0 {
				n, _ := strconv.ParseInt(fields[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// faultLevel is the level of a failure's log line: debug when isFault says the error is a
// Redis-wide fault logged elsewhere, else warn.
func faultLevel(isFault func(error) bool, err error) zapcore.Level {
	if isFault != nil && isFault(err) {
		return zapcore.DebugLevel
	}
	return zapcore.WarnLevel
}

// startCallTimeout bounds the Redis work Heartbeat.Start and Scheduler.Start do before
// returning (also by Interval): a Redis that does not answer (a TLS handshake with a
// plain port hangs until the dial timeout) must not hold a process's start up for long.
const startCallTimeout = 2 * time.Second
