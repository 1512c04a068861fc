// Package worker runs prediction jobs: the asynq handler (parse the Sidekiq
// payload → normalize → cache → predict → cache write → write-back),
// its middleware, and Server, which composes the asynq server with the
// Sidekiq ingress of worker/sidekiq.
//
// See docs/worker-internals.md for the contract with worker/sidekiq and
// docs/DESIGN.md for the job, cache and write-back contracts with Rails.
package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// Predictor labels names the caller has already tokenized: the CRF, or the
// rule fallback when no model could be loaded (its predictions say
// fallback: true).
type Predictor interface {
	PredictTokens(name string, toks []string) (*predictor.Prediction, error)
	// Version is the model version stamped on predictions and checked
	// against cache entries.
	Version() string
}

// CRFPredictor adapts the CRF predictor.
func CRFPredictor(c *predictor.CRF) Predictor { return crfPredictor{c} }

type crfPredictor struct{ c *predictor.CRF }

func (p crfPredictor) PredictTokens(name string, toks []string) (*predictor.Prediction, error) {
	return p.c.PredictTokens(name, toks, predictor.Options{})
}
func (p crfPredictor) Version() string { return p.c.Version() }

// RulesPredictor adapts the rule-based fallback predictor.
func RulesPredictor(r *predictor.Rules) Predictor { return rulesPredictor{r} }

type rulesPredictor struct{ r *predictor.Rules }

func (p rulesPredictor) PredictTokens(name string, toks []string) (*predictor.Prediction, error) {
	return p.r.PredictTokens(name, toks), nil
}
func (p rulesPredictor) Version() string { return p.r.Version() }

// Error classes written to Sidekiq's retry and dead sets (Sidekiq Web shows
// "<error_class>: <error_message>").
const (
	// ErrorClassInvalid: the job can never succeed (sidekiq.PoisonErrorClass,
	// the class the bridge uses for the same reason).
	ErrorClassInvalid = sidekiq.PoisonErrorClass
	// ErrorClassTransient: a failure that may pass (Redis unreachable for
	// longer than RedisRetryFor, the task's deadline): the job retries with
	// Sidekiq's backoff, and, out of retries, is dead with this class, as a
	// Ruby job is dead with its last exception's class.
	ErrorClassTransient = "MaskPredictor::TransientError"
)

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// Redis is the Redis Rails' Sidekiq and the cache live in. Required.
	Redis redis.UniversalClient
	// Predictor predicts cache misses. Required.
	Predictor Predictor
	// Cache is the prediction cache. Default: cache.New(Redis, {}).
	Cache *cache.Cache
	// Guard, when set, keeps cache entries from being written while the shared
	// Redis reports memory pressure or answered OOM (cache.Guard): the job's
	// callbacks, replies and done marker are still written, only the cache
	// entry is left out. The Server sets one by default.
	Guard *cache.Guard
	// Sidekiq writes callback jobs, dead-set entries and stats.
	// Default: sidekiq.NewClient(Redis).
	Sidekiq *sidekiq.Client
	// Labels stores the labels MaskLabelJob jobs carry (sidekiq.LabelClass).
	// Default: labels.New(Redis, labels.Config{Limits: Limits}).
	Labels LabelStore

	// CallbackClass, when set, is the Sidekiq job class pushed for every
	// prediction, with the single argument
	// {"jid": <source jid>, "mask_id": …, "mask_name": …, "prediction": {…}}.
	CallbackClass string
	// CallbackQueue is the queue of callback jobs. Default: "default".
	CallbackQueue string
	// ReplyTTL is the expiry set on a reply_to list after each push.
	// Default: 1 h.
	ReplyTTL time.Duration
	// DoneTTL is how long a job's write-back is remembered, so that a
	// redelivery does not push its callbacks and replies again. It must
	// cover the redelivery window (the bridge's Retention). Default: 24 h.
	DoneTTL time.Duration

	// RedisRetryFor is how long a job keeps retrying a Redis call that
	// failed because Redis was unreachable (a restart, a failover) before
	// it gives up and fails, into Sidekiq's retry set. It must stay below
	// asynq's 30 s lease. Default: 20 s.
	RedisRetryFor time.Duration

	// WaitReplicas, when above 0, makes every write-back durable on that
	// many replicas before its jobs count as done (Redis' WAIT): the
	// write-back script, a barrier write (WaitBarrierKey) and WAIT
	// WaitReplicas WaitTimeout go to Redis in one pipeline, on one
	// connection, so the answer speaks of the node that ran the script.
	// Fewer acknowledgements: the pipeline runs again (the script finds its
	// done markers, or, on a new primary that lost them, writes again) until
	// enough replicas acknowledge or RedisRetryFor passes; then the jobs are
	// not done: the task fails with ErrNotReplicated and asynq runs it
	// again (never Sidekiq's retry set: the done markers, set on the
	// primary, would make that a no-op). The same once an attempt may have
	// run the script (its answer lost) and later ones fail for any reason:
	// the write fails with ErrNotReplicated. 0 (default): no WAIT; a failover
	// may then drop a write-back the old primary acknowledged (see
	// docs/failover.md).
	WaitReplicas int
	// WaitTimeout is WAIT's timeout, at most 2 s. Default 1 s.
	WaitTimeout time.Duration

	// Limits bound each name (default predictor.DefaultLimits).
	Limits predictor.Limits
	// MaxNames is the most names one job may ask for. Default: 1000.
	MaxNames int
	// MaxPayloadBytes is the largest job payload accepted. Default: 1 MiB.
	MaxPayloadBytes int
	// Classes are the job classes run (sidekiq.Job.CheckClass): a job of another
	// class on our queues is dead with sidekiq.ForeignErrorClass, never predicted.
	// Default: sidekiq.DefaultClasses (MaskPredictionJob and MaskLabelJob, plain
	// or through ActiveJob's wrapper).
	Classes []string

	// Tracker, when set, sees each job of every task begin and end (the
	// Busy page) and counts its execution in stat:processed. Failures are
	// counted in stat:failed where they are recorded (sidekiq.Client.Fail),
	// not here.
	Tracker JobTracker
	// Observers are told about each job's end (JobObserver), after the
	// job's log line and the Tracker's count; cmd feeds /metrics from one.
	Observers []JobObserver
	// RetryDelay is the wait before the retry of a job whose retry_count is
	// now count. Default: sidekiq.Backoff (Sidekiq's count⁴ + 15 +
	// rand(10)·(count+1) seconds). Tests shorten it.
	RetryDelay func(count int) time.Duration

	// Logger gets warnings and one line per job of every task (message
	// "job"). Default: no-op.
	Logger *zap.Logger
}

