package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// DefaultJobsPerTask is the Server's default for Bridge.JobsPerTask.
const DefaultJobsPerTask = 20

// Config configures a Server. WithDefaults fills unset fields; New validates.
type Config struct {
	// Redis is the Redis Rails' Sidekiq uses: its queues, dead set, stats and
	// Busy page, the prediction cache and the write-back. Required. The
	// Server adds a hook to it (and to AsynqRedis): a gate that, while Redis
	// fails as a whole (unreachable, wrong password or database, out of
	// memory, read-only, loading, …), lets one call per backoff interval
	// through and holds the others back, so that nothing spins (see
	// RedisState and RedisMaxBackoff).
	Redis redis.UniversalClient
	// AsynqRedis is the Redis asynq keeps its tasks in. Default: Redis.
	AsynqRedis redis.UniversalClient

	// Handler configures the job handler. Its Redis defaults to Redis.
	Handler HandlerConfig

	// Queues are the Sidekiq queues served (weights as in "a:3,b:1").
	// Default: mask_predictions.
	Queues []sidekiq.QueueWeight
	// Concurrency is the number of jobs processed at once. Default: 10.
	Concurrency int
	// ShutdownTimeout bounds Shutdown: jobs still running when it is nearly
	// over are returned to asynq's queue. Default: 25 s (inside Heroku's 30 s).
	ShutdownTimeout time.Duration
	// ReturnPending, on Shutdown, moves jobs the bridge had handed to asynq
	// but no worker had started back to their Sidekiq queue, where Sidekiq
	// Web shows them. Default true (set DisableReturnPending to keep them).
	DisableReturnPending bool
	// PollInterval is how often asynq's processor looks for work while
	// tasks keep coming (asynq polls; it has no blocking fetch). Default: 2 ms.
	PollInterval time.Duration
	// IdlePollInterval is the longest an idle processor waits between two
	// looks: after consecutive empty looks the wait doubles from
	// PollInterval up to this, and ends at once when this process's bridge
	// hands asynq a task, so only tasks nobody here announces (another
	// process's, a retry coming due) can wait this long. The idle cost is
	// about 3 Redis commands per IdlePollInterval and queue. Default: 200 ms.
	IdlePollInterval time.Duration
	// RedisMaxBackoff caps the interval between attempts while Redis fails
	// (see Redis). Default: 30 s.
	RedisMaxBackoff time.Duration
	// RescueInterval is how often asynq's archive is searched for tasks it
	// archived only because their worker died (lease expired) with no
	// retry left; they are run again. Default: 10 s.
	RescueInterval time.Duration
	// OrphanAfter is how long this process must have seen a task's lease
	// unextended (its score unchanged, timed by its own clock), its process
	// missing from asynq's live workers, before the task counts as orphaned
	// by a dead process and runs again (orphans.go). asynq's own recoverer
	// would take 54–61 s. It must be at least two asynq heartbeats and a
	// second (11 s), below the 30 s lease. Default: 12 s.
	OrphanAfter time.Duration
	// OrphanInterval is how often each process looks for orphaned tasks
	// (one script call per queue). Default: 2 s.
	OrphanInterval time.Duration

	// Identity names this process on Sidekiq's Busy page and its bridge
	// in-flight lists. Default: sidekiq.NewIdentity("").
	Identity string

	// Bridge, Heartbeat and Scheduler tune the Sidekiq-side components;
	// Redis, Queues, Concurrency, Identity and Logger are set by the Server.
	Bridge    sidekiq.BridgeConfig
	Heartbeat sidekiq.HeartbeatConfig
	Scheduler sidekiq.SchedulerConfig
	// DisableScheduler turns off moving due schedule/retry entries (when a
	// Ruby Sidekiq server already does it; running both is also correct).
	DisableScheduler bool

	// Logger gets the per-job lines and the components' warnings. Default: no-op.
	Logger *zap.Logger
}

