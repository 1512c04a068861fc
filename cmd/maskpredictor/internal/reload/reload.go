// Package reload replaces the model in service while the process runs: it
// polls the model store (the S3 object's ETag, the file's mtime) and, when
// asked (SIGHUP in cmd), fetches the model, loads and validates it off the
// hot path, and swaps it into the predictor.Live atomically. A model that
// fails validation is rejected: the old one keeps serving, and a log line
// and the Rejected counter say so.
package reload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore"
	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// DefaultPoll is how often the store is polled when Config.Poll is 0.
const DefaultPoll = 60 * time.Second

// DefaultCheckTimeout bounds one check (fetch, load, validate).
const DefaultCheckTimeout = 2 * time.Minute

// ErrInvalidModel wraps every reason a fetched model is rejected.
var ErrInvalidModel = errors.New("invalid model")

// SampleNames returns the names a new model must predict before it serves:
// common shapes, a long name, a single token, non-ASCII text.
func SampleNames() []string { return slices.Clone(sampleNames[:]) }

var sampleNames = [...]string{
	"3M Aura 9205+ N95",
	"3M 1860s",
	"Zimi ZM9233",
	"BreatheTeq - Large",
	"Honeywell DC365 N95 Small White",
	"Powecom KN95 Earloop Black (Regular)",
	"Moldex 2200N95 Medium/Large with valve",
	"Kimberly-Clark Duckbill N95 Regular, Headstrap",
	"KF94",
	"ＢＯＴＮ ＫＦ９４ 2D Kids — Pink",
	"Envo Mask Original Medium Black Adjustable Head Straps Exhalation Valve P100 Filter Reusable Elastomeric Half Facepiece Respirator",
}

// Config configures a Reloader.
type Config struct {
	// Store is where the model lives. Required.
	Store modelstore.Store
	// Live is the predictor in service. Required.
	Live *predictor.Live
	// Current is the store version of the model Live serves ("" when it
	// serves something else, such as the rule fallback: the first check
	// then loads whatever the store holds).
	Current string
	// Source labels the models this reloader loads (health, logs).
	// Default: "MODEL_URI <uri>".
	Source string
	// Limits are the predictor's per-name limits.
	Limits predictor.Limits
	// Poll is the interval between checks; 0: DefaultPoll; negative: no
	// polling (Trigger only).
	Poll time.Duration
	// CheckTimeout bounds one check. Default DefaultCheckTimeout.
	CheckTimeout time.Duration
	// Samples must all predict for a model to be accepted. Default SampleNames().
	Samples []string
	// Logger gets one line per reload, rejection and store failure streak.
	// Default: no-op.
	Logger *zap.Logger
	// OnEvent, when set, is called after every check (metrics hooks). It
	// runs on the reloader's goroutine and must not block.
	OnEvent func(Event)
}

// Outcome is what one check did.
type Outcome int