// LabelStore stores a label: labels.Store. Its errors wrap labels.ErrInvalid
// or labels.ErrFull when the label can never be stored (the job is then
// dead); any other error is transient (retried).
type LabelStore interface {
	Put(ctx context.Context, l labels.Label) (labels.Label, []string, error)
}

// JobTracker is what the Busy page and the stats need to know about each job:
// sidekiq.Heartbeat.
type JobTracker interface {
	Begin(raw []byte) (done func())
	RecordResult(failed bool)
}

// WithDefaults fills the zero fields that have defaults.
func (c HandlerConfig) WithDefaults() HandlerConfig {
	if c.Cache == nil && c.Redis != nil {
		c.Cache, _ = cache.New(c.Redis, cache.Config{Logger: c.Logger})
	}
	if c.Sidekiq == nil && c.Redis != nil {
		c.Sidekiq = sidekiq.NewClient(c.Redis)
	}
	c.Limits = c.Limits.WithDefaults()
	if c.Labels == nil && c.Redis != nil {
		if s, err := labels.New(c.Redis, labels.Config{Limits: c.Limits}); err == nil {
			c.Labels = s
		}
	}
	if c.CallbackQueue == "" {
		c.CallbackQueue = "default"
	}
	if c.ReplyTTL == 0 {
		c.ReplyTTL = time.Hour
	}
	if c.DoneTTL == 0 {
		c.DoneTTL = 24 * time.Hour
	}
	if c.RedisRetryFor == 0 {
		c.RedisRetryFor = 20 * time.Second
	}
	if c.WaitTimeout == 0 {
		c.WaitTimeout = time.Second
	}
	if c.RetryDelay == nil {
		c.RetryDelay = sidekiq.Backoff
	}
	if c.MaxNames == 0 {
		c.MaxNames = 1000
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = 1 << 20
	}
	if len(c.Classes) == 0 {
		c.Classes = sidekiq.DefaultClasses
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c HandlerConfig) validate() error {
	switch {
	case c.Redis == nil:
		return errors.New("worker: HandlerConfig.Redis is required")
	case c.Predictor == nil:
		return errors.New("worker: HandlerConfig.Predictor is required")
	case c.Labels == nil:
		return errors.New("worker: HandlerConfig.Labels is required")
	case c.ReplyTTL < time.Second || c.DoneTTL < time.Second:
		return fmt.Errorf("worker: ReplyTTL (%v) and DoneTTL (%v) must be at least 1s", c.ReplyTTL, c.DoneTTL)
	case c.RedisRetryFor < 0 || c.RedisRetryFor > 25*time.Second:
		return fmt.Errorf("worker: RedisRetryFor %v, want [0, 25s] (asynq's lease is 30 s)", c.RedisRetryFor)
	case c.WaitReplicas < 0 || c.WaitReplicas > 100:
		return fmt.Errorf("worker: WaitReplicas %d, want 0 (no WAIT) to 100", c.WaitReplicas)
	case c.WaitTimeout < time.Millisecond || c.WaitTimeout > 2*time.Second:
		return fmt.Errorf("worker: WaitTimeout %v, want [1ms, 2s] (it runs within the connection's 3 s read timeout)", c.WaitTimeout)
	case c.MaxNames < 1 || c.MaxPayloadBytes < 1:
		return errors.New("worker: MaxNames and MaxPayloadBytes must be positive")
	}
	return nil
}

// Handler is the asynq handler for sidekiq.TaskType. It is safe for
// concurrent use.
type Handler struct {
	cfg       HandlerConfig
	log       *zap.Logger
	observers []JobObserver // the log line, the Tracker, then cfg.Observers

	hits, misses atomic.Int64
	poison, dead atomic.Int64
	retrying     atomic.Int64
	discarded    atomic.Int64
	cacheSkipped atomic.Int64
	labelled     atomic.Int64
	// replicasShort is when write-backs began to wait for WaitReplicas
	// replicas (unix ns), 0 since the last one acknowledged in time;
	// lastShort the last WAIT that came back short.
	replicasShort, lastShort atomic.Int64
	stopping                 chan struct{} // closed by Stop
	stopOnce                 sync.Once
}

// NewHandler returns a handler for cfg.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	obs := []JobObserver{logObserver{cfg.Logger}}
	if cfg.Tracker != nil {
		obs = append(obs, trackerObserver{cfg.Tracker})
	}
	return &Handler{cfg: cfg, log: cfg.Logger, observers: append(obs, cfg.Observers...), stopping: make(chan struct{})}, nil
}

