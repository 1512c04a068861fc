package sidekiq

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
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

	// Identity is the process entry's name; use the Bridge's. Default: NewIdentity("").
	Identity string

	// Queues are listed on the Busy page. Default: DefaultQueue.
	Queues []QueueWeight

	// Concurrency is shown as the process's thread count (info.concurrency, and the
	// process hash's concurrency field that Sidekiq 8.1.2+ reads): the number of worker
	// slots. Busy never exceeds it (see Occupy). Default: 10.
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

	// OnSignal, when set, receives the signals Sidekiq's API and Web UI send this process
	// through the `<identity>-signals` list: "TSTP" (Process#quiet!, the Quiet button),
	// "TERM" (Process#stop!, Stop), "TTIN" (Process#dump_threads), as Sidekiq's launcher
	// reads them: one RPOP in each beat's MULTI. After a beat that read a signal the
	// heartbeat beats again at once (up to a few times), so that what the signal changed
	// (quiet) shows without waiting an Interval and a second queued signal is read too.
	// It is called on the heartbeat's goroutine and must not block.
	//
	// Without OnSignal the process is advertised as embedded ("embedded": true), as a
	// Sidekiq process that does not read its signals is: Sidekiq 7+'s Busy page then
	// shows no Quiet/Stop buttons for it and Process#quiet!/stop! refuse it. With it, the
	// process is a full one ("embedded": false) and gets both buttons.
	OnSignal func(sig string)

	// Logger receives beat failures. Default: zap.NewNop().
	Logger *zap.Logger
}

// WithDefaults returns a copy of c with every unset field given its default.
func (c HeartbeatConfig) WithDefaults() HeartbeatConfig {
	if c.Identity == "" {
		c.Identity = NewIdentity("")
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
// the last beat, and pops one signal of `<identity>-signals` (see OnSignal).
//
// Busy and concurrency. Sidekiq's Busy page computes utilisation as Σ busy / Σ
// info.concurrency, one job per thread. A worker slot here may carry a batch task of
// several jobs, so the jobs in hand can outnumber the slots. The heartbeat therefore
// advertises the slots (Concurrency) and reports as busy the busy slots (Occupy), never
// more than Concurrency and never more than the jobs running (Begin); the work hashes
// list that many of the running jobs, oldest first. Without Occupy (a caller that tracks
// jobs only) busy is the running jobs, capped at Concurrency.
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

	// slots counts busy worker slots (Occupy); slotsUsed says Occupy was ever called.
	slots     atomic.Int64
	slotsUsed atomic.Bool

	processed, failed atomic.Int64

	lifeMu sync.Mutex
	state  int // 0 new, 1 running, 2 stopped
	stop   chan struct{}
	kick   chan struct{} // Kick: beat now
	wg     sync.WaitGroup
}

type work struct {
	raw   []byte
	runAt time.Time
	seq   uint64 // Begin order, for jobs that began in the same instant
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
		kick:    make(chan struct{}, 1),
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
		Embedded:    cfg.OnSignal == nil,
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
	seq := h.nextTID.Add(1)
	tid := strconv.FormatUint(seq, 36)
	h.mu.Lock()
	h.running[tid] = work{raw: raw, runAt: time.Now(), seq: seq}
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

// Occupy marks one worker slot busy (one asynq task, which may carry several jobs) until
// release is called; calling release more than once is harmless. Once Occupy has been
// used, the busy count of the Busy page is the busy slots (see Heartbeat).
func (h *Heartbeat) Occupy() (release func()) {
	h.slotsUsed.Store(true)
	h.slots.Add(1)
	var once sync.Once
	return func() { once.Do(func() { h.slots.Add(-1) }) }
}

// Busy is the number of jobs between Begin and done.
func (h *Heartbeat) Busy() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.running)
}

