package predictor

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/model"
)

// TestReviewWorth measures what labelling the names Review ranks first is
// worth, against random picks and the naive lowest-sequence-probability
// pick (issue 13; BENCHMARKS.md "The labelling loop's worth"). It trains a
// few hundred models, so it runs only with MASKPREDICTOR_REVIEW_MEASURE=1:
//
//	MASKPREDICTOR_REVIEW_MEASURE=1 go test ./predictor -run TestReviewWorth -v -timeout 30m
//
// MASKPREDICTOR_REVIEW_SEEDS=1,2,…,12 sets the seeds (default 1–4, three
// configurations each; BENCHMARKS.md has 1–12), MASKPREDICTOR_REVIEW_ONLY
// a comma-separated subset of the strategies (random ones always run).
//
// The split is by maker (Maker) so that the picks and the test names come
// from makers the base model never saw, and the test makers are not the
// picked ones: for each seed the makers are shuffled and dealt into five
// groups of about equal size (in names); groups 0–1 train the base model,
// and each of groups 2, 3, 4 in turn is the test set while the other two are
// the pool the picks come from. A strategy orders the pool by the base
// model's predictions; the first N names of the order, with their gold
// labels, are added to the base training set, and the retrained model is
// scored on the test group. Random picks are scored over five orders per
// configuration, and also in maker rounds (one name per maker before a
// second), to see what diversity alone is worth.
func TestReviewWorth(t *testing.T) {
	if os.Getenv("MASKPREDICTOR_REVIEW_MEASURE") == "" {
		t.Skip("set MASKPREDICTOR_REVIEW_MEASURE=1 to measure the review ranking")
	}
	recs := loadReviewRecords(t)
	seeds := []uint64{1, 2, 3, 4}
	if s := os.Getenv("MASKPREDICTOR_REVIEW_SEEDS"); s != "" {
		seeds = nil
		for _, f := range strings.Split(s, ",") {
			var v uint64
			fmt.Sscan(f, &v)
			seeds = append(seeds, v)
		}
	}
	const randomRuns = 5
	ns := []int{10, 20, 25, 50, 100}
	strategies := reviewStrategies()
	if s := os.Getenv("MASKPREDICTOR_REVIEW_ONLY"); s != "" {
		keep := map[string]bool{}
		for _, f := range strings.Split(s, ",") {
			keep[f] = true
		}
		var kept []reviewStrategy
		for _, st := range strategies {
			if keep[st.name] {
				kept = append(kept, st)
			}
		}
		strategies = kept
	}
	fs := featureSets["v4"]
	settings := model.Settings{C1: 0.05, C2: 0.01, MaxIterations: 200, PossibleTransitions: true, FeatureSet: "v4"}
	train := func(rs []Record) *CRF {
		m, err := model.Train(context.Background(), Examples(rs, fs), settings)
		if err != nil {
			t.Fatal(err)
		}
		c, err := newCRFWith(m, fs, Limits{MaxChars: 1 << 20, MaxTokens: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	score := func(c *CRF, rs []Record) (correctTok, toks, correctNames int) {
		for _, r := range rs {
			p, err := c.PredictTokens(r.MaskName, r.Tokens, Options{})
			if err != nil {
				t.Fatal(err)
			}
			ok := true
			for i := range r.Labels {
				toks++
				if p.Labels[i] == r.Labels[i] {
					correctTok++
				} else {
					ok = false
				}
			}
			if ok {
				correctNames++
			}
		}
		return
	}

	// acc[strategy][n] sums over the configurations (random: per run).
	type tally struct{ tok, toks, names, nnames, picked, pickedToks int }
	type key struct {
		strategy string
		n, run   int
	}
	var mu sync.Mutex
	acc := map[key]*tally{}
	add := func(k key, ct, tt, cn, nn, picked, pickedToks int) {
		mu.Lock()
		defer mu.Unlock()
		a := acc[k]
		if a == nil {
			a = &tally{}
			acc[k] = a
		}
		a.tok += ct
		a.toks += tt
		a.names += cn
		a.nnames += nn
		a.picked += picked
		a.pickedToks += pickedToks
	}
	start := time.Now()
	configs := 0
	jobs := make(chan func(), 64)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				j()
			}
		}()
	}
	for _, seed := range seeds {
		groups := makerGroups(recs, seed, 5)
		base := append(append([]Record(nil), groups[0]...), groups[1]...)
		baseCRF := train(base)
		for e := 2; e < 5; e++ {
			configs++
			test := groups[e]
			var pool []Record
			for g := 2; g < 5; g++ {
				if g != e {
					pool = append(pool, groups[g]...)
				}
			}
			ct, tt, cn := score(baseCRF, test)
			add(key{"base", 0, 0}, ct, tt, cn, len(test), 0, 0)
			preds := make([]*Prediction, len(pool))
			index := map[*Prediction]int{}
			for i, r := range pool {
				p, err := baseCRF.PredictTokens(r.MaskName, r.Tokens, Options{Marginals: true})
				if err != nil {
					t.Fatal(err)
				}
				preds[i] = p
				index[p] = i
			}
			type order struct {
				name string
				run  int
				idx  []int
			}
			var orders []order
			for run := 0; run < randomRuns; run++ {
				rng := rand.New(rand.NewPCG(seed*1000+uint64(e), uint64(run)))
				orders = append(orders, order{"random", run, rng.Perm(len(pool))})
			}
			for run := 0; run < randomRuns; run++ {
				rng := rand.New(rand.NewPCG(seed*1000+uint64(e), uint64(run)))
				perm := rng.Perm(len(pool))
				byPerm := func(p *Prediction) float64 { return -float64(perm[index[p]]) }
				orders = append(orders, order{"random+maker", run, rankOrder(preds, index, byPerm, true)})
			}
			for _, st := range strategies {
				var idx []int
				if st.score == nil {
					for _, s := range Review(baseCRF, preds, 0) {
						idx = append(idx, index[s.Prediction])
					}
				} else {
					idx = rankOrder(preds, index, st.score, st.makers)
				}
				orders = append(orders, order{st.name, 0, idx})
			}
			for _, o := range orders {
				for _, n := range ns {
					o, n := o, min(n, len(o.idx))
					jobs <- func() {
						rs := append([]Record(nil), base...)
						pt := 0
						for _, i := range o.idx[:n] {
							rs = append(rs, pool[i])
							pt += len(pool[i].Tokens)
						}
						ct, tt, cn := score(train(rs), test)
						add(key{o.name, n, o.run}, ct, tt, cn, len(test), n, pt)
					}
				}
			}
			t.Logf("seed %d test group %d: base %d names, pool %d, test %d", seed, e, len(base), len(pool), len(test))
		}
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d configurations, %v", configs, time.Since(start).Round(time.Second))

	get := func(k key) (float64, float64) {
		a := acc[k]
		if a == nil {
			return 0, 0
		}
		return float64(a.tok) / float64(a.toks), float64(a.names) / float64(a.nnames)
	}
	bt, bn := get(key{"base", 0, 0})
	var b strings.Builder
	fmt.Fprintf(&b, "\nbase model (no picks): token %.4f, name %.4f\n", bt, bn)
	fmt.Fprintf(&b, "| strategy |")
	for _, n := range ns {
		fmt.Fprintf(&b, " N = %d |", n)
	}
	fmt.Fprintf(&b, "\n| --- |%s\n", strings.Repeat(" ---: |", len(ns)))
	row := func(name string, runs int) {
		label := name
		if a := acc[key{name, 25, 0}]; a != nil {
			label = fmt.Sprintf("%s (%.1f tokens/name at N = 25)", name, float64(a.pickedToks)/float64(a.picked))
		}
		fmt.Fprintf(&b, "| %s |", label)
		for _, n := range ns {
			var toks, names []float64
			for r := 0; r < runs; r++ {
				tk, nm := get(key{name, n, r})
				toks, names = append(toks, tk), append(names, nm)
			}
			if runs == 1 {
				fmt.Fprintf(&b, " %.4f / %.4f |", toks[0], names[0])
				continue
			}
			fmt.Fprintf(&b, " %.4f / %.4f (%.4f–%.4f / %.4f–%.4f) |", mean(toks), mean(names),
				minOf(toks), maxOf(toks), minOf(names), maxOf(names))
		}
		b.WriteString("\n")
	}
	row("random", randomRuns)
	row("random+maker", randomRuns)
	for _, st := range strategies {
		row(st.name, 1)
	}
	t.Log(b.String())
}

// reviewStrategy is a ranking the measurement compares: by score, highest
// first, optionally one name per predicted maker before a second one; a nil
// score is Review itself.
type reviewStrategy struct {
	name   string
	score  func(*Prediction) float64
	makers bool
}

func reviewStrategies() []reviewStrategy {
	seqprob := func(p *Prediction) float64 { return 1 - p.SequenceProbability }
	sum := func(p *Prediction) float64 {
		u := 0.0
		for _, v := range p.TokenConfidences {
			u += 1 - v
		}
		return u
	}
	meanU := func(p *Prediction) float64 { return sum(p) / float64(len(p.TokenConfidences)) }
	maxU := func(p *Prediction) float64 {
		u := 0.0
		for _, v := range p.TokenConfidences {
			u = max(u, 1-v)
		}
		return u
	}
	entropy := func(p *Prediction) float64 {
		u := 0.0
		for _, row := range p.Marginals {
			for _, v := range row {
				if v > 0 {
					u -= v * math.Log(v)
				}
			}
		}
		return u
	}
	return []reviewStrategy{
		{"seqprob", seqprob, false},
		{"sum", sum, false},
		{"mean", meanU, false},
		{"max", maxU, false},
		{"entropy", entropy, false},
		{"sum+maker", sum, true},
		{"mean+maker", meanU, true},
		{"Review", nil, false},
	}
}

// rankOrder orders the pool's predictions by score, highest first (ties by
// normalized name), each normalized name once; with makers, in rounds: a
// round takes at most one name of each predicted maker (Maker of the
// predicted labels).
func rankOrder(preds []*Prediction, index map[*Prediction]int, score func(*Prediction) float64, makers bool) []int {
	type item struct {
		i     int
		key   string
		maker string
		u     float64
	}
	var items []item
	seen := map[string]bool{}
	for _, p := range preds {
		key := Normalize(p.MaskName)
		if key == "" || seen[key] {
			continue
		}
		seen[key] = true
		items = append(items, item{index[p], key, Maker(Record{Tokens: p.Tokens, Labels: p.Labels}), score(p)})
	}
	sort.Slice(items, func(a, b int) bool {
		if items[a].u != items[b].u {
			return items[a].u > items[b].u
		}
		return items[a].key < items[b].key
	})
	var out []int
	if !makers {
		for _, it := range items {
			out = append(out, it.i)
		}
		return out
	}
	for len(items) > 0 {
		taken := map[string]bool{}
		rest := items[:0:0]
		for _, it := range items {
			if taken[it.maker] {
				rest = append(rest, it)
				continue
			}
			taken[it.maker] = true
			out = append(out, it.i)
		}
		items = rest
	}
	return out
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = max(m, x)
	}
	return m
}

// loadReviewRecords is train.json and labelled_extra.json, merged (363 names).
func loadReviewRecords(t testing.TB) []Record {
	t.Helper()
	var sets []*Dataset
	for _, f := range []string{"train.json", "labelled_extra.json"} {
		fh, err := os.Open(filepath.Join("..", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		ds, err := LoadExport(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, ds)
	}
	merged, _ := MergeExports(sets...)
	return merged.Records
}

// makerGroups deals the makers, shuffled by seed, into k groups: each maker
// (all its names) goes to the group with the fewest names so far.
func makerGroups(recs []Record, seed uint64, k int) [][]Record {
	members := map[string][]Record{}
	for _, r := range recs {
		m := Maker(r)
		members[m] = append(members[m], r)
	}
	makers := make([]string, 0, len(members))
	for m := range members {
		makers = append(makers, m)
	}
	sort.Strings(makers)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	rng.Shuffle(len(makers), func(i, j int) { makers[i], makers[j] = makers[j], makers[i] })
	groups := make([][]Record, k)
	for _, m := range makers {
		g := 0
		for j := 1; j < k; j++ {
			if len(groups[j]) < len(groups[g]) {
				g = j
			}
		}
		groups[g] = append(groups[g], members[m]...)
	}
	return groups
}