// WithDefaults fills the unset fields.
func (c Config) WithDefaults() Config {
	if c.AsynqRedis == nil {
		c.AsynqRedis = c.Redis
	}
	if c.Handler.Redis == nil {
		c.Handler.Redis = c.Redis
	}
	if len(c.Queues) == 0 {
		c.Queues = []sidekiq.QueueWeight{{Name: sidekiq.DefaultQueue, Weight: 1}}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 10
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 25 * time.Second
	}
	if c.RescueInterval == 0 {
		c.RescueInterval = 10 * time.Second
	}
	if c.OrphanAfter == 0 {
		c.OrphanAfter = 12 * time.Second
	}
	if c.OrphanInterval == 0 {
		c.OrphanInterval = 2 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 2 * time.Millisecond
	}
	if c.IdlePollInterval == 0 {
		c.IdlePollInterval = max(200*time.Millisecond, c.PollInterval)
	}
	if c.RedisMaxBackoff == 0 {
		c.RedisMaxBackoff = DefaultRedisMaxBackoff
	}
	if c.Identity == "" {
		c.Identity = sidekiq.NewIdentity("")
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Handler.Logger == nil {
		c.Handler.Logger = c.Logger
	}
	c.Handler = c.Handler.WithDefaults()
	c.Bridge.Redis, c.Bridge.AsynqRedis = c.Redis, c.AsynqRedis
	c.Bridge.Queues, c.Bridge.Concurrency = c.Queues, c.Concurrency
	c.Bridge.Identity, c.Bridge.Logger = c.Identity, c.Logger
	c.Bridge.Classes, c.Bridge.ReplyTTL = c.Handler.Classes, c.Handler.ReplyTTL
	if c.Bridge.MaxPending == 0 {
		// Enough handed-over work that the pool never waits on the bridge
		// (measured: 2× concurrency halves the throughput), little enough
		// that the backlog stays visible in queue:<name>.
		c.Bridge.MaxPending = 10 * c.Concurrency
	}
	if c.Bridge.MaxBackoff == 0 {
		// The gate paces the bridge's Redis calls while Redis fails (one
		// attempt per interval reaches it, whatever the bridge does); a short
		// backoff of its own only makes it go on soon after a recovery.
		c.Bridge.MaxBackoff = time.Second
	}
	if c.Bridge.JobsPerTask == 0 {
		// Up to this many jobs share one asynq task when the queue has a
		// backlog (see sidekiq.BatchTaskType); measured in BENCHMARKS.md.
		c.Bridge.JobsPerTask = DefaultJobsPerTask
	}
	c.Heartbeat.Redis, c.Heartbeat.Queues, c.Heartbeat.Concurrency = c.Redis, c.Queues, c.Concurrency
	c.Heartbeat.Identity, c.Heartbeat.Logger = c.Identity, c.Logger
	c.Scheduler.Redis, c.Scheduler.Queues, c.Scheduler.Logger = c.Redis, c.Queues, c.Logger
	return c
}

func (c Config) validate() error {
	switch {
	case c.Redis == nil:
		return errors.New("worker: Config.Redis is required")
	case c.Concurrency < 1:
		return fmt.Errorf("worker: Concurrency is %d, must be ≥ 1", c.Concurrency)
	case c.ShutdownTimeout < time.Second:
		return fmt.Errorf("worker: ShutdownTimeout %v is below 1s", c.ShutdownTimeout)
	case c.PollInterval <= 0 || c.PollInterval > 5*time.Second:
		return fmt.Errorf("worker: PollInterval %v, want (0, 5s]", c.PollInterval)
	case c.IdlePollInterval < c.PollInterval || c.IdlePollInterval > 5*time.Second:
		return fmt.Errorf("worker: IdlePollInterval %v, want [PollInterval (%v), 5s]", c.IdlePollInterval, c.PollInterval)
	case c.RedisMaxBackoff < 100*time.Millisecond || c.RedisMaxBackoff > 10*time.Minute:
		return fmt.Errorf("worker: RedisMaxBackoff %v, want [100ms, 10m]", c.RedisMaxBackoff)
	case c.RescueInterval < time.Second:
		return fmt.Errorf("worker: RescueInterval %v is below 1s", c.RescueInterval)
	case c.OrphanAfter < 2*asynqHeartbeat+time.Second || c.OrphanAfter >= asynqLease:
		return fmt.Errorf("worker: OrphanAfter %v, want [%v, %v): two of asynq's heartbeats and a second, below its lease", c.OrphanAfter, 2*asynqHeartbeat+time.Second, asynqLease)
	case c.OrphanInterval < 100*time.Millisecond || c.OrphanInterval > 10*time.Second:
		return fmt.Errorf("worker: OrphanInterval %v, want [100ms, 10s]", c.OrphanInterval)
	}
	if c.Handler.CallbackClass != "" && slices.Contains(sidekiq.QueueNames(c.Queues), c.Handler.CallbackQueue) {
		return fmt.Errorf("worker: the callback queue %q is one the worker serves: the callback jobs (%s) would come back to it; "+
			"use the queue a Ruby Sidekiq process serves (default \"default\")", c.Handler.CallbackQueue, c.Handler.CallbackClass)
	}
	return c.Handler.validate()
}

// Server runs prediction jobs: the asynq server with the handler, the
// Sidekiq ingress bridge, the Busy-page heartbeat and the scheduler.
type Server struct {
	cfg     Config
	log     *zap.Logger
	handler *Handler
	bridge  *sidekiq.Bridge
	hb      *sidekiq.Heartbeat
	sched   *sidekiq.Scheduler
	srv     *asynq.Server
	insp    *asynq.Inspector
	// redisGate and asynqGate pace the calls of Redis and AsynqRedis while
	// those fail (the same gate when they are one client); idle makes
	// asynq's polling adaptive.
	redisGate, asynqGate *gate
	idle                 *idlePoll

	mu       sync.Mutex
	state    int // 0 new, 1 started, 2 shut down
	stopResc chan struct{}
	rescWG   sync.WaitGroup

	// Quiet and stop (quiet.go): quietOnce starts the quiet steps, quietDone
	// closes when they are done; stopReq closes when Sidekiq asks this
	// process to stop.
	quietOnce sync.Once
	quietDone chan struct{}
	schedOnce sync.Once
	stopOnce  sync.Once
	stopReq   chan struct{}
}

// New builds a server; nothing touches Redis before Start.
func New(cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	idle := newIdlePoll(cfg.PollInterval, cfg.IdlePollInterval, len(cfg.Queues))
	redisGate := newGate("sidekiq", cfg.Logger, cfg.RedisMaxBackoff)
	asynqGate := redisGate
	if cfg.AsynqRedis != cfg.Redis {
		asynqGate = newGate("asynq", cfg.Logger, cfg.RedisMaxBackoff)
	}
	s := &Server{redisGate: redisGate, asynqGate: asynqGate, idle: idle,
		quietDone: make(chan struct{}), stopReq: make(chan struct{})}
	cfg.Bridge.OnEnqueue = chainWake(cfg.Bridge.OnEnqueue, idle.wake)
	cfg.Bridge.RedisFault = s.outageLogged
	cfg.Heartbeat.RedisFault = s.outageLogged
	// The Server reads its signals list (TSTP quiet, TERM stop), so the
	// heartbeat advertises a full process: Sidekiq Web offers Quiet and Stop.
	cfg.Heartbeat.OnSignal = s.onSignal
	cfg.Scheduler.RedisFault = s.outageLogged
	hb, err := sidekiq.NewHeartbeat(cfg.Heartbeat)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	// The bridge asks the handler's Check before a job enters asynq, so that
	// poison goes to the dead set straight from the queue and is stored once.
	var bridge *sidekiq.Bridge
	hcfg := cfg.Handler
	if hcfg.Tracker == nil {
		hcfg.Tracker = hb
	}
	if hcfg.Guard == nil { // no cache writes into a Redis near its maxmemory
		if hcfg.Guard, err = cache.NewGuard(cfg.Redis, cache.GuardConfig{Logger: cfg.Logger.Named("cache-guard")}); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	h, err := NewHandler(hcfg)
	if err != nil {
		return nil, err
	}
	bcfg := cfg.Bridge
	if bcfg.Check == nil {
		bcfg.Check = h.Check
	}
	if bridge, err = sidekiq.NewBridge(bcfg); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	var sched *sidekiq.Scheduler
	if !cfg.DisableScheduler {
		if sched, err = sidekiq.NewScheduler(cfg.Scheduler); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	if cfg.AsynqRedis == cfg.Redis {
		cfg.Redis.AddHook(&redisHook{g: redisGate, idle: idle})
	} else {
		cfg.Redis.AddHook(&redisHook{g: redisGate})
		cfg.AsynqRedis.AddHook(&redisHook{g: asynqGate, idle: idle})
	}
	s.cfg, s.log, s.handler = cfg, cfg.Logger, h
	s.bridge, s.hb, s.sched = bridge, hb, sched
	s.insp = asynq.NewInspectorFromRedisClient(cfg.AsynqRedis)
	s.stopResc = make(chan struct{})
	s.srv = asynq.NewServerFromRedisClient(cfg.AsynqRedis, asynq.Config{
		Concurrency:       cfg.Concurrency,
		Queues:            sidekiq.AsynqQueues(cfg.Queues),
		ShutdownTimeout:   asynqShutdownTimeout(cfg.ShutdownTimeout),
		RetryDelayFunc:    retryDelay,
		IsFailure:         isFailure,
		Logger:            asynqLogger{s: cfg.Logger.Named("asynq").Sugar(), quiet: s.degraded},
		LogLevel:          asynq.WarnLevel,
		TaskCheckInterval: cfg.PollInterval,
	})
	return s, nil
}

// chainWake calls both (a caller's own OnEnqueue first).
func chainWake(a, b func()) func() {
	if a == nil {
		return b
	}
	return func() { a(); b() }
}

// RedisState reports whether the Server's Redis clients work, and if not,
// why (a generic reason without addresses or credentials, fit for an
// unauthenticated /health) and since when. With two clients the first
// failing one is reported.
func (s *Server) RedisState() (ok bool, reason string, since time.Time) {
	for _, g := range []*gate{s.redisGate, s.asynqGate} {
		if st := g.state(); !st.OK {
			return false, st.Reason, st.Since
		}
	}
	return true, "", time.Time{}
}

// degraded reports whether a gate holds calls back.
func (s *Server) degraded() bool { return s.redisGate.failingNow() || s.asynqGate.failingNow() }

// outageLogged reports whether err is a Redis fault the gates already log
// (the components then log it at debug level only).
func (s *Server) outageLogged(err error) bool {
	var held *gateErr
	if errors.As(err, &held) {
		return true
	}
	if !s.degraded() {
		return false
	}
	f, _, _ := classifyOne(context.Background(), err)
	if f == faultDown || f == faultPartial {
		return true
	}
	// A transaction Redis discarded because its commands were refused
	// (OOM, NOPERM, …) while a gate reports such a fault.
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "EXECABORT")
}

// asynqShutdownTimeout leaves room, inside the process's own timeout, for
// stopping the bridge before and returning jobs after asynq's shutdown.
func asynqShutdownTimeout(total time.Duration) time.Duration {
	return max(total-5*time.Second, total*3/5)
}

// retryDelay is Sidekiq's backoff, except that a task whose worker died
// (asynq's lease expired) is run again at once, and one whose write-back
// the replicas did not acknowledge (ErrNotReplicated, after RedisRetryFor of
// trying) soon: neither was a failure of the job.
func retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	switch {
	case errors.Is(err, asynq.ErrLeaseExpired):
		return time.Second
	case errors.Is(err, ErrNotReplicated):
		return 2 * time.Second
	}
	return sidekiq.Backoff(n)
}

// isFailure keeps crash recoveries and waits for replicas from using up a
// job's retries.
func isFailure(err error) bool {
	return !errors.Is(err, asynq.ErrLeaseExpired) && !errors.Is(err, ErrNotReplicated)
}

// Handler is the job handler (for its stats).
func (s *Server) Handler() *Handler { return s.handler }

// Identity is the process identity on Sidekiq's Busy page.
func (s *Server) Identity() string { return s.cfg.Identity }

// mux builds the handler chain: a busy worker slot → handler, which writes
// each job's log line, Busy-page entry and stats, for every task alike (a
// single-job task is a batch of one).
func (s *Server) mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Use(s.heartbeatMiddleware)
	mux.Handle(sidekiq.TaskType, s.handler)
	mux.Handle(sidekiq.BatchTaskType, s.handler)
	return mux
}

