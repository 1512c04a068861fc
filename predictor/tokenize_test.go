package predictor

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestTokenize(t *testing.T) {
	tests := []struct {
		name string
		want []string
	}{
		{"3M Aura 9205+ N95", []string{"3M", "Aura", "9205+", "N95"}},
		{"  leading and trailing  ", []string{"leading", "and", "trailing"}},
		{"Micro-Dust", []string{"Micro", "Dust"}},
		{"a—b", []string{"a", "b"}},        // em dash separates
		{"a – b", []string{"a", "–", "b"}}, // en dash does not
		{"a,b[c](d)", []string{"a", "b", "c", "d"}},
		{"line\nbreak\ttab", []string{"line", "break", "tab"}},
		{"nbsp\u00a0thin\u2009ideo\u3000end", []string{"nbsp", "thin", "ideo", "end"}},
		{"info\x1csep\x1fend", []string{"info", "sep", "end"}}, // Python \s includes U+001C..1F
		{"vt\vff\fcr\rnl\u0085", []string{"vt", "ff", "cr", "nl"}},
		{"zero\u200bwidth", []string{"zero\u200bwidth"}}, // ZWSP is not whitespace
		{"AURA™ 9205+", []string{"AURA™", "9205+"}},
		{"---", nil},
		{"", nil},
	}
	for _, tt := range tests {
		if got := Tokenize(tt.name); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Tokenize(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestStrFlagsMatchPython(t *testing.T) {
	// Expected values are Python 3.11's str methods.
	tests := []struct {
		s                                string
		isUpper, isTitle, isDigit, alpha bool
	}{
		{"3M", true, true, false, true},
		{"N95", true, true, false, true},
		{"2D", true, true, false, true},
		{"KN95", true, false, false, true},
		{"AURA™", true, false, false, true},
		{"Aura", false, true, false, true},
		{"aura", false, false, false, true},
		{"9205+", false, false, false, false},
		{"9205", false, false, true, false},
		{"²", false, false, true, false},
		{"x²", false, false, false, true},
		{"Dr.", false, true, false, true},
		{"ǅungla", false, true, false, true}, // titlecase digraph
		{"ǅUNGLA", false, false, false, true},
		{"ª", false, false, false, true}, // Other_Lowercase: not title, not upper
		{"Ⅻ", true, true, false, false},  // Other_Uppercase roman numeral, not alpha
		{"", false, false, false, false},
	}
	for _, tt := range tests {
		f := strFlags(tt.s)
		if f.isUpper != tt.isUpper || f.isTitle != tt.isTitle || f.isDigit != tt.isDigit || f.hasAlpha != tt.alpha {
			t.Errorf("%q: isupper=%v istitle=%v isdigit=%v hasalpha=%v, want %v %v %v %v",
				tt.s, f.isUpper, f.isTitle, f.isDigit, f.hasAlpha, tt.isUpper, tt.isTitle, tt.isDigit, tt.alpha)
		}
	}
}

func TestLowerMatchesPython(t *testing.T) {
	tests := map[string]string{
		"AURA™":    "aura™",
		"İstanbul": "i\u0307stanbul",
		"ΟΔΟΣ":     "οδος",
		"ΣΑ":       "σα",
		"ΑΣ.":      "ας.",
		"Σ":        "σ",
		"KN95":     "kn95",
	}
	for in, want := range tests {
		if got := string(appendLower(nil, in)); got != want {
			t.Errorf("lower(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLimits(t *testing.T) {
	l := Limits{MaxChars: 10, MaxTokens: 2}
	cases := []struct {
		name string
		err  error
	}{
		{"ok name", nil},
		{"one two three", ErrTooLong},
		{"a b c", ErrTooManyTokens},
		{" - , ", ErrNoTokens},
		{"bad\xffutf8", ErrInvalidUTF8},
		{"ééééééééé", nil}, // 9 code points, 18 bytes
	}
	for _, c := range cases {
		_, err := l.Check(c.name)
		if !errors.Is(err, c.err) {
			t.Errorf("Check(%q) = %v, want %v", c.name, err, c.err)
		}
	}
}

// FuzzTokenize checks the tokenizer and the v1 featurizer on any input:
// tokens are non-empty substrings free of separators, nothing panics, and
// rejoining them loses only separators.
func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"3M Aura 9205+ N95", "a – b", "İΣ\x1c²", "bad\xff", "ǅ\u0085x", strings.Repeat("a-", 50)} {
		f.Add(s)
	}
	fs, _ := LookupFeatureSet("v1")
	var sc Scratch
	f.Fuzz(func(t *testing.T, s string) {
		toks := Tokenize(s)
		rest := s
		for _, tok := range toks {
			if tok == "" {
				t.Fatalf("empty token in %q", s)
			}
			for _, r := range tok {
				if utf8.ValidString(tok) && isSeparator(r) {
					t.Fatalf("token %q of %q contains separator %U", tok, s, r)
				}
			}
			i := strings.Index(rest, tok)
			if i < 0 {
				t.Fatalf("token %q not found in order in %q", tok, s)
			}
			for _, r := range rest[:i] {
				if !isSeparator(r) && utf8.ValidString(rest[:i]) {
					t.Fatalf("%q dropped non-separator %U", s, r)
				}
			}
			rest = rest[i+len(tok):]
		}
		if len(toks) > 0 {
			cs := collectSink{names: fs.FixedNames()}
			fs.Featurize(toks, &sc, &cs)
			if len(cs.items) != len(toks) {
				t.Fatalf("%d items for %d tokens", len(cs.items), len(toks))
			}
		}
	})
}

// TestCompatSeparators: every code point whose NFKC is a separator
// separates, so a name and its NFKC form (which is what Normalize splits)
// have the same tokens, one for one (issue 14: one key, one tokenization).
func TestCompatSeparators(t *testing.T) {
	for r := rune(0x80); r <= 0x10FFFF; r++ {
		if r >= 0xD800 && r <= 0xDFFF || isSeparator(r) {
			continue
		}
		s := norm.NFKC.String(string(r))
		if s == string(r) {
			continue
		}
		all := true
		for _, c := range s {
			all = all && isSeparator(c)
		}
		if all {
			t.Errorf("U+%04X %q (NFKC %q) is not a separator", r, r, s)
		}
	}
	for _, tc := range []struct{ name, ascii string }{
		{"Honeywell（DF300）N95", "Honeywell (DF300) N95"},
		{"3M－8210，N95", "3M-8210,N95"},
		{"Moldex［2200］﹙N95﹚", "Moldex[2200](N95)"},
		{"KN95︱FFP2﹘Kids", "KN95—FFP2—Kids"},
	} {
		got, want := Tokenize(tc.name), Tokenize(tc.ascii)
		if len(got) != len(want) || Normalize(tc.name) != Normalize(tc.ascii) {
			t.Errorf("%q → %q (key %q), %q → %q (key %q)", tc.name, got, Normalize(tc.name), tc.ascii, want, Normalize(tc.ascii))
		}
		if n := len(Tokenize(norm.NFKC.String(tc.name))); n != len(got) {
			t.Errorf("%q: %d tokens, its NFKC form %d", tc.name, len(got), n)
		}
	}
}
