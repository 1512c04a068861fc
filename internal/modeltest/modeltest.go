// Package modeltest makes model files for tests of model loading and hot
// reload: the embedded default model with two label names exchanged, so the
// predictions of each variant are told apart by their labels alone.
package modeltest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// DefaultCRF is the predictor over the embedded default model.
func DefaultCRF(tb testing.TB) *predictor.CRF {
	tb.Helper()
	m, err := predictor.DefaultModel()
	if err != nil {
		tb.Fatal(err)
	}
	c, err := predictor.NewCRF(m, predictor.Limits{})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Variant is one model file and what it predicts.
type Variant struct {
	Data    []byte              // the native model file
	Version string              // its model version
	Labels  map[string][]string // name → the labels this model gives
}

// Swaps are label pairs exchanged to make variants; the first (none) is the
// default model itself.
var Swaps = [][2]string{{}, {"brand", "model"}, {"size", "filter_type"}, {"brand", "misc"}, {"color", "model"}}

// Variants builds one variant per swap and predicts names with each.
func Variants(tb testing.TB, names []string, swaps [][2]string) []Variant {
	tb.Helper()
	base, err := predictor.DefaultModel()
	if err != nil {
		tb.Fatal(err)
	}
	var out []Variant
	for _, sw := range swaps {
		m := base
		if sw[0] != "" {
			labels := slices.Clone(base.Labels())
			i, j := slices.Index(labels, sw[0]), slices.Index(labels, sw[1])
			labels[i], labels[j] = labels[j], labels[i]
			if m, err = model.New(labels, base.Attributes(), base.StateWeights(), base.TransWeights(), base.Meta()); err != nil {
				tb.Fatal(err)
			}
		}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			tb.Fatal(err)
		}
		c, err := predictor.NewCRF(m, predictor.Limits{})
		if err != nil {
			tb.Fatal(err)
		}
		v := Variant{Data: buf.Bytes(), Version: c.Version(), Labels: map[string][]string{}}
		for _, n := range names {
			p, err := c.Predict(n)
			if err != nil {
				tb.Fatal(err)
			}
			v.Labels[n] = p.Labels
		}
		out = append(out, v)
	}
	return out
}

// TrainNames are the mask names of the repository's testdata/train.json, in
// file order, for tests in any package.
func TrainNames(tb testing.TB) []string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("modeltest: cannot locate the repository")
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", "train.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var recs []struct {
		MaskName string `json:"mask_name"`
	}
	if err := json.Unmarshal(data, &recs); err != nil {
		tb.Fatal(err)
	}
	names := make([]string, len(recs))
	for i, r := range recs {
		names[i] = r.MaskName
	}
	return names
}
