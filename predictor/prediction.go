package predictor

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// ComponentLabels are the nine components, in the order the JSON lists them.
var ComponentLabels = []string{"brand", "model", "size", "color", "style", "strap", "filter_type", "valved", "misc"}

// Prediction is the labelled mask name. Its JSON is the seed service's shape
// (mask_name, tokens, breakdown, components, confidence, model_version,
// fallback) plus fields we added; seed fields are never removed or renamed.
// Breakdown and components are derived from Tokens and Labels when encoding.
type Prediction struct {
	MaskName string
	Tokens   []string
	Labels   []string
	// Confidence is the mean over tokens of the largest marginal; 0 for the
	// rule fallback.
	Confidence       float64
	TokenConfidences []float64
	// SequenceProbability is P(labels | name) under the model.
	SequenceProbability float64
	ModelVersion        string
	Fallback            bool
	// Source is "label" when a person's label answers instead of the model
	// (the labels package), empty for the model and the rule fallback; the
	// JSON carries "source" only when it is set.
	Source string
	// NormalizedName is the cache key's name part, when known.
	NormalizedName string
	// Marginals, when requested: Marginals[t][k] = P(y_t = MarginalLabels[k]).
	MarginalLabels []string
	Marginals      [][]float64
	// Alternatives, when n-best was requested: the next best label sequences.
	Alternatives []Alternative
}

// Alternative is one n-best label sequence.
type Alternative struct {
	Labels      []string `json:"labels"`
	Probability float64  `json:"probability"`
}

// Components groups the tokens by label; all nine components are present.
func (p *Prediction) Components() map[string][]string {
	c := make(map[string][]string, len(ComponentLabels))
	for _, l := range ComponentLabels {
		c[l] = []string{}
	}
	for i, tok := range p.Tokens {
		c[p.Labels[i]] = append(c[p.Labels[i]], tok)
	}
	return c
}

// MarshalJSON writes the seed-compatible shape. It is hand-written because
// predictions are encoded on every job and request, and breakdown and
// components would otherwise cost a map per token.
func (p *Prediction) MarshalJSON() ([]byte, error) {
	return p.AppendJSON(make([]byte, 0, 512)), nil
}

// AppendJSON appends the prediction's JSON to b.
func (p *Prediction) AppendJSON(b []byte) []byte {
	b = append(b, `{"mask_name":`...)
	b = appendString(b, p.MaskName)
	b = append(b, `,"tokens":[`...)
	for i, t := range p.Tokens {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t)
	}
	b = append(b, `],"breakdown":[`...)
	for i, t := range p.Tokens {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = appendString(b, t)
		b = append(b, ':')
		b = appendString(b, p.Labels[i])
		b = append(b, '}')
	}
	b = append(b, `],"components":{`...)
	for k, l := range ComponentLabels {
		if k > 0 {
			b = append(b, ',')
		}
		b = p.appendComponent(b, l)
	}
	// labels outside the nine (a custom model) still get their component
	for i, l := range p.Labels {
		if !isComponent(l) && !seenBefore(p.Labels[:i], l) {
			b = p.appendComponent(append(b, ','), l)
		}
	}
	b = append(b, `},"confidence":`...)
	b = appendFloat(b, p.Confidence)
	b = append(b, `,"token_confidences":[`...)
	for i, c := range p.TokenConfidences {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendFloat(b, c)
	}
	b = append(b, `],"sequence_probability":`...)
	b = appendFloat(b, p.SequenceProbability)
	b = append(b, `,"model_version":`...)
	b = appendString(b, p.ModelVersion)
	b = append(b, `,"fallback":`...)
	b = strconv.AppendBool(b, p.Fallback)
	if p.Source != "" {
		b = append(b, `,"source":`...)
		b = appendString(b, p.Source)
	}
	if p.NormalizedName != "" {
		b = append(b, `,"normalized_name":`...)
		b = appendString(b, p.NormalizedName)
	}
	if p.Marginals != nil {
		b = append(b, `,"marginals":[`...)
		for t, row := range p.Marginals {
			if t > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			for k, v := range row {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendString(b, p.MarginalLabels[k])
				b = append(b, ':')
				b = appendFloat(b, v)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if p.Alternatives != nil {
		b = append(b, `,"alternatives":[`...)
		for i, a := range p.Alternatives {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"labels":[`...)
			for k, l := range a.Labels {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendString(b, l)
			}
			b = append(b, `],"probability":`...)
			b = appendFloat(b, a.Probability)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendComponent writes "label":[tokens with that label].
func (p *Prediction) appendComponent(b []byte, label string) []byte {
	b = appendString(b, label)
	b = append(b, ":["...)
	first := true
	for i, t := range p.Tokens {
		if p.Labels[i] == label {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendString(b, t)
		}
	}
	return append(b, ']')
}

func isComponent(l string) bool {
	for _, c := range ComponentLabels {
		if c == l {
			return true
		}
	}
	return false
}

func seenBefore(ls []string, l string) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

// predictionJSON is the decoding shape.
type predictionJSON struct {
	MaskName            string               `json:"mask_name"`
	Tokens              []string             `json:"tokens"`
	Breakdown           []map[string]string  `json:"breakdown"`
	Confidence          float64              `json:"confidence"`
	TokenConfidences    []float64            `json:"token_confidences"`
	SequenceProbability float64              `json:"sequence_probability"`
	ModelVersion        string               `json:"model_version"`
	Fallback            bool                 `json:"fallback"`
	Source              string               `json:"source"`
	NormalizedName      string               `json:"normalized_name"`
	Marginals           []map[string]float64 `json:"marginals"`
	Alternatives        []Alternative        `json:"alternatives"`
}

// UnmarshalJSON reads what MarshalJSON wrote (for cache entries and clients).
func (p *Prediction) UnmarshalJSON(data []byte) error {
	var j predictionJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if len(j.Breakdown) != len(j.Tokens) {
		return fmt.Errorf("prediction: %d breakdown entries for %d tokens", len(j.Breakdown), len(j.Tokens))
	}
	labels := make([]string, len(j.Tokens))
	for i, m := range j.Breakdown {
		l, ok := m[j.Tokens[i]]
		if !ok || len(m) != 1 {
			return fmt.Errorf("prediction: breakdown entry %d does not name token %q", i, j.Tokens[i])
		}
		labels[i] = l
	}
	*p = Prediction{
		MaskName: j.MaskName, Tokens: j.Tokens, Labels: labels,
		Confidence: j.Confidence, TokenConfidences: j.TokenConfidences,
		SequenceProbability: j.SequenceProbability, ModelVersion: j.ModelVersion,
		Fallback: j.Fallback, Source: j.Source, NormalizedName: j.NormalizedName, Alternatives: j.Alternatives,
	}
	return nil
}

// appendFloat writes the shortest representation that round-trips.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does; U+2028/2029 are escaped so the output is safe in JS.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendJSONString appends s as a JSON string literal.
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }
