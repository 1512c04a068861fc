// Package httpapi is maskpredictor's HTTP API: the old Flask service's
// /health, /predict and /predict_batch, the Lambda event shapes on /invoke
// (HandleInvoke, reused by the Lambda entry point), and /metrics.
//
// Every answer is JSON. Bad input is a 4xx with {"error": "…"}, never a
// 500; the error strings of the old service are kept where Rails code may
// compare them ("mask_name required", "mask_names array required").
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// Predictor labels mask names: the CRF, the rule fallback, or a holder that
// swaps models at run time. It must be safe for concurrent use.
type Predictor interface {
	PredictWith(name string, opt predictor.Options) (*predictor.Prediction, error)
	// Version is the model version stamped on predictions; cache entries of
	// another version are misses.
	Version() string
}

// Status describes the predictor that is serving, for /health, /metrics
// and the admin page. It is asked for on every call, so a predictor that is
// swapped at run time is reported as it is now.
type Status struct {
	ModelLoaded    bool   // false: the rule fallback answers
	ModelVersion   string // Predictor.Version()
	ModelSource    string // "embedded", "MODEL_URI …", "--model …", "rules"
	FallbackReason string // why the rules answer ("" when a model is loaded)
}

// StatusFunc reports the current Status.
type StatusFunc func() Status

// Defaults of EngineConfig.
const (
	DefaultMaxNames     = 1000
	DefaultCacheTimeout = 100 * time.Millisecond
	DefaultMemoTTL      = 10 * time.Second
	// cacheBackoff is how long the cache is bypassed after a Redis error, so
	// an outage costs one timeout per interval instead of one per request.
	cacheBackoff = time.Second
)

// EngineConfig configures an Engine.
type EngineConfig struct {
	// Predictor answers cache misses. Required.
	Predictor Predictor
	// Cache, when set, is read before predicting and written after (the
	// Redis cache Rails reads). Redis errors never fail a request: the name
	// is predicted and the error is logged (at most once per second).
	Cache *cache.Cache
	// CacheTimeout bounds each cache round trip. Default 100 ms.
	CacheTimeout time.Duration
	// MemoSize, when positive, keeps up to that many recent cache answers
	// in process for MemoTTL (default 10 s), so that a hot name costs no
	// Redis round trip. Only used with a Cache.
	MemoSize int
	MemoTTL  time.Duration
	// Guard, when set, is asked before every cache write: no write under
	// Redis memory pressure, after an OOM reply, or beyond its byte budget
	// (the name is answered all the same; the skipped write is counted).
	// Reads are never held back by it.
	Guard *cache.Guard
	// Limits bound each name (default predictor.DefaultLimits); they are
	// checked before the cache is asked, so a cached entry cannot bypass them.
	Limits predictor.Limits
	// MaxNames is the most names one batch may ask for. Default 1000.
	MaxNames int
	// BatchNames bounds the names of batches (PredictBatch) in flight in
	// the process at once (default DefaultBatchNames(MaxNames); negative:
	// no bound). A batch that finds no room within BatchWait (default 1 s)
	// fails with a *BusyError; at most BatchNames more names wait, beyond
	// that a batch fails at once. Single names are not bounded.
	BatchNames int
	BatchWait  time.Duration
	// Metrics, when set, counts predictions by source and times them.
	Metrics *Metrics
	// Recent, when set, remembers served predictions for the admin page.
	Recent *Recent
	// Logger gets cache errors. Default: no-op.
	Logger *zap.Logger
}

// Engine answers names: limits, the cache, the predictor, metrics. It is
// what the HTTP handlers and HandleInvoke share. Safe for concurrent use.
type Engine struct {
	cfg       EngineConfig
	log       *zap.Logger
	memo      *memo
	batches   *weighted    // nil: no bound
	singles   atomic.Int64 // single-name requests begun, which paced batches give way to
	cacheDown atomic.Int64 // unix nanos until which the cache is bypassed
	lastLog   atomic.Int64 // unix nanos of the last cache error logged
}

// NewEngine returns an engine for cfg.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.Predictor == nil {
		return nil, errors.New("httpapi: EngineConfig.Predictor is required")
	}
	if cfg.CacheTimeout <= 0 {
		cfg.CacheTimeout = DefaultCacheTimeout
	}
	if cfg.MaxNames <= 0 {
		cfg.MaxNames = DefaultMaxNames
	}
	if cfg.BatchNames == 0 {
		cfg.BatchNames = DefaultBatchNames(cfg.MaxNames)
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = DefaultBatchWait
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	e := &Engine{cfg: cfg, log: cfg.Logger}
	if cfg.BatchNames > 0 {
		e.batches = newWeighted(int64(cfg.BatchNames))
	}
	if cfg.Cache != nil {
		if cfg.MemoTTL <= 0 {
			cfg.MemoTTL = DefaultMemoTTL
		}
		e.memo = newMemo(cfg.MemoSize, cfg.MemoTTL)
	}
	return e, nil
}

