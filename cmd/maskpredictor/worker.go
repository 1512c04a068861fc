package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// workerFlags are the settings of the job worker (`worker` and `run`).
// Every flag has an environment variable; flags override it.
type workerFlags struct {
	// labelsMax bounds the label store ($LABELS_MAX, env only).
	labelsMax       int
	redis           redisFlags
	model           modelFlags
	limits          predictor.Limits
	queues          string
	concurrency     int
	callbackClass   string
	callbackQueue   string
	shutdownTimeout time.Duration
	cacheTTL        time.Duration
	noScheduler     bool
	pollInterval    time.Duration
	jobsPerTask     int
	classes         string
	idlePoll        time.Duration
	redisBackoff    time.Duration
	waitReplicas    int
	waitTimeout     time.Duration
	reload          reloadFlags
}

func (wf *workerFlags) register(fs *flag.FlagSet, sys IO) error {
	var err error
	env := func(e error) {
		if err == nil {
			err = e
		}
	}
	conc, e := envInt(sys, "WORKER_CONCURRENCY", 10)
	env(e)
	shutdown, e := envDuration(sys, "SHUTDOWN_TIMEOUT", 25*time.Second)
	env(e)
	ttl, e := envDuration(sys, "CACHE_TTL", 0)
	env(e)
	poll, e := envDuration(sys, "WORKER_POLL_INTERVAL", 2*time.Millisecond)
	env(e)
	perTask, e := envInt(sys, "WORKER_JOBS_PER_TASK", worker.DefaultJobsPerTask)
	env(e)
	idlePoll, e := envDuration(sys, "WORKER_IDLE_POLL_INTERVAL", 200*time.Millisecond)
	env(e)
	redisBackoff, e := envDuration(sys, "REDIS_MAX_BACKOFF", worker.DefaultRedisMaxBackoff)
	env(e)
	wf.labelsMax, e = envLabelsMax(sys)
	env(e)
	waitReplicas, e := envInt(sys, "REDIS_WAIT_REPLICAS", 0)
	env(e)
	waitTimeout, e := envDuration(sys, "REDIS_WAIT_TIMEOUT", time.Second)
	env(e)
	env(wf.reload.register(fs, sys))
	wf.redis.register(fs)
	wf.model.register(fs)
	fs.IntVar(&wf.limits.MaxChars, "max-chars", predictor.DefaultLimits.MaxChars, "longest accepted name, in characters")
	fs.IntVar(&wf.limits.MaxTokens, "max-tokens", predictor.DefaultLimits.MaxTokens, "most tokens accepted in a name")
	fs.StringVar(&wf.queues, "queues", envString(sys, "WORKER_QUEUES", sidekiq.DefaultQueue),
		`Sidekiq queues to work, optionally weighted: "a:3,b:1" ($WORKER_QUEUES)`)
	fs.IntVar(&wf.concurrency, "concurrency", conc, "jobs processed at once ($WORKER_CONCURRENCY)")
	fs.StringVar(&wf.callbackClass, "callback-class", sys.Env("CALLBACK_CLASS"),
		"Sidekiq job class pushed with every prediction; empty: no callback jobs ($CALLBACK_CLASS)")
	fs.StringVar(&wf.callbackQueue, "callback-queue", envString(sys, "CALLBACK_QUEUE", "default"),
		"queue of the callback jobs ($CALLBACK_QUEUE)")
	fs.DurationVar(&wf.shutdownTimeout, "shutdown-timeout", shutdown,
		"on SIGTERM, finish running jobs within this, then exit ($SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&wf.cacheTTL, "cache-ttl", ttl, "expiry of cache entries; 0 keeps them ($CACHE_TTL)")
	fs.DurationVar(&wf.pollInterval, "poll-interval", poll,
		"how often an idle worker looks for handed-over jobs; bounds their wait, costs one Redis call each ($WORKER_POLL_INTERVAL)")
	fs.IntVar(&wf.jobsPerTask, "jobs-per-task", perTask,
		"most Sidekiq jobs carried by one asynq task when the queue has a backlog; 1: one task per job ($WORKER_JOBS_PER_TASK)")
	fs.DurationVar(&wf.idlePoll, "idle-poll-interval", idlePoll,
		"longest wait between two looks for work once the worker is idle (this process's own jobs wake it at once) ($WORKER_IDLE_POLL_INTERVAL)")
	fs.DurationVar(&wf.redisBackoff, "redis-max-backoff", redisBackoff,
		"longest interval between two attempts while Redis refuses the worker (wrong password, full, read-only, unreachable) ($REDIS_MAX_BACKOFF)")
	fs.IntVar(&wf.waitReplicas, "redis-wait-replicas", waitReplicas,
		"a job counts as done only once its write-back (callbacks, replies, done marker) is on this many replicas (Redis WAIT); 0: no WAIT, a failover may drop the last acknowledged write-backs ($REDIS_WAIT_REPLICAS)")
	fs.DurationVar(&wf.waitTimeout, "redis-wait-timeout", waitTimeout,
		"WAIT's timeout per attempt, at most 2s; attempts go on for up to 20s, then the job runs again ($REDIS_WAIT_TIMEOUT)")
	fs.StringVar(&wf.classes, "classes", envString(sys, "WORKER_CLASSES", strings.Join(sidekiq.DefaultClasses, ",")),
		"job classes run, comma-separated (an ActiveJob job counts by its own class): "+sidekiq.PredictionClass+" jobs are predicted, "+sidekiq.LabelClass+" jobs store a label; a job of another class on our queues goes to the dead set, never run ($WORKER_CLASSES)")
	fs.BoolVar(&wf.noScheduler, "no-scheduler", sys.Env("WORKER_NO_SCHEDULER") == "true",
		"do not move due schedule/retry entries of our queues (a Ruby Sidekiq server does it) ($WORKER_NO_SCHEDULER)")
	return err
}

// workerService is the job worker as a service of the process, with the
// Redis clients it owns.
type workerService struct {
	srv      *worker.Server
	rdb      redis.UniversalClient
	asynqR   redis.UniversalClient
	log      *zap.Logger
	stopWait context.CancelFunc
}

// newWorkerService builds the worker around the loaded model l (its
// predictor.Live, which the reloader swaps). Nothing touches Redis yet. obs
// are told about every job's end besides its log line (run's /metrics).
func newWorkerService(ctx context.Context, sys IO, wf *workerFlags, l loaded, log *zap.Logger, obs ...worker.JobObserver) (*workerService, error) {
	queues, err := sidekiq.ParseQueues(wf.queues)
	if err != nil {
		return nil, fmt.Errorf("%w: --queues: %v", errUsage, err)
	}
	switch {
	case wf.concurrency < 1:
		return nil, fmt.Errorf("%w: --concurrency %d, want ≥ 1", errUsage, wf.concurrency)
	case wf.shutdownTimeout < time.Second:
		return nil, fmt.Errorf("%w: --shutdown-timeout %v, want ≥ 1s", errUsage, wf.shutdownTimeout)
	case wf.pollInterval <= 0 || wf.pollInterval > 5*time.Second:
		return nil, fmt.Errorf("%w: --poll-interval %v, want (0, 5s]", errUsage, wf.pollInterval)
	case wf.jobsPerTask < 1 || wf.jobsPerTask > 1000:
		return nil, fmt.Errorf("%w: --jobs-per-task %d, want 1 to 1000", errUsage, wf.jobsPerTask)
	case wf.cacheTTL < 0:
		return nil, fmt.Errorf("%w: --cache-ttl %v is negative", errUsage, wf.cacheTTL)
	case wf.idlePoll < wf.pollInterval || wf.idlePoll > 5*time.Second:
		return nil, fmt.Errorf("%w: --idle-poll-interval %v, want [--poll-interval, 5s]", errUsage, wf.idlePoll)
	case wf.redisBackoff < time.Second || wf.redisBackoff > 10*time.Minute:
		return nil, fmt.Errorf("%w: --redis-max-backoff %v, want [1s, 10m]", errUsage, wf.redisBackoff)
	case wf.waitReplicas < 0 || wf.waitReplicas > 100:
		return nil, fmt.Errorf("%w: --redis-wait-replicas %d, want 0 (no WAIT) to 100", errUsage, wf.waitReplicas)
	case wf.waitTimeout < time.Millisecond || wf.waitTimeout > 2*time.Second:
		return nil, fmt.Errorf("%w: --redis-wait-timeout %v, want [1ms, 2s]", errUsage, wf.waitTimeout)
	}
	var classes []string
	for _, c := range strings.Split(wf.classes, ",") {
		if c = strings.TrimSpace(c); c != "" {
			classes = append(classes, c)
		}
	}
	if len(classes) == 0 {
		return nil, fmt.Errorf("%w: --classes is empty: name the job class(es) Rails pushes, e.g. MaskPredictionJob", errUsage)
	}
	rc, err := wf.redis.config(sys, log)
	if err != nil {
		return nil, err
	}
	if l.live == nil {
		return nil, errors.New("internal error: the worker needs a live model holder")
	}
	var p worker.Predictor = l.live
	// One pool for the Sidekiq side (bridge, handler, cache, heartbeat) and
	// one for asynq, so that neither starves the other.
	rdb := rc.workerClient(wf.concurrency + 10)
	asynqR := rc.workerClient(wf.concurrency + 10)
	c, err := cache.New(rdb, cache.Config{TTL: wf.cacheTTL, Logger: log})
	if err != nil {
		rdb.Close()
		asynqR.Close()
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	// MaskLabelJob jobs store their labels here: the same Redis and pool as
	// the cache, whose entry for a labelled name the store rewrites.
	ls, err := labels.New(rdb, labels.Config{Limits: wf.limits, MaxLabels: wf.labelsMax})
	if err != nil {
		rdb.Close()
		asynqR.Close()
		return nil, fmt.Errorf("label store: %w", err)
	}
	srv, err := worker.New(worker.Config{
		Redis:      rdb,
		AsynqRedis: asynqR,
		Handler: worker.HandlerConfig{
			Predictor:     p,
			Cache:         c,
			Labels:        ls,
			CallbackClass: wf.callbackClass,
			CallbackQueue: wf.callbackQueue,
			Limits:        wf.limits,
			Classes:       classes,
			Observers:     obs,
			WaitReplicas:  wf.waitReplicas,
			WaitTimeout:   wf.waitTimeout,
		},
		Queues:           queues,
		Concurrency:      wf.concurrency,
		ShutdownTimeout:  wf.shutdownTimeout,
		DisableScheduler: wf.noScheduler,
		PollInterval:     wf.pollInterval,
		IdlePollInterval: wf.idlePoll,
		RedisMaxBackoff:  wf.redisBackoff,
		Bridge:           sidekiq.BridgeConfig{JobsPerTask: wf.jobsPerTask},
		// On Heroku the Busy page names the dyno (web.1, worker.2), as Sidekiq does.
		Identity: sidekiq.NewIdentity(sys.Env("DYNO")),
		Logger:   log,
	})
	if err != nil {
		rdb.Close()
		asynqR.Close()
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	fields := append(rc.fields(), zap.String("model", l.source), zap.String("model_version", p.Version()))
	if wf.waitReplicas > 0 {
		fields = append(fields, zap.Int("redis_wait_replicas", wf.waitReplicas), zap.Duration("redis_wait_timeout", wf.waitTimeout))
	}
	if l.fallback != "" {
		fields = append(fields, zap.String("fallback_reason", l.fallback))
	}
	log.Info("worker configured", fields...)
	return &workerService{srv: srv, rdb: rdb, asynqR: asynqR, log: log}, nil
}

func (w *workerService) Name() string { return "worker" }

// Start logs (with backoff) while Redis is unreachable, without blocking:
// the worker's components retry by themselves.
func (w *workerService) Start(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := w.rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		w.log.Warn("Redis unreachable at start; the worker retries with backoff", zap.Error(err))
		wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		w.stopWait = stop
		go func() { _ = waitRedis(wctx, w.rdb, w.log, "worker") }()
	}
	return w.srv.Start(ctx)
}

// Quiet stops taking new jobs (SIGTSTP); see worker.Server.Quiet.
func (w *workerService) Quiet(ctx context.Context) error { return w.srv.Quiet(ctx) }

// StopRequested is closed when Sidekiq asks the worker to stop (TERM in its
// signals list): the process then shuts down as on SIGTERM.
func (w *workerService) StopRequested() <-chan struct{} { return w.srv.StopRequested() }

func (w *workerService) Shutdown(ctx context.Context) error {
	if w.stopWait != nil {
		w.stopWait()
	}
	err := w.srv.Shutdown(ctx)
	w.asynqR.Close()
	w.rdb.Close()
	return err
}

// runWorker is `maskpredictor worker`: the Sidekiq-compatible job worker.
func runWorker(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("worker", sys)
	var wf workerFlags
	envErr := wf.register(fs, sys)
	if err := parseNoArgs(fs, args, envErr); err != nil {
		return err
	}
	log := logger(sys)
	defer log.Sync() //nolint:errcheck // stderr
	l, err := wf.model.loadFull(ctx, sys, wf.limits)
	if err != nil {
		return err
	}
	rl, err := newModelReload(ctx, sys, &wf.model, &wf.reload, l, wf.limits, log)
	if err != nil {
		return err
	}
	w, err := newWorkerService(ctx, sys, &wf, l, log)
	if err != nil {
		return err
	}
	return runServices(ctx, log, wf.shutdownTimeout, w, rl)
}