// Stop tells the handler its process is stopping (Server.Shutdown calls
// it): a write-back waiting for WaitReplicas replicas gives up at once with
// ErrNotReplicated (its task runs again, here or in another process)
// instead of holding the shutdown for up to RedisRetryFor.
func (h *Handler) Stop() { h.stopOnce.Do(func() { close(h.stopping) }) }

// Config returns the effective configuration.
func (h *Handler) Config() HandlerConfig { return h.cfg }

// HandlerStats are the handler's counters since it was created.
type HandlerStats struct {
	CacheHits, CacheMisses int64
	Poison                 int64 // jobs that could never succeed
	Retrying               int64 // failed jobs written to Sidekiq's retry set
	Dead                   int64 // jobs written to Sidekiq's dead set (poison or exhausted)
	Discarded              int64 // failed jobs whose retry setting keeps them out of the dead set
	CacheSkipped           int64 // cache entries not written because of memory pressure (Guard)
	Labels                 int64 // labels stored from MaskLabelJob jobs
	// ReplicasShortSince is when write-backs began to find fewer than
	// WaitReplicas replicas acknowledging them, while they still do (the
	// last short WAIT less than 5 s ago); zero otherwise. Jobs are not
	// done meanwhile, and run again until enough replicas are back (a
	// stall that /health shows).
	ReplicasShortSince time.Time
}

// Stats returns the handler's counters.
func (h *Handler) Stats() HandlerStats {
	st := HandlerStats{CacheHits: h.hits.Load(), CacheMisses: h.misses.Load(), Poison: h.poison.Load(),
		Retrying: h.retrying.Load(), Dead: h.dead.Load(), Discarded: h.discarded.Load(), CacheSkipped: h.cacheSkipped.Load(),
		Labels: h.labelled.Load()}
	// Only while short WAITs keep coming: a stalled task that went to
	// another process, or no job at all since, is no stall here.
	if ns := h.replicasShort.Load(); ns != 0 && time.Since(time.Unix(0, h.lastShort.Load())) < replicasShortFresh {
		st.ReplicasShortSince = time.Unix(0, ns)
	}
	return st
}

// poisonError marks a failure the handler classified as never succeeding.
type poisonError struct{ err error }

func (e *poisonError) Error() string { return e.err.Error() }
func (e *poisonError) Unwrap() error { return e.err }

func poisonf(format string, a ...any) error {
	return &poisonError{fmt.Errorf(format, a...)}
}

// item is one name of a job on its way through the handler.
type item struct {
	req   sidekiq.Request
	toks  []string
	norm  string
	pred  *predictor.Prediction
	json  []byte // pred.AppendJSON, encoded once for the cache and the write-back
	hit   bool
	store bool // a cache write is due
}

// ProcessTask handles one task: a Sidekiq job (sidekiq.TaskType) or a batch
// of them (sidekiq.BatchTaskType), both on one path (run): a single-job task
// is a batch of one. A job that fails ends where a Ruby Sidekiq server would
// put it (Sidekiq's retry set with its backoff, or the dead set), and its task
// completes; only when even that write fails is the task retried by asynq.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	if t.Type() != sidekiq.BatchTaskType {
		return h.run(ctx, [][]byte{t.Payload()})
	}
	raws, err := sidekiq.DecodeBatch(t.Payload())
	if err != nil {
		// Only the bridge makes these; a bad one stays in asynq's archive,
		// where asynqmon shows it, rather than being retried for nothing.
		id, _ := asynq.GetTaskID(ctx)
		h.log.Error("batch task cannot be decoded; archived", zap.String("task_id", id), zap.Error(err))
		return fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	return h.run(ctx, raws)
}

// replyError tells a caller waiting on the job's reply_to why no prediction
// comes (sidekiq.Client.ReplyError). Best effort: the job has ended already,
// and a caller that gets no reply still times out as before.
func (h *Handler) replyError(ctx context.Context, job *sidekiq.Job, reason string) {
	if job == nil {
		return
	}
	if _, err := h.cfg.Sidekiq.ReplyError(ctx, job, reason, h.cfg.ReplyTTL); err != nil {
		h.log.Warn("could not reply the job's error to its reply_to", zap.String("jid", job.JID), zap.Error(err))
	}
}

func isPoison(err error) bool {
	var pe *poisonError
	return errors.As(err, &pe) || errors.Is(err, sidekiq.ErrPoison)
}

