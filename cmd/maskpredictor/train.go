package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

type trainFlags struct {
	data          stringList
	out, features string
	groupBy       string
	c1, c2        float64
	maxIter, cv   int
	asJSON, quiet bool
}

func runTrain(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("train", sys)
	var f trainFlags
	fs.Var(&f.data, "data", "training data in the Rails export format (required; repeat for several files: for the same normalized name a later file wins)")
	fs.StringVar(&f.out, "out", "", "where to write the model (native format)")
	fs.StringVar(&f.features, "features", "v1", "feature set: "+fmt.Sprint(predictor.FeatureSetNames()))
	fs.Float64Var(&f.c1, "c1", 0.1, "L1 regularisation (OWL-QN)")
	fs.Float64Var(&f.c2, "c2", 0.1, "L2 regularisation")
	fs.IntVar(&f.maxIter, "max-iterations", 100, "L-BFGS iterations at most")
	fs.IntVar(&f.cv, "cv", 0, "K-fold cross-validation (fold = position mod K); with --out, the figures are stored in the model")
	fs.StringVar(&f.groupBy, "group-by", "none", "with --cv: also cross-validate with folds grouped by "+fmt.Sprint(predictor.GroupByNames()[1:])+" (every name of a maker in one fold); none: plain folds only")
	fs.BoolVar(&f.asJSON, "json", false, "print the cross-validation report as JSON")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress lines")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	switch {
	case len(f.data) == 0:
		return fmt.Errorf("%w: --data is required", errUsage)
	case f.out == "" && f.cv == 0:
		return fmt.Errorf("%w: --out is required (or --cv K to cross-validate only)", errUsage)
	case f.cv == 1 || f.cv < 0:
		return fmt.Errorf("%w: --cv %d, want K ≥ 2", errUsage, f.cv)
	case f.c1 < 0 || f.c2 < 0:
		return fmt.Errorf("%w: --c1 and --c2 must not be negative", errUsage)
	case f.maxIter < 1:
		return fmt.Errorf("%w: --max-iterations must be at least 1", errUsage)
	}
	groupBy, err := predictor.ParseGroupBy(f.groupBy)
	if err != nil {
		return fmt.Errorf("%w: --group-by: %v", errUsage, err)
	}
	if groupBy != predictor.GroupNone && f.cv == 0 {
		return fmt.Errorf("%w: --group-by %s needs --cv K", errUsage, groupBy)
	}
	fset, err := predictor.LookupFeatureSet(f.features)
	if err != nil {
		return fmt.Errorf("%w: --features: %v", errUsage, err)
	}
	ds, err := loadDatasets(f.data, sys)
	if err != nil {
		return err
	}
	settings := model.Settings{C1: f.c1, C2: f.c2, MaxIterations: f.maxIter, PossibleTransitions: true, FeatureSet: f.features}
	extra := map[string]string{}
	if f.cv > 0 {
		if err := crossValidate(ctx, sys, f, groupBy, fset, settings, ds.Records, extra); err != nil {
			return err
		}
	}
	if f.out == "" {
		return nil
	}
	if !f.quiet && isTerminal(sys.Stderr) {
		settings.Recorder = &progressLine{w: sys.Stderr, start: time.Now()}
	}
	m, err := model.Train(ctx, predictor.Examples(ds.Records, fset), settings)
	if err != nil {
		return fmt.Errorf("training: %w", err)
	}
	meta := m.Meta()
	meta.DataHash = ds.Hash
	if len(extra) > 0 {
		merged := map[string]string{}
		for k, v := range meta.Extra {
			merged[k] = v
		}
		for k, v := range extra {
			merged[k] = v
		}
		meta.Extra = merged
	}
	if m, err = m.WithMeta(meta); err != nil {
		return err
	}
	if err := writeModelFile(f.out, m); err != nil {
		return err
	}
	tp := m.Meta().Training
	sf, tf := m.NumFeatures()
	fmt.Fprintf(sys.Stderr, "wrote %s: %d names, %d iterations, loss %.6f, %d features (%d state + %d transition), version %s\n",
		f.out, len(ds.Records), tp.Iterations, tp.Loss, sf+tf, sf, tf, predictor.ModelVersion(m))
	return nil
}

