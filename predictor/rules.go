package predictor

import (
	"bufio"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"sort"
	"strings"
)

//go:generate go run ./internal/genbrands -data ../testdata/train.json -out brands.txt

// brandsText is the brand lexicon generated from the training data.
//
//go:embed brands.txt
var brandsText string

// Rules is the rule-based predictor the service falls back to when no model
// can be loaded: closed vocabularies, a brand lexicon, model-number shapes
// and position. Its predictions say so: fallback true, confidence 0.
// It is safe for concurrent use.
type Rules struct {
	vocab   *Vocabulary
	brands  map[string][][]string // first token → brand token sequences, longest first
	limits  Limits
	version string
}

// NewRules builds a rule predictor from a vocabulary and a brand lexicon
// (each brand a sequence of lowercased tokens).
func NewRules(vocab *Vocabulary, brands [][]string, limits Limits) *Rules {
	r := &Rules{vocab: vocab, brands: map[string][][]string{}, limits: limits.WithDefaults()}
	h := sha256.New()
	h.Write([]byte(vocabularyText))
	for _, b := range brands {
		if len(b) == 0 {
			continue
		}
		r.brands[b[0]] = append(r.brands[b[0]], b)
		h.Write([]byte(strings.Join(b, " ") + "\n"))
	}
	for _, list := range r.brands {
		sort.SliceStable(list, func(i, j int) bool { return len(list[i]) > len(list[j]) })
	}
	r.version = "rules-" + hex.EncodeToString(h.Sum(nil)[:6])
	return r
}

// DefaultRules uses the embedded vocabulary and brand lexicon.
func DefaultRules(limits Limits) *Rules {
	return NewRules(DefaultVocabulary(), ParseBrands(brandsText), limits)
}

// ParseBrands reads a brand lexicon: one brand per line, tokens separated by
// spaces, '#' comments.
func ParseBrands(text string) [][]string {
	var out [][]string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Fields(strings.ToLower(line)))
	}
	return out
}

// BrandsFromRecords collects every run of brand-labelled tokens, lowercased,
// deduplicated, in first-seen order.
func BrandsFromRecords(recs []Record) [][]string {
	seen := map[string]bool{}
	var out [][]string
	for _, r := range recs {
		for i := 0; i < len(r.Labels); {
			if r.Labels[i] != "brand" {
				i++
				continue
			}
			j := i
			for j < len(r.Labels) && r.Labels[j] == "brand" {
				j++
			}
			span := make([]string, 0, j-i)
			for _, t := range r.Tokens[i:j] {
				span = append(span, string(appendLower(nil, t)))
			}
			if k := strings.Join(span, " "); !seen[k] {
				seen[k] = true
				out = append(out, span)
			}
			i = j
		}
	}
	return out
}

// Version identifies the rule set.
func (r *Rules) Version() string { return r.version }

// Predict labels name by rules.
func (r *Rules) Predict(name string) (*Prediction, error) { return r.PredictWith(name, Options{}) }

// PredictWith labels name by rules; options that need a model are ignored.
func (r *Rules) PredictWith(name string, _ Options) (*Prediction, error) {
	toks, err := r.limits.Check(name)
	if err != nil {
		return nil, err
	}
	return r.PredictTokens(name, toks), nil
}

// PredictTokens labels tokens the caller already split.
func (r *Rules) PredictTokens(name string, toks []string) *Prediction {
	return &Prediction{
		MaskName:         name,
		Tokens:           toks,
		Labels:           r.Label(toks),
		TokenConfidences: make([]float64, len(toks)),
		ModelVersion:     r.version,
		Fallback:         true,
	}
}

// brandAt returns the length of the longest lexicon brand starting at i.
func (r *Rules) brandAt(low []string, i int) int {
	for _, b := range r.brands[low[i]] {
		if i+len(b) > len(low) {
			continue
		}
		ok := true
		for k := 1; k < len(b); k++ {
			if low[i+k] != b[k] {
				ok = false
				break
			}
		}
		if ok {
			return len(b)
		}
	}
	return 0
}

// Label applies the rules, in order of how sure they are:
//  1. a lexicon brand at the start (or an unknown first word) is the brand;
//  2. vocabulary phrases and words take their label;
//  3. lexicon brands elsewhere (repeated names) that are not vocabulary;
//  4. model numbers (digits), and capitalised unknown words right after the
//     brand or a model word, are the model;
//  5. everything else is misc.
func (r *Rules) Label(toks []string) []string {
	n := len(toks)
	low := make([]string, n)
	for i, t := range toks {
		low[i] = string(appendLower(nil, t))
	}
	labels := make([]string, n)
	set := func(i, k int, l string) {
		for j := i; j < i+k; j++ {
			labels[j] = l
		}
	}
	// 1. brand at the start
	if k := r.brandAt(low, 0); k > 0 {
		set(0, k, "brand")
	} else if _, isWord := r.vocab.Word(low[0]); !isWord && !modelShaped(toks[0]) {
		if _, k := r.vocab.Phrase(low, 0); k == 0 {
			labels[0] = "brand"
		}
	}
	// 2. vocabulary
	for i := 0; i < n; {
		if labels[i] != "" {
			i++
			continue
		}
		if l, k := r.vocab.Phrase(low, i); k > 0 && unlabelled(labels[i:i+k]) {
			set(i, k, l)
			i += k
			continue
		}
		if l, ok := r.vocab.Word(low[i]); ok {
			labels[i] = l
		}
		i++
	}
	// 3. brands elsewhere
	for i := 1; i < n; i++ {
		if labels[i] != "" {
			continue
		}
		if k := r.brandAt(low, i); k > 0 && unlabelled(labels[i:i+k]) {
			set(i, k, "brand")
			i += k - 1
		}
	}
	// 4. model
	for i := 0; i < n; i++ {
		if labels[i] != "" {
			continue
		}
		prev := ""
		if i > 0 {
			prev = labels[i-1]
		}
		f := strFlags(toks[i])
		if modelShaped(toks[i]) || ((prev == "brand" || prev == "model") && (f.isTitle || f.isUpper || f.hasDigit)) {
			labels[i] = "model"
		}
	}
	// 5. the rest
	for i := range labels {
		if labels[i] == "" {
			labels[i] = "misc"
		}
	}
	return labels
}

func unlabelled(ls []string) bool {
	for _, l := range ls {
		if l != "" {
			return false
		}
	}
	return true
}

// modelShaped: a model number has digits (letters with digits, digits with
// '+' or '-'), but is not a plain percentage or a filter standard.
func modelShaped(tok string) bool {
	digits, other := 0, 0
	for _, c := range tok {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '%':
			return false
		default:
			other++
		}
	}
	return digits > 0
}