// jsonSizeHint is the buffer size a prediction's JSON is encoded into: a
// typical one (eight tokens) is 600–900 bytes; fewer reallocations, less
// garbage.
const jsonSizeHint = 1024

// pjob is one Sidekiq job on its way through the handler.
type pjob struct {
	job     *sidekiq.Job
	ev      *JobEvent     // its end, as observers will see it
	label   *labels.Label // a MaskLabelJob's label (then there are no items)
	items   []item
	replyTo string
	doneKey string // "" when the job has no write-back
	index   int    // position in its batch
	ok      bool   // written back (or to be left out of the write): nothing left to do
	fail    error  // poison found while writing (its reply_to key), this job's alone
}

// prepare parses and checks a job: every name is validated before any side
// effect, so a job is done whole or not at all. Its errors are poison; the
// pjob is returned with them once the payload parsed (its Sidekiq job is what
// the failure is recorded for).
func (h *Handler) prepare(raw []byte, ev *JobEvent) (*pjob, error) {
	if len(raw) > h.cfg.MaxPayloadBytes {
		return nil, poisonf("payload is %d bytes, over the limit of %d", len(raw), h.cfg.MaxPayloadBytes)
	}
	job, err := sidekiq.ParseJob(raw)
	if err != nil {
		return nil, err
	}
	j := &pjob{job: job, ev: ev}
	ev.JID, ev.Class = job.JID, job.RunsAs()
	if ev.Queue == "" {
		ev.Queue = job.Queue
	}
	if err := job.CheckClass(h.cfg.Classes); err != nil {
		return j, err
	}
	reqs, replyTo, err := job.Requests()
	if err != nil {
		return j, err
	}
	ev.Names = reqs
	if job.IsLabel() {
		l, err := h.labelOf(job)
		if err != nil {
			return j, err
		}
		ev.Label = true
		j.label = &l
		return j, nil
	}
	if j.items, err = h.checkNames(reqs, true); err != nil {
		return j, err
	}
	j.replyTo = replyTo
	if h.cfg.CallbackClass != "" || replyTo != "" {
		j.doneKey = sidekiq.MarkerKey(job.JID, raw)
	}
	return j, nil
}

// Check reports why a job, whose class and args the bridge has already
// checked (sidekiq.BridgeConfig.Check), can never succeed here: over the
// payload, name-count or name limits, or a name without tokens, or, for a
// MaskLabelJob, a label the store would refuse (labels.Validate) (an error
// wrapping ErrPoison). It has no side effects, so that such a job goes to
// the dead set once, straight from the queue; prepare makes the same checks
// again when the job runs.
func (h *Handler) Check(job *sidekiq.Job, reqs []sidekiq.Request) error {
	if len(job.Raw) > h.cfg.MaxPayloadBytes {
		return poisonf("payload is %d bytes, over the limit of %d", len(job.Raw), h.cfg.MaxPayloadBytes)
	}
	if job.IsLabel() {
		_, err := h.labelOf(job)
		return err
	}
	_, err := h.checkNames(reqs, false)
	return err
}

// labelOf reads and validates the label a MaskLabelJob carries (source
// labels.SourceSidekiq, labelled_at the job's created_at: when Rails asked).
// Its errors are poison and wrap labels.ErrInvalid when the label is at
// fault.
func (h *Handler) labelOf(job *sidekiq.Job) (labels.Label, error) {
	a, err := job.Label()
	if err != nil {
		return labels.Label{}, err
	}
	bd, err := labels.ParseBreakdown(a.Breakdown)
	if err != nil {
		return labels.Label{}, &poisonError{fmt.Errorf("%s for %q: %w", sidekiq.LabelClass, abbrev(a.MaskName), err)}
	}
	l := labels.Label{MaskName: a.MaskName, Breakdown: bd, LabelledBy: a.LabelledBy,
		LabelledAt: job.CreatedAt, Source: labels.SourceSidekiq}
	if _, err := labels.Validate(l, h.cfg.Limits); err != nil {
		return labels.Label{}, &poisonError{fmt.Errorf("%s for %q: %w", sidekiq.LabelClass, abbrev(a.MaskName), err)}
	}
	return l, nil
}

// storeLabel stores a MaskLabelJob's label (LabelStore.Put: the label hash
// and the name's cache entry, in one atomic step; storing it again is
// harmless, so a redelivery needs no done marker). A label the store
// refuses (labels.ErrInvalid, labels.ErrFull) is poison; a Redis error is
// retried like every other write of the handler.
func (h *Handler) storeLabel(ctx context.Context, j *pjob) error {
	var warnings []string
	var refused error // the store's answer, not a Redis failure: never retried here
	err := h.retry(ctx, func() error {
		_, w, err := h.cfg.Labels.Put(ctx, *j.label)
		if errors.Is(err, labels.ErrInvalid) || errors.Is(err, labels.ErrFull) {
			refused = err
			return nil
		}
		warnings = w
		return err
	})
	switch {
	case err != nil:
		h.observe(err)
		return err
	case refused != nil:
		return &poisonError{fmt.Errorf("%s: %w", sidekiq.LabelClass, refused)}
	}
	j.ok = true
	j.ev.LabelWarnings = warnings
	h.labelled.Add(1)
	return nil
}

