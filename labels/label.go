// Package labels is the label store: names labelled by a person, kept in
// the Redis the sidecar already uses, that answer instead of the model for
// their names and are the training data of the next model (issue 13).
//
// One hash holds every label (the Redis contract, docs/DESIGN.md):
//
//	HSET maskpredictor:labels <normalized name> {"mask_name","breakdown":[{token: label}…],
//	     "labelled_at","labelled_by","source"}
//
// A stored label also rewrites the name's cache entry at once
// (maskpredictor:prediction:<normalized>, "source":"label", confidence 1,
// fallback false), so Rails sees the correction with its usual GET, and the
// cache's look-ups read the hash in the same round trip, so a label answers
// even after its cache entry expired or a new model was published.
package labels

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// TimeFormat is labelled_at's layout: RFC 3339 in UTC with nine fraction
// digits, so that two stamps compare as strings (the store's script keeps
// the newer of two labels of one name by that comparison).
const TimeFormat = "2006-01-02T15:04:05.000000000Z"

// Key is the Redis hash of the labels.
const Key = "maskpredictor:labels"

// ModelVersion is the model_version of a prediction answered by a label.
const ModelVersion = "label"

// Sources of a label: the way it came in.
const (
	SourceDashboard = "dashboard" // /admin/review
	SourceAPI       = "api"       // PUT /admin/api/labels
	SourceSidekiq   = "sidekiq"   // a MaskLabelJob from Rails
	SourceImport    = "import"    // maskpredictor labels import
)

// Sources lists the accepted sources.
var Sources = []string{SourceDashboard, SourceAPI, SourceSidekiq, SourceImport}

// Limits on one label.
const (
	// MaxLabelledBy bounds labelled_by, in bytes.
	MaxLabelledBy = 200
	// MaxEncoded bounds a label's JSON, in bytes (a 1,000-character name of
	// 100 tokens encodes to well under it).
	MaxEncoded = 64 << 10
)

// ErrInvalid is wrapped by every error about a label that cannot be stored:
// the caller answers 400 / sends the job to the dead set with the message.
var ErrInvalid = errors.New("invalid label")

// Label is one labelled name.
type Label struct {
	MaskName   string
	Breakdown  []predictor.Labelled
	LabelledAt time.Time
	LabelledBy string
	Source     string
}

// Normalized is the name's cache key part and the label's hash field.
func (l Label) Normalized() string { return predictor.Normalize(l.MaskName) }

type labelJSON struct {
	MaskName   string              `json:"mask_name"`
	Breakdown  []map[string]string `json:"breakdown"`
	LabelledAt string              `json:"labelled_at,omitempty"`
	LabelledBy string              `json:"labelled_by"`
	Source     string              `json:"source"`
}

