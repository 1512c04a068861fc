package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/admin"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// httpFlags are the settings of the HTTP server (`serve` and `run`).
// Secrets (ADMIN_*, METRICS_TOKEN) come from the environment only, so that
// they never show in a process list.
type httpFlags struct {
	addr              string
	cache             bool
	cacheTimeout      time.Duration
	memoSize          int
	memoTTL           time.Duration
	maxNames          int
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	adminReadOnly     bool

	// Bounds of what anonymous HTTP traffic may cost the shared Redis and
	// the process (issue 11).
	httpCacheTTL   time.Duration
	cacheBudget    int64
	budgetWindow   time.Duration
	cachePressure  float64
	batchNames     int
	batchWait      time.Duration
	maxConns       int
	maxFailures    int
	clientIPHeader string

	adminUser, adminPassword, adminToken string
	metricsToken                         string
	// labelsMax bounds the label store ($LABELS_MAX; env only, as `run`
	// registers the worker's flags beside these).
	labelsMax int
}

func (hf *httpFlags) register(fs *flag.FlagSet, sys IO) error {
	var err error
	env := func(e error) {
		if err == nil {
			err = e
		}
	}
	cacheOn, e := envBool(sys, "HTTP_CACHE", true)
	env(e)
	readOnly, e := envBool(sys, "ADMIN_READ_ONLY", false)
	env(e)
	hf.labelsMax, e = envLabelsMax(sys)
	env(e)
	cacheTimeout, e := envDuration(sys, "CACHE_TIMEOUT", httpapi.DefaultCacheTimeout)
	env(e)
	maxNames, e := envInt(sys, "MAX_BATCH_NAMES", httpapi.DefaultMaxNames)
	env(e)
	memoSize, e := envInt(sys, "CACHE_MEMO", 4096)
	env(e)
	memoTTL, e := envDuration(sys, "CACHE_MEMO_TTL", httpapi.DefaultMemoTTL)
	env(e)
	httpTTL, e := envDuration(sys, "HTTP_CACHE_TTL", defaultHTTPCacheTTL)
	env(e)
	budget, e := parseBytes("HTTP_CACHE_BUDGET", envString(sys, "HTTP_CACHE_BUDGET", defaultCacheBudget))
	env(e)
	hf.cacheBudget = budget
	window, e := envDuration(sys, "HTTP_CACHE_BUDGET_WINDOW", cache.DefaultBudgetWindow)
	env(e)
	pressure, e := envFloat(sys, "HTTP_CACHE_PRESSURE", cache.DefaultPressureRatio)
	env(e)
	batchNames, e := envInt(sys, "HTTP_BATCH_NAMES", 0)
	env(e)
	batchWait, e := envDuration(sys, "HTTP_BATCH_WAIT", httpapi.DefaultBatchWait)
	env(e)
	maxConns, e := envInt(sys, "HTTP_MAX_CONNS", 0)
	env(e)
	maxFailures, e := envInt(sys, "ADMIN_MAX_FAILURES", admin.DefaultMaxFailures)
	env(e)
	fs.StringVar(&hf.addr, "addr", ":"+envString(sys, "PORT", "8080"), "HTTP listen address (default :$PORT, else :8080)")
	fs.BoolVar(&hf.cache, "http-cache", cacheOn, "read predictions through the Redis cache when Redis is configured ($HTTP_CACHE)")
	fs.DurationVar(&hf.cacheTimeout, "cache-timeout", cacheTimeout, "bound of one cache round trip of a request ($CACHE_TIMEOUT)")
	fs.IntVar(&hf.memoSize, "cache-memo", memoSize,
		"cache answers kept in process for --cache-memo-ttl, so hot names skip the Redis round trip; 0: none ($CACHE_MEMO)")
	fs.DurationVar(&hf.memoTTL, "cache-memo-ttl", memoTTL, "how long an in-process cache answer is used before Redis is asked again ($CACHE_MEMO_TTL)")
	fs.IntVar(&hf.maxNames, "max-names", maxNames, "most names in one /predict_batch ($MAX_BATCH_NAMES)")
	fs.DurationVar(&hf.readHeaderTimeout, "read-header-timeout", 5*time.Second, "HTTP: time to read a request's headers")
	fs.DurationVar(&hf.readTimeout, "read-timeout", 30*time.Second, "HTTP: time to read a whole request")
	fs.DurationVar(&hf.writeTimeout, "write-timeout", 60*time.Second, "HTTP: time to answer a request, from the end of its headers")
	fs.DurationVar(&hf.idleTimeout, "idle-timeout", 30*time.Second, "HTTP: how long an idle keep-alive connection is kept")
	fs.DurationVar(&hf.httpCacheTTL, "http-cache-ttl", httpTTL,
		"expiry of the cache entries HTTP requests write (CACHE_TTL instead when that is shorter); 0: none ($HTTP_CACHE_TTL)")
	fs.Func("http-cache-budget", "bytes of cache entries HTTP requests may write per --http-cache-budget-window (KiB, MiB, GiB suffixes); beyond it entries are not written; 0: no budget ($HTTP_CACHE_BUDGET, default "+defaultCacheBudget+")",
		func(v string) error {
			n, err := parseBytes("--http-cache-budget", v)
			if err == nil {
				hf.cacheBudget = n
			}
			return err
		})
	fs.DurationVar(&hf.budgetWindow, "http-cache-budget-window", window, "refill period of --http-cache-budget ($HTTP_CACHE_BUDGET_WINDOW)")
	fs.Float64Var(&hf.cachePressure, "http-cache-pressure", pressure,
		"no HTTP cache writes while Redis used_memory ≥ this share of its maxmemory (INFO memory, read ≤ 1/s); 0: no check ($HTTP_CACHE_PRESSURE)")
	fs.IntVar(&hf.batchNames, "batch-names", batchNames,
		"names of /predict_batch requests worked at once in this process; more wait --batch-wait, then 503; 0: --max-names × max(1, CPUs−1) ($HTTP_BATCH_NAMES)")
	fs.DurationVar(&hf.batchWait, "batch-wait", batchWait, "how long a /predict_batch request waits for room before a 503 ($HTTP_BATCH_WAIT)")
	fs.IntVar(&hf.maxConns, "max-conns", maxConns,
		"most HTTP connections open at once; at the cap the longest-idle one is closed, else new ones wait 100 ms and get a 503; 0: 1024, or half the open-files limit when lower ($HTTP_MAX_CONNS)")
	fs.IntVar(&hf.maxFailures, "admin-max-failures", maxFailures,
		"refused /admin/ logins one client may have per minute before it is answered 429; negative: no limit ($ADMIN_MAX_FAILURES)")
	fs.StringVar(&hf.clientIPHeader, "client-ip-header", envString(sys, "HTTP_CLIENT_IP_HEADER", ""),
		"header whose last address is the client's, for the admin login throttle (X-Forwarded-For behind Heroku's router or a load balancer); empty: the peer address ($HTTP_CLIENT_IP_HEADER)")
	fs.BoolVar(&hf.adminReadOnly, "admin-read-only", readOnly, "asynqmon under /admin/queues/ in read-only mode ($ADMIN_READ_ONLY)")
	hf.adminUser, hf.adminPassword = sys.Env("ADMIN_USER"), sys.Env("ADMIN_PASSWORD")
	hf.adminToken, hf.metricsToken = sys.Env("ADMIN_TOKEN"), sys.Env("METRICS_TOKEN")
	return err
}