// checkNames checks a job's names against MaxNames and the name limits and,
// with keep (prepare), returns them tokenized and normalized.
func (h *Handler) checkNames(reqs []sidekiq.Request, keep bool) ([]item, error) {
	if len(reqs) > h.cfg.MaxNames {
		return nil, poisonf("%d mask names in one job, over the limit of %d", len(reqs), h.cfg.MaxNames)
	}
	var items []item
	if keep {
		items = make([]item, len(reqs))
	}
	for i, r := range reqs {
		toks, err := h.cfg.Limits.Check(r.MaskName)
		if err != nil {
			if len(reqs) > 1 {
				return nil, poisonf("mask_names[%d] %q: %w", i, abbrev(r.MaskName), err)
			}
			return nil, poisonf("mask_name %q: %w", abbrev(r.MaskName), err)
		}
		if keep {
			items[i] = item{req: r, toks: toks, norm: predictor.Normalize(r.MaskName)}
		}
	}
	return items, nil
}

// predict fills in the predictions the cache did not have and returns the
// cache entries to write. fresh, when not nil, holds the predictions made
// earlier in the same batch by normalized name: a name seen there is a cache
// hit, as it would have been had its job come after the other. Its errors are
// poison.
func (h *Handler) predict(pr Predictor, j *pjob, fresh map[string]*predictor.Prediction) ([]cache.Entry, error) {
	version := pr.Version()
	var puts []cache.Entry
	for i := range j.items {
		it := &j.items[i]
		if it.hit {
			continue
		}
		if first := fresh[it.norm]; first != nil && it.norm != "" {
			if ans, ok := cache.Answer(first, it.req.MaskName, it.norm, it.toks); ok {
				it.pred, it.hit = ans, true
				j.ev.Hits++
				h.hits.Add(1)
				h.misses.Add(-1)
				if ans.Fallback {
					j.ev.Fallback = true
				}
				continue
			}
		}
		p, err := pr.PredictTokens(it.req.MaskName, it.toks)
		if err != nil {
			return nil, poisonf("predicting %q: %w", abbrev(it.req.MaskName), err)
		}
		p.NormalizedName = it.norm
		if p.ModelVersion == "" {
			p.ModelVersion = version
		}
		it.pred = p
		if p.Fallback {
			j.ev.Fallback = true
		}
		if it.norm != "" {
			it.json = p.AppendJSON(make([]byte, 0, jsonSizeHint))
			puts = append(puts, cache.Entry{Normalized: it.norm, Prediction: p, JSON: it.json})
		}
	}
	if fresh != nil { // only now: a job that failed halfway writes nothing
		for _, e := range puts {
			if fresh[e.Normalized] == nil {
				fresh[e.Normalized] = e.Prediction
			}
		}
	}
	return puts, nil
}

// pin returns the predictor for one job: a holder swapped by hot reload
// (predictor.Live) is asked once.
func (h *Handler) pin() Predictor {
	if l, ok := h.cfg.Predictor.(*predictor.Live); ok {
		return l.Current()
	}
	return h.cfg.Predictor
}

// lookup reads, in one round trip, the cache entries of every name of jobs.
// Whether a job's write-back already happened (a duplicate delivery) is
// checked by the write-back script itself, atomically with the write.
func (h *Handler) lookup(ctx context.Context, pr Predictor, jobs []*pjob) error {
	var norms []string
	type ref struct{ j, i int }
	var refs []ref
	for ji, j := range jobs {
		for i, it := range j.items {
			if it.norm != "" { // a name whose tokens all vanish under NFKC has no entry
				norms = append(norms, it.norm)
				refs = append(refs, ref{ji, i})
			}
		}
	}
	pipe := h.cfg.Redis.Pipeline()
	l, err := h.cfg.Cache.AddGetMany(ctx, pipe, norms)
	if err != nil {
		return err
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("cache lookup: %w", err)
		}
	}
	cached, err := l.Result(pr.Version())
	if err != nil {
		return err
	}
	for k, p := range cached {
		j := jobs[refs[k].j]
		it := &j.items[refs[k].i]
		if p == nil {
			continue
		}
		if ans, ok := cache.Answer(p, it.req.MaskName, it.norm, it.toks); ok {
			it.pred, it.hit = ans, true
			if ans.Fallback {
				j.ev.Fallback = true
			}
		}
	}
	for _, j := range jobs {
		for _, it := range j.items {
			if it.hit {
				j.ev.Hits++
				h.hits.Add(1)
			} else {
				h.misses.Add(1)
			}
		}
	}
	return nil
}