func (s *Server) heartbeatMiddleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		// One busy worker slot per task, whatever it carries: the Busy page's
		// busy count (see sidekiq.Heartbeat) never exceeds Concurrency.
		release := s.hb.Occupy()
		defer release()
		err := next.ProcessTask(ctx, t) // the handler tracks each of its jobs
		s.awaitAsynqRedis(ctx)
		return err
	})
}

// awaitAsynqRedis holds a finished job while asynq's Redis is unreachable
// (at most Handler.RedisRetryFor). asynq records the outcome right after
// the handler returns; if that write fails, asynq v0.26 gives up on it (its
// retry runs with an already cancelled context) and the task waits for
// asynq's recoverer, a minute or two. Waiting here for Redis to come back
// turns a short outage into a short delay instead.
func (s *Server) awaitAsynqRedis(ctx context.Context) {
	g := s.asynqGate
	if !g.failingNow() {
		return
	}
	deadline := time.Now().Add(s.cfg.Handler.RedisRetryFor)
	for g.failingNow() && ctx.Err() == nil {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		if g.downNow() {
			// The PING waits for the gate's next probe time and may be
			// that probe; a success reopens the gate.
			pctx, cancel := context.WithTimeout(ctx, min(left, time.Second))
			err := s.cfg.AsynqRedis.Ping(pctx).Err()
			cancel()
			if err == nil {
				return
			}
			continue
		}
		// Only some commands are refused (OOM, …): a PING proves nothing.
		// asynq's own calls probe; wait for their verdict.
		if g.waitRecovered(ctx, min(left, time.Second)) {
			return
		}
	}
}