// MarshalJSON writes the stored shape; breakdown is the Rails export's
// [{token: label}…].
func (l Label) MarshalJSON() ([]byte, error) {
	j := labelJSON{MaskName: l.MaskName, LabelledBy: l.LabelledBy, Source: l.Source,
		Breakdown: make([]map[string]string, len(l.Breakdown))}
	for i, e := range l.Breakdown {
		j.Breakdown[i] = map[string]string{e.Token: e.Label}
	}
	if !l.LabelledAt.IsZero() {
		j.LabelledAt = l.LabelledAt.UTC().Format(TimeFormat)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// UnmarshalJSON reads the stored shape (and what the API accepts: only
// mask_name and breakdown are required).
func (l *Label) UnmarshalJSON(b []byte) error {
	var raw struct {
		MaskName   *string           `json:"mask_name"`
		Breakdown  []json.RawMessage `json:"breakdown"`
		LabelledAt string            `json:"labelled_at"`
		LabelledBy string            `json:"labelled_by"`
		Source     string            `json:"source"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if raw.MaskName == nil {
		return fmt.Errorf("%w: no mask_name", ErrInvalid)
	}
	out := Label{MaskName: *raw.MaskName, LabelledBy: raw.LabelledBy, Source: raw.Source}
	bd, err := ParseBreakdown(raw.Breakdown)
	if err != nil {
		return err
	}
	out.Breakdown = bd
	if raw.LabelledAt != "" {
		t, err := time.Parse(time.RFC3339Nano, raw.LabelledAt)
		if err != nil {
			return fmt.Errorf("%w: labelled_at %q is not an RFC 3339 time", ErrInvalid, raw.LabelledAt)
		}
		out.LabelledAt = t
	}
	*l = out
	return nil
}

// ParseBreakdown reads [{token: label}…] entries, each an object of exactly
// one token.
func ParseBreakdown(entries []json.RawMessage) ([]predictor.Labelled, error) {
	out := make([]predictor.Labelled, 0, len(entries))
	for k, e := range entries {
		var m map[string]string
		if err := json.Unmarshal(e, &m); err != nil || len(m) != 1 {
			return nil, fmt.Errorf("%w: breakdown entry %d is not a {token: label} object", ErrInvalid, k)
		}
		for t, lab := range m {
			out = append(out, predictor.Labelled{Token: t, Label: lab})
		}
	}
	return out, nil
}

// Validate checks a label before it is stored: a name within the
// predictor's limits, a breakdown whose tokens are the tokenizer's, in
// order, each labelled with one of the nine components, a known source and
// a bounded labelled_by. Errors wrap ErrInvalid and say what is wrong.
// Warnings are the labelling convention's findings on the name
// (docs/labelling.md): the label is stored anyway, and the caller shows them.
func Validate(l Label, limits predictor.Limits) (warnings []string, err error) {
	limits = limits.WithDefaults()
	name := l.MaskName
	switch n := utf8.RuneCountInString(name); {
	case strings.TrimSpace(name) == "":
		return nil, fmt.Errorf("%w: mask_name is empty", ErrInvalid)
	case !utf8.ValidString(name):
		return nil, fmt.Errorf("%w: mask_name is not valid UTF-8", ErrInvalid)
	case n > limits.MaxChars:
		return nil, fmt.Errorf("%w: mask_name has %d characters (at most %d)", ErrInvalid, n, limits.MaxChars)
	}
	toks := predictor.Tokenize(name)
	switch {
	case len(toks) == 0:
		return nil, fmt.Errorf("%w: mask_name %q has no tokens", ErrInvalid, name)
	case len(toks) > limits.MaxTokens:
		return nil, fmt.Errorf("%w: mask_name has %d tokens (at most %d)", ErrInvalid, len(toks), limits.MaxTokens)
	case len(l.Breakdown) != len(toks):
		return nil, fmt.Errorf("%w: breakdown has %d entries, the name has %d tokens %q", ErrInvalid, len(l.Breakdown), len(toks), toks)
	}
	for i, e := range l.Breakdown {
		if e.Token != toks[i] {
			return nil, fmt.Errorf("%w: breakdown token %d is %q, the tokenizer's is %q (tokens %q)", ErrInvalid, i, e.Token, toks[i], toks)
		}
		if !isComponent(e.Label) {
			return nil, fmt.Errorf("%w: token %d %q has label %q (known: %s)", ErrInvalid, i, e.Token, e.Label, strings.Join(predictor.ComponentLabels, ", "))
		}
	}
	if l.Source != "" && !isSource(l.Source) {
		return nil, fmt.Errorf("%w: unknown source %q (known: %s)", ErrInvalid, l.Source, strings.Join(Sources, ", "))
	}
	if len(l.LabelledBy) > MaxLabelledBy || !utf8.ValidString(l.LabelledBy) {
		return nil, fmt.Errorf("%w: labelled_by must be valid UTF-8 of at most %d bytes", ErrInvalid, MaxLabelledBy)
	}
	rec := predictor.ExportRecord{MaskName: name, Breakdown: l.Breakdown}
	for _, f := range predictor.DefaultConvention().Lint([]predictor.ExportFile{{Records: []predictor.ExportRecord{rec}}}) {
		warnings = append(warnings, warningText(f))
	}
	return warnings, nil
}

// warningText is a finding without the record index (one name).
func warningText(f predictor.Finding) string {
	if f.Position < 0 {
		return f.Detail
	}
	s := fmt.Sprintf("token %d %q: %s", f.Position, f.Token, f.Label)
	if f.Want != "" {
		s += " → " + f.Want
	}
	if f.Detail != "" {
		s += " (" + f.Detail + ")"
	}
	return s
}

func isComponent(l string) bool {
	for _, c := range predictor.ComponentLabels {
		if c == l {
			return true
		}
	}
	return false
}

func isSource(s string) bool {
	for _, x := range Sources {
		if x == s {
			return true
		}
	}
	return false
}

// Prediction is the label as the cache and the APIs return it: the
// breakdown's labels, every confidence 1, source "label", fallback false.
func (l Label) Prediction() *predictor.Prediction {
	n := len(l.Breakdown)
	p := &predictor.Prediction{
		MaskName:            l.MaskName,
		Tokens:              make([]string, n),
		Labels:              make([]string, n),
		TokenConfidences:    make([]float64, n),
		Confidence:          1,
		SequenceProbability: 1,
		ModelVersion:        ModelVersion,
		Source:              "label",
		NormalizedName:      l.Normalized(),
	}
	for i, e := range l.Breakdown {
		p.Tokens[i], p.Labels[i], p.TokenConfidences[i] = e.Token, e.Label, 1
	}
	return p
}

// Record is the label as a Rails export record (labels export, retrain).
func (l Label) Record() predictor.ExportRecord {
	return predictor.ExportRecord{MaskName: l.MaskName, Breakdown: append([]predictor.Labelled(nil), l.Breakdown...)}
}
