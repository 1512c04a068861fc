package sidekiq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// PoisonErrorClass is the error_class of the dead-set entries the bridge writes for
// payloads that can never succeed; Sidekiq Web shows "<error_class>: <error_message>".
const PoisonErrorClass = "MaskPredictor::InvalidJob"

// BridgeConfig configures a Bridge. The zero value of every field but Redis is a usable
// default; WithDefaults fills them in and NewBridge validates the result.
type BridgeConfig struct {
	// Redis is the Redis Rails' Sidekiq uses: the bridge reads queue:<name> there, keeps
	// its in-flight lists there (the move must be atomic, so on the same node) and writes
	// poison jobs to its dead set. Required.
	Redis redis.UniversalClient

	// AsynqRedis is the Redis asynq uses, if it is not Redis. Default: Redis.
	AsynqRedis redis.UniversalClient

	// Queues are the Sidekiq queues to transfer (see ParseQueues); each becomes the asynq
	// queue of the same name. Default: DefaultQueue.
	Queues []QueueWeight

	// Concurrency is the asynq server's concurrency; it only sizes the default MaxPending.
	// Default: 10.
	Concurrency int

	// MaxPending is the backpressure limit: a queue is transferred only while asynq holds
	// fewer pending tasks than this for it, so that the backlog stays in queue:<name>,
	// where Sidekiq Web shows its size and latency and where a stopped sidecar leaves it.
	// Default: 2 × Concurrency.
	MaxPending int

	// BatchSize is the most jobs moved out of a queue in one round trip. Default:
	// min(MaxPending, 50), and at least 2 × JobsPerTask.
	BatchSize int

	// JobsPerTask is the most Sidekiq jobs handed to asynq in one task (BatchTaskType;
	// see there for why). Jobs are grouped only from what one move took out of the
	// queue, so a job never waits for others to arrive: under light load every task
	// carries one job (TaskType). MaxPending then counts tasks, so up to
	// MaxPending × JobsPerTask jobs may be out of queue:<name>. Default: 1 (one task per
	// job); worker.Server sets its own default.
	JobsPerTask int

	// Identity names this process's in-flight lists. It must be unique among running
	// bridges; share it with the Heartbeat so Sidekiq's Busy page and the bridge agree.
	// Default: NewIdentity("").
	Identity string

	// KeyPrefix prefixes the bridge's own keys (<prefix>:bridges, :alive:<id>,
	// :inflight:<id>:<queue>, :queues:<id>). Default: "maskpredictor:bridge".
	KeyPrefix string

	// AliveTTL is how long this bridge counts as alive after its last beat. Another bridge
	// takes over the in-flight jobs of one whose alive key has expired, so it must be well
	// above BeatInterval. With RecoverInterval it bounds how long a dead bridge's
	// in-flight jobs wait (20 s by default, inside the 35 s a killed worker's jobs
	// may take to run again elsewhere). Default: 15 s.
	AliveTTL time.Duration

	// BeatInterval is how often the alive key is renewed. Default: 3 s.
	BeatInterval time.Duration

	// RecoverInterval is how often the in-flight lists of dead bridges are looked for
	// (also once at Start): a few commands per live bridge. Default: 5 s.
	RecoverInterval time.Duration

	// FetchTimeout is how long one blocking wait on an empty queue lasts; Shutdown waits at
	// most this long for it. Default: 2 s (Sidekiq's BRPOP timeout).
	FetchTimeout time.Duration

	// BackpressurePoll is how often a queue at MaxPending is re-checked. It must be short
	// enough that asynq's workers never run dry (an empty asynq queue makes its processor
	// sleep about a second). Default: 10 ms.
	BackpressurePoll time.Duration

	// Retention keeps a completed asynq task (and so its TaskID) this long, which is what
	// makes a re-delivery after a crash a no-op instead of a second run. It must cover the
	// recovery window (AliveTTL + RecoverInterval) many times over. It is not what keeps
	// callbacks and replies exactly-once (the worker's done markers do, for DoneTTL), so
	// a delivery that comes back later still writes back once; it only runs again.
	// Default: 10 min (a completed task with its payload is ~0.8 KB per job).
	Retention time.Duration

	// TaskTimeout is asynq's Timeout for each job (a batch task gets it once per job).
	// Default: 0, asynq's own (30 min per task).
	TaskTimeout time.Duration

	// MaxBackoff caps the wait between attempts while Redis is unreachable. Default: 5 s.
	MaxBackoff time.Duration

	// Classes are the job classes this bridge hands to asynq (Job.CheckClass): a job of
	// any other class on our queues goes to the dead set with ForeignErrorClass and is
	// never predicted. Default: DefaultClasses.
	Classes []string

	// ReplyTTL is the expiry of a reply_to list a refused job's error is replied to
	// (Client.ReplyError). Default: 1 h.
	ReplyTTL time.Duration

	// Check, when set, is asked about every job whose class and args pass, with its
	// requests, before it is handed over: an error (wrapping ErrPoison) sends the job to
	// the dead set with that reason, so a job that can never succeed (over the worker's
	// limits, a name without tokens) is stored once, in the dead set, and never enters
	// asynq. The worker's handler (worker.Handler.Check) makes the same checks again
	// when the job runs.
	Check func(*Job, []Request) error

	// OnEnqueue, when set, is called after every task the bridge hands to asynq (the
	// worker wakes its idle asynq processor with it).
	OnEnqueue func()

	// RedisFault, when set, reports whether an error is a Redis-wide fault that something
	// else already logs (worker.Server's gate): the bridge then logs its own failures and
	// recoveries caused by it at debug level only.
	RedisFault func(error) bool

	// Client writes poison jobs to the dead set. Default: NewClient(Redis).
	Client *Client

	// Logger receives warnings about poison jobs, Redis outages and recoveries.
	// Default: zap.NewNop().
	Logger *zap.Logger
}

