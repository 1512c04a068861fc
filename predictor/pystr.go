package predictor

import (
	"unicode"
	"unicode/utf8"
)

// The reference feature function ran on Python 3 strings, whose methods are
// Unicode-aware and differ from Go's in small ways that change attributes.
// These helpers reproduce Python's str semantics (CPython 3.11,
// Objects/unicodeobject.c) on top of Go's Unicode tables.

// pyIsSpace is Python's str.isspace / re's \s for one code point: Go's
// unicode.IsSpace plus the information separators U+001C–U+001F.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1C && r <= 0x1F)
}

// pyIsLower is the Unicode Lowercase property (Ll plus Other_Lowercase),
// which CPython's database marks as LOWER.
func pyIsLower(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z'
	}
	return unicode.IsLower(r) || unicode.Is(unicode.Other_Lowercase, r)
}

// pyIsUpper is the Unicode Uppercase property (Lu plus Other_Uppercase).
func pyIsUpper(r rune) bool {
	if r < utf8.RuneSelf {
		return 'A' <= r && r <= 'Z'
	}
	return unicode.IsUpper(r) || unicode.Is(unicode.Other_Uppercase, r)
}

// pyIsTitle is general category Lt.
func pyIsTitle(r rune) bool {
	if r < utf8.RuneSelf {
		return false
	}
	return unicode.IsTitle(r)
}

// pyIsAlpha is Python's str.isalpha for one code point: categories L*.
func pyIsAlpha(r rune) bool {
	if r < utf8.RuneSelf {
		return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
	}
	return unicode.IsLetter(r)
}

// digitRanges are the code points whose Unicode Numeric_Type is Digit (not
// Decimal): Python's isdigit accepts them, Go's unicode.IsDigit (Nd) does not.
var digitRanges = &unicode.RangeTable{
	R16: []unicode.Range16{
		{0x00B2, 0x00B3, 1}, {0x00B9, 0x00B9, 1},
		{0x1369, 0x1371, 1}, {0x19DA, 0x19DA, 1},
		{0x2070, 0x2070, 1}, {0x2074, 0x2079, 1}, {0x2080, 0x2089, 1},
		{0x2460, 0x2468, 1}, {0x2474, 0x247C, 1}, {0x2488, 0x2490, 1},
		{0x24EA, 0x24EA, 1}, {0x24F5, 0x24FD, 1}, {0x24FF, 0x24FF, 1},
		{0x2776, 0x277E, 1}, {0x2780, 0x2788, 1}, {0x278A, 0x2792, 1},
	},
	R32: []unicode.Range32{
		{0x10A40, 0x10A43, 1}, {0x10E60, 0x10E68, 1},
		{0x11052, 0x1105A, 1}, {0x1F100, 0x1F10A, 1},
	},
}

// pyIsDigit is Python's str.isdigit for one code point: Numeric_Type Decimal
// (Nd) or Digit.
func pyIsDigit(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsDigit(r) || unicode.Is(digitRanges, r)
}

// pyCased reports whether a code point is cased (upper, lower or title).
func pyCased(r rune) bool { return pyIsUpper(r) || pyIsLower(r) || pyIsTitle(r) }

// pyCaseIgnorable approximates the Case_Ignorable property, which Python's
// final-sigma rule skips over: marks, format characters, modifier letters and
// symbols, and the word-internal punctuation Unicode lists.
func pyCaseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', '^', '`', 0x00B7, 0x2018, 0x2019, 0x2024, 0x2027:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// flags holds the str predicates of one token.
type flags struct {
	isUpper, isTitle, isDigit, hasDigit, hasAlpha, hasSlash, hasDash bool
}

// strFlags computes Python's isupper, istitle, isdigit and the any(...)
// predicates of a token in one pass.
func strFlags(s string) flags {
	var f flags
	upperCased := false
	upperOK := true
	titleOK := true
	titleCased := false
	prevCased := false
	allDigit := len(s) > 0
	for _, r := range s {
		up, lo, ti := pyIsUpper(r), pyIsLower(r), pyIsTitle(r)
		// isupper: no lowercase or titlecase, at least one uppercase
		if lo || ti {
			upperOK = false
		} else if up {
			upperCased = true
		}
		// istitle
		switch {
		case up || ti:
			if prevCased {
				titleOK = false
			}
			prevCased, titleCased = true, true
		case lo:
			if !prevCased {
				titleOK = false
			}
			prevCased, titleCased = true, true
		default:
			prevCased = false
		}
		d := pyIsDigit(r)
		if !d {
			allDigit = false
		}
		f.hasDigit = f.hasDigit || d
		f.hasAlpha = f.hasAlpha || pyIsAlpha(r)
		f.hasSlash = f.hasSlash || r == '/'
		f.hasDash = f.hasDash || r == '-'
	}
	f.isUpper = upperOK && upperCased
	f.isTitle = titleOK && titleCased
	f.isDigit = allDigit
	return f
}

// appendLower appends Python's str.lower() of s to dst: the full case
// mapping, so 'İ' becomes "i̇" (two code points) and a capital sigma at the
// end of a word becomes 'ς', as CPython does.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch r {
		case 0x0130: // LATIN CAPITAL LETTER I WITH DOT ABOVE
			dst = append(dst, 'i', 0xCC, 0x87)
		case 0x03A3: // GREEK CAPITAL LETTER SIGMA
			if finalSigma(s, i, i+size) {
				dst = utf8.AppendRune(dst, 0x03C2)
			} else {
				dst = utf8.AppendRune(dst, 0x03C3)
			}
		default:
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
		}
		i += size
	}
	return dst
}

// finalSigma is CPython's rule: a cased letter precedes (skipping
// case-ignorables) and none follows.
func finalSigma(s string, start, end int) bool {
	before := false
	for j := start; j > 0; {
		r, size := utf8.DecodeLastRuneInString(s[:j])
		j -= size
		if pyCaseIgnorable(r) {
			continue
		}
		before = pyCased(r)
		break
	}
	if !before {
		return false
	}
	for j := end; j < len(s); {
		r, size := utf8.DecodeRuneInString(s[j:])
		j += size
		if pyCaseIgnorable(r) {
			continue
		}
		return !pyCased(r)
	}
	return true
}

// runePrefix returns the first n code points of s (all of s if shorter).
func runePrefix(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// runeSuffix returns the last n code points of s (all of s if shorter).
func runeSuffix(s string, n int) string {
	j := len(s)
	for ; n > 0 && j > 0; n-- {
		_, size := utf8.DecodeLastRuneInString(s[:j])
		j -= size
	}
	return s[j:]
}
