package main

import "github.com/maskpredictor/maskpredictor/predictor"

// serving is the loaded predictor as a predictor.Serving, to put in a
// predictor.Live that the reloader can swap.
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