// WithDefaults returns a copy of c with every unset field given its default.
func (c BridgeConfig) WithDefaults() BridgeConfig {
	if c.AsynqRedis == nil {
		c.AsynqRedis = c.Redis
	}
	if len(c.Queues) == 0 {
		c.Queues = []QueueWeight{{Name: DefaultQueue, Weight: 1}}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 10
	}
	if c.MaxPending == 0 {
		c.MaxPending = 2 * c.Concurrency
	}
	if c.JobsPerTask == 0 {
		c.JobsPerTask = 1
	}
	if c.BatchSize == 0 {
		c.BatchSize = max(min(c.MaxPending, 50), 2*c.JobsPerTask)
	}
	if c.Identity == "" {
		c.Identity = NewIdentity("")
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "maskpredictor:bridge"
	}
	if c.AliveTTL == 0 {
		c.AliveTTL = 15 * time.Second
	}
	if c.BeatInterval == 0 {
		c.BeatInterval = 3 * time.Second
	}
	if c.RecoverInterval == 0 {
		c.RecoverInterval = 5 * time.Second
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = 2 * time.Second
	}
	if c.BackpressurePoll == 0 {
		c.BackpressurePoll = 10 * time.Millisecond
	}
	if c.Retention == 0 {
		c.Retention = 10 * time.Minute
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if len(c.Classes) == 0 {
		c.Classes = DefaultClasses
	}
	if c.ReplyTTL == 0 {
		c.ReplyTTL = time.Hour
	}
	if c.Client == nil && c.Redis != nil {
		c.Client = NewClient(c.Redis)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c BridgeConfig) validate() error {
	if c.Redis == nil {
		return errors.New("sidekiq bridge: Redis is required: pass the go-redis client of the Redis Rails' Sidekiq uses (REDIS_URL)")
	}
	seen := map[string]bool{}
	for _, q := range c.Queues {
		if err := validateQueueName(q.Name); err != nil {
			return fmt.Errorf("sidekiq bridge: Queues: %w", err)
		}
		if seen[q.Name] {
			return fmt.Errorf("sidekiq bridge: Queues: %q is listed twice", q.Name)
		}
		seen[q.Name] = true
	}
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("sidekiq bridge: Concurrency is %d, must be ≥ 1 (the asynq server's concurrency)", c.Concurrency)
	case c.MaxPending < 1:
		return fmt.Errorf("sidekiq bridge: MaxPending is %d, must be ≥ 1 (0 means 2 × Concurrency)", c.MaxPending)
	case c.BatchSize < 1:
		return fmt.Errorf("sidekiq bridge: BatchSize is %d, must be ≥ 1", c.BatchSize)
	case c.BatchSize < c.JobsPerTask:
		return fmt.Errorf("sidekiq bridge: BatchSize (%d) is below JobsPerTask (%d): no move could fill a batch; leave BatchSize 0 for 2 × JobsPerTask", c.BatchSize, c.JobsPerTask)
	case c.JobsPerTask < 1 || c.JobsPerTask > 1000:
		return fmt.Errorf("sidekiq bridge: JobsPerTask is %d, want 1 (one task per job) to 1000", c.JobsPerTask)
	case c.Identity == "":
		return errors.New("sidekiq bridge: Identity is empty")
	case c.BeatInterval <= 0 || c.RecoverInterval <= 0 || c.FetchTimeout <= 0 || c.BackpressurePoll <= 0 || c.MaxBackoff <= 0:
		return errors.New("sidekiq bridge: BeatInterval, RecoverInterval, FetchTimeout, BackpressurePoll and MaxBackoff must be positive (0 means the default)")
	case c.AliveTTL < 3*c.BeatInterval:
		return fmt.Errorf("sidekiq bridge: AliveTTL (%s) must be at least 3 × BeatInterval (%s), or one late beat lets another bridge take over this one's in-flight jobs", c.AliveTTL, c.BeatInterval)
	case c.FetchTimeout >= c.AliveTTL/2:
		return fmt.Errorf("sidekiq bridge: FetchTimeout (%s) must be below AliveTTL/2 (%s)", c.FetchTimeout, c.AliveTTL/2)
	case c.Retention < 10*(c.AliveTTL+c.RecoverInterval):
		return fmt.Errorf("sidekiq bridge: Retention (%s) must be at least 10 × (AliveTTL + RecoverInterval) = %s: a job recovered from a dead bridge must still meet its completed asynq task, or it runs twice", c.Retention, 10*(c.AliveTTL+c.RecoverInterval))
	case c.TaskTimeout < 0:
		return errors.New("sidekiq bridge: TaskTimeout must not be negative")
	}
	return nil
}

// BridgeStats counts what a Bridge did since it was created.
type BridgeStats struct {
	Transferred int64 // jobs enqueued into asynq
	Tasks       int64 // asynq tasks they were enqueued in (fewer with JobsPerTask > 1)
	Duplicates  int64 // deliveries whose asynq task already existed (a re-delivery after a crash)
	Poison      int64 // payloads sent to the dead set
	Recovered   int64 // jobs moved back from dead bridges' in-flight lists to their queue
}

// Bridge moves Sidekiq jobs from queue:<name> into asynq without losing or duplicating
// any (reference §9): each job is moved atomically into this process's in-flight list,
// enqueued into asynq under a TaskID derived from the delivery (Job.TaskID) with
// Retention, and only then removed from the in-flight list. A crash at any point leaves
// the job either in the queue or in the in-flight list; another bridge (or this one, at
// its next start) moves the in-flight list of a bridge whose alive key expired back to the
// queue, and the TaskID turns a second Enqueue of an already transferred job into
// ErrTaskIDConflict, so it runs once.
//
// Use: NewBridge, Start, and Shutdown when the process stops (before the asynq server's
// own Shutdown, so that what the bridge hands over is still processed or stays pending).
type Bridge struct {
	cfg    BridgeConfig
	log    *zap.Logger
	rdb    redis.UniversalClient
	ardb   redis.UniversalClient
	aq     *asynq.Client
	client *Client

	mu         sync.Mutex
	state      int // 0 new, 1 running, 2 stopped
	stop       chan struct{}
	registered chan struct{} // closed after the first successful registration
	runCtx     context.Context
	cancel     context.CancelFunc
	fetchWG    sync.WaitGroup
	maintWG    sync.WaitGroup
	killed     atomic.Bool

	// quiet stops the fetch loops from moving jobs (Quiet). A move holds moveMu's
	// read lock from its quiet check to its end, so that Quiet, taking the write
	// lock, knows no move is under way and none will start.
	quiet  atomic.Bool
	moveMu sync.RWMutex

	transferred, tasks, duplicates, poisoned, recovered atomic.Int64

	// crashAt, when set by a test, is asked after each step of a transfer ("moved",
	// "enqueued"); true makes the bridge die there as a SIGKILL would: no further Redis
	// command, no drain, no deregistration.
	crashAt func(step string) bool
}

// NewBridge validates cfg (after WithDefaults) and returns a Bridge ready to Start.
func NewBridge(cfg BridgeConfig) (*Bridge, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Bridge{
		cfg:        cfg,
		log:        cfg.Logger.With(zap.String("component", "sidekiq-bridge"), zap.String("identity", cfg.Identity)),
		rdb:        cfg.Redis,
		ardb:       cfg.AsynqRedis,
		aq:         asynq.NewClientFromRedisClient(cfg.AsynqRedis),
		client:     cfg.Client,
		stop:       make(chan struct{}),
		registered: make(chan struct{}),
	}, nil
}

// Identity is the identity this bridge registers under.
func (b *Bridge) Identity() string { return b.cfg.Identity }

// Stats returns the bridge's counters.
func (b *Bridge) Stats() BridgeStats {
	return BridgeStats{
		Transferred: b.transferred.Load(),
		Tasks:       b.tasks.Load(),
		Duplicates:  b.duplicates.Load(),
		Poison:      b.poisoned.Load(),
		Recovered:   b.recovered.Load(),
	}
}

func (b *Bridge) keyBridges() string           { return b.cfg.KeyPrefix + ":bridges" }
func (b *Bridge) keyAlive(id string) string    { return b.cfg.KeyPrefix + ":alive:" + id }
func (b *Bridge) keyQueuesOf(id string) string { return b.cfg.KeyPrefix + ":queues:" + id }
func (b *Bridge) keyInflight(id, q string) string {
	return b.cfg.KeyPrefix + ":inflight:" + id + ":" + q
}

// asynqPendingKey is asynq's list of pending task ids of a queue (internal/base in
// v0.26.0). Reading its length is one cheap LLEN, where Inspector.GetQueueInfo runs a
// script that samples memory usage; a test pins the layout so an asynq upgrade that
// changes it fails loudly.
func asynqPendingKey(q string) string { return "asynq:{" + q + "}:pending" }

// Start registers the bridge, takes over the in-flight lists of dead bridges and starts
// transferring, all in the background: it returns at once, also when Redis is
// unreachable, in which case the bridge logs and keeps retrying with capped backoff, so a
// sidecar started before its Redis comes up by itself. The bridge runs until Shutdown;
// ctx only passes its values on.
func (b *Bridge) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != 0 {
		return errors.New("sidekiq bridge: Start called twice")
	}
	b.state = 1
	b.runCtx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	b.maintWG.Add(1)
	go b.maintain()
	for _, q := range b.cfg.Queues {
		b.fetchWG.Add(1)
		go b.fetch(q.Name)
	}
	return nil
}

