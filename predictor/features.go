package predictor

import (
	"fmt"
	"sort"
	"unicode/utf8"
)

// Sink receives the attributes of a sequence, token by token. name is only
// valid during the call (it points into scratch memory). Attributes whose
// name never changes (bias, token.isupper, BOS, …) arrive through Fixed with
// their index in the feature set's FixedNames, so a sink can resolve them
// once instead of hashing the name for every token.
type Sink interface {
	Attr(name []byte, value float64)
	Fixed(index int, value float64)
	EndToken()
}

// FeatureSet turns the tokens of a name into CRF attributes. The model file
// records the name of the feature set it was trained with, so the predictor
// can pick the matching one.
type FeatureSet interface {
	Name() string
	// FixedNames lists the attribute names passed to Sink.Fixed, by index.
	FixedNames() []string
	// Featurize emits every token's attributes, in order, then EndToken.
	Featurize(toks []string, sc *Scratch, sink Sink)
}

// Scratch is reusable memory for featurizing one name. Not safe for
// concurrent use; the predictor pools them.
type Scratch struct {
	buf     []byte
	buf2    []byte
	facts   []*wordFact // per token, nil when it has none
	factBuf []wordFact  // storage for facts of compounds
	lower   []byte
	info    []tokInfo
}

type tokInfo struct {
	lo, hi int // lowercased token in Scratch.lower[lo:hi]
	runes  int
	ascii  bool
	flags
}

func (sc *Scratch) lowerOf(ti *tokInfo) []byte { return sc.lower[ti.lo:ti.hi] }

// prepare lowercases every token once and computes its str predicates.
func (sc *Scratch) prepare(toks []string) {
	sc.lower = sc.lower[:0]
	sc.info = sc.info[:0]
	for _, t := range toks {
		lo := len(sc.lower)
		sc.lower = appendLower(sc.lower, t)
		sc.info = append(sc.info, tokInfo{lo: lo, hi: len(sc.lower), runes: utf8.RuneCountInString(t), ascii: isASCII(t), flags: strFlags(t)})
	}
}

// emitter writes attribute names into the scratch buffer and passes them on.
type emitter struct {
	sc   *Scratch
	sink Sink
	ws   wordSink // sink's word table, nil when it has none
}

// newEmitter prepares the scratch for toks and starts a name on the sink.
func newEmitter(toks []string, sc *Scratch, sink Sink) emitter {
	sc.prepare(toks)
	e := emitter{sc: sc, sink: sink}
	if ws, ok := sink.(wordSink); ok {
		ws.begin(sc)
		e.ws = ws
	}
	return e
}

// word emits the attribute of kind k (a whole-word kind) for token i.
func (e emitter) word(k wordKind, i int) {
	if e.ws != nil && e.ws.word(k, i) {
		return
	}
	emitKV(e, wordKindNames[k], e.sc.lowerOf(&e.sc.info[i]))
}

// shape emits token.shape:<shape>.
func (e emitter) shape(shape []byte) {
	if e.ws != nil {
		e.ws.shape(shape)
		return
	}
	emitKV(e, shapeAttr, shape)
}

// affix emits the attribute of affix kind k for token i, whose raw affix is
// part: the value is part lowered.
func (e emitter) affix(k wordKind, i int, part string) {
	if e.ws != nil && e.ws.word(k, i) {
		return
	}
	e.strLower(wordKindNames[k], part)
}

func (e emitter) num(k int, v float64) { e.sink.Fixed(k, v) }

func (e emitter) flag(k int, b bool) {
	v := 0.0
	if b {
		v = 1
	}
	e.sink.Fixed(k, v)
}

// str emits "name:value" with value 1.
func (e emitter) str(name string, value []byte) { emitKV(e, name, value) }

// strS is str for a string value.
func (e emitter) strS(name, value string) { emitKV(e, name, value) }

func emitKV[T string | []byte](e emitter, name string, value T) {
	b := append(e.sc.buf[:0], name...)
	b = append(b, ':')
	b = append(b, value...)
	e.sc.buf = b
	e.sink.Attr(b, 1)
}

