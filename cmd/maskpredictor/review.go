package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// runReview is `review --data NAMES.txt`: rank a plain list of names for
// labelling offline (predictor.Review: the names a person's label would
// teach the model most first), with no Redis and no service, so an operator
// can pick what to label from a Rails dump of unlabelled names.
func runReview(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("review", sys)
	data := fs.String("data", "", "names to rank, one per line (required; - reads stdin); blank lines are skipped")
	limit := fs.Int("limit", 50, "names to print at most (0: all)")
	asJSON := fs.Bool("json", false, `print {"names":[{"mask_name","score","prediction"}…],"candidates","model_version"} as GET /admin/api/review does`)
	modelArg := fs.String("model", "default", "model to rank with: a file (native, CRFsuite or pickle), s3://bucket/key, or 'default' (the embedded model)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("%w: unexpected arguments %q (names come from --data)", errUsage, pos)
	case *data == "":
		return fmt.Errorf("%w: --data is required", errUsage)
	case *limit < 0:
		return fmt.Errorf("%w: --limit %d must not be negative", errUsage, *limit)
	}
	c, err := reviewModel(ctx, sys, *modelArg)
	if err != nil {
		return err
	}
	names, err := readNames(sys, *data)
	if err != nil {
		return err
	}
	preds := make([]*predictor.Prediction, 0, len(names))
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := c.PredictWith(n.name, predictor.Options{})
		if err != nil { // too long, no tokens: nothing to label
			fmt.Fprintf(sys.Stderr, "warning: %s line %d (%q): %v; skipped\n", *data, n.line, n.name, err)
			continue
		}
		preds = append(preds, p)
	}
	ranked := predictor.Review(c, preds, *limit)
	if *asJSON {
		out := predictor.NewReviewQueue(ranked, countDistinct(preds), c.Version())
		enc := json.NewEncoder(sys.Stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(out)
	}
	w := bufio.NewWriter(sys.Stdout)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "rank\tscore\tname\tprediction")
	for i, s := range ranked {
		bd := make([]predictor.Labelled, len(s.Prediction.Tokens))
		for k := range bd {
			bd[k] = predictor.Labelled{Token: s.Prediction.Tokens[k], Label: s.Prediction.Labels[k]}
		}
		fmt.Fprintf(tw, "%d\t%.4f\t%s\t%s\n", i+1, s.Score, strings.Map(oneLine, s.Prediction.MaskName), breakdownText(bd))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing review: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing review: %w", err)
	}
	fmt.Fprintf(sys.Stderr, "%d of %d distinct names ranked (model %s)\n", len(ranked), countDistinct(preds), c.Version())
	return nil
}

// reviewModel loads the model review ranks with. Unlike predict, it does
// not follow MODEL_URI by default and never falls back to the rules:
// ranking needs a CRF's confidences, and an offline ranking should say
// which model it used.
func reviewModel(ctx context.Context, sys IO, arg string) (*predictor.CRF, error) {
	var (
		m   *model.Model
		err error
	)
	if isEmbeddedModelArg(arg) {
		m, err = predictor.DefaultModel()
	} else {
		var b []byte
		if b, err = readModelBytes(ctx, sys, arg); err == nil {
			m, err = model.Read(bytes.NewReader(b))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading --model %s: %w", arg, err)
	}
	c, err := predictor.NewCRF(m, predictor.Limits{})
	if err != nil {
		return nil, fmt.Errorf("loading --model %s: %w", arg, err)
	}
	return c, nil
}

type nameLine struct {
	name string
	line int
}

// readNames reads one name per line (surrounding spaces trimmed, blank
// lines skipped) from a file or, for "-", stdin.
func readNames(sys IO, path string) ([]nameLine, error) {
	var r io.Reader = sys.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading names: %w", err)
		}
		defer f.Close()
		r = f
	}
	var out []nameLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes(predictor.DefaultLimits)+1)
	for n := 1; sc.Scan(); n++ {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, nameLine{name: s, line: n})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading names from %s: %w", path, err)
	}
	return out, nil
}

func countDistinct(preds []*predictor.Prediction) int {
	seen := map[string]bool{}
	for _, p := range preds {
		if k := predictor.Normalize(p.MaskName); k != "" {
			seen[k] = true
		}
	}
	return len(seen)
}
