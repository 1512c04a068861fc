package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// The trainer reproduces CRFsuite 0.12's `lbfgs` training of a first-order
// CRF (crf1d): the same feature generation, the same objective summed in the
// same order, and a statement-for-statement port of liblbfgs 1.10 (see
// lbfgs.go). The point is parity with the models the old service trained:
// same features, same losses in the log, same labels.
//
// Its shape follows gonum's optimize package: Settings says what to do, a
// Recorder observes progress (and may stop it by returning an error), and a
// context cancels it. Nothing is logged.

// ErrInvalidTraining is wrapped by every error about unusable training data or
// settings, so callers can tell bad input from cancellation.
var ErrInvalidTraining = errors.New("invalid training input")

// Feature is one attribute of one item: CRFsuite's (attribute, value) pair.
// A value of 0 still creates state features during training, as in CRFsuite,
// although it never contributes to a score.
type Feature struct {
	Name  string
	Value float64
}

// Example is one labelled sequence: Items[t] holds the attributes of item t
// in order, Labels[t] its true label.
type Example struct {
	Items  [][]Feature
	Labels []string
}

// Settings configure Train. The zero value of each numeric field except C1
// and C2 means "CRFsuite's default" (see WithDefaults).
type Settings struct {
	// C1 is the L1 coefficient. C1 > 0 trains with OWL-QN and a backtracking
	// line search, as CRFsuite does; 0 trains plain L-BFGS with More–Thuente.
	C1 float64
	// C2 is the L2 coefficient: the objective adds C2·‖w‖².
	C2 float64
	// MaxIterations bounds the number of L-BFGS iterations (default 100).
	MaxIterations int
	// NumMemories is the number of corrections L-BFGS keeps (default 6).
	NumMemories int
	// Epsilon stops training once ‖g‖ / max(1, ‖w‖) ≤ Epsilon (default 1e-5).
	Epsilon float64
	// Period and Delta stop training once the loss improved by less than
	// Delta (relative) over the last Period iterations (defaults 10, 1e-5).
	Period int
	Delta  float64
	// PossibleTransitions creates all L×L transition features instead of
	// only the observed ones (CRFsuite's feature.possible_transitions).
	PossibleTransitions bool
	// FeatureSet names the featurizer that produced the attributes; it is
	// recorded in the model's Meta.
	FeatureSet string
	// Recorder, if set, sees every iteration; nil trains silently.
	Recorder Recorder
}

// CRFsuite's defaults for the L-BFGS trainer (MaxIterations is the value
// the service always passed; CRFsuite's own default is unlimited).
const (
	DefaultMaxIterations = 100
	DefaultNumMemories   = 6
	DefaultEpsilon       = 1e-5
	DefaultPeriod        = 10
	DefaultDelta         = 1e-5
)

// WithDefaults returns s with every zero numeric field other than C1 and C2
// replaced by CRFsuite's default. C1 and C2 stay as given: 0 is a meaningful
// choice for them (no L1, no L2).
func (s Settings) WithDefaults() Settings {
	if s.MaxIterations == 0 {
		s.MaxIterations = DefaultMaxIterations
	}
	if s.NumMemories == 0 {
		s.NumMemories = DefaultNumMemories
	}
	if s.Epsilon == 0 {
		s.Epsilon = DefaultEpsilon
	}
	if s.Period == 0 {
		s.Period = DefaultPeriod
	}
	if s.Delta == 0 {
		s.Delta = DefaultDelta
	}
	return s
}

// validate reports the first problem with s (after WithDefaults).
func (s Settings) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidTraining, fmt.Sprintf(format, args...))
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(s.C1) || s.C1 < 0:
		return bad("c1 = %v: the L1 coefficient must be a finite number ≥ 0", s.C1)
	case !finite(s.C2) || s.C2 < 0:
		return bad("c2 = %v: the L2 coefficient must be a finite number ≥ 0", s.C2)
	case s.MaxIterations < 0:
		return bad("max iterations = %d: must be ≥ 1 (0 means the default, %d)", s.MaxIterations, DefaultMaxIterations)
	case s.NumMemories < 0:
		return bad("num memories = %d: must be ≥ 1 (0 means the default, %d)", s.NumMemories, DefaultNumMemories)
	case !finite(s.Epsilon) || s.Epsilon < 0:
		return bad("epsilon = %v: must be a finite number > 0 (0 means the default, %g)", s.Epsilon, DefaultEpsilon)
	case s.Period < 0:
		return bad("period = %d: must be ≥ 1 (0 means the default, %d)", s.Period, DefaultPeriod)
	case !finite(s.Delta) || s.Delta < 0:
		return bad("delta = %v: must be a finite number > 0 (0 means the default, %g)", s.Delta, DefaultDelta)
	}
	return nil
}

// validateData reports the first unusable sequence, with its position, so
// that the caller can find it in the input.
func validateData(data []Example) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: no training sequences", ErrInvalidTraining)
	}
	for i, ex := range data {
		switch {
		case len(ex.Items) == 0:
			return fmt.Errorf("%w: sequence %d has no items", ErrInvalidTraining, i)
		case len(ex.Labels) != len(ex.Items):
			return fmt.Errorf("%w: sequence %d has %d items but %d labels", ErrInvalidTraining, i, len(ex.Items), len(ex.Labels))
		}
		for t, item := range ex.Items {
			for _, f := range item {
				if math.IsNaN(f.Value) || math.IsInf(f.Value, 0) {
					return fmt.Errorf("%w: sequence %d item %d: attribute %q has value %v; values must be finite",
						ErrInvalidTraining, i, t, f.Name, f.Value)
				}
			}
		}
	}
	return nil
}