// Start starts processing and returns at once. Redis need not be up: every
// component retries with backoff in the background and logs while it does.
// ctx bounds only the first attempts; the server runs until Shutdown.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != 0 {
		return errors.New("worker: Start called twice")
	}
	s.state = 1
	if err := s.srv.Start(s.mux()); err != nil {
		return fmt.Errorf("worker: starting asynq: %w", err)
	}
	// Ingress after the pool, so what it hands over is processed at once.
	if err := s.bridge.Start(ctx); err != nil {
		s.srv.Shutdown()
		return fmt.Errorf("worker: %w", err)
	}
	// The scheduler before the heartbeat, whose beats may read a TSTP that
	// stops it.
	if s.sched != nil {
		if err := s.sched.Start(ctx); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
	}
	if err := s.hb.Start(ctx); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	s.rescWG.Add(2)
	go s.rescueLoop()
	go s.orphanLoop()
	s.log.Info("worker started",
		zap.String("identity", s.cfg.Identity),
		zap.Strings("queues", sidekiq.QueueNames(s.cfg.Queues)),
		zap.Int("concurrency", s.cfg.Concurrency),
		zap.String("model_version", s.cfg.Handler.Predictor.Version()),
		zap.String("callback_class", s.cfg.Handler.CallbackClass))
	return nil
}