// writeBackScript writes the cache entries and, for each job whose done
// marker is not set yet, its callback jobs, its replies and its marker, all
// at once. A job whose reply_to key holds another type than a list is left
// out, alone (its neighbours in a batch are written), and reported with the
// type it found. Checking the marker inside the script is what keeps callbacks and
// replies exactly-once even when the same delivery runs in two tasks at the
// same time (a crash recovery regrouping a batch, a job pushed twice with the
// same bytes, asynq re-running a task whose lease expired while it ran), and
// what makes the script safe to run again after a lost reply.
//
// KEYS: 1 callback queue list, 2 "queues", then per job its marker and its
// reply list (the marker again when it has none), then the cache keys.
// ARGV: 1 cache TTL ms (0: none), 2 marker TTL ms, 3 reply TTL ms, 4 callback
// queue name, 5 jobs, 6 cache entries, then per job its callback count, its
// reply count, the callbacks and the replies, then the cache values.
// Returns {written, bad}: the 1-based indexes of the jobs it wrote back, and
// pairs of (index, type of its reply_to key) of the jobs it left out.
var writeBackScript = redis.NewScript(`
local cacheTTL, doneTTL, replyTTL = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local nj, np = tonumber(ARGV[5]), tonumber(ARGV[6])
-- Check everything first: a script is not rolled back, so a command failing
-- halfway (a key of the wrong type) would leave a marker without its
-- callback. The shared keys failing fails the whole write; a job's own reply
-- key of the wrong type leaves out that job alone. Only then write:
-- callbacks, replies, and the markers last.
local function want(key, kind)
  local t = redis.call("TYPE", key)["ok"]
  if t ~= "none" and t ~= kind then
    return redis.error_reply("WRONGTYPE " .. key .. " is a " .. t .. ", not a " .. kind .. "; nothing written")
  end
end
local e = want(KEYS[1], "list") or want(KEYS[2], "set")
if e then return e end
local k, a = 3, 7
local jobs, cbs, bad = {}, {}, {}
for j = 1, nj do
  local marker, reply = KEYS[k], KEYS[k + 1]
  local ncb, nr = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  if redis.call("EXISTS", marker) == 0 then
    local t = "none"
    if nr > 0 then t = redis.call("TYPE", reply)["ok"] end
    if t ~= "none" and t ~= "list" then
      bad[#bad + 1] = j
      bad[#bad + 1] = t
    else
      for i = a, a + ncb - 1 do cbs[#cbs + 1] = ARGV[i] end
      jobs[#jobs + 1] = {j, marker, reply, a + ncb, nr}
    end
  end
  a = a + ncb + nr
  k = k + 2
end
if #cbs > 0 then
  redis.call("SADD", KEYS[2], ARGV[4])
  for i = 1, #cbs, 1000 do -- unpack has a stack limit
    redis.call("LPUSH", KEYS[1], unpack(cbs, i, math.min(i + 999, #cbs)))
  end
end
local written = {}
for _, job in ipairs(jobs) do
  local first, nr = job[4], job[5]
  for i = first, first + nr - 1, 1000 do
    redis.call("RPUSH", job[3], unpack(ARGV, i, math.min(i + 999, first + nr - 1)))
  end
  if nr > 0 then redis.call("PEXPIRE", job[3], replyTTL) end
end
for _, job in ipairs(jobs) do
  redis.call("SET", job[2], "1", "PX", doneTTL)
  written[#written + 1] = job[1]
end
for p = 1, np do
  if cacheTTL > 0 then
    redis.call("SET", KEYS[k], ARGV[a], "PX", cacheTTL)
  else
    redis.call("SET", KEYS[k], ARGV[a])
  end
  k, a = k + 1, a + 1
end
return {written, bad}
`)