// Shutdown stops fetching, hands what is in this bridge's in-flight lists to asynq (or,
// if asynq cannot take it, back to the head of its queue), and deregisters the bridge.
// It waits at most FetchTimeout for a blocked fetch. If ctx ends first, or Redis is
// unreachable, jobs may stay in the in-flight lists: they are not lost, another bridge (or
// the next start) recovers them once the alive key has expired; Shutdown then deletes
// the alive key at once if it can, so that happens at the next recovery round.
func (b *Bridge) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if b.state != 1 {
		b.mu.Unlock()
		return errors.New("sidekiq bridge: Shutdown without a running Start")
	}
	b.state = 2
	close(b.stop)
	b.mu.Unlock()
	defer b.cancel()

	done := make(chan struct{})
	go func() { b.fetchWG.Wait(); b.maintWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		b.cancel() // abort in-progress Redis calls; what they moved stays in flight
		<-done
		b.lastResortDeregister(ctx)
		return fmt.Errorf("sidekiq bridge shutdown: %w", ctx.Err())
	}
	if b.killed.Load() {
		return nil
	}
	var firstErr error
	for _, q := range b.cfg.Queues {
		if err := b.drain(ctx, q.Name); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		b.lastResortDeregister(ctx)
		return firstErr
	}
	return b.deregister(ctx, false)
}