func (hf *httpFlags) validate() error {
	switch {
	case hf.maxNames < 1:
		return fmt.Errorf("%w: --max-names %d, want ≥ 1", errUsage, hf.maxNames)
	case hf.memoSize < 0 || hf.memoTTL <= 0:
		return fmt.Errorf("%w: --cache-memo %d / --cache-memo-ttl %v: want ≥ 0 and > 0", errUsage, hf.memoSize, hf.memoTTL)
	case hf.cacheTimeout <= 0:
		return fmt.Errorf("%w: --cache-timeout %v, want > 0", errUsage, hf.cacheTimeout)
	case hf.readHeaderTimeout <= 0 || hf.readTimeout <= 0 || hf.writeTimeout <= 0 || hf.idleTimeout <= 0:
		return fmt.Errorf("%w: HTTP timeouts must be positive", errUsage)
	case hf.httpCacheTTL < 0 || hf.httpCacheTTL > 0 && hf.httpCacheTTL < time.Millisecond:
		return fmt.Errorf("%w: --http-cache-ttl %v: want 0 or ≥ 1ms", errUsage, hf.httpCacheTTL)
	case hf.cacheBudget < 0 || hf.budgetWindow <= 0:
		return fmt.Errorf("%w: --http-cache-budget %d / --http-cache-budget-window %v: want ≥ 0 and > 0", errUsage, hf.cacheBudget, hf.budgetWindow)
	case hf.cachePressure < 0 || hf.cachePressure > 1:
		return fmt.Errorf("%w: --http-cache-pressure %v: want 0 (off) to 1", errUsage, hf.cachePressure)
	case hf.batchNames < 0 || hf.batchWait <= 0:
		return fmt.Errorf("%w: --batch-names %d / --batch-wait %v: want ≥ 0 and > 0", errUsage, hf.batchNames, hf.batchWait)
	case hf.maxConns < 0:
		return fmt.Errorf("%w: --max-conns %d: want ≥ 0", errUsage, hf.maxConns)
	case (hf.adminUser == "") != (hf.adminPassword == ""):
		return fmt.Errorf("%w: ADMIN_USER and ADMIN_PASSWORD must be set together", errUsage)
	}
	return nil
}

