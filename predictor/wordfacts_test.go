package predictor

import (
	"slices"
	"testing"
)

// checkFact compares the facts table with the vocabulary and the brand
// lexicon themselves for one lowered token.
func checkFact(t *testing.T, facts wordFacts, v *Vocabulary, b *BrandLexicon, w string) {
	t.Helper()
	var buf wordFact
	f := facts.lookup(v, []byte(w), &buf)
	wantLabel, _ := v.wordBytes([]byte(w))
	gotLabel := ""
	var gotBrands [][]string
	if f != nil {
		gotLabel, gotBrands = f.label, f.brands
		if f.vocab >= 0 && ComponentLabels[f.vocab] != f.label || f.vocab == -1 && f.label != "" {
			t.Errorf("%q: vocab index %d does not match label %q", w, f.vocab, f.label)
		}
	}
	if gotLabel != wantLabel {
		t.Errorf("%q: facts say vocabulary label %q, the vocabulary %q", w, gotLabel, wantLabel)
	}
	if want := b.byFirst[w]; !slices.EqualFunc(gotBrands, want, slices.Equal) {
		t.Errorf("%q: facts say brands %q, the lexicon %q", w, gotBrands, want)
	}
}

// TestWordFactsAgree: the one-look-up table gives what the vocabulary and
// the lexicon give, for every vocabulary word, its plural forms, every
// brand, every token of the training data and some compounds.
func TestWordFactsAgree(t *testing.T) {
	v, b := DefaultVocabulary(), DefaultBrandLexicon()
	facts := newWordFacts(v, b)
	var words []string
	for w := range v.words {
		words = append(words, w, w+"s", w+"es", w+"ies", w+"ss", w[:len(w)-1]+"ies", w+"/"+w, "x/"+w)
	}
	for w := range b.byFirst {
		words = append(words, w, w+"s")
	}
	for _, r := range loadTrain(t).Records {
		for _, tok := range r.Tokens {
			words = append(words, string(appendLower(nil, tok)))
		}
	}
	words = append(words, "", "s", "es", "ies", "/", "//", "n95/kn95", "earloops", "boxes", "straps/bands")
	for _, w := range words {
		checkFact(t, facts, v, b, w)
	}
}

// FuzzWordFacts checks the table against the vocabulary on any token.
func FuzzWordFacts(f *testing.F) {
	for _, s := range []string{"earloops", "n95", "kn95/ffp2", "3m", "headstraps", "XS", "daddies"} {
		f.Add(s)
	}
	v, b := DefaultVocabulary(), DefaultBrandLexicon()
	facts := newWordFacts(v, b)
	f.Fuzz(func(t *testing.T, s string) {
		checkFact(t, facts, v, b, string(appendLower(nil, s)))
	})
}

// TestAppendShapeASCII: the ASCII table path gives what the rune path gives.
func TestAppendShapeASCII(t *testing.T) {
	for _, s := range []string{"", "KN95", "Aura", "9205+", "a-B_c", "N95é", "éN95", "ÀB9", "x\x80y", "Ǆ1"} {
		got := string(appendShape(nil, s))
		want := string(appendShapeRunes(nil, s, -1))
		if got != want {
			t.Errorf("appendShape(%q) = %q, rune path %q", s, got, want)
		}
	}
}