// Predictor is the engine's predictor.
func (e *Engine) Predictor() Predictor { return e.cfg.Predictor }

// InputError is a name or request the caller must fix (a 400). Its message
// is what the client sees.
type InputError struct {
	Msg   string
	Index int // the name's index in a batch, -1 for a single name
	Err   error
}

func (e *InputError) Error() string { return e.Msg }
func (e *InputError) Unwrap() error { return e.Err }

func isInputErr(err error) bool {
	return errors.Is(err, predictor.ErrNoTokens) || errors.Is(err, predictor.ErrTooLong) ||
		errors.Is(err, predictor.ErrTooManyTokens) || errors.Is(err, predictor.ErrInvalidUTF8)
}

// nameErr turns a predictor error for name i (-1: the only one) into an
// InputError when the name is at fault, or wraps it otherwise.
func nameErr(err error, i int) error {
	if !isInputErr(err) {
		if i >= 0 {
			return fmt.Errorf("predicting mask_names[%d]: %w", i, err)
		}
		return fmt.Errorf("predicting mask_name: %w", err)
	}
	msg := err.Error()
	if i >= 0 {
		msg = fmt.Sprintf("mask_names[%d]: %s", i, msg)
	}
	return &InputError{Msg: msg, Index: i, Err: err}
}

func (e *Engine) cacheUsable(now time.Time) bool {
	return e.cfg.Cache != nil && now.UnixNano() >= e.cacheDown.Load()
}

func (e *Engine) cacheFailed(err error, op string, n int) {
	now := time.Now()
	e.cacheDown.Store(now.Add(cacheBackoff).UnixNano())
	if m := e.cfg.Metrics; m != nil {
		m.cacheErrors.Inc()
	}
	last := e.lastLog.Load()
	if now.UnixNano()-last >= int64(time.Second) && e.lastLog.CompareAndSwap(last, now.UnixNano()) {
		e.log.Warn("prediction cache unavailable; predicting without it",
			zap.String("op", op), zap.Int("names", n), zap.Duration("bypass", cacheBackoff), zap.Error(err))
	}
}

// pin returns the predictor to use for one request. A holder swapped by hot
// reload (predictor.Live) is asked once, so the cache check and every name
// of a batch use the same model, and one answer never carries two versions.
func (e *Engine) pin() Predictor {
	if l, ok := e.cfg.Predictor.(*predictor.Live); ok {
		return l.Current()
	}
	return e.cfg.Predictor
}

// Predict answers one name.
func (e *Engine) Predict(ctx context.Context, name string) (*predictor.Prediction, error) {
	e.singles.Add(1) // batches in flight now rest between names (pacer)
	pr := e.pin()
	if !e.cacheUsable(time.Now()) {
		return e.predict(pr, name, "", -1)
	}
	toks, err := e.cfg.Limits.Check(name)
	if err != nil {
		return nil, nameErr(err, -1)
	}
	norm := predictor.Normalize(name)
	if norm == "" { // every token vanished under NFKC: no cache entry
		return e.predict(pr, name, norm, -1)
	}
	version := pr.Version()
	now := time.Now()
	if m := e.memo.get(norm, version, now); m != nil {
		if ans, ok := cache.Answer(m, name, norm, toks); ok {
			e.served(ans, sourceCache, 0)
			return ans, nil
		}
	}
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CacheTimeout)
	cached, err := within(cctx, func() (*predictor.Prediction, error) {
		p, ok, err := e.cfg.Cache.Get(cctx, norm, version)
		if !ok {
			p = nil
		}
		return p, err
	})
	ok := cached != nil
	cancel()
	switch {
	case err != nil:
		e.cacheFailed(err, "get", 1)
	case ok:
		if ans, ok := cache.Answer(cached, name, norm, toks); ok {
			e.memo.put(norm, cached, now)
			e.served(ans, sourceCache, 0)
			return ans, nil
		}
	}
	if m := e.cfg.Metrics; m != nil && err == nil {
		m.cacheMissHTTP.Add(1)
	}
	p, perr := e.predict(pr, name, norm, -1)
	if perr != nil {
		return nil, perr
	}
	if err == nil {
		e.store(ctx, []cache.Entry{{Normalized: norm, Prediction: p}}, now)
	}
	return p, nil
}

