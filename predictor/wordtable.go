package predictor

import (
	"strings"
	"unicode/utf8"

	"github.com/maskpredictor/maskpredictor/model"
)

// wordKind names an attribute whose value is a token's lowered text (or an
// affix of it): "token.lower:aura", "prev.token.lower:3m", "token.prefix3:aur".
// Feature sets emit them through emitter.word and emitter.affix so that a
// predicting sink can resolve all of a token's word attributes with one map
// look-up of the token instead of one per attribute (the look-ups were a
// third of the time of a prediction).
type wordKind uint8

const (
	wTokenLower wordKind = iota
	wPrevLower
	wNextLower
	wPrev2Lower
	wNext2Lower
	wFirstLower
	wPrefix2
	wSuffix2
	wPrefix3
	wSuffix3
	numWordKinds
)

// numWholeWordKinds: the kinds before wPrefix2 take the whole lowered token
// as their value, the others an affix of it.
const numWholeWordKinds = wPrefix2

// wordKindNames are the attribute names, by kind.
var wordKindNames = [numWordKinds]string{
	wTokenLower: "token.lower",
	wPrevLower:  "prev.token.lower",
	wNextLower:  "next.token.lower",
	wPrev2Lower: "prev2.token.lower",
	wNext2Lower: "next2.token.lower",
	wFirstLower: "first.lower",
	wPrefix2:    "token.prefix2",
	wSuffix2:    "token.suffix2",
	wPrefix3:    "token.prefix3",
	wSuffix3:    "token.suffix3",
}

// wordSink is implemented by sinks that resolve word attributes through a
// table. Sinks without it receive word attributes as names through Attr.
type wordSink interface {
	// begin is called once per name, after Scratch.prepare.
	begin(sc *Scratch)
	// word adds the attribute of kind k for token i and reports true, or
	// reports false when the caller must emit it by name instead.
	word(k wordKind, i int) bool
	// shape adds the attribute token.shape:<shape>.
	shape(shape []byte)
	// fact returns the vocabulary and lexicon fact of token i from the
	// same look-up, ok false when the feature set must look it up itself.
	fact(i int) (f *wordFact, ok bool)
}

// factSource is a feature set that reads word facts: its table joins the
// model's, so that one look-up per token serves both.
type factSource interface{ wordFacts() wordFacts }

// shapeAttr is the name of the word-shape attribute (feature set v2/v3).
const shapeAttr = "token.shape"

// newShapeTable maps each shape of m's token.shape attributes that scores
// to its id: the look-up hashes the short shape, not the attribute name.
func newShapeTable(m *model.Model) map[string]int32 {
	t := map[string]int32{}
	for id, a := range m.Attributes() {
		if v, ok := strings.CutPrefix(a, shapeAttr+":"); ok && m.AttrScores(int32(id)) {
			t[v] = int32(id)
		}
	}
	return t
}

// wordIDs are the model's attribute ids of every word attribute one lowered
// token can produce (-1: the model does not know it, or gives it no weight).
// The affix ids are those of the lowered token's affixes, which equal the
// lowered affixes of the raw token when the token is ASCII.
type wordIDs [numWordKinds]int32

// attrTables resolve a model's open-valued attributes by their value: built
// once per model, shared by every pooled sink, read concurrently.
type attrTables struct {
	words   wordTable
	affixes map[uint32]int32 // by affixKey
	shapes  map[string]int32
}

// newAttrTables builds the tables of m for feature set fs.
func newAttrTables(m *model.Model, fs FeatureSet) *attrTables {
	var facts wordFacts
	if src, ok := fs.(factSource); ok {
		facts = src.wordFacts()
	}
	affixes := newAffixTable(m)
	return &attrTables{words: newWordTable(m, affixes, facts), affixes: affixes, shapes: newShapeTable(m)}
}

// wordEntry is what one lowered token resolves to.
type wordEntry struct {
	ids  wordIDs
	fact *wordFact // nil: no vocabulary label, starts no lexicon brand
}

// wordTable maps each lowered token that occurs in a word attribute of the
// model, or in the feature set's facts, to its entry. It is built once per
// model and read concurrently.
type wordTable map[string]*wordEntry

// newWordTable collects the words of m's word attributes and of facts. A
// token missing from the table has no whole-word attribute in the model,
// and no fact unless it has a '/' (wordFacts).
func newWordTable(m *model.Model, affixes map[uint32]int32, facts wordFacts) wordTable {
	t := wordTable{}
	add := func(w string) {
		if t[w] == nil {
			t[w] = &wordEntry{ids: *wordIDsOf(m, affixes, w), fact: facts[w]}
		}
	}
	for _, a := range m.Attributes() {
		for k := wordKind(0); k < numWholeWordKinds; k++ {
			if w, ok := strings.CutPrefix(a, wordKindNames[k]+":"); ok {
				add(w)
			}
		}
	}
	for w := range facts {
		add(w)
	}
	return t
}

func wordIDsOf(m *model.Model, affixes map[uint32]int32, w string) *wordIDs {
	var ids wordIDs
	for k := range ids {
		ids[k] = -1
	}
	for k := range numWholeWordKinds {
		if x, ok := m.AttrID(wordKindNames[k] + ":" + w); ok && m.AttrScores(x) {
			ids[k] = x
		}
	}
	for k := numWholeWordKinds; k < numWordKinds; k++ {
		if v, ok := affixOf(k, w); ok {
			if key, ok := affixKey(k, v); ok {
				if x, ok := affixes[key]; ok {
					ids[k] = x
				}
			}
		}
	}
	return &ids
}

// affixOf is the value of affix kind k of a lowered ASCII token; ok is
// false when the token is too short to have one.
func affixOf[T string | []byte](k wordKind, low T) (v T, ok bool) {
	n := 2
	if k == wPrefix3 || k == wSuffix3 {
		n = 3
	}
	if len(low) < n {
		return v, false
	}
	if k == wPrefix2 || k == wPrefix3 {
		return low[:n], true
	}
	return low[len(low)-n:], true
}

// affixKey packs an affix attribute with a lowered ASCII value of two or
// three bytes into one integer, so that resolving it hashes 4 bytes instead
// of the attribute's name. ok is false for any other value.
func affixKey[T string | []byte](k wordKind, v T) (key uint32, ok bool) {
	if len(v) < 2 || len(v) > 3 {
		return 0, false
	}
	key = uint32(k) << 24
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return 0, false
		}
		key |= uint32(v[i]) << (16 - 8*i)
	}
	return key, true
}

// newAffixTable maps the affix attributes of m that score and have an ASCII
// value to their ids. Affixes of non-ASCII tokens are resolved by name.
func newAffixTable(m *model.Model) map[uint32]int32 {
	t := map[uint32]int32{}
	for id, a := range m.Attributes() {
		for k := numWholeWordKinds; k < numWordKinds; k++ {
			if v, ok := strings.CutPrefix(a, wordKindNames[k]+":"); ok && m.AttrScores(int32(id)) {
				if key, ok := affixKey(k, v); ok {
					t[key] = int32(id)
				}
			}
		}
	}
	return t
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
