package predictor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// This file is the labelling convention of docs/labelling.md as data, and
// the checks (Lint) and repairs (Fix) built on it. Unlike LoadExport, the
// parser here keeps every record as written (unknown labels, breakdowns that
// do not match the tokenizer), so they can be reported and written back.

// Labelled is one {token: label} entry of a breakdown.
type Labelled struct {
	Token string
	Label string
}

// ExportRecord is one record of a Rails export, as written.
type ExportRecord struct {
	MaskID    json.RawMessage
	MaskName  string
	Breakdown []Labelled
}

// ExportFile is a named list of records (the name is used in reports).
type ExportFile struct {
	Name    string
	Records []ExportRecord
}

// ParseExport reads the Rails export format without judging the labels. A
// record that is not {"mask_name": string, "breakdown": [{token: label}…]}
// is an error wrapping ErrBadRecord that names its index.
func ParseExport(data []byte) ([]ExportRecord, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if d, ok := tok.(json.Delim); err != nil || !ok || d != '[' {
		return nil, fmt.Errorf("%w: not a JSON array of records", ErrBadRecord)
	}
	var out []ExportRecord
	for i := 0; dec.More(); i++ {
		var rr struct {
			MaskID    json.RawMessage   `json:"mask_id"`
			MaskName  *string           `json:"mask_name"`
			Breakdown []json.RawMessage `json:"breakdown"`
		}
		if err := dec.Decode(&rr); err != nil {
			return nil, fmt.Errorf("%w %d: malformed JSON: %w", ErrBadRecord, i, err)
		}
		if rr.MaskName == nil {
			return nil, fmt.Errorf("%w %d: no mask_name", ErrBadRecord, i)
		}
		rec := ExportRecord{MaskID: rr.MaskID, MaskName: *rr.MaskName}
		for k, b := range rr.Breakdown {
			var m map[string]string
			if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
				return nil, fmt.Errorf("%w %d: breakdown entry %d is not a {token: label} object", ErrBadRecord, i, k)
			}
			for t, l := range m {
				rec.Breakdown = append(rec.Breakdown, Labelled{Token: t, Label: l})
			}
		}
		out = append(out, rec)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w %d: malformed JSON: %w", ErrBadRecord, len(out), err)
	}
	return out, nil
}

// WriteExport writes records in the layout of testdata/train.json (one-space
// indent, no HTML escaping), so that a file written by it reads back equal.
func WriteExport(w io.Writer, recs []ExportRecord) error {
	type entry map[string]string
	type rec struct {
		MaskID    json.RawMessage `json:"mask_id"`
		MaskName  string          `json:"mask_name"`
		Breakdown []entry         `json:"breakdown"`
	}
	out := make([]rec, len(recs))
	for i, r := range recs {
		id := r.MaskID
		if len(id) == 0 {
			id = json.RawMessage("null")
		}
		bd := make([]entry, len(r.Breakdown))
		for k, e := range r.Breakdown {
			bd[k] = entry{e.Token: e.Label}
		}
		out[i] = rec{MaskID: id, MaskName: r.MaskName, Breakdown: bd}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("writing export: %w", err)
	}
	return nil
}

// Finding kinds.
const (
	KindConvention   = "convention"    // a label breaks a rule of the convention
	KindMajority     = "majority"      // a label disagrees with the token's clear majority
	KindDuplicate    = "duplicate"     // same normalized name, different labels
	KindTokenizer    = "tokenizer"     // breakdown does not match the tokenizer
	KindUnknownLabel = "unknown_label" // a label that is not one of the nine
)

// Rule names, as docs/labelling.md numbers them.
const (
	RuleTable    = "table"  // the label table's unambiguous words
	RuleRepeat   = "rule 1" // a repeated maker token is the product name
	RuleProPlus  = "rule 2" // Pro and Plus are part of the model
	RuleStandard = "rule 3" // standards are filter_type wherever they stand
	RuleStatus   = "rule 4" // regulatory status is misc
	RuleOthers   = "rule 5" // unanimous in ≥ 3 other occurrences
)

// Finding is one problem lint reports. Token is -1 for a whole-record
// finding. Want is the label the convention (or the majority) asks for;
// data fix applies exactly the findings that have one.
type Finding struct {
	File     string `json:"file,omitempty"`
	Index    int    `json:"index"`
	MaskName string `json:"mask_name"`
	Kind     string `json:"kind"`
	Rule     string `json:"rule,omitempty"`
	Position int    `json:"token_index"`
	Token    string `json:"token,omitempty"`
	Label    string `json:"label,omitempty"`
	Want     string `json:"want,omitempty"`
	Detail   string `json:"detail"`
}

