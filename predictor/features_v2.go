package predictor

import (
	"unicode/utf8"
)

// v2 is feature set v1 plus what cross-validation on the 236 labelled names
// showed to help (BENCHMARKS.md has the ablation): word shape, the tokens two
// to the left and right, position from the end, and membership of the token
// and its neighbours in the closed vocabularies of vocabulary.txt. Each part
// can be switched off, for the ablation; the registered "v2" is the chosen set.
// Tried and left out because they did not help: 4-character affixes, a
// digit-and-letter flag, and the rule predictor's label as an attribute.
//
// v3 is v2 plus two parts: membership of the token and its neighbours in
// the brand lexicon (brand_lexicon.txt, public knowledge, not the training
// data), and the first word of the name as an attribute of every later
// token. v2 computes exactly what it did before v3 existed, so v2 model files
// keep their meaning.
//
// v4 is v3 chosen by grouped cross-validation (issue 12: names of makers the
// model never saw): without word shape, which moved no token under grouped
// CV, and with a repeated-token part (token.repeat: the token equals the one
// before it, next.repeat: the one after), for names such as "Flo Flo Pro"
// and "AirBoss AirBoss" whose second word is the model (docs/labelling.md).
// BENCHMARKS.md has the ablation. v4 is what `make model` trains.
type v2 struct {
	name      string
	shape     bool // token.shape:Xx9 (collapsed character classes)
	window2   bool // prev2.token.lower / next2.token.lower
	fromEnd   bool // position.rindex:0|1|2|3+
	vocab     bool // vocab:<label> of the token, prev.vocab / next.vocab
	brands    bool // token.brandlex, prev.brandlex, next.brandlex
	firstWord bool // first.lower:<first token> on tokens after the first
	repeat    bool // token.repeat, next.repeat
	vocabular *Vocabulary
	brandLex  *BrandLexicon
	facts     wordFacts // vocabular and brandLex by token
	fixed     []string
}

func init() {
	registerFeatureSet(newV2("v2", v2Parts{shape: true, window2: true, fromEnd: true, vocab: true}))
	registerFeatureSet(newV2("v3", v2Parts{shape: true, window2: true, fromEnd: true, vocab: true, brands: true, firstWord: true}))
	registerFeatureSet(newV2("v4", v2Parts{window2: true, fromEnd: true, vocab: true, brands: true, firstWord: true, repeat: true}))
}

type v2Parts struct{ shape, window2, fromEnd, vocab, brands, firstWord, repeat bool }

func newV2(name string, p v2Parts) *v2 {
	f := &v2{name: name, shape: p.shape, window2: p.window2, fromEnd: p.fromEnd, vocab: p.vocab,
		brands: p.brands, firstWord: p.firstWord, repeat: p.repeat, vocabular: DefaultVocabulary(), fixed: v2Fixed}
	if p.brands {
		f.brandLex = DefaultBrandLexicon()
		f.fixed = v3Fixed
	}
	if p.repeat {
		f.fixed = v4Fixed
	}
	if !f.vocab {
		f.vocabular = nil // its facts would give v2 attributes it does not emit
	}
	f.facts = newWordFacts(f.vocabular, f.brandLex)
	return f
}

func (f *v2) Name() string { return f.name }

// v2 fixed attributes continue v1's, v3's continue v2's.
const (
	fBOS2 = numV1Fixed + iota
	fEOS2
	// fClosedKV is the first of the string attributes whose values form a
	// small closed set (position.rindex:0…3, prev/token/next.vocab:<label>):
	// listed among the fixed attributes, they are looked up once per model
	// instead of once per token. Their names, and so the features, are the
	// same as when they were emitted as strings.
	fClosedKV
	numV2Fixed = fClosedKV + len(rindex) + len(vocabKeys)*numComponents
)

const (
	fBrandLex = numV2Fixed + iota
	fPrevBrandLex
	fNextBrandLex
	fTokenRepeat
	fNextRepeat
)

// numComponents is len(ComponentLabels).
const numComponents = 9

// vocabKeys are the vocabulary attributes of a token and its neighbours.
var vocabKeys = [3]string{"prev.vocab", "token.vocab", "next.vocab"}

var v2Fixed = func() []string {
	names := append([]string(nil), v1Fixed[:]...)
	names = append(names, "BOS2", "EOS2")
	for _, r := range rindex {
		names = append(names, "position.rindex:"+r)
	}
	for _, k := range vocabKeys {
		for _, l := range ComponentLabels {
			names = append(names, k+":"+l)
		}
	}
	return names
}()

var v3Fixed = append(v2Fixed[:numV2Fixed:numV2Fixed], "token.brandlex", "prev.brandlex", "next.brandlex")

var v4Fixed = append(v3Fixed[:fTokenRepeat:fTokenRepeat], "token.repeat", "next.repeat")

// componentIndex is the position of a label in ComponentLabels, -1 if none.
func componentIndex(l string) int {
	for i, c := range ComponentLabels {
		if c == l {
			return i
		}
	}
	return -1
}

func (f *v2) FixedNames() []string { return f.fixed }

func (f *v2) wordFacts() wordFacts { return f.facts }

