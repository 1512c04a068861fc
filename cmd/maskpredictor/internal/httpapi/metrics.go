package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/labels"
)

// WorkerStats are the job worker's cache counters, when it runs in the same
// process.
type WorkerStats struct {
	CacheHits, CacheMisses int64
	// RedisDegraded is the in-process worker's Redis gate's reason when it
	// holds calls back (generic: no address or credential); "" when healthy.
	RedisDegraded string
	// ReplicasShort: its write-backs have been waiting for REDIS_WAIT_REPLICAS
	// replicas for a while (worker.HandlerStats.ReplicasShortSince): jobs
	// are not done meanwhile.
	ReplicasShort bool
}

// MetricsConfig configures Metrics.
type MetricsConfig struct {
	// Status reports the serving model (maskpredictor_model_info).
	Status StatusFunc
	// Redis, when set, is asked at scrape time for the Sidekiq ingress
	// queues' depth and latency and the dead set's size, and asynq's queue
	// metrics are exported (github.com/hibiken/asynq/x/metrics).
	Redis redis.UniversalClient
	// Queues are the Sidekiq ingress queues (default mask_predictions).
	Queues []string
	// Worker, when set, reports the in-process worker's cache counters.
	Worker func() WorkerStats
	// ScrapeTimeout bounds the Redis work of one scrape. Default 5 s.
	ScrapeTimeout time.Duration
	// Logger gets scrape errors. Default: no-op.
	Logger *zap.Logger
}

// Metrics are the Prometheus metrics of one server, in a registry of their
// own. Safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	cfg MetricsConfig

	predictions   *prometheus.CounterVec
	predModel     prometheus.Counter
	predFallback  prometheus.Counter
	predCache     prometheus.Counter
	predictDur    *prometheus.HistogramVec
	durModel      prometheus.Observer
	durFallback   prometheus.Observer
	cacheHitHTTP  atomic.Int64
	cacheMissHTTP atomic.Int64
	cacheErrors   prometheus.Counter
	cacheSkipped  *prometheus.CounterVec
	batchBusy     prometheus.Counter
	conns         *connMetrics
	adminFailures prometheus.Counter
	adminThrottle prometheus.Counter
	requests      *prometheus.CounterVec
	requestDur    *prometheus.HistogramVec
	jobDur        *prometheus.HistogramVec
	hot           map[string]hotRoute // the prediction routes' 200s, resolved once
	insp          *asynq.Inspector

	labelStats  atomic.Pointer[LabelStatsFunc]
	reviewQueue atomic.Int64 // -1 until a review queue was computed
}