// Shutdown stops taking work, lets running jobs finish (asynq returns those
// that do not to its queue near the end of ShutdownTimeout), moves jobs no
// worker started back to their Sidekiq queue and takes the process off
// Sidekiq's Busy page. It returns within ShutdownTimeout or when ctx ends,
// whichever is first; nothing is lost either way (a job still in flight is
// recovered by the next worker).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.state != 1 {
		s.mu.Unlock()
		return errors.New("worker: Shutdown without a running Start")
	}
	s.state = 2
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	s.log.Info("worker shutting down", zap.Duration("timeout", s.cfg.ShutdownTimeout))

	var errs []error
	s.hb.Quiet()
	close(s.stopResc)
	// Calls held back by a failing Redis answer at once from now on (the
	// gate still lets a probe through each interval).
	s.redisGate.shutdown()
	if err := s.stopScheduler(ctx); err != nil {
		errs = append(errs, err)
	}
	// Stop the ingress first: what it holds goes to asynq (or back to its queue).
	if err := s.bridge.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	// Then the pool: no new task, running ones finish or are requeued.
	// asynq's loops must not sleep in the adaptive poll or wait in the gate.
	s.idle.shutdown()
	s.asynqGate.shutdown()
	s.handler.Stop()
	s.srv.Stop()
	done := make(chan struct{})
	go func() { s.srv.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("asynq shutdown: %w", ctx.Err()))
	}
	if !s.cfg.DisableReturnPending && ctx.Err() == nil {
		n, err := s.returnPending(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		if n > 0 {
			s.log.Info("returned jobs no worker had started to their Sidekiq queue", zap.Int("jobs", n))
		}
	}
	s.rescWG.Wait()
	s.awaitQuietSteps(ctx)
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	if err := s.hb.Shutdown(hctx); err != nil {
		errs = append(errs, err)
	}
	hcancel()
	s.insp.Close()
	err := errors.Join(errs...)
	s.log.Info("worker stopped", zap.Duration("took", time.Since(start)), zap.Error(err))
	if err != nil {
		return fmt.Errorf("worker shutdown: %w", err)
	}
	return nil
}