// store writes entries to the cache, as far as the guard allows, and
// remembers the ones written in the memo. A write refused by the guard or
// by Redis' OOM reply is skipped (counted, not an error): reads go on.
func (e *Engine) store(ctx context.Context, entries []cache.Entry, now time.Time) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.CacheTimeout)
	defer cancel()
	if g := e.cfg.Guard; g != nil {
		why, err := within(cctx, func() (cache.Reason, error) {
			if ok, why := g.Writable(cctx); !ok {
				return why, nil
			}
			return cache.ReasonNone, nil
		})
		if err != nil {
			e.cacheFailed(err, "put", len(entries))
			return
		}
		if why != cache.ReasonNone {
			e.skipped(why, len(entries))
			return
		}
		k := 0
		for _, en := range entries {
			en.JSON = en.Prediction.AppendJSON(make([]byte, 0, 512))
			if !g.Reserve(e.cfg.Cache.Cost(en.Normalized, en.JSON)) {
				e.skipped(cache.ReasonBudget, 1)
				continue
			}
			entries[k] = en
			k++
		}
		entries = entries[:k]
		if len(entries) == 0 {
			return
		}
	}
	if _, err := within(cctx, func() (struct{}, error) { return struct{}{}, e.cfg.Cache.PutMany(cctx, entries) }); err != nil {
		if cache.IsOOM(err) { // Redis is full: not a reason to stop reading it
			if g := e.cfg.Guard; g != nil {
				g.ObserveError(err)
			}
			e.skipped(cache.ReasonOOM, len(entries))
			return
		}
		e.cacheFailed(err, "put", len(entries))
		return
	}
	for _, en := range entries {
		e.memo.put(en.Normalized, en.Prediction, now)
	}
}

func (e *Engine) skipped(why cache.Reason, n int) {
	if m := e.cfg.Metrics; m != nil {
		m.ObserveCacheWriteSkipped(OriginHTTP, string(why), n)
	}
}

// predict runs the predictor on name (index i of a batch, -1 alone).
// norm is the normalized name when already known.
func (e *Engine) predict(pr Predictor, name, norm string, i int) (*predictor.Prediction, error) {
	start := time.Now()
	p, err := pr.PredictWith(name, predictor.Options{})
	if err != nil {
		return nil, nameErr(err, i)
	}
	if norm == "" {
		norm = predictor.Normalize(name)
	}
	p.NormalizedName = norm
	src := sourceModel
	if p.Fallback {
		src = sourceFallback
	}
	e.served(p, src, time.Since(start))
	return p, nil
}

// prediction sources, the label values of maskpredictor_predictions_total
const (
	sourceModel    = "model"
	sourceFallback = "fallback"
	sourceCache    = "cache"
)

func (e *Engine) served(p *predictor.Prediction, src string, d time.Duration) {
	if m := e.cfg.Metrics; m != nil {
		m.observePrediction(src, d)
	}
	if r := e.cfg.Recent; r != nil && !p.Fallback {
		r.Add(p)
	}
}