// NewMetrics registers the metrics in a new registry.
func NewMetrics(cfg MetricsConfig) *Metrics {
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = 5 * time.Second
	}
	if len(cfg.Queues) == 0 {
		cfg.Queues = []string{"mask_predictions"}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	m := &Metrics{reg: prometheus.NewRegistry(), cfg: cfg}
	m.reviewQueue.Store(-1)
	m.predictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "maskpredictor_predictions_total",
		Help: "Predictions served over HTTP, by source: model, fallback (rules) or cache.",
	}, []string{"source"})
	m.predModel = m.predictions.WithLabelValues(sourceModel)
	m.predFallback = m.predictions.WithLabelValues(sourceFallback)
	m.predCache = m.predictions.WithLabelValues(sourceCache)
	m.predictDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "maskpredictor_predict_duration_seconds",
		Help:    "Time to label one name with the predictor (cache misses), by source.",
		Buckets: prometheus.ExponentialBuckets(2e-6, 2, 16), // 2µs … 65ms
	}, []string{"source"})
	m.durModel = m.predictDur.WithLabelValues(sourceModel)
	m.durFallback = m.predictDur.WithLabelValues(sourceFallback)
	m.cacheErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "maskpredictor_cache_errors_total",
		Help: "Redis errors of the HTTP cache read-through (the name was predicted without the cache).",
	})
	m.cacheSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "maskpredictor_cache_writes_skipped_total",
		Help: "Cache entries not written, by origin (http) and reason: pressure (Redis used_memory near maxmemory), oom (an OOM reply), budget (the write budget is spent). The names were answered all the same.",
	}, []string{"origin", "reason"})
	m.batchBusy = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "maskpredictor_http_batch_busy_total",
		Help: "Batches answered 503 (Retry-After) because too many batch names were in flight.",
	})
	m.conns = newConnMetrics()
	m.adminFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "maskpredictor_admin_login_failures_total",
		Help: "Requests to /admin/ with credentials that were refused.",
	})
	m.adminThrottle = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "maskpredictor_admin_throttled_total",
		Help: "Requests to /admin/ answered 429 because their client failed to log in too often.",
	})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "maskpredictor_http_requests_total",
		Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	m.requestDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "maskpredictor_http_request_duration_seconds",
		Help:    "HTTP request latency by route (prediction routes only).",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 18), // 25µs … 3.3s
	}, []string{"route"})
	m.jobDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "maskpredictor_job_duration_seconds",
		Help:    "Prediction job latency in the in-process worker, by queue and outcome.",
		Buckets: prometheus.ExponentialBuckets(250e-6, 2, 18), // 250µs … 33s
	}, []string{"queue", "outcome"})

	m.hot = make(map[string]hotRoute)
	for _, r := range []string{routePredict, routeBatch, routeInvoke} {
		m.hot[r] = hotRoute{ok: m.requests.WithLabelValues(r, "200"), dur: m.requestDur.WithLabelValues(r)}
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.predictions, m.predictDur, m.cacheErrors, m.cacheSkipped, m.batchBusy,
		m.conns.open, m.conns.refused, m.conns.evicted, m.adminFailures, m.adminThrottle,
		m.requests, m.requestDur, m.jobDur,
		buildInfo(),
		&stateCollector{m: m},
	)
	if cfg.Redis != nil {
		m.insp = asynq.NewInspectorFromRedisClient(cfg.Redis)
		m.reg.MustRegister(asynqmetrics.NewQueueMetricsCollector(m.insp))
	}
	return m
}

// Registry is the registry the metrics are in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Close releases the asynq inspector (not the Redis client, which the
// caller owns).
func (m *Metrics) Close() error {
	if m.insp != nil {
		return m.insp.Close()
	}
	return nil
}

func (m *Metrics) observePrediction(src string, d time.Duration) {
	switch src {
	case sourceModel:
		m.predModel.Inc()
		m.durModel.Observe(d.Seconds())
	case sourceFallback:
		m.predFallback.Inc()
		m.durFallback.Observe(d.Seconds())
	case sourceCache:
		m.predCache.Inc()
		m.cacheHitHTTP.Add(1)
	}
}

type hotRoute struct {
	ok  prometheus.Counter
	dur prometheus.Observer
}

func (m *Metrics) observeRequest(route string, code int, d time.Duration) {
	hr, hot := m.hot[route]
	if hot && code == http.StatusOK {
		hr.ok.Inc()
	} else {
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	}
	if hot {
		hr.dur.Observe(d.Seconds())
	}
}

// origins of cache traffic, the label values of the cache metrics
const (
	OriginHTTP   = "http"
	OriginWorker = "worker"
)

// ObserveCacheWriteSkipped counts n cache entries that origin ("http",
// "worker") did not write, and why (a cache.Reason: pressure, oom, budget).
func (m *Metrics) ObserveCacheWriteSkipped(origin, reason string, n int) {
	m.cacheSkipped.WithLabelValues(origin, reason).Add(float64(n))
}

// ObserveAdminLoginFailure counts a refused admin login; throttled: the
// client was answered 429 without its credentials being checked.
func (m *Metrics) ObserveAdminLoginFailure(throttled bool) {
	if throttled {
		m.adminThrottle.Inc()
		return
	}
	m.adminFailures.Inc()
}

