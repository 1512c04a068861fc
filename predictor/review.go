package predictor

import (
	"cmp"
	"slices"
)

// Scored is a prediction with its review score: higher is more worth a person's labelling.
type Scored struct {
	Prediction *Prediction
	Score      float64
}

// ReviewQueue is a ranked review queue as the sidecar prints it: the answer
// of GET /admin/api/review and of `maskpredictor review --json`, one shape.
type ReviewQueue struct {
	Names []ReviewEntry `json:"names"`
	// Candidates is how many distinct unlabelled names were ranked.
	Candidates   int    `json:"candidates"`
	ModelVersion string `json:"model_version"`
	// Partial: not every candidate could be looked at (the admin's bounded
	// walk of the cache).
	Partial bool `json:"partial,omitempty"`
}

// ReviewEntry is one name of a ReviewQueue.
type ReviewEntry struct {
	MaskName   string      `json:"mask_name"`
	Score      float64     `json:"score"`
	Prediction *Prediction `json:"prediction"`
}

// NewReviewQueue lists ranked (Review's answer) as a ReviewQueue.
func NewReviewQueue(ranked []Scored, candidates int, modelVersion string) ReviewQueue {
	q := ReviewQueue{Names: make([]ReviewEntry, len(ranked)), Candidates: candidates, ModelVersion: modelVersion}
	for i, s := range ranked {
		q.Names[i] = ReviewEntry{MaskName: s.Prediction.MaskName, Score: s.Score, Prediction: s.Prediction}
	}
	return q
}

// Review ranks predictions made by c for labelling and returns at most limit of them (limit <= 0: all),
// best first. Deterministic (ties broken by normalized name). Predictions must carry TokenConfidences
// (every CRF prediction does; rule-fallback ones have none and rank by a documented rule).
// Names whose Normalize() is empty are skipped; duplicates by Normalize() count once.
//
// The score is the name's mean token uncertainty, 1 − (mean over its
// tokens of the token's confidence) = 1 − Prediction.Confidence: how unsure
// the model is of a typical token of the name, whatever the name's length.
// It was chosen by measurement (TestReviewWorth; BENCHMARKS.md, "The
// labelling loop's worth (issue 13)"): a base model trained on the names of
// 40% of the makers ranks a pool of names of other makers, the first N are
// labelled and added, and the retrained model is scored on makers in
// neither (36 splits; base model 0.8945 token / 0.6662 name accuracy).
// Token / name accuracy with N names picked by this score against N and
// 2N random picks:
//
//	N = 10: 0.9027 / 0.6818; random 0.8975 / 0.6713, 20 random 0.9012 / 0.6792
//	N = 25: 0.9084 / 0.6964; random 0.9017 / 0.6810, 50 random 0.9063 / 0.6938
//	N = 50: 0.9136 / 0.7094; random 0.9063 / 0.6938, 100 random 0.9131 / 0.7137
//
// so N ranked names are worth 2N random ones, but for name accuracy at
// N = 50. The other uncertainty scores measured — the sum of the tokens'
// uncertainties, the largest, the token entropy from the marginals, and the
// lowest sequence probability (which beat random here too) — were as good
// within the noise (0.1–0.5 point either way), but they favour long names:
// their first 25 picks averaged 6.4–7.2 tokens a name against 5.8 for this
// score and 4.9 for random picks, so a person labels up to a fifth more
// tokens for the same gain, and long noisy names (lot numbers, company
// descriptions) are what made least-probable-first lose to random in the
// product team's trial. One name per predicted maker before a second one
// (alone, with makers the model does not know first, or with near-duplicate
// names deferred) moved accuracy by −0.4 to +0.4 point up to N = 50 and
// lost 0.3 / 0.8 at N = 100, and random picks in maker rounds did no better
// than random picks, so the ranking has no diversity term.
//
// A prediction without TokenConfidences (the rule fallback) is scored by
// c's prediction for its tokens when c is not nil; when c is nil, or it
// cannot predict them, it ranks after every scored name, with Score 0.
// Of two predictions with the same normalized name the first is kept.
func Review(c *CRF, preds []*Prediction, limit int) []Scored {
	type item struct {
		Scored
		key    string
		scored bool
	}
	items := make([]item, 0, len(preds))
	seen := make(map[string]bool, len(preds))
	for _, p := range preds {
		if p == nil {
			continue
		}
		key := Normalize(p.MaskName)
		if key == "" || seen[key] {
			continue
		}
		seen[key] = true
		u, ok := reviewScore(c, p)
		items = append(items, item{Scored: Scored{Prediction: p, Score: u}, key: key, scored: ok})
	}
	slices.SortFunc(items, func(a, b item) int {
		if a.scored != b.scored {
			if a.scored {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return cmp.Compare(a.key, b.key)
	})
	if limit <= 0 || limit > len(items) {
		limit = len(items)
	}
	out := make([]Scored, limit)
	for i := range out {
		out[i] = items[i].Scored
	}
	return out
}

// reviewScore is 1 − the mean token confidence of p (of c's prediction for
// p's tokens when p carries no confidences), and whether there was one.
func reviewScore(c *CRF, p *Prediction) (float64, bool) {
	conf := p.TokenConfidences
	if len(conf) == 0 && c != nil && len(p.Tokens) > 0 {
		if q, err := c.PredictTokens(p.MaskName, p.Tokens, Options{}); err == nil {
			conf = q.TokenConfidences
		}
	}
	if len(conf) == 0 {
		return 0, false
	}
	u := 0.0
	for _, v := range conf {
		u += 1 - v
	}
	u /= float64(len(conf))
	if !(u > 0) { // also NaN from a corrupt cache entry
		u = 0
	}
	return min(u, 1), true
}