// Defaults of the HTTP cache bounds: entries written by HTTP requests
// expire after a day, and at most 64 MiB of them are written per day (so
// they hold at most about twice that in Redis at any time).
const (
	defaultHTTPCacheTTL = 24 * time.Hour
	defaultCacheBudget  = "64MiB"
)

func envFloat(sys IO, key string, def float64) (float64, error) {
	s := sys.Env(key)
	if s == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not a number", errUsage, key, s)
	}
	return f, nil
}

// parseBytes reads a size: "1048576", "512KiB", "64MiB", "1GiB" (KB, MB,
// GB and K, M, G are read as the binary units too).
func parseBytes(what, s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	upper := strings.ToUpper(t)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(upper, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%w: %s=%q is not a size in bytes (e.g. 64MiB)", errUsage, what, s)
	}
	return n * mult, nil
}

func envBool(sys IO, key string, def bool) (bool, error) {
	s := sys.Env(key)
	if s == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%w: %s=%q is not a boolean", errUsage, key, s)
	}
	return b, nil
}

// httpDeps is what the HTTP server shares with the rest of the process.
type httpDeps struct {
	model    loaded
	redis    *redisConfig // nil: no Redis (no cache, queues or asynqmon)
	queues   []string
	limits   predictor.Limits
	cacheTTL time.Duration
	// worker reports the in-process worker's cache counters (run).
	worker func() httpapi.WorkerStats
}

// httpService is the HTTP server as a service of the process.
type httpService struct {
	srv   *http.Server
	conns *httpapi.ConnLimiter
	// guard bounds the HTTP side's cache writes (nil without a cache); in
	// `run` the worker may share it (one INFO reader, one budget).
	guard   *cache.Guard
	addr    string
	api     *httpapi.Server
	metrics *httpapi.Metrics
	admin   *admin.Handler
	rdb     redis.UniversalClient
	log     *zap.Logger
	ln      net.Listener
	done    chan struct{}
}

// statusOf reports a predictor's state: a holder that swaps models at run
// time (predictor.Live) is asked each time; otherwise what loading found.
func statusOf(l loaded) httpapi.StatusFunc {
	type live interface {
		ModelLoaded() bool
		Source() string
		FallbackReason() string
	}
	if l.live != nil { // one snapshot: all fields from the same model, even across a reload
		return func() httpapi.Status {
			c := l.live.Current()
			return httpapi.Status{ModelLoaded: c.ModelLoaded(), ModelVersion: c.Version(), ModelSource: c.Source(), FallbackReason: c.FallbackReason()}
		}
	}
	if lv, ok := l.p.(live); ok {
		return func() httpapi.Status {
			return httpapi.Status{ModelLoaded: lv.ModelLoaded(), ModelVersion: l.p.Version(), ModelSource: lv.Source(), FallbackReason: lv.FallbackReason()}
		}
	}
	st := httpapi.Status{ModelLoaded: l.fallback == "", ModelSource: l.source, FallbackReason: l.fallback}
	return func() httpapi.Status {
		s := st
		s.ModelVersion = l.p.Version()
		return s
	}
}