// ObserveJob records one job of the in-process worker: cmd calls it from a
// worker.JobObserver, with the job's queue, outcome (worker.Outcome.String)
// and its task's duration.
func (m *Metrics) ObserveJob(queue, outcome string, d time.Duration) {
	m.jobDur.WithLabelValues(queue, outcome).Observe(d.Seconds())
}

// LabelStats is what /metrics reports about the label store (issue 13).
type LabelStats struct {
	// Stored is the number of labelled names (HLEN).
	Stored int64
	// BySource counts the labels by source; nil when they were not counted
	// (more labels than a scrape should decode: only Stored is exported).
	BySource map[string]int
	// Retrain is the last retrain's record, nil when none was recorded.
	Retrain *labels.RetrainResult
}

// LabelStatsFunc reads the label store at scrape time, within ctx.
type LabelStatsFunc func(ctx context.Context) (LabelStats, error)

// SetLabelStats makes scrapes report the label store through f (nil: stop).
// It is a setter, not a MetricsConfig field, because the store is built
// after the metrics, beside the dashboard that writes it.
func (m *Metrics) SetLabelStats(f LabelStatsFunc) {
	if f == nil {
		m.labelStats.Store(nil)
		return
	}
	m.labelStats.Store(&f)
}

// ObserveReviewQueue records how many names were candidates for labelling
// when the review queue was last computed (/admin/review,
// /admin/api/review).
func (m *Metrics) ObserveReviewQueue(n int) { m.reviewQueue.Store(int64(n)) }

// ReviewQueue is the last ObserveReviewQueue; ok is false before the first.
func (m *Metrics) ReviewQueue() (n int64, ok bool) {
	n = m.reviewQueue.Load()
	return n, n >= 0
}

// CacheCounts are the cache lookups since the server started.
type CacheCounts struct {
	HTTPHits, HTTPMisses, WorkerHits, WorkerMisses int64
}

// Ratio is the hit ratio over every lookup (NaN-free: 0 without lookups).
func (c CacheCounts) Ratio() float64 {
	total := c.HTTPHits + c.HTTPMisses + c.WorkerHits + c.WorkerMisses
	if total == 0 {
		return 0
	}
	return float64(c.HTTPHits+c.WorkerHits) / float64(total)
}

// CacheCounts returns the cache counters.
func (m *Metrics) CacheCounts() CacheCounts {
	c := CacheCounts{HTTPHits: m.cacheHitHTTP.Load(), HTTPMisses: m.cacheMissHTTP.Load()}
	if m.cfg.Worker != nil {
		w := m.cfg.Worker()
		c.WorkerHits, c.WorkerMisses = w.CacheHits, w.CacheMisses
	}
	return c
}

