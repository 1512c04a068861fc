package predictor

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// LabelScore is one label's token-level precision, recall and F1.
type LabelScore struct {
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Support   int     `json:"support"`
	Predicted int     `json:"predicted"`
}

// NameError is a name with at least one wrong label.
type NameError struct {
	MaskName string   `json:"mask_name"`
	Tokens   []string `json:"tokens"`
	Want     []string `json:"want"`
	Got      []string `json:"got"`
}

// Report is the accuracy of predictions against labelled names.
type Report struct {
	TokenAccuracy float64               `json:"token_accuracy"`
	NameAccuracy  float64               `json:"name_accuracy"`
	Tokens        int                   `json:"tokens"`
	Names         int                   `json:"names"`
	CorrectTokens int                   `json:"correct_tokens"`
	CorrectNames  int                   `json:"correct_names"`
	Labels        map[string]LabelScore `json:"labels"`
	MacroF1       float64               `json:"macro_f1"`
	WeightedF1    float64               `json:"weighted_f1"`
	// Confusion[gold][predicted] counts tokens.
	Confusion map[string]map[string]int `json:"confusion"`
	Errors    []NameError               `json:"errors"`
}

// Scorer accumulates gold and predicted labels, name by name.
type Scorer struct {
	r Report
}

// NewScorer returns an empty scorer.
func NewScorer() *Scorer {
	return &Scorer{r: Report{Labels: map[string]LabelScore{}, Confusion: map[string]map[string]int{}, Errors: []NameError{}}}
}

// Add scores one name.
func (s *Scorer) Add(name string, tokens, want, got []string) {
	r := &s.r
	r.Names++
	ok := true
	for i := range want {
		r.Tokens++
		g, p := want[i], got[i]
		if r.Confusion[g] == nil {
			r.Confusion[g] = map[string]int{}
		}
		r.Confusion[g][p]++
		if g == p {
			r.CorrectTokens++
		} else {
			ok = false
		}
	}
	if ok {
		r.CorrectNames++
	} else {
		r.Errors = append(r.Errors, NameError{MaskName: name, Tokens: tokens, Want: want, Got: got})
	}
}

// Report computes the figures. Labels are every label seen as gold or predicted.
func (s *Scorer) Report() Report {
	r := s.r
	if r.Tokens > 0 {
		r.TokenAccuracy = float64(r.CorrectTokens) / float64(r.Tokens)
	}
	if r.Names > 0 {
		r.NameAccuracy = float64(r.CorrectNames) / float64(r.Names)
	}
	labels := map[string]bool{}
	for g, row := range r.Confusion {
		labels[g] = true
		for p := range row {
			labels[p] = true
		}
	}
	r.Labels = map[string]LabelScore{}
	var macro, weighted float64
	for l := range labels {
		var ls LabelScore
		tp := r.Confusion[l][l]
		for _, n := range r.Confusion[l] {
			ls.Support += n
		}
		for _, row := range r.Confusion {
			ls.Predicted += row[l]
		}
		if ls.Predicted > 0 {
			ls.Precision = float64(tp) / float64(ls.Predicted)
		}
		if ls.Support > 0 {
			ls.Recall = float64(tp) / float64(ls.Support)
		}
		if ls.Precision+ls.Recall > 0 {
			ls.F1 = 2 * ls.Precision * ls.Recall / (ls.Precision + ls.Recall)
		}
		r.Labels[l] = ls
		macro += ls.F1
		weighted += ls.F1 * float64(ls.Support)
	}
	if len(labels) > 0 {
		r.MacroF1 = macro / float64(len(labels))
	}
	if r.Tokens > 0 {
		r.WeightedF1 = weighted / float64(r.Tokens)
	}
	return r
}

// orderedLabels lists the report's labels in component order, then others.
func (r Report) orderedLabels() []string {
	var out []string
	for _, l := range ComponentLabels {
		if _, ok := r.Labels[l]; ok {
			out = append(out, l)
		}
	}
	var extra []string
	for l := range r.Labels {
		if !isComponent(l) {
			extra = append(extra, l)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

// WriteText prints the report for people: totals, per-label table,
// confusion matrix and up to maxErrors wrong names.
func (r Report) WriteText(w io.Writer, maxErrors int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "token accuracy  %.4f (%d/%d)\n", r.TokenAccuracy, r.CorrectTokens, r.Tokens)
	fmt.Fprintf(w, "name accuracy   %.4f (%d/%d)\n", r.NameAccuracy, r.CorrectNames, r.Names)
	fmt.Fprintf(w, "macro F1        %.4f\nweighted F1     %.4f\n\n", r.MacroF1, r.WeightedF1)
	fmt.Fprintln(tw, "label\tprecision\trecall\tF1\tsupport\tpredicted\t")
	labels := r.orderedLabels()
	for _, l := range labels {
		s := r.Labels[l]
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%d\t%d\t\n", l, s.Precision, s.Recall, s.F1, s.Support, s.Predicted)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nconfusion (rows: true label, columns: predicted)")
	short := func(l string) string { return l[:min(len(l), 6)] }
	fmt.Fprint(tw, "\t")
	for _, l := range labels {
		fmt.Fprintf(tw, "%s\t", short(l))
	}
	fmt.Fprintln(tw)
	for _, g := range labels {
		fmt.Fprintf(tw, "%s\t", g)
		for _, p := range labels {
			fmt.Fprintf(tw, "%d\t", r.Confusion[g][p])
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Errors) > 0 && maxErrors != 0 {
		fmt.Fprintf(w, "\nwrong names (%d):\n", len(r.Errors))
		for i, e := range r.Errors {
			if maxErrors > 0 && i >= maxErrors {
				fmt.Fprintf(w, "  … %d more (--json lists all)\n", len(r.Errors)-i)
				break
			}
			var parts []string
			for k, tok := range e.Tokens {
				if e.Want[k] == e.Got[k] {
					parts = append(parts, tok+"/"+e.Got[k])
				} else {
					parts = append(parts, fmt.Sprintf("%s/%s(want %s)", tok, e.Got[k], e.Want[k]))
				}
			}
			fmt.Fprintf(w, "  %s\n", strings.Join(parts, " "))
		}
	}
	return nil
}
