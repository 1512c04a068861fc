package predictor

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Sentinel errors for names that can never be predicted. Callers (the
// worker's dead set, HTTP's 400s) branch on them with errors.Is.
var (
	ErrNoTokens      = errors.New("no tokens found in mask_name")
	ErrTooLong       = errors.New("mask_name too long")
	ErrTooManyTokens = errors.New("mask_name has too many tokens")
	ErrInvalidUTF8   = errors.New("mask_name is not valid UTF-8")
)

// Limits bound the input one prediction accepts.
type Limits struct {
	// MaxChars is the largest name, in code points (default 1000).
	MaxChars int
	// MaxTokens is the most tokens a name may have (default 100).
	MaxTokens int
}

// DefaultLimits are the limits used when none are configured.
var DefaultLimits = Limits{MaxChars: 1000, MaxTokens: 100}

// WithDefaults fills zero fields with the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxChars <= 0 {
		l.MaxChars = DefaultLimits.MaxChars
	}
	if l.MaxTokens <= 0 {
		l.MaxTokens = DefaultLimits.MaxTokens
	}
	return l
}

// isSeparator is the reference tokenizer's character class
// [\s\-—,\[\]()] with Python's Unicode \s, plus the compatibility forms
// whose NFKC is one of those separators: full-width （）－，［］, the small
// forms ﹙﹚﹣﹐﹘, the vertical forms ︵︶︐︱﹇﹈ and super/subscript
// parentheses. Normalize (the cache key) applies NFKC before splitting, so
// without them "Honeywell（DF300）N95" would be one token but share the key
// of "Honeywell (DF300) N95", three tokens (issue 14). The reference data
// has none of them, so CRFsuite parity is unchanged. The en dash (U+2013) is
// not a separator.
func isSeparator(r rune) bool {
	switch r {
	case '-', '\u2014', ',', '[', ']', '(', ')':
		return true
	case '\uFF08', '\uFF09', '\uFF0C', '\uFF0D', '\uFF3B', '\uFF3D', // full-width ( ) , - [ ]
		'\uFE59', '\uFE5A', '\uFE50', '\uFE63', '\uFE58', // small ( ) , - —
		'\uFE35', '\uFE36', '\uFE10', '\uFE31', '\uFE47', '\uFE48', // vertical ( ) , — [ ]
		'\u207D', '\u207E', '\u208D', '\u208E': // super/subscript ( )
		return true
	}
	return pyIsSpace(r)
}

// Tokenize splits a mask name the way the reference service did:
// re.split(r'[\s\-—,\[\]()]+', name) with empty strings dropped. Tokens are
// substrings of name. Invalid UTF-8 is not checked here; see Check.
func Tokenize(name string) []string {
	return AppendTokens(nil, name)
}

// AppendTokens appends the tokens of name to dst.
func AppendTokens(dst []string, name string) []string {
	start := -1
	for i, r := range name {
		if isSeparator(r) {
			if start >= 0 {
				dst = append(dst, name[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		dst = append(dst, name[start:])
	}
	return dst
}

// Check validates a name against the limits and returns its tokens.
func (l Limits) Check(name string) ([]string, error) {
	return l.appendChecked(nil, name)
}

func (l Limits) appendChecked(dst []string, name string) ([]string, error) {
	l = l.WithDefaults()
	if !utf8.ValidString(name) {
		return nil, ErrInvalidUTF8
	}
	if len(name) > l.MaxChars { // bytes ≥ code points: count only when it may matter
		if n := utf8.RuneCountInString(name); n > l.MaxChars {
			return nil, fmt.Errorf("%w: %d characters (limit %d)", ErrTooLong, n, l.MaxChars)
		}
	}
	toks := AppendTokens(dst, name)
	switch {
	case len(toks) == 0:
		return nil, ErrNoTokens
	case len(toks) > l.MaxTokens:
		return nil, fmt.Errorf("%w: %d tokens (limit %d)", ErrTooManyTokens, len(toks), l.MaxTokens)
	}
	return toks, nil
}
