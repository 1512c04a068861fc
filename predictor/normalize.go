package predictor

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Normalize is the name part of the prediction cache key: Unicode NFKC,
// then full case folding, then the reference tokenizer, tokens joined by one
// space. Two names that differ only in width, compatibility forms, case or
// separators share a cache entry. The Ruby module in deploy/rails/ computes
// the same string; both are tested against testdata/normalize_vectors.json.
//
// A name without tokens normalizes to "". Invalid UTF-8 is not rejected
// here (Limits.Check does that); its bytes are replaced by U+FFFD.
func Normalize(name string) string {
	if s, ok := normalizeASCII(name); ok {
		return s
	}
	s := norm.NFKC.String(name)
	// A Caser is stateful, so each call gets its own (it is small).
	s = cases.Fold().String(s)
	toks := AppendTokens(make([]string, 0, 8), s)
	return strings.Join(toks, " ")
}

// normalizeASCII is Normalize for pure ASCII input, where NFKC is the
// identity and folding is ASCII lowercasing: one pass, one allocation.
func normalizeASCII(name string) (string, bool) {
	var b strings.Builder
	b.Grow(len(name))
	pending := false // a separator run is waiting to become one space
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= utf8.RuneSelf {
			return "", false
		}
		if isSeparator(rune(c)) {
			pending = b.Len() > 0
			continue
		}
		if pending {
			b.WriteByte(' ')
			pending = false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String(), true
}