// The outcomes of a check.
const (
	// Unchanged: the store holds the model already serving.
	Unchanged Outcome = iota
	// Reloaded: a new model was swapped in.
	Reloaded
	// Rejected: the new model failed to load or validate; the old serves on.
	Rejected
	// Failed: the store could not be read (unreachable, not found); the old
	// model serves on and the next check tries again.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Unchanged:
		return "unchanged"
	case Reloaded:
		return "reloaded"
	case Rejected:
		return "rejected"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Trigger says why a check ran.
type Trigger string

// The triggers of a check.
const (
	// TriggerPoll: the poll interval elapsed; the model is fetched only if
	// the store version changed.
	TriggerPoll Trigger = "poll"
	// TriggerSignal: an operator asked (SIGHUP); the model is fetched and
	// validated even when the store version is the same.
	TriggerSignal Trigger = "signal"
)

// Event describes one check.
type Event struct {
	Outcome Outcome
	Trigger Trigger
	// StoreVersion is the version read from the store ("" if unreadable).
	StoreVersion string
	// ModelVersion is the new model's version, when it loaded.
	ModelVersion string
	// Previous is the version that served before the check.
	Previous string
	// Err is why a check was Rejected or Failed.
	Err      error
	Duration time.Duration
}

// Stats are counters since New, for /metrics and the admin page.
type Stats struct {
	Checks   uint64 // checks run
	Reloads  uint64 // models swapped in
	Rejected uint64 // models that failed to load or validate
	Failures uint64 // checks that could not read the store
	// StoreVersion is the version of the store's content last acted on.
	StoreVersion string
	LastCheck    time.Time
	LastReload   time.Time
	// LastError is the error of the last Rejected or Failed check ("" once a
	// later check succeeded).
	LastError string
}

// Reloader polls the store and swaps models. Its Name/Start/Shutdown make it
// a service of the process.
type Reloader struct {
	cfg     Config
	log     *zap.Logger
	trigger chan struct{}

	checkMu sync.Mutex // one check at a time
	seen    string     // store version acted on (guarded by checkMu)
	failing bool       // in a streak of store failures (guarded by checkMu)

	mu    sync.Mutex // guards stats
	stats Stats

	cancel context.CancelFunc
	done   chan struct{}
}

// New validates cfg and returns a stopped Reloader.
func New(cfg Config) (*Reloader, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("reload: Config.Store is required")
	case cfg.Live == nil:
		return nil, errors.New("reload: Config.Live is required")
	}
	if cfg.Poll == 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if cfg.Samples == nil {
		cfg.Samples = SampleNames()
	}
	if cfg.Source == "" {
		cfg.Source = "MODEL_URI " + cfg.Store.URI()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	r := &Reloader{
		cfg:     cfg,
		log:     cfg.Logger.With(zap.String("model_uri", cfg.Store.URI())),
		trigger: make(chan struct{}, 1),
		seen:    cfg.Current,
	}
	r.stats.StoreVersion = cfg.Current
	return r, nil
}

// Name is the service name.
func (r *Reloader) Name() string { return "model-reload" }

// Start runs the poll loop in the background until Shutdown.
func (r *Reloader) Start(ctx context.Context) error {
	if r.done != nil {
		return errors.New("reload: already started")
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	r.done = make(chan struct{})
	go r.loop(lctx)
	fields := []zap.Field{zap.String("model_version", r.cfg.Live.Version())}
	if r.cfg.Poll > 0 {
		fields = append(fields, zap.Duration("poll", r.cfg.Poll))
	} else {
		fields = append(fields, zap.String("poll", "off (SIGHUP only)"))
	}
	r.log.Info("model hot reload on", fields...)
	return nil
}

// Shutdown stops the loop, cancelling a check in progress, and waits for it.
func (r *Reloader) Shutdown(ctx context.Context) error {
	if r.done == nil {
		return nil
	}
	r.cancel()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("model reloader: %w", ctx.Err())
	}
}

// Trigger asks for a check now that fetches and validates the model even if
// its store version did not change (SIGHUP). It never blocks; triggers that
// arrive while one is pending are merged.
func (r *Reloader) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (r *Reloader) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *Reloader) loop(ctx context.Context) {
	defer close(r.done)
	var tick <-chan time.Time
	var timer *time.Timer
	if r.cfg.Poll > 0 {
		timer = time.NewTimer(jitter(r.cfg.Poll))
		defer timer.Stop()
		tick = timer.C
	}
	for {
		var trig Trigger
		select {
		case <-ctx.Done():
			return
		case <-tick:
			trig = TriggerPoll
		case <-r.trigger:
			trig = TriggerSignal
		}
		r.Check(ctx, trig)
		if timer != nil {
			timer.Reset(jitter(r.cfg.Poll))
		}
	}
}

// jitter spreads polls of many replicas over ±10 % of the interval.
func jitter(d time.Duration) time.Duration {
	span := int64(d) / 5
	if span <= 0 {
		return d
	}
	return d - time.Duration(span/2) + time.Duration(rand.Int64N(span))
}

// Check runs one check now and returns what it did. Checks are serialized.
func (r *Reloader) Check(ctx context.Context, trig Trigger) Event {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CheckTimeout)
	defer cancel()
	start := time.Now()
	ev := r.check(ctx, trig)
	ev.Trigger = trig
	ev.Duration = time.Since(start)
	r.record(ev)
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(ev)
	}
	return ev
}

