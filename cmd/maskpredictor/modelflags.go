package main

import (
	"context"
	"flag"
	"fmt"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// namePredictor is what the subcommands need of a predictor: the CRF or the
// rule fallback.
type namePredictor interface {
	PredictWith(name string, opt predictor.Options) (*predictor.Prediction, error)
	Version() string
}

// modelFlags are the flags that choose a model.
type modelFlags struct {
	path  string
	rules bool
}

func (mf *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&mf.path, "model", "", "model file: native, CRFsuite or sklearn-crfsuite pickle; 'default' is the embedded model (default: $MODEL_URI, else the embedded model)")
	fs.BoolVar(&mf.rules, "rules", false, "use the rule-based fallback predictor instead of a model")
}

// loaded says which predictor is serving and, for the fallback, why.
type loaded struct {
	p        namePredictor
	crf      *predictor.CRF // nil on the rule fallback
	source   string         // "--model PATH", "MODEL_URI …", "embedded", "rules"
	fallback string         // why the rules answer ("" when a model loaded)
	// storeVersion is MODEL_URI's version (S3 ETag, file mtime) of the
	// bytes loaded, so the hot reload does not fetch them again.
	storeVersion string
	// live holds p for the hot reload (loadFull); p is live then.
	live *predictor.Live
}

// load returns the predictor the flags and environment ask for.
func (mf *modelFlags) load(ctx context.Context, sys IO, lim predictor.Limits) (namePredictor, error) {
	l, err := mf.loadFull(ctx, sys, lim)
	if err != nil {
		return nil, err
	}
	return l.p, nil
}

// loadStatic loads the model. An explicit --model that cannot load is an
// error (the user asked for that file); MODEL_URI that cannot load, or a
// broken embedded model, falls back to the rules with one warning.
// loadFull (live.go) puts the result in a predictor.Live.
func (mf *modelFlags) loadStatic(ctx context.Context, sys IO, lim predictor.Limits) (loaded, error) {
	rules := func(why string) loaded {
		return loaded{p: predictor.DefaultRules(lim), source: "rules", fallback: why}
	}
	if mf.rules {
		return rules("--rules given"), nil
	}
	var (
		m       *model.Model
		err     error
		source  string
		version string
	)
	switch {
	case isEmbeddedModelArg(mf.path):
		source = "embedded (--model " + mf.path + ")"
		m, err = predictor.DefaultModel()
		if err != nil { // asked for explicitly: an error, as for a file
			return loaded{}, fmt.Errorf("loading --model %s: %w", mf.path, err)
		}
	case mf.path != "":
		source = "--model " + mf.path
		if m, err = model.Load(mf.path); err != nil {
			return loaded{}, fmt.Errorf("loading --model: %w", err)
		}
	case sys.Env("MODEL_URI") != "":
		uri := sys.Env("MODEL_URI")
		source = "MODEL_URI " + uri
		m, version, err = loadURI(ctx, sys, uri)
	default:
		source = "embedded"
		m, err = predictor.DefaultModel()
	}
	if err == nil {
		var c *predictor.CRF
		if c, err = predictor.NewCRF(m, lim); err == nil {
			return loaded{p: c, crf: c, source: source, storeVersion: version}, nil
		}
	}
	why := fmt.Sprintf("%s: %v", source, err)
	logger(sys).Warn("model could not be loaded; answering with the rule-based fallback predictor",
		zap.String("source", source), zap.Error(err))
	return rules(why), nil
}