// Quiet stops moving jobs out of queue:<name>, as a Sidekiq process stops fetching on
// TSTP: once it returns, no move is under way and none starts; jobs pushed afterwards
// stay in their queue for other processes. Jobs already moved are handed to asynq as
// usual. The bridge stays registered and alive (its in-flight lists are still watched)
// and goes on recovering dead bridges' in-flight lists into their queues; Shutdown is
// still to be called. It waits for a move in progress (one Redis round trip) or for ctx;
// calling it again, or after Shutdown, is harmless.
func (b *Bridge) Quiet(ctx context.Context) error {
	if b.quiet.Swap(true) {
		return nil
	}
	done := make(chan struct{})
	go func() {
		b.moveMu.Lock()
		b.moveMu.Unlock() //nolint:staticcheck // a barrier: no move holds the read lock
		close(done)
	}()
	select {
	case <-done:
		b.log.Info("sidekiq bridge: quiet; no longer moving jobs out of the queues")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sidekiq bridge quiet: waiting for a move in progress: %w", ctx.Err())
	}
}

// Quieted reports whether Quiet was called.
func (b *Bridge) Quieted() bool { return b.quiet.Load() }

// lastResortDeregister deletes the alive key when jobs are left in flight, so that other
// bridges recover them at their next round instead of after AliveTTL. It gets a second of
// its own: the caller's ctx may be what ran out.
func (b *Bridge) lastResortDeregister(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := b.deregister(dctx, true); err != nil {
		b.log.Warn("sidekiq bridge: jobs left in flight at shutdown; they will be recovered once the alive key expires", zap.Error(err))
	} else {
		b.log.Warn("sidekiq bridge: jobs left in flight at shutdown; other bridges will recover them")
	}
}

// kill stops the bridge the way SIGKILL would: goroutines end, nothing is drained or
// deregistered, the alive key is left to expire. For crash tests.
func (b *Bridge) kill() {
	b.killed.Store(true)
	b.mu.Lock()
	if b.state == 1 {
		b.state = 2
		close(b.stop)
	}
	b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
	}
	b.fetchWG.Wait()
	b.maintWG.Wait()
}

func (b *Bridge) stopping() bool {
	select {
	case <-b.stop:
		return true
	default:
		return b.killed.Load()
	}
}

// sleep waits d or until Shutdown; it reports whether the bridge should go on.
func (b *Bridge) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-b.stop:
		return false
	case <-t.C:
		return !b.killed.Load()
	}
}

// register writes the alive key and the registration in one MULTI, so that a bridge
// whose alive key exists is always registered (recovery deregisters only bridges whose
// alive key is missing).
func (b *Bridge) register(ctx context.Context) error {
	pipe := b.rdb.TxPipeline()
	pipe.Set(ctx, b.keyAlive(b.cfg.Identity), strconv.FormatInt(time.Now().Unix(), 10), b.cfg.AliveTTL)
	pipe.SAdd(ctx, b.keyBridges(), b.cfg.Identity)
	qs := make([]any, len(b.cfg.Queues))
	for i, q := range b.cfg.Queues {
		qs[i] = q.Name
	}
	pipe.SAdd(ctx, b.keyQueuesOf(b.cfg.Identity), qs...)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("sidekiq bridge register: %w", err)
	}
	return nil
}