func (r *Reloader) check(ctx context.Context, trig Trigger) Event {
	prev := r.cfg.Live.Version()
	ev := Event{Previous: prev}
	if trig != TriggerSignal {
		info, err := r.cfg.Store.Stat(ctx)
		if err != nil {
			return r.failed(ev, err)
		}
		ev.StoreVersion = info.Version
		if info.Version == r.seen {
			r.recovered()
			return ev // Unchanged: the cheap path of every poll
		}
	}
	obj, err := r.cfg.Store.Get(ctx)
	if err != nil {
		return r.failed(ev, err)
	}
	r.recovered()
	ev.StoreVersion = obj.Version
	c, err := Load(obj.Data, r.cfg.Limits, r.cfg.Samples)
	if c != nil {
		ev.ModelVersion = c.Version()
	}
	r.seen = obj.Version // act on each store version once, good or bad
	if err != nil {
		ev.Outcome, ev.Err = Rejected, err
		r.log.Error("new model rejected; the old model keeps serving",
			zap.String("trigger", string(trig)), zap.String("store_version", obj.Version),
			zap.String("serving_version", prev), zap.Error(err))
		return ev
	}
	if c.Version() == prev {
		r.log.Info("model unchanged", zap.String("trigger", string(trig)),
			zap.String("model_version", prev), zap.String("store_version", obj.Version))
		return ev
	}
	r.cfg.Live.Swap(predictor.ServeCRF(c, r.cfg.Source))
	ev.Outcome = Reloaded
	r.log.Info("model reloaded", zap.String("trigger", string(trig)),
		zap.String("model_version", c.Version()), zap.String("previous_version", prev),
		zap.String("store_version", obj.Version), zap.Int("bytes", len(obj.Data)))
	return ev
}

// failed logs the first failure of a streak (and a changed error), not
// every poll of an outage.
func (r *Reloader) failed(ev Event, err error) Event {
	ev.Outcome, ev.Err = Failed, err
	last := r.Stats().LastError
	if !r.failing || last != err.Error() {
		r.log.Warn("model store unreadable; the current model keeps serving",
			zap.String("serving_version", ev.Previous), zap.Error(err))
	}
	r.failing = true
	return ev
}

func (r *Reloader) recovered() {
	if r.failing {
		r.failing = false
		r.log.Info("model store readable again")
	}
}

func (r *Reloader) record(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.stats
	s.Checks++
	s.LastCheck = time.Now()
	switch ev.Outcome {
	case Reloaded:
		s.Reloads++
		s.LastReload = s.LastCheck
		s.LastError = ""
	case Rejected:
		s.Rejected++
		s.LastError = ev.Err.Error()
	case Failed:
		s.Failures++
		s.LastError = ev.Err.Error()
	case Unchanged:
		s.LastError = ""
	}
	if ev.StoreVersion != "" && ev.Outcome != Failed {
		s.StoreVersion = ev.StoreVersion
	}
}

// Load parses model bytes in any format model.Read knows and validates the
// result: every label must be one of the nine components, and every sample
// name (nil: SampleNames()) must predict without error, with a label per
// token and a confidence in [0, 1]. Errors wrap ErrInvalidModel. On a
// validation failure the CRF is returned too (its version names the
// rejected model).
func Load(data []byte, lim predictor.Limits, samples []string) (*predictor.CRF, error) {
	if samples == nil {
		samples = SampleNames()
	}
	m, err := model.Read(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	c, err := predictor.NewCRF(m, lim)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	if err := Validate(c, samples); err != nil {
		return c, err
	}
	return c, nil
}

// Validate checks a loaded model as Load does.
func Validate(c *predictor.CRF, samples []string) error {
	for _, l := range c.Model().Labels() {
		if !slices.Contains(predictor.ComponentLabels, l) {
			return fmt.Errorf("%w: label %q is not one of the components %v", ErrInvalidModel, l, predictor.ComponentLabels)
		}
	}
	for _, name := range samples {
		p, err := c.Predict(name)
		if err != nil {
			return fmt.Errorf("%w: sample %q: %w", ErrInvalidModel, name, err)
		}
		if len(p.Labels) != len(p.Tokens) || len(p.Tokens) == 0 {
			return fmt.Errorf("%w: sample %q: %d labels for %d tokens", ErrInvalidModel, name, len(p.Labels), len(p.Tokens))
		}
		if math.IsNaN(p.Confidence) || p.Confidence < 0 || p.Confidence > 1+1e-9 {
			return fmt.Errorf("%w: sample %q: confidence %v (weights not finite?)", ErrInvalidModel, name, p.Confidence)
		}
	}
	return nil
}
