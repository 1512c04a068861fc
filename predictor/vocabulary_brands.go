package predictor

import (
	"bufio"
	_ "embed"
	"fmt"
	"sort"
	"strings"
)

//go:embed brand_lexicon.txt
var brandLexiconText string

// BrandLexicon is a list of known brands, each a sequence of lowercased
// tokens, for the brand attributes of feature set v3.
type BrandLexicon struct {
	// byFirst[first token] lists the brands starting with it, longest first.
	byFirst map[string][][]string
}

// ParseBrandLexicon reads the brand_lexicon.txt format: one brand per line,
// split by the name tokenizer and lowercased, '#' comments.
func ParseBrandLexicon(text string) (*BrandLexicon, error) {
	b := &BrandLexicon{byFirst: map[string][][]string{}}
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		toks := Tokenize(line)
		if len(toks) == 0 {
			return nil, fmt.Errorf("brand lexicon line %d: no tokens", n)
		}
		for i, t := range toks {
			toks[i] = string(appendLower(nil, t))
		}
		key := strings.Join(toks, " ")
		if seen[key] {
			return nil, fmt.Errorf("brand lexicon line %d: %q listed twice", n, line)
		}
		seen[key] = true
		b.byFirst[toks[0]] = append(b.byFirst[toks[0]], toks)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, list := range b.byFirst {
		sort.SliceStable(list, func(i, j int) bool { return len(list[i]) > len(list[j]) })
	}
	return b, nil
}

// DefaultBrandLexicon is the embedded brand_lexicon.txt.
func DefaultBrandLexicon() *BrandLexicon {
	b, err := ParseBrandLexicon(brandLexiconText)
	if err != nil {
		panic("embedded brand_lexicon.txt: " + err.Error()) // caught by the tests
	}
	return b
}

// Len is the number of brands.
func (b *BrandLexicon) Len() int {
	n := 0
	for _, list := range b.byFirst {
		n += len(list)
	}
	return n
}

// matchAt returns the length of the longest brand starting at token i of
// the prepared scratch (0: none). It does not allocate.
func (b *BrandLexicon) matchAt(sc *Scratch, i int) int {
	return matchBrands(sc, i, b.byFirst[string(sc.lowerOf(&sc.info[i]))])
}

// matchBrands returns the length of the first brand of list (the lexicon
// brands starting with token i, longest first) that the tokens from i spell.
func matchBrands(sc *Scratch, i int, list [][]string) int {
	n := len(sc.info)
	for _, br := range list {
		if i+len(br) > n {
			continue
		}
		ok := true
		for k := 1; k < len(br); k++ {
			if string(sc.lowerOf(&sc.info[i+k])) != br[k] {
				ok = false
				break
			}
		}
		if ok {
			return len(br)
		}
	}
	return 0
}

// Match reports, for each token, whether it is part of a lexicon brand
// (longest match, left to right). toks are raw tokens.
func (b *BrandLexicon) Match(toks []string) []bool {
	var sc Scratch
	sc.prepare(toks)
	out := make([]bool, len(toks))
	b.mark(&sc, out)
	return out
}

// mark sets in[i] for the tokens covered by a brand; len(in) = tokens.
func (b *BrandLexicon) mark(sc *Scratch, in []bool) {
	for i := 0; i < len(in); {
		k := b.matchAt(sc, i)
		if k == 0 {
			in[i] = false
			i++
			continue
		}
		for j := i; j < i+k; j++ {
			in[j] = true
		}
		i += k
	}
}