// newHTTPService builds the server; nothing listens before Start.
func newHTTPService(hf *httpFlags, deps httpDeps, log *zap.Logger) (*httpService, error) {
	if err := hf.validate(); err != nil {
		return nil, err
	}
	hs := &httpService{addr: hf.addr, log: log, done: make(chan struct{})}
	status := statusOf(deps.model)
	var rdb redis.UniversalClient
	if deps.redis != nil {
		hs.rdb = deps.redis.client(10 * runtime.GOMAXPROCS(0))
		rdb = hs.rdb
	}
	hs.metrics = httpapi.NewMetrics(httpapi.MetricsConfig{
		Status: status, Redis: rdb, Queues: deps.queues, Worker: deps.worker, Logger: log,
	})
	recent := httpapi.NewRecent(0)
	ecfg := httpapi.EngineConfig{
		Predictor: deps.model.p, CacheTimeout: hf.cacheTimeout, MemoSize: hf.memoSize, MemoTTL: hf.memoTTL, Limits: deps.limits,
		MaxNames: hf.maxNames, Metrics: hs.metrics, Recent: recent, Logger: log,
	}
	ecfg.BatchNames, ecfg.BatchWait = hf.batchNames, hf.batchWait
	var httpTTL time.Duration
	if rdb != nil && hf.cache {
		httpTTL = hf.httpCacheTTL
		if deps.cacheTTL > 0 && (httpTTL == 0 || deps.cacheTTL < httpTTL) {
			httpTTL = deps.cacheTTL // never outlive the worker's entries
		}
		c, err := cache.New(rdb, cache.Config{TTL: httpTTL, Logger: log})
		if err != nil {
			hs.close()
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		pressure := hf.cachePressure
		if pressure == 0 {
			pressure = -1 // off
		}
		hs.guard, err = cache.NewGuard(rdb, cache.GuardConfig{
			PressureRatio: pressure, BudgetBytes: hf.cacheBudget, BudgetWindow: hf.budgetWindow, Logger: log,
		})
		if err != nil {
			hs.close()
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		ecfg.Cache, ecfg.Guard = c, hs.guard
	}
	engine, err := httpapi.NewEngine(ecfg)
	if err != nil {
		hs.close()
		return nil, err
	}
	acfg := httpapi.Config{
		Engine: engine, Status: status, Redis: rdb, Metrics: hs.metrics,
		MetricsToken: hf.metricsToken, Worker: deps.worker, Logger: log,
	}
	// The label store (issue 13) lives in the same Redis; /metrics reports it
	// whether or not the dashboard that writes it is configured.
	var labelStore *labels.Store
	if rdb != nil {
		if labelStore, err = labels.New(rdb, labels.Config{Limits: deps.limits, MaxLabels: hf.labelsMax}); err != nil {
			hs.close()
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		hs.metrics.SetLabelStats(admin.LabelStats(labelStore, rdb))
	}
	// The review page and re-decoding predict with the model serving now
	// (the hot reload swaps it), nil on the rule fallback.
	currentCRF := func() *predictor.CRF { return deps.model.crf }
	if lv := deps.model.live; lv != nil {
		currentCRF = func() *predictor.CRF { return lv.Current().CRF() }
	}
	if admin.Configured(hf.adminUser, hf.adminPassword, hf.adminToken) {
		hs.admin, err = admin.New(admin.Config{
			User: hf.adminUser, Password: hf.adminPassword, Token: hf.adminToken,
			ReadOnly: hf.adminReadOnly, Status: status, Metrics: hs.metrics, Recent: recent,
			Redis: rdb, Queues: deps.queues, Logger: log,
			NewRedis: deps.redis.factory(), RedisPrimary: deps.redis.primaryFunc(), RedisMode: deps.redis.modeOrEmpty(),
			MaxFailures: hf.maxFailures, ClientIPHeader: hf.clientIPHeader,
			Labels: labelStore, CRF: currentCRF, Forget: engine.Forget,
		})
		if err != nil {
			hs.close()
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		acfg.Admin = hs.admin
	}
	if hs.api, err = httpapi.NewServer(acfg); err != nil {
		hs.close()
		return nil, err
	}
	const maxHeaderBytes = 64 << 10
	hs.conns = httpapi.NewConnLimiter(httpapi.ConnLimitConfig{
		Max: hf.maxConns, Metrics: hs.metrics, Logger: log, MaxHeaderBytes: maxHeaderBytes,
	})
	hs.srv = &http.Server{
		Addr:              hf.addr,
		Handler:           hs.api,
		ReadHeaderTimeout: hf.readHeaderTimeout,
		ReadTimeout:       hf.readTimeout,
		WriteTimeout:      hf.writeTimeout,
		IdleTimeout:       hf.idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         hs.conns.ConnState,
		ErrorLog:          zap.NewStdLog(log.Named("http").WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
	}
	st := status()
	fields := []zap.Field{
		zap.String("addr", hf.addr), zap.String("model", st.ModelSource), zap.String("model_version", st.ModelVersion),
		zap.Bool("cache", ecfg.Cache != nil), zap.Bool("admin", hs.admin != nil),
		zap.Bool("metrics_token", hf.metricsToken != ""), zap.Int("max_conns", hs.conns.Max()),
		zap.Int("batch_names", engine.BatchNames()),
	}
	if ecfg.Cache != nil {
		fields = append(fields, zap.Duration("http_cache_ttl", httpTTL), zap.Int64("http_cache_budget", hf.cacheBudget),
			zap.Duration("http_cache_budget_window", hf.budgetWindow), zap.Float64("http_cache_pressure", hf.cachePressure))
	}
	if st.FallbackReason != "" {
		fields = append(fields, zap.String("fallback_reason", st.FallbackReason))
	}
	log.Info("http configured", fields...)
	return hs, nil
}

func (hs *httpService) Name() string { return "http" }

// Start listens and serves in the background.
func (hs *httpService) Start(context.Context) error {
	ln, err := net.Listen("tcp", hs.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", hs.addr, err)
	}
	hs.ln = ln
	hs.log.Info("http listening", zap.String("addr", ln.Addr().String()))
	go func() {
		defer close(hs.done)
		if err := hs.srv.Serve(hs.conns.Listener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			hs.log.Error("http server stopped", zap.Error(err))
		}
	}()
	return nil
}

// Addr is the address the server listens on (after Start).
func (hs *httpService) Addr() string {
	if hs.ln == nil {
		return ""
	}
	return hs.ln.Addr().String()
}

// Shutdown stops accepting, lets requests in flight finish within ctx,
// then closes what the server owns.
// httpShutdownBudget caps the wait for requests in flight, so that in `run`
// a slow client cannot use up the time the worker needs to finish or return
// its jobs (the worker shuts down after HTTP).
const httpShutdownBudget = 5 * time.Second

func (hs *httpService) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, httpShutdownBudget)
	defer cancel()
	err := hs.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("http shutdown: %w", err), hs.srv.Close())
	}
	if hs.ln != nil {
		<-hs.done
	}
	hs.close()
	return err
}

func (hs *httpService) close() {
	if hs.admin != nil {
		if err := hs.admin.Close(); err != nil {
			hs.log.Warn("closing admin", zap.Error(err))
		}
	}
	if hs.metrics != nil {
		_ = hs.metrics.Close()
	}
	if hs.rdb != nil {
		_ = hs.rdb.Close()
	}
}

// serveFlags are the settings of `serve`: the HTTP server alone.
type serveFlags struct {
	http            httpFlags
	redis           redisFlags
	model           modelFlags
	limits          predictor.Limits
	queues          string
	cacheTTL        time.Duration
	shutdownTimeout time.Duration
	reload          reloadFlags
}

func (sf *serveFlags) register(fs *flag.FlagSet, sys IO) error {
	err := sf.http.register(fs, sys)
	if e := sf.reload.register(fs, sys); err == nil {
		err = e
	}
	shutdown, e := envDuration(sys, "SHUTDOWN_TIMEOUT", 25*time.Second)
	if err == nil {
		err = e
	}
	ttl, e := envDuration(sys, "CACHE_TTL", 0)
	if err == nil {
		err = e
	}
	sf.redis.register(fs)
	sf.model.register(fs)
	fs.IntVar(&sf.limits.MaxChars, "max-chars", predictor.DefaultLimits.MaxChars, "longest accepted name, in characters")
	fs.IntVar(&sf.limits.MaxTokens, "max-tokens", predictor.DefaultLimits.MaxTokens, "most tokens accepted in a name")
	fs.StringVar(&sf.queues, "queues", envString(sys, "WORKER_QUEUES", sidekiq.DefaultQueue),
		"Sidekiq queues shown in /metrics and /admin/ ($WORKER_QUEUES)")
	fs.DurationVar(&sf.cacheTTL, "cache-ttl", ttl, "expiry of cache entries; 0 keeps them ($CACHE_TTL)")
	fs.DurationVar(&sf.shutdownTimeout, "shutdown-timeout", shutdown, "on SIGTERM, finish requests within this ($SHUTDOWN_TIMEOUT)")
	return err
}

// queueNames parses a --queues value into names (weights dropped).
func queueNames(s string) ([]string, error) {
	qs, err := sidekiq.ParseQueues(s)
	if err != nil {
		return nil, fmt.Errorf("%w: --queues: %v", errUsage, err)
	}
	return sidekiq.QueueNames(qs), nil
}

// runServe is `maskpredictor serve`: the HTTP API alone. Redis is used
// (cache read-through, queue metrics, asynqmon) only when one is configured
// with --redis-url, REDIS_TLS_URL or REDIS_URL.
func runServe(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("serve", sys)
	var sf serveFlags
	envErr := sf.register(fs, sys)
	if err := parseNoArgs(fs, args, envErr); err != nil {
		return err
	}
	switch {
	case sf.shutdownTimeout < time.Second:
		return fmt.Errorf("%w: --shutdown-timeout %v, want ≥ 1s", errUsage, sf.shutdownTimeout)
	case sf.cacheTTL < 0:
		return fmt.Errorf("%w: --cache-ttl %v is negative", errUsage, sf.cacheTTL)
	}
	queues, err := queueNames(sf.queues)
	if err != nil {
		return err
	}
	log := logger(sys)
	defer log.Sync() //nolint:errcheck // stderr
	deps := httpDeps{queues: queues, limits: sf.limits, cacheTTL: sf.cacheTTL}
	rc, err := sf.redis.config(sys, log)
	if err != nil {
		return err
	}
	if rc.configured() {
		deps.redis = rc
		log.Info("redis configured", rc.fields()...)
	}
	if deps.model, err = sf.model.loadFull(ctx, sys, sf.limits); err != nil {
		return err
	}
	rl, err := newModelReload(ctx, sys, &sf.model, &sf.reload, deps.model, sf.limits, log)
	if err != nil {
		return err
	}
	hs, err := newHTTPService(&sf.http, deps, log)
	if err != nil {
		return err
	}
	rl.registerMetrics(hs.metrics)
	return runServices(ctx, log, sf.shutdownTimeout, hs, rl)
}

// replicasShortAfter is how long write-backs must have waited for
// REDIS_WAIT_REPLICAS replicas before /health and /metrics say so.
const replicasShortAfter = 5 * time.Second

// workerStats adapts the in-process worker's counters.
func workerStats(w *workerService) func() httpapi.WorkerStats {
	return func() httpapi.WorkerStats {
		st := w.srv.Handler().Stats()
		ws := httpapi.WorkerStats{CacheHits: st.CacheHits, CacheMisses: st.CacheMisses}
		if ok, why, _ := w.srv.RedisState(); !ok {
			ws.RedisDegraded = why
		}
		// One short WAIT is a replica's hiccup; 5 s of them is a stall.
		ws.ReplicasShort = !st.ReplicasShortSince.IsZero() && time.Since(st.ReplicasShortSince) > replicasShortAfter
		return ws
	}
}

// splitQueues is queueNames for a value already validated by the worker.
func splitQueues(s string) []string {
	names, err := queueNames(s)
	if err != nil {
		return strings.Split(s, ",")
	}
	return names
}