// strLower emits "name:" + Python's s.lower().
func (e emitter) strLower(name, s string) {
	b := append(e.sc.buf[:0], name...)
	b = append(b, ':')
	b = appendLower(b, s)
	e.sc.buf = b
	e.sink.Attr(b, 1)
}

var featureSets = map[string]FeatureSet{}

// registerFeatureSet makes a feature set available by name.
func registerFeatureSet(fs FeatureSet) { featureSets[fs.Name()] = fs }

// LookupFeatureSet returns the feature set of that name.
func LookupFeatureSet(name string) (FeatureSet, error) {
	fs, ok := featureSets[name]
	if !ok {
		return nil, fmt.Errorf("unknown feature set %q (known: %v)", name, FeatureSetNames())
	}
	return fs, nil
}

// FeatureSetNames lists the known feature sets, sorted.
func FeatureSetNames() []string {
	names := make([]string, 0, len(featureSets))
	for n := range featureSets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func init() { registerFeatureSet(v1{}) }

// v1 is the reference service's feature function, attribute for attribute
// and in its order (the order decides CRFsuite's floating-point sums).
type v1 struct{}

func (v1) Name() string { return "v1" }

// The fixed attributes of v1, in FixedNames order.
const (
	fBias = iota
	fIsUpper
	fIsTitle
	fIsDigit
	fLength
	fFirst
	fLast
	fIndex
	fHasDigit
	fHasAlpha
	fHasSlash
	fHasDash
	fPrevIsUpper
	fPrevIsTitle
	fBOS
	fNextIsUpper
	fNextIsTitle
	fEOS
	numV1Fixed
)

var v1Fixed = [numV1Fixed]string{
	"bias", "token.isupper", "token.istitle", "token.isdigit", "token.length",
	"position.first", "position.last", "position.index",
	"token.hasdigit", "token.hasalpha", "token.hasslash", "token.hasdash",
	"prev.token.isupper", "prev.token.istitle", "BOS",
	"next.token.isupper", "next.token.istitle", "EOS",
}

func (v1) FixedNames() []string { return v1Fixed[:] }

func (v1) Featurize(toks []string, sc *Scratch, sink Sink) {
	e := newEmitter(toks, sc, sink)
	n := len(toks)
	for i, tok := range toks {
		ti := &sc.info[i]
		v1Token(e, toks, i, n, tok, ti)
		sink.EndToken()
	}
}

func v1Token(e emitter, toks []string, i, n int, tok string, ti *tokInfo) {
	sc := e.sc
	e.num(fBias, 1)
	e.word(wTokenLower, i)
	e.flag(fIsUpper, ti.isUpper)
	e.flag(fIsTitle, ti.isTitle)
	e.flag(fIsDigit, ti.isDigit)
	e.num(fLength, float64(ti.runes))
	e.flag(fFirst, i == 0)
	e.flag(fLast, i == n-1)
	e.num(fIndex, float64(i))
	if ti.runes >= 2 {
		e.affix(wPrefix2, i, runePrefix(tok, 2))
		e.affix(wSuffix2, i, runeSuffix(tok, 2))
	}
	if ti.runes >= 3 {
		e.affix(wPrefix3, i, runePrefix(tok, 3))
		e.affix(wSuffix3, i, runeSuffix(tok, 3))
	}
	e.flag(fHasDigit, ti.hasDigit)
	e.flag(fHasAlpha, ti.hasAlpha)
	e.flag(fHasSlash, ti.hasSlash)
	e.flag(fHasDash, ti.hasDash)
	if i > 0 {
		p := &sc.info[i-1]
		e.word(wPrevLower, i-1)
		e.flag(fPrevIsUpper, p.isUpper)
		e.flag(fPrevIsTitle, p.isTitle)
	} else {
		e.num(fBOS, 1)
	}
	if i < n-1 {
		x := &sc.info[i+1]
		e.word(wNextLower, i+1)
		e.flag(fNextIsUpper, x.isUpper)
		e.flag(fNextIsTitle, x.isTitle)
	} else {
		e.num(fEOS, 1)
	}
}