// maintain renews the alive key every BeatInterval and recovers dead bridges' in-flight
// lists at start and every RecoverInterval, until Shutdown.
func (b *Bridge) maintain() {
	defer b.maintWG.Done()
	ctx := b.runCtx
	needOwn := true
	var lastRecover time.Time
	failing, quiet := false, false
	registered := false
	for {
		err := b.register(ctx)
		if err == nil && !registered {
			registered = true
			close(b.registered)
		}
		if err == nil && needOwn {
			// Our own identity's leftovers (only possible with a configured Identity that a
			// previous process used) in queues we no longer serve are ours to return:
			// nobody else would, we are alive. Those of served queues go to asynq through
			// the fetchers, which start by looking at their in-flight list.
			var n int
			if n, err = b.recoverOwner(ctx, b.cfg.Identity, true); err == nil {
				needOwn = false
				if n > 0 {
					b.log.Info("sidekiq bridge: returned this identity's leftover in-flight jobs to their queue", zap.Int("jobs", n))
				}
			}
		}
		if err == nil && time.Since(lastRecover) >= b.cfg.RecoverInterval {
			if _, err = b.recoverDead(ctx); err == nil {
				lastRecover = time.Now()
			}
		}
		switch {
		case err != nil && !b.stopping():
			if !failing {
				quiet = b.cfg.RedisFault != nil && b.cfg.RedisFault(err)
				b.levelLog(quiet, "sidekiq bridge: heartbeat/recovery failed; retrying", zap.Error(err))
			}
			failing = true
		case err == nil && failing:
			if quiet {
				b.log.Debug("sidekiq bridge: heartbeat and recovery work again")
			} else {
				b.log.Info("sidekiq bridge: heartbeat and recovery work again")
			}
			failing = false
		}
		if !b.sleep(b.cfg.BeatInterval) {
			return
		}
	}
}

var deregisterScript = redis.NewScript(`
-- KEYS[1] bridges set, KEYS[2] the identity's queue set, KEYS[3] its alive key,
-- KEYS[4..] its in-flight lists. ARGV[1] identity, ARGV[2] "self" or "other".
-- Deregisters only an identity whose in-flight lists are all empty, so no job is ever
-- left in a list nobody will look at; another bridge deregisters only a dead one.
if ARGV[2] == "other" and redis.call("EXISTS", KEYS[3]) == 1 then return 0 end
if ARGV[2] == "self" then redis.call("DEL", KEYS[3]) end
for i = 4, #KEYS do
  if redis.call("LLEN", KEYS[i]) > 0 then return 0 end
end
redis.call("SREM", KEYS[1], ARGV[1])
redis.call("DEL", KEYS[2])
return 1
`)

func (b *Bridge) deregisterKeys(id string, queues []string) []string {
	keys := []string{b.keyBridges(), b.keyQueuesOf(id), b.keyAlive(id)}
	for _, q := range queues {
		keys = append(keys, b.keyInflight(id, q))
	}
	return keys
}

// deregister removes this bridge's alive key, and its registration if its in-flight
// lists are empty. With onlyAlive it just deletes the alive key (jobs are still in flight
// and must be found by recovery).
func (b *Bridge) deregister(ctx context.Context, onlyAlive bool) error {
	if onlyAlive {
		if err := b.rdb.Del(ctx, b.keyAlive(b.cfg.Identity)).Err(); err != nil {
			return fmt.Errorf("sidekiq bridge deregister: %w", err)
		}
		return nil
	}
	keys := b.deregisterKeys(b.cfg.Identity, QueueNames(b.cfg.Queues))
	if err := deregisterScript.Run(ctx, b.rdb, keys, b.cfg.Identity, "self").Err(); err != nil {
		return fmt.Errorf("sidekiq bridge deregister: %w", err)
	}
	return nil
}

// recoverDead moves the in-flight jobs of every registered bridge whose alive key has
// expired back to the pop end of their queue, oldest last so it is fetched first.
func (b *Bridge) recoverDead(ctx context.Context) (int, error) {
	ids, err := b.rdb.SMembers(ctx, b.keyBridges()).Result()
	if err != nil {
		return 0, fmt.Errorf("sidekiq bridge recovery: %w", err)
	}
	total := 0
	for _, id := range ids {
		if id == b.cfg.Identity {
			continue
		}
		n, err := b.recoverOwner(ctx, id, false)
		total += n
		if err != nil {
			return total, err
		}
		if n > 0 {
			b.log.Warn("sidekiq bridge: recovered in-flight jobs of a dead bridge", zap.String("dead_identity", id), zap.Int("jobs", n))
		}
	}
	return total, nil
}

func (b *Bridge) recoverOwner(ctx context.Context, id string, own bool) (int, error) {
	if !own {
		alive, err := b.rdb.Exists(ctx, b.keyAlive(id)).Result()
		if err != nil {
			return 0, fmt.Errorf("sidekiq bridge recovery: %w", err)
		}
		if alive > 0 {
			return 0, nil
		}
	}
	queues, err := b.rdb.SMembers(ctx, b.keyQueuesOf(id)).Result()
	if err != nil {
		return 0, fmt.Errorf("sidekiq bridge recovery: %w", err)
	}
	configured := map[string]bool{}
	if own {
		for _, q := range b.cfg.Queues {
			configured[q.Name] = true
		}
	}
	n := 0
	for _, q := range queues {
		if configured[q] {
			continue // our fetcher for q hands its own leftovers to asynq itself
		}
		for {
			// LEFT of the in-flight list is its newest job, RIGHT of the queue its pop end:
			// newest first, so the oldest ends up being fetched first again.
			err := b.rdb.LMove(ctx, b.keyInflight(id, q), QueueKey(q), "LEFT", "RIGHT").Err()
			if errors.Is(err, redis.Nil) {
				break
			}
			if err != nil {
				return n, fmt.Errorf("sidekiq bridge recovery of %s: %w", id, err)
			}
			n++
			b.recovered.Add(1)
		}
	}
	if !own {
		if err := deregisterScript.Run(ctx, b.rdb, b.deregisterKeys(id, queues), id, "other").Err(); err != nil {
			return n, fmt.Errorf("sidekiq bridge recovery of %s: %w", id, err)
		}
	}
	return n, nil
}