// Progress is what a Recorder sees after each iteration; the fields are the
// ones CRFsuite's training log prints.
type Progress struct {
	// Iteration counts from 1.
	Iteration int
	// Loss is the objective: negative log-likelihood + C2‖w‖² + C1‖w‖₁.
	Loss float64
	// ActiveFeatures counts the non-zero weights.
	ActiveFeatures int
	// XNorm is ‖w‖; GNorm is the norm of the gradient (of the
	// pseudo-gradient under OWL-QN).
	XNorm, GNorm float64
	// Step is the step the line search accepted.
	Step float64
	// Evaluations is the number of objective evaluations this iteration's
	// line search made (CRFsuite's "Line search trials").
	Evaluations int
	// Elapsed is the wall time since Train started.
	Elapsed time.Duration
}

// Recorder observes training. A non-nil error from Record stops training;
// Train then returns it wrapped.
type Recorder interface {
	Record(Progress) error
}

// Train fits a CRF to data the way CRFsuite 0.12's lbfgs trainer does and
// returns the model with the features whose weight is not exactly zero.
//
// The result is deterministic: the same data and settings give the same
// weights bit for bit, on any machine (the arithmetic is sequential, never
// fused into FMAs, and exp/log are portable; see train_math.go).
//
// Training ends, as in CRFsuite, at MaxIterations, on the Epsilon or
// Period/Delta test, or when the line search fails; the last case is not an
// error either, and the model then holds the weights of the last completed
// iteration. Meta.Extra["stop_reason"] says which ("max_iterations",
// "converged", "delta", "linesearch_…") and Meta.Extra["features_generated"]
// counts the features before zero weights were dropped.
//
// Cancelling ctx stops training within one objective evaluation; the error
// then wraps ctx.Err(). A Recorder error stops it after the iteration it was
// reporting; the error then wraps the Recorder's.
func Train(ctx context.Context, data []Example, s Settings) (*Model, error) {
	s = s.WithDefaults()
	if err := s.validate(); err != nil {
		return nil, err
	}
	if err := validateData(data); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("training not started: %w", err)
	}
	start := time.Now()
	ts, err := newTrainSet(data, s.PossibleTransitions)
	if err != nil {
		return nil, err
	}
	obj := newCRFObjective(ctx, ts, s.C2)

	params := defaultLBFGSParams()
	params.m = s.NumMemories
	params.epsilon = s.Epsilon
	params.past = s.Period
	params.delta = s.Delta
	params.maxIterations = s.MaxIterations
	params.orthantwiseC = s.C1

	// CRFsuite keeps the weights of the last completed iteration (best_w in
	// train_lbfgs.c), so a failed line search still yields that model.
	x := make([]float64, ts.K)
	best := make([]float64, ts.K)
	iterations, loss := 0, math.NaN()
	var recErr error
	progress := func(it *lbfgsIteration) error {
		active := 0
		for i, v := range it.x {
			best[i] = v
			if v != 0 {
				active++
			}
		}
		iterations, loss = it.k, it.fx
		if s.Recorder == nil {
			return nil
		}
		recErr = s.Recorder.Record(Progress{
			Iteration:      it.k,
			Loss:           it.fx,
			ActiveFeatures: active,
			XNorm:          it.xnorm,
			GNorm:          it.gnorm,
			Step:           it.step,
			Evaluations:    it.ls,
			Elapsed:        time.Since(start),
		})
		return recErr
	}
	_, status, err := lbfgsMinimize(x, lbfgsProblem{evaluate: obj.evaluate, progress: progress}, params)
	switch {
	case err != nil && recErr != nil:
		return nil, fmt.Errorf("training stopped by the recorder after iteration %d: %w", iterations, err)
	case err != nil:
		return nil, fmt.Errorf("training cancelled after %d iterations: %w", iterations, err)
	}
	if iterations == 0 {
		// No iteration completed: CRFsuite keeps the initial (zero) weights.
		loss = obj.firstLoss
	}

	algorithm := "lbfgs"
	if s.C1 > 0 {
		algorithm = "owlqn"
	}
	meta := Meta{
		FeatureSet: s.FeatureSet,
		Source:     "maskpredictor train",
		Training: &TrainingParams{
			Algorithm:           algorithm,
			C1:                  s.C1,
			C2:                  s.C2,
			MaxIterations:       s.MaxIterations,
			NumMemories:         s.NumMemories,
			Epsilon:             s.Epsilon,
			Period:              s.Period,
			Delta:               s.Delta,
			PossibleTransitions: s.PossibleTransitions,
			Iterations:          iterations,
			Loss:                loss,
			Sequences:           len(data),
			Items:               ts.items,
		},
		Extra: map[string]string{
			"stop_reason":        status.String(),
			"features_generated": strconv.Itoa(ts.K),
		},
	}
	m, err := ts.buildModel(best, meta)
	if err != nil {
		return nil, fmt.Errorf("building the trained model: %w", err)
	}
	return m, nil
}