// shownBusy is the busy count a beat reports for n running jobs: n, at most the busy
// slots (once Occupy is used) and at most Concurrency.
func (h *Heartbeat) shownBusy(n int) int {
	if h.slotsUsed.Load() {
		n = min(n, int(max(h.slots.Load(), 0)))
	}
	return min(n, h.cfg.Concurrency)
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
// does between TSTP and TERM: the Busy page shows the "quiet" label and no Quiet button.
func (h *Heartbeat) Quiet() { h.quiet.Store(true) }

// Kick makes the running heartbeat beat now (say, to show a change of quiet at once)
// instead of at the end of its Interval. It does not wait; without a running loop it
// does nothing.
func (h *Heartbeat) Kick() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// IsQuiet reports whether Quiet was called.
func (h *Heartbeat) IsQuiet() bool { return h.quiet.Load() }

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
	sig, err := h.beat(bctx)
	if err != nil {
		h.log.Log(faultLevel(h.cfg.RedisFault, err), "sidekiq heartbeat: first beat failed; retrying every interval", zap.Error(err))
	}
	h.wg.Add(1)
	go h.loop(sig)
	return nil
}

func (h *Heartbeat) loop(firstSig string) {
	defer h.wg.Done()
	if firstSig != "" { // read by Start's beat (a signal sent before this process started)
		h.signal(firstSig)
		_ = h.beatAndSignals()
	}
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	failing := false
	var lvl zapcore.Level
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		case <-h.kick:
		}
		err := h.beatAndSignals()
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

// maxSignalBeats bounds the immediate beats after beats that read a signal.
const maxSignalBeats = 4

// beatAndSignals beats, and beats again at once while a beat reads a signal (at most
// maxSignalBeats times), each bounded by Interval.
func (h *Heartbeat) beatAndSignals() error {
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Interval)
		sig, err := h.beat(ctx)
		cancel()
		if err != nil || sig == "" || i >= maxSignalBeats {
			return err
		}
		h.signal(sig)
	}
}

// signal hands sig to OnSignal.
func (h *Heartbeat) signal(sig string) {
	h.log.Info("sidekiq heartbeat: signal from Sidekiq", zap.String("signal", sig))
	h.cfg.OnSignal(sig)
}

// Beat writes one heartbeat now, and hands a signal it pops to OnSignal.
func (h *Heartbeat) Beat(ctx context.Context) error {
	sig, err := h.beat(ctx)
	if sig != "" {
		h.signal(sig)
	}
	return err
}

// beat writes one heartbeat and returns the signal it popped ("" if none, or without
// OnSignal: a process that does not read its signals leaves them to expire).
func (h *Heartbeat) beat(ctx context.Context) (string, error) {
	start := time.Now()
	if err := h.rdb.Ping(ctx).Err(); err != nil {
		return "", fmt.Errorf("sidekiq heartbeat: %w", err)
	}
	rtt := time.Since(start)

	h.mu.Lock()
	busy := h.shownBusy(len(h.running))
	shown := make([]string, 0, len(h.running))
	for tid := range h.running {
		shown = append(shown, tid)
	}
	if busy < len(shown) { // the oldest running jobs, one per busy slot
		slices.SortFunc(shown, func(a, b string) int {
			if c := h.running[a].runAt.Compare(h.running[b].runAt); c != 0 {
				return c
			}
			return cmp.Compare(h.running[a].seq, h.running[b].seq)
		})
		shown = shown[:busy]
	}
	entries := make(map[string]any, len(shown))
	for _, tid := range shown {
		entries[tid] = workEntry(h.running[tid])
	}
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
	var sigCmd *redis.StringCmd
	if h.cfg.OnSignal != nil { // last: its redis.Nil must not hide another command's error
		sigCmd = pipe.RPop(ctx, id+"-signals")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		// MULTI is all or nothing; count these again at the next beat.
		h.processed.Add(processed)
		h.failed.Add(failed)
		return "", fmt.Errorf("sidekiq heartbeat: %w", err)
	}
	if sigCmd == nil {
		return "", nil
	}
	return sigCmd.Val(), nil
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
	pipe.Unlink(ctx, id+":work", id+":workers", id, id+"-signals")
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