var moveScript = redis.NewScript(`
-- KEYS[1] our alive key, KEYS[2] queue:<name>, KEYS[3] our in-flight list; ARGV[1] max.
-- Moves only while our alive key exists: a bridge presumed dead (and maybe already
-- deregistered by another's recovery) must not put jobs where nobody looks. It
-- re-registers at its next beat. The reply starts with 1 (alive) or 0 (not alive).
if redis.call("EXISTS", KEYS[1]) == 0 then return {0} end
local out = {1}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call("LMOVE", KEYS[2], KEYS[3], "RIGHT", "LEFT")
  if not v then break end
  out[#out + 1] = v
end
return out
`)

// fetch is the transfer loop of one queue.
func (b *Bridge) fetch(q string) {
	defer b.fetchWG.Done()
	ctx := b.runCtx
	log := b.log.With(zap.String("queue", q))
	inflight := b.keyInflight(b.cfg.Identity, q)
	// First look at what a previous loop left, then fetch; and look again
	// every RecoverInterval: a Sentinel failover can undo a hand-over this
	// loop saw succeed (the new primary has the move, not the Enqueue and
	// LREM), leaving jobs in our list that no error would send us back to.
	retryInflight := true
	var lastOwn time.Time
	bo := backoff{min: 50 * time.Millisecond, max: b.cfg.MaxBackoff}
	select { // nothing is moved before this bridge is registered as alive
	case <-b.registered:
	case <-b.stop:
		return
	}
	fail := func(what string, err error) bool {
		if b.stopping() {
			return false
		}
		d := bo.next()
		if bo.attempt == 1 { // once per outage; reset logs the recovery
			bo.quiet = b.cfg.RedisFault != nil && b.cfg.RedisFault(err)
			b.levelLog(bo.quiet, "sidekiq bridge: "+what+" failed; retrying with backoff", zap.Error(err), zap.Duration("backoff", d))
		}
		return b.sleep(d)
	}
	for !b.stopping() {
		if time.Since(lastOwn) >= b.cfg.RecoverInterval {
			retryInflight = true
		}
		if retryInflight {
			items, err := b.rdb.LRange(ctx, inflight, 0, -1).Result()
			if err != nil {
				if !fail("reading the in-flight list", err) {
					return
				}
				continue
			}
			reverse(items) // oldest (RIGHT) first
			if err := b.transferAll(ctx, q, items); err != nil {
				if !fail("handing in-flight jobs to asynq", err) {
					return
				}
				continue
			}
			retryInflight, lastOwn = false, time.Now()
			bo.reset(log)
			continue
		}
		if b.quiet.Load() {
			// Quiet: nothing more is moved. What a failed transfer left in the
			// in-flight list was handled above; Shutdown drains the rest. The
			// list is still looked at every RecoverInterval (a failover can
			// put jobs back in it).
			select {
			case <-b.stop:
				return
			case <-time.After(b.cfg.RecoverInterval):
			}
			continue
		}
		pending, err := b.ardb.LLen(ctx, asynqPendingKey(q)).Result()
		if err != nil {
			if !fail("reading asynq's pending count", err) {
				return
			}
			continue
		}
		budget := int64(b.cfg.MaxPending) - pending
		if budget <= 0 {
			if !b.sleep(b.cfg.BackpressurePoll) {
				return
			}
			continue
		}
		// budget counts tasks; each may carry JobsPerTask jobs.
		b.moveMu.RLock()
		if b.quiet.Load() { // Quiet came after the check above
			b.moveMu.RUnlock()
			continue
		}
		res, err := moveScript.Run(ctx, b.rdb, []string{b.keyAlive(b.cfg.Identity), QueueKey(q), inflight}, min(budget*int64(b.cfg.JobsPerTask), int64(b.cfg.BatchSize))).Slice()
		b.moveMu.RUnlock()
		if err != nil {
			// Redis may have run the script and lost only the reply (a
			// restart, a dropped connection): the moved jobs are then in our
			// in-flight list, so look there before fetching again.
			retryInflight = true
			if !fail("moving jobs out of "+QueueKey(q), err) {
				return
			}
			continue
		}
		if len(res) == 0 || res[0] != int64(1) {
			// Not (or no longer) registered as alive: wait for the next beat.
			if !b.sleep(min(b.cfg.BeatInterval/4, time.Second)) {
				return
			}
			continue
		}
		bo.reset(log)
		items := make([]string, 0, len(res)-1)
		for _, v := range res[1:] {
			if s, ok := v.(string); ok {
				items = append(items, s)
			}
		}
		if len(items) == 0 {
			if err := b.waitForJobs(ctx, q); err != nil && !errors.Is(err, redis.Nil) {
				if !fail("waiting on "+QueueKey(q), err) {
					return
				}
			}
			continue
		}
		if b.crash("moved") {
			return
		}
		if err := b.transferAll(ctx, q, items); err != nil {
			retryInflight = true
			if !fail("handing jobs to asynq", err) {
				return
			}
		}
	}
}

