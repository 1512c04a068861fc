package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

func runModel(ctx context.Context, args []string, sys IO) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: model info PATH | model convert IN OUT | model push FILE URI | model pull URI FILE", errUsage)
	}
	switch args[0] {
	case "info":
		return runModelInfo(ctx, args[1:], sys)
	case "convert":
		return runModelConvert(ctx, args[1:], sys)
	case "push":
		return runModelPush(ctx, args[1:], sys)
	case "pull":
		return runModelPull(ctx, args[1:], sys)
	default:
		return fmt.Errorf("%w: unknown model command %q (info, convert, push, pull)", errUsage, args[0])
	}
}

// isEmbeddedModelArg reports whether a model argument names the embedded model.
func isEmbeddedModelArg(path string) bool { return path == "default" || path == "embedded" }

// loadModelArg loads PATH, or the embedded model for "default" / "embedded".
func loadModelArg(path string) (*model.Model, error) {
	if isEmbeddedModelArg(path) {
		return predictor.DefaultModel()
	}
	return model.Load(path)
}

func runModelInfo(_ context.Context, args []string, sys IO) error {
	fs := newFlagSet("model info", sys)
	top := fs.Int("top", 5, "top-weighted attributes to show per label")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: model info [--top N] [--json] PATH (or 'default')", errUsage)
	}
	if *top < 0 {
		return fmt.Errorf("%w: --top %d must not be negative", errUsage, *top)
	}
	m, err := loadModelArg(pos[0])
	if err != nil {
		return fmt.Errorf("loading %s: %w", pos[0], err)
	}
	info := describeModel(m, *top)
	info.Path = pos[0]
	if *asJSON {
		enc := json.NewEncoder(sys.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	return info.print(sys)
}

type modelInfo struct {
	Path          string                  `json:"path"`
	Version       string                  `json:"model_version"`
	Meta          model.Meta              `json:"meta"`
	Labels        []string                `json:"labels"`
	Attributes    int                     `json:"attributes"`
	StateFeatures int                     `json:"state_features"`
	TransFeatures int                     `json:"transition_features"`
	TopAttributes map[string][]weightedAt `json:"top_attributes"`
}

type weightedAt struct {
	Attribute string  `json:"attribute"`
	Weight    float64 `json:"weight"`
}

func describeModel(m *model.Model, top int) modelInfo {
	sf, tf := m.NumFeatures()
	info := modelInfo{
		Version: predictor.ModelVersion(m), Meta: m.Meta(), Labels: m.Labels(),
		Attributes: len(m.Attributes()), StateFeatures: sf, TransFeatures: tf,
		TopAttributes: map[string][]weightedAt{},
	}
	for y, l := range m.Labels() {
		var ws []weightedAt
		for a, name := range m.Attributes() {
			if w := m.StateWeight(int32(a), y); w > 0 {
				ws = append(ws, weightedAt{name, w})
			}
		}
		sort.SliceStable(ws, func(i, j int) bool { return ws[i].Weight > ws[j].Weight })
		info.TopAttributes[l] = ws[:min(top, len(ws))]
	}
	return info
}

func (info modelInfo) print(sys IO) error {
	w := tabwriter.NewWriter(sys.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "model\t%s\n", info.Path)
	fmt.Fprintf(w, "version\t%s\n", info.Version)
	fmt.Fprintf(w, "source\t%s\n", info.Meta.Source)
	fmt.Fprintf(w, "feature set\t%s\n", info.Meta.FeatureSet)
	fmt.Fprintf(w, "labels\t%d %v\n", len(info.Labels), info.Labels)
	fmt.Fprintf(w, "attributes\t%d\n", info.Attributes)
	fmt.Fprintf(w, "features\t%d state + %d transition\n", info.StateFeatures, info.TransFeatures)
	if tp := info.Meta.Training; tp != nil {
		fmt.Fprintf(w, "training\t%s c1=%g c2=%g max_iterations=%d all_possible_transitions=%v\n",
			tp.Algorithm, tp.C1, tp.C2, tp.MaxIterations, tp.PossibleTransitions)
		if tp.Iterations > 0 {
			fmt.Fprintf(w, "\titerations=%d loss=%.6f sequences=%d items=%d\n", tp.Iterations, tp.Loss, tp.Sequences, tp.Items)
		}
	}
	if info.Meta.DataHash != "" {
		fmt.Fprintf(w, "training data\tsha256:%s\n", info.Meta.DataHash)
	}
	keys := make([]string, 0, len(info.Meta.Extra))
	for k := range info.Meta.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\n", k, info.Meta.Extra[k])
	}
	fmt.Fprintln(w, "top attributes per label:")
	for _, l := range info.Labels {
		fmt.Fprintf(w, "  %s\t", l)
		for i, a := range info.TopAttributes[l] {
			if i > 0 {
				fmt.Fprint(w, ", ")
			}
			fmt.Fprintf(w, "%s (%.3f)", a.Attribute, a.Weight)
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

func runModelConvert(_ context.Context, args []string, sys IO) error {
	fs := newFlagSet("model convert", sys)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: model convert IN OUT", errUsage)
	}
	m, err := loadModelArg(pos[0])
	if err != nil {
		return fmt.Errorf("loading %s: %w", pos[0], err)
	}
	if err := writeModelFile(pos[1], m); err != nil {
		return err
	}
	fmt.Fprintf(sys.Stderr, "wrote %s (native format, version %s)\n", pos[1], predictor.ModelVersion(m))
	return nil
}

// writeModelFile writes m in the native format to a temporary file beside
// path and renames it into place, so a reader never sees half a model.
func writeModelFile(path string, m *model.Model) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing model: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("writing model: %w", err)
	}
	if _, err := m.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing model %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing model %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing model %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing model: %w", err)
	}
	return nil
}