func (f Finding) String() string {
	var b strings.Builder
	if f.File != "" {
		fmt.Fprintf(&b, "%s: ", f.File)
	}
	fmt.Fprintf(&b, "record %d %q", f.Index, f.MaskName)
	if f.Position >= 0 {
		fmt.Fprintf(&b, " token %d %q", f.Position, f.Token)
	}
	if f.Want != "" {
		fmt.Fprintf(&b, ": %s → %s", f.Label, f.Want)
	}
	fmt.Fprintf(&b, " [%s", f.Kind)
	if f.Rule != "" {
		fmt.Fprintf(&b, ", %s", f.Rule)
	}
	fmt.Fprintf(&b, "] %s", f.Detail)
	return b.String()
}

// Convention is the labelling convention as data: case-folded token →
// label. The zero value is empty; use DefaultConvention.
type Convention struct {
	standards map[string]bool   // rule 3: filter_type
	status    map[string]bool   // rule 4: misc
	proPlus   map[string]bool   // rule 2: model
	table     map[string]string // the table's unambiguous words
	// MinOthers is how many other occurrences rule 5 and the majority
	// check need (3).
	MinOthers int
}

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[strings.ToLower(w)] = true
	}
	return m
}

// DefaultConvention is the convention of docs/labelling.md.
func DefaultConvention() *Convention {
	c := &Convention{
		standards: set("N95", "N99", "N100", "R95", "R99", "R100", "P95", "P99", "P100",
			"KN95", "KN90", "KN100", "KF94", "KF80", "KF99", "KF-AD",
			"FFP1", "FFP2", "FFP3", "PFF1", "PFF2", "PFF3",
			"NIOSH", "CE", "Certified", "GB2626", "EN149", "95%", "PFE", "BFE"),
		status:    set("FDA", "Registered", "Cleared", "Approved"),
		proPlus:   set("Pro", "Plus"),
		table:     map[string]string{},
		MinOthers: 3,
	}
	add := func(label string, words ...string) {
		for _, w := range words {
			c.table[strings.ToLower(w)] = label
		}
	}
	add("size", "Small", "Medium", "Large", "XS", "XSmall", "XXS", "XL", "XXL", "L/XL", "S/M", "M/L",
		"Kids", "Kid", "Child", "Children", "Youth", "Toddler", "Adult", "Adults", "Regular", "Petite",
		"Med/High", "Med/Low", "Low/Med")
	add("color", "Black", "White", "Blue", "Grey", "Gray", "Pink", "Red", "Green", "Yellow", "Purple", "Orange", "Beige")
	add("style", "Surgical", "Cup", "Fold", "Flat", "Foldable", "Folding", "Duckbill", "Boat")
	add("strap", "strap", "straps", "headstrap", "headstraps", "headband", "earloop", "earloops", "Strapless")
	add("valved", "Valved", "Valve", "Exhalation")
	add("misc", "Mask", "Masks", "Face", "Respirator", "Respirators", "Protective", "Disposable",
		"Particulate", "Dust", "Style", "for", "w/")
	return c
}

// decision is what the convention says about one token.
type decision struct {
	want    string
	rule    string
	brandOK bool // a brand label is also right (inside a maker's name)
}

// decide returns the convention's label for token i, or ok=false when the
// convention is silent (the majority then decides).
func (c *Convention) decide(toks []Labelled, i int) (decision, bool) {
	w := strings.ToLower(toks[i].Token)
	next := ""
	if i+1 < len(toks) {
		next = strings.ToLower(toks[i+1].Token)
	}
	prev := ""
	if i > 0 {
		prev = strings.ToLower(toks[i-1].Token)
	}
	// A word inside a maker's name: at the start, or right after a brand.
	inBrand := i == 0 || toks[i-1].Label == "brand"
	switch {
	case c.standards[w]:
		return decision{want: "filter_type", rule: RuleStandard}, true
	case c.status[w]:
		return decision{want: "misc", rule: RuleStatus}, true
	}
	// Rule 1: the token repeats a word of the maker's name that it directly
	// follows (every token between them is brand): "Flo Flo", "AirBoss
	// AirBoss". A whole name written twice is not a repeat.
	for j := i - 1; j >= 0 && toks[j].Label == "brand"; j-- {
		if strings.EqualFold(toks[j].Token, toks[i].Token) {
			return decision{want: "model", rule: RuleRepeat}, true
		}
	}
	if c.proPlus[w] {
		return decision{want: "model", rule: RuleProPlus, brandOK: i == 0}, true
	}
	// Phrases of the table.
	switch {
	case w == "ear" && (next == "loop" || next == "loops"), (w == "loop" || w == "loops") && prev == "ear":
		return decision{want: "strap", rule: RuleTable}, true
	case w == "one" && next == "size", w == "size" && prev == "one":
		return decision{want: "size", rule: RuleTable}, true
	case w == "no" && (next == "valve" || next == "valved"):
		return decision{want: "valved", rule: RuleTable}, true
	case w == "tri" && next == "fold":
		return decision{want: "style", rule: RuleTable}, true
	}
	if l, ok := c.table[w]; ok {
		return decision{want: l, rule: RuleTable, brandOK: inBrand}, true
	}
	return decision{}, false
}

