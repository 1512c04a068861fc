package predictor

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/maskpredictor/maskpredictor/model"
)

// GroupBy says which records cross-validation keeps together in one fold.
type GroupBy string

const (
	// GroupNone puts record i in fold i mod K (the fold rule of the
	// CRFsuite reference figures).
	GroupNone GroupBy = "none"
	// GroupMaker keeps every name of one maker (see Maker) in one fold, so
	// each fold is scored by a model that never saw its makers.
	GroupMaker GroupBy = "maker"
)

// GroupByNames lists the accepted GroupBy values.
func GroupByNames() []string { return []string{string(GroupNone), string(GroupMaker)} }

// ParseGroupBy returns the GroupBy named s.
func ParseGroupBy(s string) (GroupBy, error) {
	switch g := GroupBy(s); g {
	case GroupNone, GroupMaker:
		return g, nil
	}
	return "", fmt.Errorf("unknown grouping %q (known: %s)", s, strings.Join(GroupByNames(), ", "))
}

// Maker is the maker of a labelled name: its tokens labelled brand,
// normalized (Normalize) and joined by a space; the first normalized token
// when no token is labelled brand.
func Maker(r Record) string {
	var parts []string
	for i, l := range r.Labels {
		if l == "brand" && i < len(r.Tokens) {
			parts = append(parts, Normalize(r.Tokens[i]))
		}
	}
	if len(parts) == 0 && len(r.Tokens) > 0 {
		parts = append(parts, Normalize(r.Tokens[0]))
	}
	return strings.Join(parts, " ")
}

// Folds assigns each record a fold in [0, k). GroupNone: record i goes to
// fold i mod k. GroupMaker: records are grouped by Maker; groups are taken
// largest first (ties by maker, in byte order) and each goes to the fold
// with the fewest records so far (ties: the lowest fold), so no maker is
// split and the folds differ by at most the size of one group.
// Deterministic: the same records give the same folds.
func Folds(recs []Record, k int, by GroupBy) ([]int, error) {
	if k < 2 || k > len(recs) {
		return nil, fmt.Errorf("cross-validation: %d folds for %d records", k, len(recs))
	}
	folds := make([]int, len(recs))
	switch by {
	case GroupNone, "":
		for i := range folds {
			folds[i] = i % k
		}
		return folds, nil
	case GroupMaker:
	default:
		return nil, fmt.Errorf("cross-validation: unknown grouping %q", by)
	}
	members := map[string][]int{}
	for i, r := range recs {
		m := Maker(r)
		members[m] = append(members[m], i)
	}
	if len(members) < k {
		return nil, fmt.Errorf("cross-validation: %d folds for %d makers", k, len(members))
	}
	makers := make([]string, 0, len(members))
	for m := range members {
		makers = append(makers, m)
	}
	sort.Slice(makers, func(a, b int) bool {
		na, nb := len(members[makers[a]]), len(members[makers[b]])
		if na != nb {
			return na > nb
		}
		return makers[a] < makers[b]
	})
	size := make([]int, k)
	for _, m := range makers {
		f := 0
		for j := 1; j < k; j++ {
			if size[j] < size[f] {
				f = j
			}
		}
		for _, i := range members[m] {
			folds[i] = f
		}
		size[f] += len(members[m])
	}
	return folds, nil
}

// CrossValidate trains k models, record i held out by model i mod k (the
// fold rule of the CRFsuite reference figures), and scores the pooled
// out-of-fold predictions.
func CrossValidate(ctx context.Context, recs []Record, fs FeatureSet, s model.Settings, k int) (Report, error) {
	return CrossValidateGrouped(ctx, recs, fs, s, k, GroupNone)
}

// CrossValidateGrouped is CrossValidate with the folds of Folds(recs, k, by).
func CrossValidateGrouped(ctx context.Context, recs []Record, fs FeatureSet, s model.Settings, k int, by GroupBy) (Report, error) {
	folds, err := Folds(recs, k, by)
	if err != nil {
		return Report{}, err
	}
	s.FeatureSet = fs.Name()
	preds := make([][]string, len(recs))
	for fold := 0; fold < k; fold++ {
		var train []Record
		for i, r := range recs {
			if folds[i] != fold {
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
		for i := range recs {
			if folds[i] != fold {
				continue
			}
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