// returnPending moves pending asynq tasks back to their Sidekiq queue (a
// batch task as its jobs): each is pushed to the pop end of queue:<name>
// first and deleted from asynq second, so a crash in between leaves it in
// both places, and the bridge's TaskID turns the second transfer into a
// no-op (for a batch regrouped differently, the jobs' done markers keep
// their write-backs from repeating). A task a worker elsewhere
// took in between cannot be deleted; its copy in the queue is then a
// redelivery the bridge also recognizes.
func (s *Server) returnPending(ctx context.Context) (int, error) {
	n := 0
	for _, q := range s.cfg.Queues {
		for {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			// The list comes oldest first; RPUSH the newest first, so that the
			// oldest ends up at the pop end and runs first again. (Pending tasks
			// are bounded by the bridge's MaxPending, well below a page.)
			tasks, err := s.insp.ListPendingTasks(q.Name, asynq.PageSize(1000))
			if err != nil {
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				return n, fmt.Errorf("listing pending tasks of %s: %w", q.Name, err)
			}
			moved := 0
			for _, t := range slices.Backward(tasks) {
				var raws [][]byte
				switch t.Type {
				case sidekiq.TaskType:
					raws = [][]byte{t.Payload}
				case sidekiq.BatchTaskType:
					if raws, err = sidekiq.DecodeBatch(t.Payload); err != nil {
						continue
					}
				default:
					continue
				}
				// Newest first, so that the batch's oldest job ends up at the pop end.
				vals := make([]any, len(raws))
				for i, r := range raws {
					vals[len(raws)-1-i] = r
				}
				ok, err := returnTaskScript.Run(ctx, s.cfg.Redis,
					[]string{asynqTaskKey(q.Name, t.ID), asynqQueueKeyPrefix(q.Name) + "pending", sidekiq.QueueKey(q.Name)},
					append([]any{t.ID}, vals...)...).Int()
				if err != nil {
					return n, fmt.Errorf("returning %s to %s: %w", t.ID, q.Name, err)
				}
				if ok == 0 {
					s.log.Debug("pending task not returned: a worker took it", zap.String("task_id", t.ID))
					continue
				}
				n += len(raws)
				moved++
			}
			if moved == 0 {
				break
			}
		}
	}
	return n, nil
}