func (d decision) accepts(label string) bool {
	return label == d.want || (d.brandOK && label == "brand")
}

func labelCounts(m map[string]int) string {
	type lc struct {
		l string
		n int
	}
	var s []lc
	for l, n := range m {
		s = append(s, lc{l, n})
	}
	sort.Slice(s, func(i, j int) bool {
		if s[i].n != s[j].n {
			return s[i].n > s[j].n
		}
		return s[i].l < s[j].l
	})
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = fmt.Sprintf("%s %d", x.l, x.n)
	}
	return strings.Join(parts, ", ")
}

type recRef struct {
	file, index int
}

// Lint checks files against the convention. Findings come in file and
// record order, then token order; duplicates last. Counts for rule 5 and
// the majority check are taken over all files together.
func (c *Convention) Lint(files []ExportFile) []Finding {
	type occ struct {
		ref recRef
		pos int
	}
	valid := map[recRef]bool{}
	var out []Finding
	mk := func(f, i int, r ExportRecord) Finding {
		return Finding{File: files[f].Name, Index: i, MaskName: r.MaskName, Position: -1}
	}
	// Pass 1: structure, and the majority counts over undecided tokens.
	counts := map[string]map[string]int{} // undecided occurrences only
	every := map[string]map[string]int{}  // all occurrences, for the reports
	for f, file := range files {
		for i, r := range file.Records {
			ok := true
			toks := Tokenize(r.MaskName)
			btoks := make([]string, len(r.Breakdown))
			for k, e := range r.Breakdown {
				btoks[k] = e.Token
				if !isComponent(e.Label) {
					fd := mk(f, i, r)
					fd.Kind, fd.Position, fd.Token, fd.Label = KindUnknownLabel, k, e.Token, e.Label
					fd.Detail = fmt.Sprintf("unknown label %q (known: %s)", e.Label, strings.Join(ComponentLabels, ", "))
					out = append(out, fd)
					ok = false
				}
			}
			if !equalStrings(toks, btoks) {
				fd := mk(f, i, r)
				fd.Kind = KindTokenizer
				fd.Detail = fmt.Sprintf("breakdown tokens %q do not match the tokenizer's %q", btoks, toks)
				out = append(out, fd)
				ok = false
			}
			if !ok {
				continue
			}
			valid[recRef{f, i}] = true
			for k, e := range r.Breakdown {
				w := strings.ToLower(e.Token)
				if every[w] == nil {
					every[w] = map[string]int{}
				}
				every[w][e.Label]++
				if _, decided := c.decide(r.Breakdown, k); decided {
					continue
				}
				if counts[w] == nil {
					counts[w] = map[string]int{}
				}
				counts[w][e.Label]++
			}
		}
	}
	// Pass 2: per token.
	for f, file := range files {
		for i, r := range file.Records {
			if !valid[recRef{f, i}] {
				continue
			}
			for k, e := range r.Breakdown {
				fd := mk(f, i, r)
				fd.Position, fd.Token, fd.Label = k, e.Token, e.Label
				if d, decided := c.decide(r.Breakdown, k); decided {
					if !d.accepts(e.Label) {
						fd.Kind, fd.Rule, fd.Want = KindConvention, d.rule, d.want
						fd.Detail = fmt.Sprintf("%s (%s: %s in the data)", ruleText(d.rule, d.want), e.Token, labelCounts(every[strings.ToLower(e.Token)]))
						out = append(out, fd)
					}
					continue
				}
				if exemptFromMajority(r.Breakdown, k) {
					continue
				}
				w := strings.ToLower(e.Token)
				all := counts[w]
				total := 0
				for _, n := range all {
					total += n
				}
				others := total - 1
				if others < c.MinOthers {
					continue
				}
				top, topN := "", 0
				for l, n := range all {
					if n > topN || (n == topN && l < top) {
						top, topN = l, n
					}
				}
				if top == e.Label || 2*topN <= total {
					continue
				}
				fd.Want = top
				if topN == others { // every other occurrence agrees
					fd.Kind, fd.Rule = KindConvention, RuleOthers
					fd.Detail = fmt.Sprintf("%s in all %d other occurrences (%s)", top, others, labelCounts(all))
				} else {
					fd.Kind = KindMajority
					fd.Detail = fmt.Sprintf("against its majority (%s: %s)", e.Token, labelCounts(all))
				}
				out = append(out, fd)
			}
		}
	}
	// Pass 3: same normalized name, different labels.
	first := map[string]recRef{}
	var order []string
	groups := map[string][]recRef{}
	for f, file := range files {
		for i := range file.Records {
			ref := recRef{f, i}
			if !valid[ref] {
				continue
			}
			n := Normalize(file.Records[i].MaskName)
			if _, seen := first[n]; !seen {
				first[n] = ref
				order = append(order, n)
			}
			groups[n] = append(groups[n], ref)
		}
	}
	labelsOf := func(ref recRef) string {
		var b strings.Builder
		for _, e := range files[ref.file].Records[ref.index].Breakdown {
			b.WriteString(e.Label)
			b.WriteByte(' ')
		}
		return b.String()
	}
	for _, n := range order {
		g := groups[n]
		want := labelsOf(g[0])
		for _, ref := range g[1:] {
			if labelsOf(ref) == want {
				continue
			}
			r := files[ref.file].Records[ref.index]
			fd := mk(ref.file, ref.index, r)
			fd.Kind = KindDuplicate
			fr := files[g[0].file].Records[g[0].index]
			where := fmt.Sprintf("record %d", g[0].index)
			if files[g[0].file].Name != "" {
				where = files[g[0].file].Name + ": " + where
			}
			fd.Detail = fmt.Sprintf("normalizes like %s %q but is labelled %q, not %q",
				where, fr.MaskName, strings.TrimSpace(labelsOf(ref)), strings.TrimSpace(want))
			out = append(out, fd)
		}
	}
	return out
}

