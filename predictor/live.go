package predictor

import (
	"errors"
	"sync/atomic"
	"time"
)

// Serving is one predictor in service, immutable: the CRF of a loaded model,
// or the rule fallback with the reason no model answers. Live swaps whole
// Servings, so everything a caller reads from one (predictions, version,
// health fields) belongs to the same model.
type Serving struct {
	crf      *CRF
	rules    *Rules
	source   string
	fallback string
	since    time.Time
}

// ServeCRF is a Serving for a loaded model; source says where it came from
// ("embedded", "MODEL_URI s3://…", "--model PATH").
func ServeCRF(c *CRF, source string) *Serving {
	return &Serving{crf: c, source: source, since: time.Now()}
}

// ServeRules is a Serving for the rule fallback; reason says why no model
// answers (it must not be empty: it is what health reports).
func ServeRules(r *Rules, source, reason string) *Serving {
	if reason == "" {
		reason = "no model loaded"
	}
	return &Serving{rules: r, source: source, fallback: reason, since: time.Now()}
}

// errNoPredictor is returned by a zero Serving.
var errNoPredictor = errors.New("predictor: Serving has no predictor")

// PredictWith labels a name (the CLI's and HTTP's interface).
func (s *Serving) PredictWith(name string, opt Options) (*Prediction, error) {
	switch {
	case s.crf != nil:
		return s.crf.PredictWith(name, opt)
	case s.rules != nil:
		return s.rules.PredictWith(name, opt)
	}
	return nil, errNoPredictor
}

// PredictTokens labels a name the caller already tokenized (the worker's
// interface: it tokenizes once for the cache key and the prediction).
func (s *Serving) PredictTokens(name string, toks []string) (*Prediction, error) {
	switch {
	case s.crf != nil:
		return s.crf.PredictTokens(name, toks, Options{})
	case s.rules != nil:
		if len(toks) == 0 {
			return nil, ErrNoTokens
		}
		return s.rules.PredictTokens(name, toks), nil
	}
	return nil, errNoPredictor
}

// Version is the version stamped on this Serving's predictions.
func (s *Serving) Version() string {
	switch {
	case s.crf != nil:
		return s.crf.Version()
	case s.rules != nil:
		return s.rules.Version()
	}
	return ""
}

// CRF is the model's predictor, nil on the rule fallback.
func (s *Serving) CRF() *CRF { return s.crf }

// Rules is the rule predictor, nil when a model is loaded.
func (s *Serving) Rules() *Rules { return s.rules }

// ModelLoaded is false on the rule fallback.
func (s *Serving) ModelLoaded() bool { return s.crf != nil }

// Source says where the model came from ("rules" on the fallback).
func (s *Serving) Source() string { return s.source }

// FallbackReason says why the rules answer ("" when a model is loaded).
func (s *Serving) FallbackReason() string { return s.fallback }

// Since is when this Serving was built (loaded).
func (s *Serving) Since() time.Time { return s.since }

// Live holds the Serving in service and lets a reloader replace it while
// predictions run. Every prediction loads the pointer once, so it is made
// entirely by the old model or entirely by the new one, never a mix, and
// carries that model's version. Live is safe for concurrent use and
// satisfies the worker's, the HTTP API's and the CLI's predictor interfaces.
//
// A caller that needs several predictions from one model (a batch that must
// not straddle a reload) takes Current() once and predicts with it.
type Live struct {
	cur   atomic.Pointer[Serving]
	swaps atomic.Uint64
}

// NewLive starts with s in service. s must not be nil.
func NewLive(s *Serving) *Live {
	if s == nil {
		panic("predictor.NewLive: nil Serving")
	}
	l := &Live{}
	l.cur.Store(s)
	return l
}

// Current is the Serving in service now.
func (l *Live) Current() *Serving { return l.cur.Load() }

// Swap puts s in service and returns the one it replaces. Predictions
// already running finish with the old one. A nil s is ignored.
func (l *Live) Swap(s *Serving) (old *Serving) {
	if s == nil {
		return l.cur.Load()
	}
	l.swaps.Add(1)
	return l.cur.Swap(s)
}

// Swaps counts the Swaps since NewLive.
func (l *Live) Swaps() uint64 { return l.swaps.Load() }

// PredictWith predicts with the Serving in service.
func (l *Live) PredictWith(name string, opt Options) (*Prediction, error) {
	return l.cur.Load().PredictWith(name, opt)
}

// PredictTokens predicts tokens with the Serving in service.
func (l *Live) PredictTokens(name string, toks []string) (*Prediction, error) {
	return l.cur.Load().PredictTokens(name, toks)
}

// Version is the version of the Serving in service. A prediction made just
// after may carry another version if a swap happened in between: compare
// with the prediction's own ModelVersion where it matters.
func (l *Live) Version() string { return l.cur.Load().Version() }

// ModelLoaded is false while the rule fallback answers.
func (l *Live) ModelLoaded() bool { return l.cur.Load().ModelLoaded() }

// Source is where the model in service came from.
func (l *Live) Source() string { return l.cur.Load().Source() }

// FallbackReason says why the rules answer ("" when a model is loaded).
func (l *Live) FallbackReason() string { return l.cur.Load().FallbackReason() }
