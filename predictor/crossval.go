package predictor

import (
	"context"
	"fmt"

	"github.com/maskpredictor/maskpredictor/model"
)

// CrossValidate trains k models, record i held out by model i mod k (the
// fold rule of the CRFsuite reference figures), and scores the pooled
// out-of-fold predictions.
func CrossValidate(ctx context.Context, recs []Record, fs FeatureSet, s model.Settings, k int) (Report, error) {
	if k < 2 || k > len(recs) {
		return Report{}, fmt.Errorf("cross-validation: %d folds for %d records", k, len(recs))
	}
	s.FeatureSet = fs.Name()
	preds := make([][]string, len(recs))
	for fold := 0; fold < k; fold++ {
		var train []Record
		for i, r := range recs {
			if i%k != fold {
				train = append(train, r)
			}
		}
		m, err := model.Train(ctx, Examples(train, fs), s)
		if err != nil {
			return Report{}, fmt.Errorf("training fold %d: %w", fold, err)
		}
		c, err := newCRFWith(m, fs, Limits{MaxChars: 1 << 20, MaxTokens: 1 << 20})
		if err != nil {
			return Report{}, err
		}
		for i := fold; i < len(recs); i += k {
			p, err := c.PredictTokens(recs[i].MaskName, recs[i].Tokens, Options{})
			if err != nil {
				return Report{}, fmt.Errorf("fold %d, record %d: %w", fold, i, err)
			}
			preds[i] = p.Labels
		}
	}
	sc := NewScorer()
	for i, r := range recs {
		sc.Add(r.MaskName, r.Tokens, r.Labels, preds[i])
	}
	return sc.Report(), nil
}