// exemptFromMajority: rule 5 and the majority never overrule a word of a
// multi-word maker name (a brand right after a brand: "Jackson Safety",
// "Nuomigao Medical Technology"), nor a number, whose label depends on where
// it stands (model code, age range, lot or entry number).
func exemptFromMajority(toks []Labelled, i int) bool {
	if toks[i].Label == "brand" && i > 0 && toks[i-1].Label == "brand" {
		return true
	}
	for _, r := range toks[i].Token {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func ruleText(rule, want string) string {
	switch rule {
	case RuleTable:
		return "the label table of docs/labelling.md says " + want
	case RuleRepeat:
		return "a repeated maker token is the product name (model)"
	case RuleProPlus:
		return "Pro and Plus are part of the model"
	case RuleStandard:
		return "standards and certifications are filter_type wherever they stand"
	case RuleStatus:
		return "regulatory status is misc"
	}
	return rule
}

const maxFixRounds = 8

// Fix applies every finding of Lint that names a wanted label (the
// convention's rules and the majority) and returns the fixed records and
// the changes, in order (round after round until none is left). Records that do not match the tokenizer or carry
// unknown labels are kept as they are. left is what Lint still finds on the
// fixed records (those records, and duplicates the rules did not settle).
// recs is not modified.
//
// context are other labelled exports, never changed: their occurrences
// count for rule 5 and the majority, as they do when Lint is given every
// file, so that a file fixed with its context lints clean together with it.
// Each context file must have a Name.
func (c *Convention) Fix(recs []ExportRecord, context ...ExportFile) (fixed []ExportRecord, changes, left []Finding) {
	fixed = make([]ExportRecord, len(recs))
	copy(fixed, recs)
	copied := map[int]bool{}
	// lint checks the records being fixed (the file named "") with the
	// context and keeps the findings about them.
	lint := func() []Finding {
		var own []Finding
		for _, fd := range c.Lint(append([]ExportFile{{Records: fixed}}, context...)) {
			if fd.File == "" {
				own = append(own, fd)
			}
		}
		return own
	}
	// A change can settle or unsettle another token (rule 1 and the brand
	// exception look at the labels before a token), so fix until nothing
	// changes, a few rounds at most; real data settles in one.
	for round := 0; round < maxFixRounds; round++ {
		n := len(changes)
		for _, fd := range lint() {
			if fd.Want == "" {
				continue
			}
			r := &fixed[fd.Index]
			if !copied[fd.Index] {
				r.Breakdown = append([]Labelled(nil), r.Breakdown...)
				copied[fd.Index] = true
			}
			r.Breakdown[fd.Position].Label = fd.Want
			changes = append(changes, fd)
		}
		if len(changes) == n {
			break
		}
	}
	return fixed, changes, lint()
}