// Handler serves the registry; with a token, only to
// "Authorization: Bearer <token>".
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      zap.NewStdLog(m.cfg.Logger.Named("metrics")),
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       m.cfg.ScrapeTimeout + 5*time.Second,
	})
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := BearerToken(r)
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="maskpredictor metrics"`)
			WriteError(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// BearerToken returns the token of an "Authorization: Bearer …" header.
func BearerToken(r *http.Request) (string, bool) {
	const prefix = "bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || !asciiEqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return h[len(prefix):], true
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// buildInfo is maskpredictor_build_info{version,revision,go_version} 1.
func buildInfo() prometheus.Collector {
	version, revision, goVersion := "(devel)", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "maskpredictor_build_info",
		Help:        "Build of the running binary (always 1).",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "go_version": goVersion},
	})
	g.Set(1)
	return g
}

// stateCollector reports what is read at scrape time: the model, the
// worker's cache counters, and from Redis the Sidekiq queues and dead set.
type stateCollector struct{ m *Metrics }

var (
	descModelInfo = prometheus.NewDesc("maskpredictor_model_info",
		"The serving model (always 1); fallback=\"true\" when the rule fallback answers.",
		[]string{"version", "source", "fallback"}, nil)
	descModelLoaded = prometheus.NewDesc("maskpredictor_model_loaded",
		"1 when a CRF model answers, 0 on the rule fallback.", nil, nil)
	descCache = prometheus.NewDesc("maskpredictor_cache_requests_total",
		"Prediction cache lookups by result (hit, miss) and by who asked (http, worker).",
		[]string{"result", "origin"}, nil)
	descQueueDepth = prometheus.NewDesc("maskpredictor_ingress_queue_depth",
		"Jobs waiting in a Sidekiq ingress queue (LLEN queue:<name>).", []string{"queue"}, nil)
	descQueueLatency = prometheus.NewDesc("maskpredictor_ingress_queue_latency_seconds",
		"Age of the oldest job waiting in a Sidekiq ingress queue (Sidekiq::Queue#latency).", []string{"queue"}, nil)
	descDeadSet = prometheus.NewDesc("maskpredictor_sidekiq_dead_set_size",
		"Jobs in Sidekiq's dead set (all queues).", nil, nil)
	descReplicasShort = prometheus.NewDesc("maskpredictor_worker_waiting_for_replicas",
		"1 while the in-process worker's write-backs wait for REDIS_WAIT_REPLICAS replicas (its jobs are not done meanwhile).", nil, nil)
	descScrapeErr = prometheus.NewDesc("maskpredictor_redis_scrape_error",
		"1 when the last scrape could not read the queues from Redis.", nil, nil)

	descLabelsStored = prometheus.NewDesc("maskpredictor_labels_stored",
		"Labelled names in the label store (HLEN maskpredictor:labels).", nil, nil)
	descLabels = prometheus.NewDesc("maskpredictor_labels",
		"Labelled names by the way they came in (dashboard, api, sidekiq, import); only while the store is small enough to count at scrape time (see maskpredictor_labels_stored).",
		[]string{"source"}, nil)
	descLabelsErr = prometheus.NewDesc("maskpredictor_labels_scrape_error",
		"1 when the last scrape could not read the label store.", nil, nil)
	descReviewQueue = prometheus.NewDesc("maskpredictor_review_queue_length",
		"Names that were candidates for labelling when the review queue was last computed (/admin/review, /admin/api/review).", nil, nil)
	descRetrainAt = prometheus.NewDesc("maskpredictor_last_retrain_timestamp_seconds",
		"When the last retrain ran (unix seconds).", nil, nil)
	descRetrainToken = prometheus.NewDesc("maskpredictor_last_retrain_token_accuracy",
		"Token accuracy on held-out labels at the last retrain, of the new model and of the model it was compared with.", []string{"model"}, nil)
	descRetrainName = prometheus.NewDesc("maskpredictor_last_retrain_name_accuracy",
		"Whole-name accuracy on held-out labels at the last retrain, of the new model and of the model it was compared with.", []string{"model"}, nil)
	descRetrainPublished = prometheus.NewDesc("maskpredictor_last_retrain_published",
		"1 when the last retrain published its model, 0 when it kept the current one.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descModelInfo
	ch <- descModelLoaded
	ch <- descQueueDepth
	ch <- descQueueLatency
	ch <- descDeadSet
	ch <- descScrapeErr
	ch <- descReplicasShort
	ch <- descCache
	ch <- descLabelsStored
	ch <- descLabels
	ch <- descLabelsErr
	ch <- descReviewQueue
	ch <- descRetrainAt
	ch <- descRetrainToken
	ch <- descRetrainName
	ch <- descRetrainPublished
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	if m.cfg.Status != nil {
		st := m.cfg.Status()
		loaded := 0.0
		if st.ModelLoaded {
			loaded = 1
		}
		ch <- prometheus.MustNewConstMetric(descModelInfo, prometheus.GaugeValue, 1,
			st.ModelVersion, PublicSource(st.ModelSource), strconv.FormatBool(!st.ModelLoaded)) // /metrics may be unauthenticated: no bucket or path
		ch <- prometheus.MustNewConstMetric(descModelLoaded, prometheus.GaugeValue, loaded)
	}
	cc := m.CacheCounts()
	ch <- prometheus.MustNewConstMetric(descCache, prometheus.CounterValue, float64(cc.HTTPHits), "hit", "http")
	ch <- prometheus.MustNewConstMetric(descCache, prometheus.CounterValue, float64(cc.HTTPMisses), "miss", "http")
	if m.cfg.Worker != nil {
		ch <- prometheus.MustNewConstMetric(descCache, prometheus.CounterValue, float64(cc.WorkerHits), "hit", "worker")
		ch <- prometheus.MustNewConstMetric(descCache, prometheus.CounterValue, float64(cc.WorkerMisses), "miss", "worker")
		short := 0.0
		if m.cfg.Worker().ReplicasShort {
			short = 1
		}
		ch <- prometheus.MustNewConstMetric(descReplicasShort, prometheus.GaugeValue, short)
	}
	if n, ok := m.ReviewQueue(); ok {
		ch <- prometheus.MustNewConstMetric(descReviewQueue, prometheus.GaugeValue, float64(n))
	}
	if f := m.labelStats.Load(); f != nil {
		m.collectLabels(ch, *f)
	}
	if m.cfg.Redis == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ScrapeTimeout)
	defer cancel()
	qs, dead, err := ReadQueues(ctx, m.cfg.Redis, m.cfg.Queues)
	if err != nil {
		m.cfg.Logger.Warn("metrics: reading the Sidekiq queues from Redis", zap.Error(err))
		ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 0)
	for _, q := range qs {
		ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(q.Depth), q.Name)
		ch <- prometheus.MustNewConstMetric(descQueueLatency, prometheus.GaugeValue, q.Latency.Seconds(), q.Name)
	}
	ch <- prometheus.MustNewConstMetric(descDeadSet, prometheus.GaugeValue, float64(dead))
}

// collectLabels exports the label store and the last retrain.
func (m *Metrics) collectLabels(ch chan<- prometheus.Metric, f LabelStatsFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ScrapeTimeout)
	defer cancel()
	st, err := f(ctx)
	if err != nil {
		m.cfg.Logger.Warn("metrics: reading the label store", zap.Error(err))
		ch <- prometheus.MustNewConstMetric(descLabelsErr, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(descLabelsErr, prometheus.GaugeValue, 0)
	ch <- prometheus.MustNewConstMetric(descLabelsStored, prometheus.GaugeValue, float64(st.Stored))
	if st.BySource != nil {
		for _, src := range labels.Sources { // every known source, 0 included: no gaps in rate()
			ch <- prometheus.MustNewConstMetric(descLabels, prometheus.GaugeValue, float64(st.BySource[src]), src)
		}
		for src, n := range st.BySource {
			if !slices.Contains(labels.Sources, src) {
				if src == "" {
					src = "none"
				}
				ch <- prometheus.MustNewConstMetric(descLabels, prometheus.GaugeValue, float64(n), src)
			}
		}
	}
	if r := st.Retrain; r != nil {
		ch <- prometheus.MustNewConstMetric(descRetrainAt, prometheus.GaugeValue, float64(r.At.UnixNano())/1e9)
		ch <- prometheus.MustNewConstMetric(descRetrainToken, prometheus.GaugeValue, r.NewScore, "new")
		ch <- prometheus.MustNewConstMetric(descRetrainToken, prometheus.GaugeValue, r.CurrentScore, "current")
		ch <- prometheus.MustNewConstMetric(descRetrainName, prometheus.GaugeValue, r.NewNameScore, "new")
		ch <- prometheus.MustNewConstMetric(descRetrainName, prometheus.GaugeValue, r.CurrentNameScore, "current")
		published := 0.0
		if r.Published {
			published = 1
		}
		ch <- prometheus.MustNewConstMetric(descRetrainPublished, prometheus.GaugeValue, published)
	}
}