// write stores the cache entries of jobs and their write-backs (callback
// jobs, replies, done markers) in one round trip: writeBackScript, or a plain
// pipeline of cache SETs when no job has a write-back. A job whose marker
// was already set (another task wrote it back) is reported as a duplicate
// delivery. Jobs already ok are skipped; the others are marked ok.
func (h *Handler) write(ctx context.Context, jobs []*pjob, puts []cache.Entry) error {
	if len(puts) > 0 && h.cfg.Guard != nil {
		if ok, _ := h.cfg.Guard.Writable(ctx); !ok { // the Guard logs the state change
			h.cacheSkipped.Add(int64(len(puts)))
			puts = nil
		}
	}
	var marked []*pjob
	for _, j := range jobs {
		if !j.ok && j.doneKey != "" {
			marked = append(marked, j)
		}
	}
	if len(marked) == 0 {
		if len(puts) > 0 {
			err := h.retry(ctx, func() error {
				pipe := h.cfg.Redis.Pipeline()
				if err := h.cfg.Cache.AddPuts(ctx, pipe, puts); err != nil {
					return err
				}
				_, err := pipe.Exec(ctx)
				h.observe(err)
				return err
			})
			if err != nil {
				return fmt.Errorf("writing cache entries: %w", err)
			}
		}
		for _, j := range jobs {
			j.ok = true
		}
		return nil
	}

	keys := make([]string, 0, 2+2*len(marked)+len(puts))
	keys = append(keys, sidekiq.QueueKey(h.cfg.CallbackQueue), "queues")
	args := make([]any, 0, 6+4*len(marked)+len(puts))
	args = append(args, h.cfg.Cache.Config().TTL.Milliseconds(), h.cfg.DoneTTL.Milliseconds(),
		h.cfg.ReplyTTL.Milliseconds(), h.cfg.CallbackQueue, len(marked), len(puts))
	var cbuf []byte
	now := time.Now()
	for _, j := range marked {
		for i := range j.items {
			if it := &j.items[i]; it.json == nil {
				it.json = it.pred.AppendJSON(make([]byte, 0, jsonSizeHint))
			}
		}
		reply := j.doneKey
		nr := 0
		if j.replyTo != "" {
			reply, nr = j.replyTo, len(j.items)
		}
		keys = append(keys, j.doneKey, reply)
		ncb := 0
		if h.cfg.CallbackClass != "" {
			ncb = len(j.items)
		}
		args = append(args, ncb, nr)
		if ncb > 0 {
			if cbuf == nil {
				cbuf = make([]byte, 0, len(marked)*len(j.items)*(jsonSizeHint+256))
			}
			delivery := sidekiq.DeliveryID(j.job.JID, j.job.Raw)
			for i, it := range j.items {
				// One buffer for all callbacks of the write: a slice taken before
				// the buffer grows keeps pointing at the old array, still valid.
				start := len(cbuf)
				cbuf = sidekiq.AppendCallbackJob(cbuf, sidekiq.Callback{Queue: h.cfg.CallbackQueue, Class: h.cfg.CallbackClass,
					JID: callbackJID(delivery, i), At: now, Source: j.job.JID, MaskID: it.req.MaskID, MaskName: it.req.MaskName, Prediction: it.json})
				args = append(args, cbuf[start:len(cbuf):len(cbuf)])
			}
		}
		for i := 0; i < nr; i++ {
			args = append(args, j.items[i].json)
		}
	}
	for _, e := range puts {
		keys = append(keys, h.cfg.Cache.Key(e.Normalized))
		val := e.JSON
		if val == nil {
			val = e.Prediction.AppendJSON(make([]byte, 0, jsonSizeHint))
		}
		args = append(args, val)
	}
	var res writeBackResult
	attempts := 0
	var acked int64
	var waitUntil time.Time
	// With WAIT: whether an attempt may have run the script on the primary
	// (its markers set there) without its replicas' acknowledgement coming
	// back. Any failure after that is ErrNotReplicated: recording the jobs
	// in Sidekiq's retry set would find the markers, take them for another
	// delivery's and record nothing, and the task would complete unreplicated.
	mayHaveRun := false
	for {
		err := h.retry(ctx, func() error {
			attempts++
			var v any
			var err error
			if h.cfg.WaitReplicas > 0 {
				var ran bool
				v, acked, ran, err = h.writeBackWait(ctx, keys, args)
				mayHaveRun = mayHaveRun || ran
			} else {
				v, err = writeBackScript.Run(ctx, h.cfg.Redis, keys, args...).Result()
			}
			if err != nil {
				h.observe(err)
				return err
			}
			res, err = parseWriteBack(v, len(marked))
			return err
		})
		if err != nil && mayHaveRun {
			return fmt.Errorf("%w: the write-back of %d jobs may have run on the primary, but no acknowledgement of it came back: %w",
				ErrNotReplicated, len(marked), err)
		}
		if err != nil {
			return fmt.Errorf("writing cache entries and write-back: %w", err)
		}
		if h.cfg.WaitReplicas == 0 || acked >= int64(h.cfg.WaitReplicas) {
			if h.cfg.WaitReplicas > 0 {
				h.replicasShort.Store(0)
			}
			break
		}
		now := time.Now().UnixNano()
		h.replicasShort.CompareAndSwap(0, now)
		h.lastShort.Store(now)
		if waitUntil.IsZero() {
			waitUntil = time.Now().Add(h.cfg.RedisRetryFor)
			h.log.Warn("write-back not yet on enough replicas; waiting", zap.Int64("acknowledged", acked),
				zap.Int("want", h.cfg.WaitReplicas), zap.Int("jobs", len(marked)))
		}
		if time.Now().After(waitUntil) || ctx.Err() != nil {
			return fmt.Errorf("%w: %d of %d replicas acknowledged the write-back of %d jobs within %v",
				ErrNotReplicated, acked, h.cfg.WaitReplicas, len(marked), h.cfg.RedisRetryFor)
		}
		select {
		case <-h.stopping:
			return fmt.Errorf("%w: %d of %d replicas acknowledged the write-back of %d jobs when the worker began to stop",
				ErrNotReplicated, acked, h.cfg.WaitReplicas, len(marked))
		default:
		}
	}
	for i, j := range marked {
		switch {
		case res.bad[i] != "":
			j.fail = &poisonError{fmt.Errorf("%w: %q holds a Redis %s, not a list; nothing was written to it, and no callback either",
				errBadReplyKey, j.replyTo, res.bad[i])}
		case !res.wrote[i] && attempts == 1:
			// After a lost reply the marker may be this task's own: only the
			// first attempt tells a duplicate delivery.
			j.ev.Duplicate = true
		}
	}
	for _, j := range jobs {
		j.ok = j.fail == nil
	}
	return nil
}

// replicasShortFresh is how recent the last short WAIT must be for
// HandlerStats to report a stall: longer than a WAIT round (WaitTimeout,
// at most 2 s) and than asynq's 2 s before a stalled task runs again.
const replicasShortFresh = 5 * time.Second

// ErrNotReplicated: with HandlerConfig.WaitReplicas, a write-back that too
// few replicas acknowledged within RedisRetryFor, or one that may have run
// on the primary (its answer lost) and then could not be confirmed (later
// attempts failed). Its jobs are not done: the task fails and asynq runs it
// again.
var ErrNotReplicated = errors.New("write-back not acknowledged by enough replicas (WAIT)")