// returnTaskScript takes a pending task out of asynq and pushes its jobs
// back to their Sidekiq queue in one step. Pushing first and deleting after
// (two steps) lost a job when another sidecar's bridge took the pushed copy
// in between: its hand-over met the still existing task id, counted the job
// as transferred and dropped it, and the delete then removed the only copy.
// Deleting first and pushing after would lose it to a crash in between.
// KEYS[1] the task hash, KEYS[2] the queue's pending list, KEYS[3] the
// Sidekiq queue; ARGV[1] the task id, ARGV[2…] the jobs, newest first.
// Returns 0 when the task is no longer pending (a worker took it).
var returnTaskScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then
  return 0
end
if redis.call('LREM', KEYS[2], 0, ARGV[1]) == 0 then
  return 0
end
local unique = redis.call('HGET', KEYS[1], 'unique_key')
if unique and unique ~= '' and redis.call('GET', unique) == ARGV[1] then
  redis.call('DEL', unique)
end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
return 1
`)

// asynqQueueKeyPrefix and asynqTaskKey are asynq v0.26's key layout
// (internal/base): TestAsynqKeyLayout pins them, so an upgrade that changes
// it fails loudly.
func asynqQueueKeyPrefix(q string) string { return "asynq:{" + q + "}:" }
func asynqTaskKey(q, id string) string    { return asynqQueueKeyPrefix(q) + "t:" + id }

// rescueLoop runs again the tasks asynq archived only because their worker
// died with no retry left (retry: 0 jobs): a crash is not a failure of the
// job, and the job must not be lost.
func (s *Server) rescueLoop() {
	defer s.rescWG.Done()
	t := time.NewTicker(s.cfg.RescueInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopResc:
			return
		case <-t.C:
		}
		for _, q := range s.cfg.Queues {
			n, err := s.rescue(q.Name)
			if err != nil {
				s.log.Debug("rescue of lease-expired tasks failed", zap.String("queue", q.Name), zap.Error(err))
			}
			if n > 0 {
				s.log.Warn("re-ran jobs archived after their worker died", zap.String("queue", q.Name), zap.Int("jobs", n))
			}
		}
	}
}

func (s *Server) rescue(q string) (int, error) {
	n := 0
	// RunTask removes a task from the archive, shifting later pages: a page
	// on which something ran is read again instead of moving on.
	for page, reads := 1, 0; reads < 200; reads++ {
		select {
		case <-s.stopResc:
			return n, nil
		default:
		}
		tasks, err := s.insp.ListArchivedTasks(q, asynq.Page(page), asynq.PageSize(100))
		if err != nil {
			if errors.Is(err, asynq.ErrQueueNotFound) {
				return n, nil
			}
			return n, err
		}
		ran := 0
		for _, t := range tasks {
			if t.LastErr == asynq.ErrLeaseExpired.Error() && (t.Type == sidekiq.TaskType || t.Type == sidekiq.BatchTaskType) {
				if err := s.insp.RunTask(q, t.ID); err == nil {
					ran++
					s.idle.wake()
				}
			}
		}
		n += ran
		if len(tasks) < 100 {
			return n, nil
		}
		if ran == 0 {
			page++
		}
	}
	return n, nil
}

// asynqLogger adapts a SugaredLogger to asynq.Logger. Fatal logs at Error
// level and does not exit: only main decides to exit. While quiet reports
// true (Redis is failing and the gate has said so once), asynq's warnings
// and errors, which it repeats for every attempt of every component, go to
// debug level.
type asynqLogger struct {
	s     *zap.SugaredLogger
	quiet func() bool
}

func (l asynqLogger) Debug(args ...any) { l.s.Debug(args...) }
func (l asynqLogger) Info(args ...any)  { l.s.Info(args...) }
func (l asynqLogger) Warn(args ...any) {
	if l.quiet != nil && l.quiet() {
		l.s.Debug(args...)
		return
	}
	l.s.Warn(args...)
}

func (l asynqLogger) Error(args ...any) {
	if l.quiet != nil && l.quiet() {
		l.s.Debug(args...)
		return
	}
	l.s.Error(args...)
}
func (l asynqLogger) Fatal(args ...any) { l.s.Error(args...) }
