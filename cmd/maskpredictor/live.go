package main

import (
	"context"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// loadFull loads the model (loadStatic: --model, MODEL_URI, the embedded
// model, or the rule fallback) and puts it in a predictor.Live, so that the
// hot reload can swap it while the worker and HTTP predict: l.p and l.live
// are that holder.
func (mf *modelFlags) loadFull(ctx context.Context, sys IO, lim predictor.Limits) (loaded, error) {
	l, err := mf.loadStatic(ctx, sys, lim)
	if err != nil {
		return l, err
	}
	l.live = predictor.NewLive(l.serving())
	l.p = l.live
	return l, nil
}

// serving is the loaded predictor as a predictor.Serving.
func (l loaded) serving() *predictor.Serving {
	if l.crf != nil {
		return predictor.ServeCRF(l.crf, l.source)
	}
	r, ok := l.p.(*predictor.Rules)
	if !ok {
		r = predictor.DefaultRules(predictor.Limits{})
	}
	return predictor.ServeRules(r, l.source, l.fallback)
}
