package predictor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/maskpredictor/maskpredictor/model"
)

// ErrBadRecord is wrapped by every error about a training record that can
// never be used (malformed, empty name, unknown label).
var ErrBadRecord = errors.New("bad training record")

// Record is one labelled name of the Rails export format:
// {"mask_id": 42, "mask_name": "…", "breakdown": [{"token": "label"}, …]}.
type Record struct {
	MaskID   json.RawMessage `json:"mask_id,omitempty"`
	MaskName string          `json:"mask_name"`
	Tokens   []string        `json:"-"`
	Labels   []string        `json:"-"`
}

// Skipped names a record that was left out, and why.
type Skipped struct {
	Index    int
	MaskName string
	Reason   string
}

func (s Skipped) String() string {
	return fmt.Sprintf("record %d (%q): %s", s.Index, s.MaskName, s.Reason)
}

// Dataset is a loaded training export.
type Dataset struct {
	Records []Record
	Skipped []Skipped
	// Hash is the SHA-256 of the file's bytes, hex encoded.
	Hash string
}

type rawRecord struct {
	MaskID    json.RawMessage   `json:"mask_id"`
	MaskName  *string           `json:"mask_name"`
	Breakdown []json.RawMessage `json:"breakdown"`
}

// maxExportBytes bounds a training file read into memory.
const maxExportBytes = 256 << 20

// LoadExport reads the Rails export format. Records whose breakdown does not
// match the tokenizer's tokens are skipped and listed in Skipped; a record
// that is malformed, has an empty name or an unknown label is an error that
// names its index.
func LoadExport(r io.Reader) (*Dataset, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxExportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading training data: %w", err)
	}
	if len(data) > maxExportBytes {
		return nil, fmt.Errorf("training data larger than %d bytes", maxExportBytes)
	}
	sum := sha256.Sum256(data)
	ds := &Dataset{Hash: hex.EncodeToString(sum[:])}
	raws, err := splitRecords(data)
	if err != nil {
		return nil, err
	}
	for i, raw := range raws {
		rec, skip, err := parseRecord(i, raw)
		if err != nil {
			return nil, err
		}
		if skip != "" {
			ds.Skipped = append(ds.Skipped, Skipped{Index: i, MaskName: rec.MaskName, Reason: skip})
			continue
		}
		ds.Records = append(ds.Records, rec)
	}
	if len(ds.Records) == 0 {
		return nil, fmt.Errorf("%w: no usable records (%d skipped)", ErrBadRecord, len(ds.Skipped))
	}
	return ds, nil
}

// splitRecords reads the top-level array one element at a time, so a
// malformed record is reported with its index and byte offset.
func splitRecords(data []byte) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if d, ok := tok.(json.Delim); err != nil || !ok || d != '[' {
		return nil, fmt.Errorf("%w: training data is not a JSON array of records", ErrBadRecord)
	}
	var raws []json.RawMessage
	for i := 0; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w %d (byte %d): malformed JSON: %v", ErrBadRecord, i, dec.InputOffset(), err)
		}
		raws = append(raws, raw)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w %d (byte %d): malformed JSON: %v", ErrBadRecord, len(raws), dec.InputOffset(), err)
	}
	return raws, nil
}

func parseRecord(i int, raw json.RawMessage) (Record, string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %d: %s", ErrBadRecord, i, fmt.Sprintf(format, args...))
	}
	var rr rawRecord
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&rr); err != nil {
		return Record{}, "", bad("%v", err)
	}
	if rr.MaskName == nil {
		return Record{}, "", bad("no mask_name")
	}
	rec := Record{MaskID: rr.MaskID, MaskName: *rr.MaskName}
	if strings.TrimSpace(rec.MaskName) == "" {
		return Record{}, "", bad("empty mask_name")
	}
	var btoks []string
	for k, b := range rr.Breakdown {
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
			return Record{}, "", bad("breakdown entry %d is not a {token: label} object", k)
		}
		for tok, label := range m {
			if !isComponent(label) {
				return Record{}, "", bad("%q: breakdown entry %d (%q) has unknown label %q (known: %s)",
					rec.MaskName, k, tok, label, strings.Join(ComponentLabels, ", "))
			}
			btoks = append(btoks, tok)
			rec.Labels = append(rec.Labels, label)
		}
	}
	rec.Tokens = Tokenize(rec.MaskName)
	if len(rec.Tokens) == 0 {
		return Record{}, "", bad("%q: %v", rec.MaskName, ErrNoTokens)
	}
	if !equalStrings(rec.Tokens, btoks) {
		return rec, fmt.Sprintf("breakdown tokens %q do not match the tokenizer's %q", btoks, rec.Tokens), nil
	}
	return rec, "", nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// exampleSink collects attributes as model.Features.
type exampleSink struct {
	names []string // the feature set's FixedNames
	items [][]model.Feature
	cur   []model.Feature
}

func (s *exampleSink) Attr(name []byte, v float64) {
	s.cur = append(s.cur, model.Feature{Name: string(name), Value: v})
}

func (s *exampleSink) Fixed(k int, v float64) {
	s.cur = append(s.cur, model.Feature{Name: s.names[k], Value: v})
}

func (s *exampleSink) EndToken() {
	s.items = append(s.items, s.cur)
	s.cur = nil
}

// Examples featurizes records for the trainer.
func Examples(recs []Record, fs FeatureSet) []model.Example {
	out := make([]model.Example, 0, len(recs))
	var sc Scratch
	for _, r := range recs {
		s := exampleSink{names: fs.FixedNames()}
		fs.Featurize(r.Tokens, &sc, &s)
		out = append(out, model.Example{Items: s.items, Labels: r.Labels})
	}
	return out
}

// MergeStats says what MergeExports did with one input dataset.
type MergeStats struct {
	// Records is how many usable records the dataset had.
	Records int
	// Replaced is how many records of earlier datasets this one replaced
	// (same Normalize(mask_name)).
	Replaced int
}

// MergeExports joins datasets loaded from several exports: the records of
// each, in order. When a name (compared by Normalize) appears in a later
// dataset, every record of that name from the earlier datasets is dropped,
// so the later file wins; duplicates inside one dataset are kept as they are.
// Skipped is the concatenation of the inputs' (indices stay per input).
// Hash is the input's hash for one dataset, else the SHA-256 of the inputs'
// hashes, each followed by a newline, so it names the files and their order.
// stats has one entry per input.
func MergeExports(sets ...*Dataset) (merged *Dataset, stats []MergeStats) {
	if len(sets) == 1 {
		ds := *sets[0]
		return &ds, []MergeStats{{Records: len(ds.Records)}}
	}
	// owner[key] is the index of the last dataset holding the name.
	owner := map[string]int{}
	keys := make([][]string, len(sets))
	for si, ds := range sets {
		keys[si] = make([]string, len(ds.Records))
		for ri, r := range ds.Records {
			k := Normalize(r.MaskName)
			keys[si][ri] = k
			owner[k] = si
		}
	}
	stats = make([]MergeStats, len(sets))
	merged = &Dataset{}
	h := sha256.New()
	for si, ds := range sets {
		stats[si].Records = len(ds.Records)
		for ri, r := range ds.Records {
			if o := owner[keys[si][ri]]; o != si {
				stats[o].Replaced++
				continue
			}
			merged.Records = append(merged.Records, r)
		}
		merged.Skipped = append(merged.Skipped, ds.Skipped...)
		io.WriteString(h, ds.Hash+"\n")
	}
	merged.Hash = hex.EncodeToString(h.Sum(nil))
	return merged, stats
}
