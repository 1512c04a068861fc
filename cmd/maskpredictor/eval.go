package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/maskpredictor/maskpredictor/predictor"
)

func runEval(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("eval", sys)
	var mf modelFlags
	mf.register(fs)
	var data stringList
	fs.Var(&data, "data", "labelled names in the Rails export format (required; repeat for several files: for the same normalized name a later file wins)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	maxErrors := fs.Int("errors", 30, "wrong names to list in the text report (-1: all)")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if len(data) == 0 {
		return fmt.Errorf("%w: --data is required", errUsage)
	}
	p, err := mf.load(ctx, sys, predictor.Limits{MaxChars: 1 << 20, MaxTokens: 1 << 20})
	if err != nil {
		return err
	}
	ds, err := loadDatasets(data, sys)
	if err != nil {
		return err
	}
	rep, err := evaluate(p, ds)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(sys.Stdout).Encode(rep)
	}
	return rep.WriteText(sys.Stdout, *maxErrors)
}

func evaluate(p namePredictor, ds *predictor.Dataset) (predictor.Report, error) {
	sc := predictor.NewScorer()
	for i, r := range ds.Records {
		pred, err := p.PredictWith(r.MaskName, predictor.Options{})
		if err != nil {
			return predictor.Report{}, fmt.Errorf("record %d (%q): %w", i, r.MaskName, err)
		}
		sc.Add(r.MaskName, r.Tokens, r.Labels, pred.Labels)
	}
	return sc.Report(), nil
}