func (f *v2) Featurize(toks []string, sc *Scratch, sink Sink) {
	e := newEmitter(toks, sc, sink)
	n := len(toks)
	// One look-up per token answers both the vocabulary and the brand
	// lexicon (wordfacts.go).
	if f.vocab || f.brands {
		sc.facts, sc.factBuf = sc.facts[:0], sc.factBuf[:0]
		for range toks {
			sc.factBuf = append(sc.factBuf, wordFact{})
		}
		for i := range toks {
			var ft *wordFact
			ok := false
			if e.ws != nil {
				ft, ok = e.ws.fact(i) // the sink's look-up of the token
			}
			if !ok {
				ft = f.facts.lookup(f.vocabular, sc.lowerOf(&sc.info[i]), &sc.factBuf[i])
			}
			sc.facts = append(sc.facts, ft)
		}
	}
	// inBrand[i]: token i is part of a lexicon brand (longest match, left
	// to right). Names of up to 32 tokens need no allocation.
	var inBrandBuf [32]bool
	var inBrand []bool
	if f.brands {
		inBrand = inBrandBuf[:0]
		for range toks {
			inBrand = append(inBrand, false)
		}
		for i := 0; i < n; {
			k := 0
			if ft := sc.facts[i]; ft != nil {
				k = matchBrands(sc, i, ft.brands)
			}
			if k == 0 {
				i++
				continue
			}
			for j := i; j < i+k; j++ {
				inBrand[j] = true
			}
			i += k
		}
	}
	for i, tok := range toks {
		ti := &sc.info[i]
		v1Token(e, toks, i, n, tok, ti)
		if f.shape {
			sc.buf2 = appendShape(sc.buf2[:0], tok)
			e.shape(sc.buf2)
		}
		if f.window2 {
			if i > 1 {
				e.word(wPrev2Lower, i-2)
			} else {
				e.num(fBOS2, 1)
			}
			if i < n-2 {
				e.word(wNext2Lower, i+2)
			} else {
				e.num(fEOS2, 1)
			}
		}
		if f.fromEnd {
			r := n - 1 - i
			if r > 3 {
				r = 3
			}
			e.num(fClosedKV+r, 1) // position.rindex:<r>
		}
		if f.vocab {
			for k, key := range vocabKeys {
				j := i - 1 + k // prev, token, next
				if j < 0 || j >= n {
					continue
				}
				ft := sc.facts[j]
				switch {
				case ft == nil:
				case ft.vocab >= 0:
					e.num(fClosedKV+len(rindex)+k*numComponents+int(ft.vocab), 1) // <key>:<label>
				case ft.vocab == -2:
					e.strS(key, ft.label)
				}
			}
		}
		if f.brands {
			if inBrand[i] {
				e.num(fBrandLex, 1)
			}
			if i > 0 && inBrand[i-1] {
				e.num(fPrevBrandLex, 1)
			}
			if i < n-1 && inBrand[i+1] {
				e.num(fNextBrandLex, 1)
			}
		}
		if f.firstWord && i > 0 {
			e.word(wFirstLower, 0)
		}
		if f.repeat {
			low := sc.lowerOf(ti)
			if i > 0 && string(low) == string(sc.lowerOf(&sc.info[i-1])) {
				e.num(fTokenRepeat, 1)
			}
			if i < n-1 && string(low) == string(sc.lowerOf(&sc.info[i+1])) {
				e.num(fNextRepeat, 1)
			}
		}
		sink.EndToken()
	}
}

var rindex = [4]string{"0", "1", "2", "3"}

// appendShape maps upper-case letters to X, lower-case to x, digits to 9,
// keeps other characters, and collapses runs: "KN95" → "X9", "Aura" → "Xx",
// "9205+" → "9+".
func appendShape(dst []byte, tok string) []byte {
	var last rune = -1
	for i := 0; i < len(tok); i++ { // ASCII prefix, by table
		b := tok[i]
		if b >= utf8.RuneSelf {
			return appendShapeRunes(dst, tok[i:], last)
		}
		if c := asciiShape[b]; rune(c) != last {
			dst = append(dst, c)
			last = rune(c)
		}
	}
	return dst
}

// asciiShape is appendShape's class of each ASCII byte.
var asciiShape = func() (t [utf8.RuneSelf]byte) {
	for b := range t {
		t[b] = byte(b)
		switch {
		case 'A' <= b && b <= 'Z':
			t[b] = 'X'
		case 'a' <= b && b <= 'z':
			t[b] = 'x'
		case '0' <= b && b <= '9':
			t[b] = '9'
		}
	}
	return t
}()

// appendShapeRunes is appendShape for the rest of a token from its first
// non-ASCII byte, with the class of the character before it.
func appendShapeRunes(dst []byte, tok string, last rune) []byte {
	for _, r := range tok {
		var c rune
		switch {
		case pyIsUpper(r) || pyIsTitle(r):
			c = 'X'
		case pyIsLower(r):
			c = 'x'
		case pyIsDigit(r):
			c = '9'
		default:
			c = r
		}
		if c != last {
			dst = utf8.AppendRune(dst, c)
			last = c
		}
	}
	return dst
}