// crossValidate runs plain K-fold cross-validation and, when groupBy is not
// none, grouped K-fold cross-validation too; prints the reports (text, or
// JSON: the plain report alone, or {"group_by", "plain", "grouped"}) and
// puts the figures in extra: cv_* for plain, cv_grouped_* for grouped.
func crossValidate(ctx context.Context, sys IO, f trainFlags, groupBy predictor.GroupBy, fset predictor.FeatureSet,
	settings model.Settings, recs []predictor.Record, extra map[string]string) error {
	plain, err := predictor.CrossValidate(ctx, recs, fset, settings, f.cv)
	if err != nil {
		return err
	}
	putCVFigures(extra, "cv_", plain)
	extra["cv_folds"] = fmt.Sprint(f.cv)
	var grouped predictor.Report
	groups := 0
	if groupBy != predictor.GroupNone {
		if grouped, err = predictor.CrossValidateGrouped(ctx, recs, fset, settings, f.cv, groupBy); err != nil {
			return err
		}
		makers := map[string]bool{}
		for _, r := range recs {
			makers[predictor.Maker(r)] = true
		}
		groups = len(makers)
		putCVFigures(extra, "cv_grouped_", grouped)
		extra["cv_grouped_by"] = fmt.Sprintf("%s (%d groups)", groupBy, groups)
	}
	if f.asJSON {
		var v any = plain
		if groupBy != predictor.GroupNone {
			v = struct {
				GroupBy string           `json:"group_by"`
				Groups  int              `json:"groups"`
				Plain   predictor.Report `json:"plain"`
				Grouped predictor.Report `json:"grouped"`
			}{string(groupBy), groups, plain, grouped}
		}
		return json.NewEncoder(sys.Stdout).Encode(v)
	}
	fmt.Fprintf(sys.Stdout, "%d-fold cross-validation, feature set %s, c1=%g c2=%g, %d iterations max\n", f.cv, f.features, f.c1, f.c2, f.maxIter)
	if err := plain.WriteText(sys.Stdout, 20); err != nil {
		return err
	}
	if groupBy == predictor.GroupNone {
		return nil
	}
	fmt.Fprintf(sys.Stdout, "\n%d-fold cross-validation grouped by %s (%d groups; no group split across folds)\n", f.cv, groupBy, groups)
	return grouped.WriteText(sys.Stdout, 20)
}

func putCVFigures(extra map[string]string, prefix string, rep predictor.Report) {
	extra[prefix+"token_accuracy"] = fmt.Sprintf("%.4f (%d/%d)", rep.TokenAccuracy, rep.CorrectTokens, rep.Tokens)
	extra[prefix+"name_accuracy"] = fmt.Sprintf("%.4f (%d/%d)", rep.NameAccuracy, rep.CorrectNames, rep.Names)
	extra[prefix+"macro_f1"] = fmt.Sprintf("%.4f", rep.MacroF1)
}

// stringList is a flag that may be given more than once.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	if s == "" {
		return errors.New("empty file name")
	}
	*l = append(*l, s)
	return nil
}

// loadDatasets reads one or more training exports, warns about skipped
// records and joins them with predictor.MergeExports (a later file wins for
// the same normalized name). With several files it prints, per file, the
// records loaded and how many earlier records they replaced.
func loadDatasets(paths []string, sys IO) (*predictor.Dataset, error) {
	sets := make([]*predictor.Dataset, 0, len(paths))
	for _, p := range paths {
		ds, err := loadDataset(p, sys)
		if err != nil {
			return nil, err
		}
		sets = append(sets, ds)
	}
	merged, stats := predictor.MergeExports(sets...)
	if len(paths) > 1 {
		total := 0
		for i, st := range stats {
			fmt.Fprintf(sys.Stderr, "loaded %s: %d records, replacing %d records of earlier files\n", paths[i], st.Records, st.Replaced)
			total += st.Replaced
		}
		fmt.Fprintf(sys.Stderr, "%d records from %d files, %d replaced by a later file\n", len(merged.Records), len(paths), total)
	}
	return merged, nil
}

// loadDataset reads a training export and warns about skipped records.
func loadDataset(path string, sys IO) (*predictor.Dataset, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening training data: %w", err)
	}
	defer fh.Close()
	ds, err := predictor.LoadExport(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, s := range ds.Skipped {
		fmt.Fprintf(sys.Stderr, "warning: %s: skipping %s\n", path, s)
	}
	return ds, nil
}

// progressLine prints one line per iteration, for terminals.
type progressLine struct {
	w     io.Writer
	start time.Time
}

func (p *progressLine) Record(pr model.Progress) error {
	fmt.Fprintf(p.w, "iteration %3d  loss %12.6f  active features %5d  elapsed %v\n",
		pr.Iteration, pr.Loss, pr.ActiveFeatures, time.Since(p.start).Round(time.Millisecond))
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
