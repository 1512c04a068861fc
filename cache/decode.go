package cache

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// errFast means the fast decoder met something it does not handle; the
// caller falls back to predictor.Prediction.UnmarshalJSON.
var errFast = errors.New("cache: entry needs the full decoder")

// decodeFast reads a cache entry in the shape predictor.Prediction's
// AppendJSON writes, about ten times faster than encoding/json (a hit is
// otherwise dearer than predicting afresh). It reads mask_name, tokens,
// breakdown (the labels, checked against the tokens), confidence,
// token_confidences, sequence_probability, model_version, fallback, source
// and normalized_name; components is derived data and skipped, and so are
// unknown fields. Entries with per-spelling extras (marginals,
// alternatives), which the worker never writes, and anything else unusual
// return errFast.
func decodeFast(b []byte) (*predictor.Prediction, error) {
	d := decoder{b: b}
	p := &predictor.Prediction{}
	var labels []string
	haveTokens, haveBreakdown := false, false
	if !d.consume('{') {
		return nil, errFast
	}
	if d.peek() == '}' {
		return nil, errFast
	}
	for {
		key, ok := d.str()
		if !ok || !d.consume(':') {
			return nil, errFast
		}
		switch key {
		case "mask_name":
			if p.MaskName, ok = d.str(); !ok {
				return nil, errFast
			}
		case "model_version":
			if p.ModelVersion, ok = d.str(); !ok {
				return nil, errFast
			}
		case "normalized_name":
			if p.NormalizedName, ok = d.str(); !ok {
				return nil, errFast
			}
		case "source":
			if p.Source, ok = d.str(); !ok {
				return nil, errFast
			}
		case "tokens":
			if p.Tokens, ok = d.strings(); !ok {
				return nil, errFast
			}
			haveTokens = true
		case "breakdown":
			if labels, ok = d.breakdown(p.Tokens, haveTokens); !ok {
				return nil, errFast
			}
			haveBreakdown = true
		case "confidence":
			if p.Confidence, ok = d.number(); !ok {
				return nil, errFast
			}
		case "sequence_probability":
			if p.SequenceProbability, ok = d.number(); !ok {
				return nil, errFast
			}
		case "token_confidences":
			if p.TokenConfidences, ok = d.numbers(); !ok {
				return nil, errFast
			}
		case "fallback":
			switch {
			case d.literal("true"):
				p.Fallback = true
			case d.literal("false"):
			default:
				return nil, errFast
			}
		default:
			// encoding/json matches field names case-insensitively; leave
			// such spellings to it.
			for _, k := range fastKeys {
				if strings.EqualFold(key, k) {
					return nil, errFast
				}
			}
			if !d.skip(0) {
				return nil, errFast
			}
		}
		if d.consume(',') {
			continue
		}
		if !d.consume('}') {
			return nil, errFast
		}
		break
	}
	d.ws()
	if d.i != len(d.b) || !haveTokens || !haveBreakdown || len(labels) != len(p.Tokens) {
		return nil, errFast
	}
	p.Labels = labels
	return p, nil
}

// fastKeys are the fields predictor.Prediction's decoder knows; a key that
// matches one only case-insensitively, or marginals/alternatives (typed
// fields the fast decoder does not read), go to encoding/json.
var fastKeys = []string{"mask_name", "model_version", "normalized_name", "source", "tokens", "breakdown",
	"confidence", "sequence_probability", "token_confidences", "fallback", "marginals", "alternatives"}

type decoder struct {
	b []byte
	i int
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *decoder) consume(c byte) bool {
	if d.peek() == c {
		d.i++
		return true
	}
	return false
}

func (d *decoder) literal(s string) bool {
	d.ws()
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// str reads a JSON string. Invalid UTF-8 becomes U+FFFD, as encoding/json does.
func (d *decoder) str() (string, bool) {
	if !d.consume('"') {
		return "", false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !utf8.Valid(s) {
				return string([]rune(string(s))), true
			}
			return string(s), true
		case c == '\\':
			return d.strSlow(start)
		case c < 0x20:
			return "", false
		}
		d.i++
	}
	return "", false
}

func (d *decoder) strSlow(start int) (string, bool) {
	out := append([]byte(nil), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(out) {
				return string([]rune(string(out))), true
			}
			return string(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			return "", false
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
					save := d.i
					d.i += 2
					if x, ok := d.hex4(); ok {
						if dec := utf16.DecodeRune(r, x); dec != utf8.RuneError {
							r2 = dec
						} else {
							d.i = save
						}
					} else {
						return "", false
					}
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (d *decoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	d.i += 4
	return r, true
}

// number reads a JSON number (the strict grammar, as encoding/json).
func (d *decoder) number() (float64, bool) {
	d.ws()
	b, i := d.b, d.i
	start := i
	digits := func() bool {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(b[start:i]), 64)
	if err != nil {
		return 0, false
	}
	d.i = i
	return f, true
}

func (d *decoder) strings() ([]string, bool) {
	if !d.consume('[') {
		return nil, false
	}
	out := []string{}
	if d.consume(']') {
		return out, true
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if d.consume(',') {
			continue
		}
		return out, d.consume(']')
	}
}

func (d *decoder) numbers() ([]float64, bool) {
	if !d.consume('[') {
		return nil, false
	}
	out := []float64{}
	if d.consume(']') {
		return out, true
	}
	for {
		f, ok := d.number()
		if !ok {
			return nil, false
		}
		out = append(out, f)
		if d.consume(',') {
			continue
		}
		return out, d.consume(']')
	}
}

// breakdown reads [{token: label}, …]; each entry must name its token.
func (d *decoder) breakdown(toks []string, haveTokens bool) ([]string, bool) {
	if !haveTokens || !d.consume('[') {
		return nil, false
	}
	labels := make([]string, 0, len(toks))
	if d.consume(']') {
		return labels, true
	}
	for {
		if !d.consume('{') {
			return nil, false
		}
		tok, ok := d.str()
		if !ok || !d.consume(':') {
			return nil, false
		}
		label, ok := d.label()
		if !ok || !d.consume('}') || len(labels) >= len(toks) || toks[len(labels)] != tok {
			return nil, false
		}
		labels = append(labels, label)
		if d.consume(',') {
			continue
		}
		return labels, d.consume(']')
	}
}

// label is str, sharing the strings of the nine component labels.
func (d *decoder) label() (string, bool) {
	if d.peek() == '"' {
		rest := d.b[d.i+1:]
		for _, l := range predictor.ComponentLabels {
			if len(rest) > len(l) && rest[len(l)] == '"' && string(rest[:len(l)]) == l {
				d.i += len(l) + 2
				return l, true
			}
		}
	}
	return d.str()
}

// skip passes over one JSON value.
func (d *decoder) skip(depth int) bool {
	if depth > 64 {
		return false
	}
	switch d.peek() {
	case '"':
		_, ok := d.str()
		return ok
	case '{':
		d.i++
		if d.consume('}') {
			return true
		}
		for {
			if _, ok := d.str(); !ok || !d.consume(':') || !d.skip(depth+1) {
				return false
			}
			if d.consume(',') {
				continue
			}
			return d.consume('}')
		}
	case '[':
		d.i++
		if d.consume(']') {
			return true
		}
		for {
			if !d.skip(depth + 1) {
				return false
			}
			if d.consume(',') {
				continue
			}
			return d.consume(']')
		}
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		_, ok := d.number()
		return ok
	}
}
