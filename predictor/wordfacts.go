package predictor

import "bytes"

// wordFact is what the vocabulary and the brand lexicon say about one
// lowered token. Feature set v2/v3 reads both for every token; one table
// answers both with one look-up (issue 12: the richer features must not
// make prediction slower).
type wordFact struct {
	// vocab is the index in ComponentLabels of the vocabulary label, -1 for
	// none, -2 for a label that is not a component (then label names it).
	vocab int8
	label string
	// brands are the lexicon brands starting with this token, longest first.
	brands [][]string
}

// wordFacts holds a fact for every token without '/' that has a vocabulary
// label or starts a lexicon brand: a token missing from it has neither
// (tokens with '/' are compounds, which the vocabulary decides part by part).
type wordFacts map[string]*wordFact

// newWordFacts builds the table. Vocabulary.wordBytes labels a token by
// itself or by its singular (singular strips "ies"→"y", "es" after x/ch/sh,
// or "s"), so every labelled token without '/' is a vocabulary word or one
// of its three plural forms; each candidate is kept only if wordBytes labels
// it, so the table and wordBytes agree (TestWordFactsAgree).
func newWordFacts(v *Vocabulary, b *BrandLexicon) wordFacts {
	t := wordFacts{}
	add := func(w string) {
		if _, done := t[w]; done || w == "" {
			return
		}
		f := &wordFact{vocab: -1}
		if v != nil {
			if l, ok := v.wordBytes([]byte(w)); ok {
				f.label = l
				f.vocab = int8(componentIndex(l))
				if f.vocab < 0 {
					f.vocab = -2
				}
			}
		}
		if b != nil {
			f.brands = b.byFirst[w]
		}
		if f.vocab != -1 || f.brands != nil {
			t[w] = f
		}
	}
	if v != nil {
		for w := range v.words {
			add(w)
			add(w + "s")
			add(w + "es")
			if n := len(w); n > 1 && w[n-1] == 'y' {
				add(w[:n-1] + "ies")
			}
		}
	}
	if b != nil {
		for w := range b.byFirst {
			add(w)
		}
	}
	return t
}

// lookup returns the fact of a lowered token; nil when it has none. A token
// with '/' that the table does not hold is decided by the vocabulary itself
// (rare: the result is not cached).
func (t wordFacts) lookup(v *Vocabulary, lower []byte, scratch *wordFact) *wordFact {
	if f := t[string(lower)]; f != nil {
		return f
	}
	if v == nil || bytes.IndexByte(lower, '/') < 0 {
		return nil
	}
	l, ok := v.wordBytes(lower)
	if !ok {
		return nil
	}
	*scratch = wordFact{label: l, vocab: int8(componentIndex(l))}
	if scratch.vocab < 0 {
		scratch.vocab = -2
	}
	return scratch
}