// PredictBatch answers names in order. The batch is answered whole or not
// at all: the first bad name is an InputError naming its index.
func (e *Engine) PredictBatch(ctx context.Context, names []string) ([]*predictor.Prediction, error) {
	if len(names) > e.cfg.MaxNames {
		return nil, &InputError{Msg: fmt.Sprintf("too many mask_names: %d (limit %d)", len(names), e.cfg.MaxNames), Index: -1}
	}
	out := make([]*predictor.Prediction, len(names))
	if len(names) == 0 {
		return out, nil
	}
	if e.batches != nil {
		n := int64(len(names))
		if !e.batches.acquire(ctx, n, e.cfg.BatchWait) {
			if m := e.cfg.Metrics; m != nil {
				m.batchBusy.Inc()
			}
			return nil, &BusyError{RetryAfter: time.Second}
		}
		defer e.batches.release(n)
	}
	pr := e.pin()
	pace := pacer{singles: &e.singles}
	if !e.cacheUsable(time.Now()) {
		for i, n := range names {
			if err := pace.yield(ctx, i); err != nil {
				return nil, err
			}
			p, err := e.predict(pr, n, "", i)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	}
	// Validate every name first, then one MGET for all.
	toks := make([][]string, len(names))
	norms := make([]string, len(names))
	var keyed []string
	var idx []int
	for i, n := range names {
		t, err := e.cfg.Limits.Check(n)
		if err != nil {
			return nil, nameErr(err, i)
		}
		toks[i], norms[i] = t, predictor.Normalize(n)
		if norms[i] != "" {
			keyed = append(keyed, norms[i])
			idx = append(idx, i)
		}
	}
	version := pr.Version()
	now := time.Now()
	if e.memo != nil {
		k := 0
		for j, i := range idx {
			if m := e.memo.get(keyed[j], version, now); m != nil {
				if ans, ok := cache.Answer(m, names[i], norms[i], toks[i]); ok {
					out[i] = ans
					e.served(ans, sourceCache, 0)
					continue
				}
			}
			keyed[k], idx[k] = keyed[j], i
			k++
		}
		keyed, idx = keyed[:k], idx[:k]
	}
	var err error
	if len(keyed) > 0 {
		cctx, cancel := context.WithTimeout(ctx, e.cfg.CacheTimeout)
		var cached []*predictor.Prediction
		cached, err = within(cctx, func() ([]*predictor.Prediction, error) { return e.cfg.Cache.GetMany(cctx, keyed, version) })
		cancel()
		if err != nil {
			e.cacheFailed(err, "mget", len(keyed))
			cached = nil
		}
		for k, c := range cached {
			i := idx[k]
			if c == nil {
				continue
			}
			if ans, ok := cache.Answer(c, names[i], norms[i], toks[i]); ok {
				e.memo.put(keyed[k], c, now)
				out[i] = ans
				e.served(ans, sourceCache, 0)
			}
		}
	}
	var puts []cache.Entry
	for i, n := range names {
		if out[i] != nil {
			continue
		}
		if m := e.cfg.Metrics; m != nil && err == nil {
			m.cacheMissHTTP.Add(1)
		}
		if err := pace.yield(ctx, i); err != nil {
			return nil, err
		}
		p, perr := e.predict(pr, n, norms[i], i)
		if perr != nil {
			return nil, perr
		}
		out[i] = p
		if norms[i] != "" {
			puts = append(puts, cache.Entry{Normalized: norms[i], Prediction: p})
		}
	}
	if err == nil && len(puts) > 0 {
		e.store(ctx, puts, now)
	}
	return out, nil
}

// batchYield is how many names a batch predicts before it lets other
// goroutines run (a long name takes ~0.2 ms): a single /predict waiting for
// a CPU that a batch holds waits about that long, not the scheduler's
// 10 ms time slice. A batch whose caller has gone (ctx done) stops there.
const batchYield = 8

// batchDuty is the share of a CPU a batch may use while single requests are
// being answered: after each batchYield names during which a single request
// began, it rests as long as the remaining share of the time they took. A
// batch flood then leaves CPU time to single requests (measured: their p99
// 5–7× its baseline without, about 2× with; BENCHMARKS.md), while a batch
// alone runs at full speed.
const batchDuty = 0.5

// pacer paces one batch's predictions (see batchYield, batchDuty).
type pacer struct {
	singles *atomic.Int64 // Engine.singles
	seen    int64
	since   time.Time
	rested  time.Duration // the rests it decided on (what its test reads)
}

func (p *pacer) yield(ctx context.Context, i int) error {
	if p.since.IsZero() {
		p.since, p.seen = time.Now(), p.singles.Load()
	}
	if i%batchYield != batchYield-1 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("batch abandoned after %d names: %w", i+1, err)
	}
	var rest time.Duration
	if n := p.singles.Load(); n != p.seen { // singles are being answered: give way
		p.seen = n
		rest = time.Duration(float64(time.Since(p.since)) * (1 - batchDuty) / batchDuty)
	}
	if rest > 50*time.Microsecond {
		p.rested += rest
		t := time.NewTimer(rest)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("batch abandoned after %d names: %w", i+1, ctx.Err())
		}
	} else {
		runtime.Gosched()
	}
	p.since = time.Now()
	return nil
}

// BatchNames is the bound on batch names in flight (0: none).
func (e *Engine) BatchNames() int {
	if e.batches == nil {
		return 0
	}
	return int(e.batches.size)
}

// BatchBusy reports whether a batch would be refused now without waiting
// (the queue of waiting names is full), so that a server can answer before
// reading its body.
func (e *Engine) BatchBusy() bool {
	return e.batches != nil && e.batches.saturated()
}

// BatchNamesInFlight is the number of batch names being worked now.
func (e *Engine) BatchNamesInFlight() int64 {
	if e.batches == nil {
		return 0
	}
	return e.batches.inFlight()
}

// Forget drops the in-process answer for a normalized name, so the next
// request reads Redis (where a label just stored answers). Other processes
// see the label within their memo's TTL.
func (e *Engine) Forget(normalized string) { e.memo.forget(normalized) }

// within runs fn, a Redis call bounded by ctx, and returns its answer, or
// ctx's error as soon as ctx ends. go-redis does not cut a read short at
// the context's deadline (ContextTimeoutEnabled is off: cutting a read
// short closes the connection, and a slow Redis would then get a new
// connection per request), so against a Redis that hangs a call waits the
// client's whole read timeout (3 s), and CacheTimeout (100 ms) would not
// bound /predict. The abandoned call ends in the background within that
// read timeout and gives its connection back; calls that find the pool
// taken meanwhile give up at their own deadline, so at most the pool's
// connections wait on the hung Redis.
func within[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type answer struct {
		v   T
		err error
	}
	done := make(chan answer, 1)
	go func() {
		v, err := fn()
		done <- answer{v, err}
	}()
	select {
	case a := <-done:
		return a.v, a.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
