package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

type trainFlags struct {
	data, out, features string
	c1, c2              float64
	maxIter, cv         int
	asJSON, quiet       bool
}

func runTrain(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("train", sys)
	var f trainFlags
	fs.StringVar(&f.data, "data", "", "training data in the Rails export format (required)")
	fs.StringVar(&f.out, "out", "", "where to write the model (native format)")
	fs.StringVar(&f.features, "features", "v1", "feature set: "+fmt.Sprint(predictor.FeatureSetNames()))
	fs.Float64Var(&f.c1, "c1", 0.1, "L1 regularisation (OWL-QN)")
	fs.Float64Var(&f.c2, "c2", 0.1, "L2 regularisation")
	fs.IntVar(&f.maxIter, "max-iterations", 100, "L-BFGS iterations at most")
	fs.IntVar(&f.cv, "cv", 0, "K-fold cross-validation (fold = position mod K); with --out, the figures are stored in the model")
	fs.BoolVar(&f.asJSON, "json", false, "print the cross-validation report as JSON")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress lines")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	switch {
	case f.data == "":
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
	fset, err := predictor.LookupFeatureSet(f.features)
	if err != nil {
		return fmt.Errorf("%w: --features: %v", errUsage, err)
	}
	ds, err := loadDataset(f.data, sys)
	if err != nil {
		return err
	}
	settings := model.Settings{C1: f.c1, C2: f.c2, MaxIterations: f.maxIter, PossibleTransitions: true, FeatureSet: f.features}
	extra := map[string]string{}
	if f.cv > 0 {
		rep, err := predictor.CrossValidate(ctx, ds.Records, fset, settings, f.cv)
		if err != nil {
			return err
		}
		if f.asJSON {
			if err := json.NewEncoder(sys.Stdout).Encode(rep); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(sys.Stdout, "%d-fold cross-validation, feature set %s, c1=%g c2=%g, %d iterations max\n", f.cv, f.features, f.c1, f.c2, f.maxIter)
			if err := rep.WriteText(sys.Stdout, 20); err != nil {
				return err
			}
		}
		extra["cv_folds"] = fmt.Sprint(f.cv)
		extra["cv_token_accuracy"] = fmt.Sprintf("%.4f (%d/%d)", rep.TokenAccuracy, rep.CorrectTokens, rep.Tokens)
		extra["cv_name_accuracy"] = fmt.Sprintf("%.4f (%d/%d)", rep.NameAccuracy, rep.CorrectNames, rep.Names)
		extra["cv_macro_f1"] = fmt.Sprintf("%.4f", rep.MacroF1)
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
