package model

import (
	"fmt"
	"math"
	"sort"
)

// MaxNBest bounds k in NBest.
const MaxNBest = 10

// Path is one label sequence with its unnormalised score.
type Path struct {
	Labels []int
	Score  float64
}

type nbCand struct {
	score float64
	prev  int32 // previous label
	rank  int32 // rank within the previous cell
}

type nbestScratch struct {
	cells []nbCand // T×L×k
	count []int32  // T×L: how many entries each cell holds
	cands []nbCand
}

// NBest returns up to k best label sequences, best first, with list Viterbi:
// every cell (t, j) keeps its k best partial paths. Scores are accumulated in
// Viterbi's order, so NBest(1) equals Viterbi, ties included.
func (tg *Tagger) NBest(k int) ([]Path, error) {
	if k < 1 || k > MaxNBest {
		return nil, fmt.Errorf("n-best: k = %d, want 1..%d", k, MaxNBest)
	}
	T, L := tg.T, len(tg.m.labels)
	nb := &tg.nb
	if cap(nb.cells) < T*L*k {
		nb.cells = make([]nbCand, T*L*k)
	}
	if cap(nb.count) < T*L {
		nb.count = make([]int32, T*L)
	}
	nb.cells = nb.cells[:T*L*k]
	nb.count = nb.count[:T*L]
	cell := func(t, j int) []nbCand { return nb.cells[(t*L+j)*k : (t*L+j)*k+k] }
	for j := 0; j < L; j++ {
		c := cell(0, j)
		c[0] = nbCand{score: tg.state[j], prev: -1}
		nb.count[j] = 1
	}
	trans := tg.m.trans
	for t := 1; t < T; t++ {
		for j := 0; j < L; j++ {
			nb.cands = nb.cands[:0]
			for i := 0; i < L; i++ {
				pc := cell(t-1, i)
				for r := int32(0); r < nb.count[(t-1)*L+i]; r++ {
					nb.cands = append(nb.cands, nbCand{score: pc[r].score + trans[i*L+j], prev: int32(i), rank: r})
				}
			}
			sort.SliceStable(nb.cands, func(a, b int) bool { return nb.cands[a].score > nb.cands[b].score })
			n := min(k, len(nb.cands))
			c := cell(t, j)
			for r := 0; r < n; r++ {
				c[r] = nb.cands[r]
				c[r].score += tg.state[t*L+j]
			}
			nb.count[t*L+j] = int32(n)
		}
	}
	// final selection across the last column
	nb.cands = nb.cands[:0]
	for j := 0; j < L; j++ {
		c := cell(T-1, j)
		for r := int32(0); r < nb.count[(T-1)*L+j]; r++ {
			nb.cands = append(nb.cands, nbCand{score: c[r].score, prev: int32(j), rank: r})
		}
	}
	sort.SliceStable(nb.cands, func(a, b int) bool { return nb.cands[a].score > nb.cands[b].score })
	n := min(k, len(nb.cands))
	out := make([]Path, 0, n)
	for _, fin := range nb.cands[:n] {
		if math.IsInf(fin.score, -1) {
			break
		}
		p := Path{Labels: make([]int, T), Score: fin.score}
		j, r := int(fin.prev), fin.rank
		for t := T - 1; t >= 0; t-- {
			p.Labels[t] = j
			c := cell(t, j)[r]
			j, r = int(c.prev), c.rank
		}
		out = append(out, p)
	}
	return out, nil
}