// WaitBarrierKey is the key the WAIT pipeline writes after the write-back
// script. WAIT waits for this connection's last write: when the script
// wrote nothing (every marker was set by an earlier run, maybe on another
// connection), the barrier still moves that point past it.
const WaitBarrierKey = "maskpredictor:wait-barrier"

// writeBackWait runs writeBackScript, the barrier write and WAIT in one
// pipeline (one connection, one node) and returns the script's answer and
// the number of replicas that acknowledged. A node that does not have the
// script yet (a new primary after a failover) gets it loaded first. ran is
// false only when the script certainly did not run: an error reply to it
// (NOSCRIPT, LOADING, OOM, READONLY…), or a pipeline never sent.
func (h *Handler) writeBackWait(ctx context.Context, keys []string, args []any) (v any, acked int64, ran bool, err error) {
	for loaded := false; ; loaded = true {
		var script *redis.Cmd
		var wait *redis.IntCmd
		_, err := h.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
			script = writeBackScript.EvalSha(ctx, p, keys, args...)
			p.Set(ctx, WaitBarrierKey, "1", time.Minute)
			// Not p.Wait (not in Pipeliner): the same command. The pipeline's
			// read timeout (go-redis' 3 s) bounds it: WaitTimeout ≤ 2 s.
			wait = redis.NewIntCmd(ctx, "wait", h.cfg.WaitReplicas, h.cfg.WaitTimeout.Milliseconds())
			_ = p.Process(ctx, wait)
			return nil
		})
		serr := script.Err()
		if serr != nil && !loaded && redis.HasErrorPrefix(serr, "NOSCRIPT") {
			if err := writeBackScript.Load(ctx, h.cfg.Redis).Err(); err != nil {
				return nil, 0, false, fmt.Errorf("loading the write-back script: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, 0, scriptMayHaveRun(serr), err
		}
		return script.Val(), wait.Val(), true, nil
	}
}

// scriptMayHaveRun tells from a script command's error whether the script
// may have run: yes unless Redis answered it with an error or the command
// was never sent (the outage gate held it back, the pool had no connection,
// the dial failed). A lost or late answer (connection reset, read timeout,
// the context ending while waiting for it) leaves it unknown: maybe.
func scriptMayHaveRun(err error) bool {
	if err == nil {
		return true
	}
	var rerr redis.Error
	var gerr *gateErr
	var oerr *net.OpError
	switch {
	case errors.As(err, &rerr), errors.As(err, &gerr), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
		return false
	case errors.As(err, &oerr) && oerr.Op == "dial":
		return false
	}
	return true
}

// observe tells the Guard about a write's error (an OOM reply stops cache
// writes for a while).
func (h *Handler) observe(err error) {
	if h.cfg.Guard != nil && err != nil {
		h.cfg.Guard.ObserveError(err)
	}
}

// errBadReplyKey: a job's reply_to key exists with another type than a list.
var errBadReplyKey = errors.New("reply_to key of the wrong type")

// writeBackResult is writeBackScript's answer, per marked job.
type writeBackResult struct {
	wrote []bool
	bad   []string // the type of its reply key, when it was left out for it
}

func parseWriteBack(v any, n int) (writeBackResult, error) {
	r := writeBackResult{wrote: make([]bool, n), bad: make([]string, n)}
	parts, ok := v.([]any)
	if !ok || len(parts) != 2 {
		return r, fmt.Errorf("write-back script answered %T, want {written, bad}", v)
	}
	written, _ := parts[0].([]any)
	for _, w := range written {
		if i, ok := w.(int64); ok && i >= 1 && int(i) <= n {
			r.wrote[i-1] = true
		}
	}
	bad, _ := parts[1].([]any)
	for k := 0; k+1 < len(bad); k += 2 {
		i, ok := bad[k].(int64)
		t, _ := bad[k+1].(string)
		if ok && i >= 1 && int(i) <= n {
			r.bad[i-1] = t
		}
	}
	return r, nil
}

// retry runs fn again while it fails because Redis is unreachable, with
// capped exponential backoff, for at most RedisRetryFor: a short outage
// (a Redis restart, a failover) then costs a delay instead of a failed
// job. Every fn must be safe to run again after a failure whose effect is
// unknown: lookups only read, and write checks its done marker first.
func (h *Handler) retry(ctx context.Context, fn func() error) error {
	err := fn()
	if err == nil || !isConnError(err) || h.cfg.RedisRetryFor <= 0 {
		return err
	}
	deadline := time.Now().Add(h.cfg.RedisRetryFor)
	d := 50 * time.Millisecond
	for attempt := 2; ; attempt++ {
		if time.Now().Add(d).After(deadline) {
			return err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		if err = fn(); err == nil || !isConnError(err) {
			if err == nil {
				h.log.Info("Redis reachable again; job goes on", zap.Int("attempt", attempt))
			}
			return err
		}
		d = min(2*d, time.Second)
	}
}

// callbackJID is a Sidekiq-shaped jid (24 hex digits) derived from the
// delivery and the name's index.
func callbackJID(delivery string, i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", delivery, i))
	return hex.EncodeToString(sum[:12])
}

func abbrev(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