// waitForJobs blocks until queue:<q> has a job or FetchTimeout passes, without taking the
// job: BLMOVE from the list to itself, RIGHT to RIGHT, puts the element back where it
// was. The move itself is then done by moveScript, which checks that this bridge is
// still alive, something a blocking command cannot do.
func (b *Bridge) waitForJobs(ctx context.Context, q string) error {
	key := QueueKey(q)
	if b.cfg.FetchTimeout < time.Second {
		// go-redis rounds BLMove's timeout to whole seconds; Redis takes fractions.
		secs := strconv.FormatFloat(b.cfg.FetchTimeout.Seconds(), 'f', 3, 64)
		return b.rdb.Do(ctx, "BLMOVE", key, key, "RIGHT", "RIGHT", secs).Err()
	}
	return b.rdb.BLMove(ctx, key, key, "RIGHT", "RIGHT", b.cfg.FetchTimeout).Err()
}

func (b *Bridge) crash(step string) bool {
	if b.crashAt != nil && b.crashAt(step) {
		b.killed.Store(true)
		return true
	}
	return b.killed.Load()
}

// transferAll hands items (oldest first) to asynq, JobsPerTask jobs per task, and
// removes the handled ones from the in-flight list in one pipeline. Poison payloads go to
// the dead set on the way. It stops at the first Redis error; the rest stay in flight
// for the next attempt.
func (b *Bridge) transferAll(ctx context.Context, q string, items []string) error {
	var done []string
	var firstErr error
	var group []*Job
	var groupRaw []string
	seen := map[string]bool{}
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		if err := b.enqueueTask(ctx, q, group, true); err != nil {
			return err
		}
		done = append(done, groupRaw...)
		group, groupRaw = group[:0], groupRaw[:0]
		return nil
	}
	for _, raw := range items {
		job, err := b.parse(ctx, q, raw)
		if err != nil {
			firstErr = err
			break
		}
		if job == nil { // poison, now in the dead set
			done = append(done, raw)
			continue
		}
		if b.cfg.JobsPerTask > 1 {
			// The same delivery twice (pushed twice with the same bytes): as single
			// tasks the second would be a TaskID conflict; in a batch it must be
			// dropped here, or both copies would run in one task.
			id := job.TaskID()
			if seen[id] {
				b.duplicates.Add(1)
				done = append(done, raw)
				continue
			}
			seen[id] = true
		}
		group, groupRaw = append(group, job), append(groupRaw, raw)
		if len(group) >= b.cfg.JobsPerTask {
			if firstErr = flush(); firstErr != nil {
				break
			}
		}
	}
	if firstErr == nil {
		firstErr = flush()
	}
	if len(done) > 0 {
		if b.crash("enqueued") {
			return nil
		}
		inflight := b.keyInflight(b.cfg.Identity, q)
		pipe := b.rdb.Pipeline()
		for _, raw := range done {
			pipe.LRem(ctx, inflight, 1, raw)
		}
		if _, err := pipe.Exec(ctx); err != nil && firstErr == nil {
			// Harmless but noisy: the next attempt re-enqueues them, which asynq refuses
			// as a TaskID conflict, and removes them then.
			firstErr = fmt.Errorf("removing transferred jobs from the in-flight list: %w", err)
		}
	}
	return firstErr
}

// parse checks one delivery. A payload that can never succeed (not a job, args we do not
// understand, a class we do not run, what Check refuses) is put into the dead set and
// parse returns (nil, nil); an error means the dead-set write failed.
func (b *Bridge) parse(ctx context.Context, q, raw string) (*Job, error) {
	payload := []byte(raw)
	job, err := ParseJob(payload)
	if err == nil {
		err = b.check(job)
		if err == nil {
			return job, nil
		}
	}
	if derr := b.client.Dead(ctx, payload, ErrorClass(err), err.Error(), WithQueue(q)); derr != nil {
		return nil, derr
	}
	b.poisoned.Add(1)
	jid := ""
	if job != nil {
		jid = job.JID
		if !errors.Is(err, ErrForeign) { // a foreign job's args are not ours to read
			if _, rerr := b.client.ReplyError(ctx, job, ErrorClass(err)+": "+err.Error(), b.cfg.ReplyTTL); rerr != nil {
				b.log.Warn("sidekiq bridge: could not reply a poison job's error to its reply_to", zap.String("jid", jid), zap.Error(rerr))
			}
		}
	}
	b.log.Warn("sidekiq bridge: poison job sent to the dead set", zap.String("queue", q), zap.String("jid", jid),
		zap.String("error_class", ErrorClass(err)), zap.String("reason", err.Error()))
	return nil, nil
}

// check is everything parse asks of a parsed job: its class, its args, Check.
func (b *Bridge) check(job *Job) error {
	if err := job.CheckClass(b.cfg.Classes); err != nil {
		return err
	}
	reqs, _, err := job.Requests()
	if err != nil {
		return err
	}
	if b.cfg.Check != nil {
		if err := b.cfg.Check(job, reqs); err != nil {
			if !errors.Is(err, ErrPoison) {
				err = fmt.Errorf("%w: %w", ErrPoison, err)
			}
			return err
		}
	}
	return nil
}

