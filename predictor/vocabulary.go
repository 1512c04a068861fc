package predictor

import (
	"bufio"
	_ "embed"
	"fmt"
	"strings"
)

//go:embed vocabulary.txt
var vocabularyText string

// Vocabulary maps lowercased tokens and token sequences to labels: the
// closed word lists of the domain (filter standards, sizes, straps, …).
type Vocabulary struct {
	words map[string]string // single token → label
	// phrases[first token] lists multi-token phrases starting with it.
	phrases     map[string][][]string
	phraseLabel map[string]string // phrase joined by ' ' → label
}

// ParseVocabulary reads the vocabulary.txt format: "[label]" sections of
// white-space separated entries, '_' joining the tokens of a phrase.
func ParseVocabulary(text string) (*Vocabulary, error) {
	v := &Vocabulary{words: map[string]string{}, phrases: map[string][][]string{}, phraseLabel: map[string]string{}}
	label := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			label = strings.TrimSpace(line[1 : len(line)-1])
			if !isComponent(label) {
				return nil, fmt.Errorf("vocabulary line %d: unknown label %q", n, label)
			}
			continue
		}
		if label == "" {
			return nil, fmt.Errorf("vocabulary line %d: entries before the first [label]", n)
		}
		for _, e := range strings.Fields(line) {
			v.add(strings.ToLower(e), label)
		}
	}
	return v, sc.Err()
}

func (v *Vocabulary) add(entry, label string) {
	parts := strings.Split(entry, "_")
	if len(parts) == 1 {
		if _, dup := v.words[entry]; !dup {
			v.words[entry] = label
		}
		return
	}
	key := strings.Join(parts, " ")
	if _, dup := v.phraseLabel[key]; dup {
		return
	}
	v.phraseLabel[key] = label
	v.phrases[parts[0]] = append(v.phrases[parts[0]], parts)
}

// DefaultVocabulary is the embedded vocabulary.txt.
func DefaultVocabulary() *Vocabulary {
	v, err := ParseVocabulary(vocabularyText)
	if err != nil {
		panic("embedded vocabulary.txt: " + err.Error()) // caught by the tests
	}
	return v
}

// singular strips a plural ending: "earloops" → "earloop", "boxes" → "box".
func singular(w string) string {
	switch {
	case len(w) > 4 && strings.HasSuffix(w, "ies"):
		return w[:len(w)-3] + "y"
	case len(w) > 3 && strings.HasSuffix(w, "es") && (strings.HasSuffix(w, "xes") || strings.HasSuffix(w, "ches") || strings.HasSuffix(w, "shes")):
		return w[:len(w)-2]
	case len(w) > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss"):
		return w[:len(w)-1]
	}
	return w
}

// wordBytes is Word for a byte slice; the common cases (exact or plural
// hit, and misses without '/') do not allocate.
func (v *Vocabulary) wordBytes(b []byte) (string, bool) {
	if l, ok := v.words[string(b)]; ok {
		return l, true
	}
	n := len(b)
	switch {
	case n > 4 && b[n-3] == 'i' && b[n-2] == 'e' && b[n-1] == 's':
		return v.Word(string(b))
	case n > 3 && b[n-1] == 's' && b[n-2] == 'e':
		return v.Word(string(b))
	case n > 3 && b[n-1] == 's' && b[n-2] != 's':
		if l, ok := v.words[string(b[:n-1])]; ok {
			return l, true
		}
	}
	for _, c := range b {
		if c == '/' {
			return v.Word(string(b))
		}
	}
	return "", false
}

// Word returns the label of one lowercased token: exact, singular, or for
// "a/b" compounds the label every part shares.
func (v *Vocabulary) Word(lower string) (string, bool) {
	if l, ok := v.words[lower]; ok {
		return l, true
	}
	if l, ok := v.words[singular(lower)]; ok {
		return l, true
	}
	if strings.Contains(lower, "/") && lower != "/" {
		parts := strings.Split(lower, "/")
		label := ""
		for _, p := range parts {
			if p == "" {
				continue
			}
			l, ok := v.Word(p)
			if !ok || (label != "" && l != label) {
				return "", false
			}
			label = l
		}
		return label, label != ""
	}
	return "", false
}

// Phrase returns the label and length of the longest phrase starting at
// lowered tokens low[i:], if any.
func (v *Vocabulary) Phrase(low []string, i int) (string, int) {
	bestLen, bestLabel := 0, ""
	for _, cand := range [2]string{low[i], singular(low[i])} {
		for _, ph := range v.phrases[cand] {
			if len(ph) <= bestLen || i+len(ph) > len(low) {
				continue
			}
			ok := true
			for k := 1; k < len(ph); k++ {
				if low[i+k] != ph[k] && singular(low[i+k]) != ph[k] {
					ok = false
					break
				}
			}
			if ok {
				bestLen, bestLabel = len(ph), v.phraseLabel[strings.Join(ph, " ")]
			}
		}
	}
	return bestLabel, bestLen
}
