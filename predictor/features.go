package predictor

import (
	"fmt"
	"sort"
	"unicode/utf8"
)

// Sink receives the attributes of a sequence, token by token. name is only
// valid during the call (it points into scratch memory).
type Sink interface {
	Attr(name []byte, value float64)
	EndToken()
}

// FeatureSet turns the tokens of a name into CRF attributes. The model file
// records the name of the feature set it was trained with, so the predictor
// can pick the matching one.
type FeatureSet interface {
	Name() string
	// Featurize emits every token's attributes, in order, then EndToken.
	Featurize(toks []string, sc *Scratch, sink Sink)
}

// Scratch is reusable memory for featurizing one name. Not safe for
// concurrent use; the predictor pools them.
type Scratch struct {
	buf   []byte
	lower []byte
	info  []tokInfo
}

type tokInfo struct {
	lo, hi int // lowercased token in Scratch.lower[lo:hi]
	runes  int
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
		sc.info = append(sc.info, tokInfo{lo: lo, hi: len(sc.lower), runes: utf8.RuneCountInString(t), flags: strFlags(t)})
	}
}

// emitter writes attribute names into the scratch buffer and passes them on.
type emitter struct {
	sc   *Scratch
	sink Sink
}

func (e emitter) num(name string, v float64) {
	e.sc.buf = append(e.sc.buf[:0], name...)
	e.sink.Attr(e.sc.buf, v)
}

func (e emitter) flag(name string, b bool) {
	v := 0.0
	if b {
		v = 1
	}
	e.num(name, v)
}

// str emits "name:value" with value 1.
func (e emitter) str(name string, value []byte) {
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

func (v1) Featurize(toks []string, sc *Scratch, sink Sink) {
	sc.prepare(toks)
	e := emitter{sc: sc, sink: sink}
	n := len(toks)
	for i, tok := range toks {
		ti := &sc.info[i]
		v1Token(e, toks, i, n, tok, ti)
		sink.EndToken()
	}
}

func v1Token(e emitter, toks []string, i, n int, tok string, ti *tokInfo) {
	sc := e.sc
	e.num("bias", 1)
	e.str("token.lower", sc.lowerOf(ti))
	e.flag("token.isupper", ti.isUpper)
	e.flag("token.istitle", ti.isTitle)
	e.flag("token.isdigit", ti.isDigit)
	e.num("token.length", float64(ti.runes))
	e.flag("position.first", i == 0)
	e.flag("position.last", i == n-1)
	e.num("position.index", float64(i))
	if ti.runes >= 2 {
		e.strLower("token.prefix2", runePrefix(tok, 2))
		e.strLower("token.suffix2", runeSuffix(tok, 2))
	}
	if ti.runes >= 3 {
		e.strLower("token.prefix3", runePrefix(tok, 3))
		e.strLower("token.suffix3", runeSuffix(tok, 3))
	}
	e.flag("token.hasdigit", ti.hasDigit)
	e.flag("token.hasalpha", ti.hasAlpha)
	e.flag("token.hasslash", ti.hasSlash)
	e.flag("token.hasdash", ti.hasDash)
	if i > 0 {
		p := &sc.info[i-1]
		e.str("prev.token.lower", sc.lowerOf(p))
		e.flag("prev.token.isupper", p.isUpper)
		e.flag("prev.token.istitle", p.isTitle)
	} else {
		e.num("BOS", 1)
	}
	if i < n-1 {
		x := &sc.info[i+1]
		e.str("next.token.lower", sc.lowerOf(x))
		e.flag("next.token.isupper", x.isUpper)
		e.flag("next.token.istitle", x.isTitle)
	} else {
		e.num("EOS", 1)
	}
}