// enqueueTask hands jobs to asynq as one task: TaskType for a single job, BatchTaskType
// for several. nil means they may leave the in-flight list. count says whether the
// stats count them (not when a batch is split: they were counted already).
func (b *Bridge) enqueueTask(ctx context.Context, q string, jobs []*Job, count bool) error {
	var task *asynq.Task
	opts := []asynq.Option{asynq.Queue(q), asynq.Retention(b.cfg.Retention)}
	if len(jobs) == 1 {
		task = asynq.NewTask(TaskType, jobs[0].Raw)
		opts = append(opts, asynq.TaskID(jobs[0].TaskID()), asynq.MaxRetry(jobs[0].Retry))
	} else {
		raws := make([][]byte, len(jobs))
		for i, j := range jobs {
			raws[i] = j.Raw
		}
		task = asynq.NewTask(BatchTaskType, EncodeBatch(raws))
		// A batch is retried only when it could not even be split into single-job
		// tasks (Redis unreachable); each job's own retry setting applies to those.
		opts = append(opts, asynq.TaskID(BatchTaskID(jobs)), asynq.MaxRetry(DefaultMaxRetries))
	}
	if b.cfg.TaskTimeout > 0 {
		// TaskTimeout is per job: a batch gets one for each of its jobs.
		opts = append(opts, asynq.Timeout(b.cfg.TaskTimeout*time.Duration(len(jobs))))
	}
	_, err := b.aq.EnqueueContext(ctx, task, opts...)
	switch {
	case err == nil:
		if count {
			b.transferred.Add(int64(len(jobs)))
			b.tasks.Add(1)
		}
		if b.cfg.OnEnqueue != nil {
			b.cfg.OnEnqueue()
		}
		return nil
	case errors.Is(err, asynq.ErrTaskIDConflict):
		// This very delivery is already in asynq (pending, running, done or archived):
		// we crashed after Enqueue last time, or a bridge presumed dead was not.
		if count {
			b.duplicates.Add(int64(len(jobs)))
		}
		b.log.Debug("sidekiq bridge: delivery already transferred", zap.String("queue", q), zap.String("jid", jobs[0].JID), zap.Int("jobs", len(jobs)))
		return nil
	default:
		return fmt.Errorf("asynq enqueue of %s (%d jobs): %w", jobs[0].JID, len(jobs), err)
	}
}

var returnScript = redis.NewScript(`
-- KEYS[1] in-flight list, KEYS[2] queue:<name>; ARGV[1] the job.
-- Moves one specific job back to the pop end of its queue, atomically.
if redis.call("LREM", KEYS[1], 1, ARGV[1]) == 1 then
  redis.call("RPUSH", KEYS[2], ARGV[1])
  return 1
end
return 0
`)

// drain empties this bridge's in-flight list of q at shutdown: into asynq if possible,
// else back to the pop end of the queue (newest first, so the oldest is fetched first).
func (b *Bridge) drain(ctx context.Context, q string) error {
	inflight := b.keyInflight(b.cfg.Identity, q)
	items, err := b.rdb.LRange(ctx, inflight, 0, -1).Result()
	if err != nil {
		return fmt.Errorf("sidekiq bridge drain of %s: %w", q, err)
	}
	if len(items) == 0 {
		return nil
	}
	oldestFirst := append([]string(nil), items...)
	reverse(oldestFirst)
	if err := b.transferAll(ctx, q, oldestFirst); err == nil {
		return nil
	}
	b.log.Warn("sidekiq bridge: could not hand in-flight jobs to asynq at shutdown; returning them to their queue", zap.String("queue", q))
	left, err := b.rdb.LRange(ctx, inflight, 0, -1).Result()
	if err != nil {
		return fmt.Errorf("sidekiq bridge drain of %s: %w", q, err)
	}
	for _, raw := range left { // newest first
		if err := returnScript.Run(ctx, b.rdb, []string{inflight, QueueKey(q)}, raw).Err(); err != nil {
			return fmt.Errorf("sidekiq bridge drain of %s: %w", q, err)
		}
	}
	return nil
}

func reverse(s []string) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// backoff is a capped exponential backoff with jitter, so an unreachable Redis is
// retried without spinning the CPU or flooding the log.
type backoff struct {
	min, max time.Duration
	attempt  int
	quiet    bool // the first failure was logged at debug level
}

func (bo *backoff) next() time.Duration {
	bo.attempt++
	d := bo.min << min(bo.attempt-1, 20)
	if d > bo.max || d <= 0 {
		d = bo.max
	}
	// ±10 % jitter so that several goroutines do not retry in lockstep.
	j := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	if d+j > bo.max {
		return bo.max
	}
	return d + j
}

func (bo *backoff) reset(log *zap.Logger) {
	if bo.attempt > 0 {
		lvl := zap.InfoLevel
		if bo.quiet {
			lvl = zap.DebugLevel
		}
		log.Log(lvl, "sidekiq bridge: Redis reachable again", zap.Int("failed_attempts", bo.attempt))
	}
	bo.attempt, bo.quiet = 0, false
}

// levelLog logs a failure at warn level, or at debug level when quiet (the outage is
// logged elsewhere).
func (b *Bridge) levelLog(quiet bool, msg string, fields ...zap.Field) {
	if quiet {
		b.log.Debug(msg, fields...)
		return
	}
	b.log.Warn(msg, fields...)
}
