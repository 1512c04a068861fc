// Package basedata embeds the training data of the embedded default model
// (predictor/default_model.mpcrf) and the recipe it was trained with, so
// `maskpredictor retrain` can rebuild "the default model plus the stored
// labels" from the binary alone, with no checkout of testdata/.
//
// go:embed cannot reach ../../testdata, so train.json and
// labelled_extra.json here are copies of testdata/train.json and
// testdata/labelled_extra.json. `make model` copies them before it trains
// the default model, and TestBaseDataMatchesTestdata fails when they drift
// (byte-identical files; the default model's data hash equals theirs).
package basedata

import (
	"bytes"
	_ "embed"
	"fmt"

	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// The default model's recipe. The Makefile's MODEL_FLAGS carry the same
// values (TestBaseDataMakefileFlags checks), and so does the embedded
// model's training metadata (TestBaseDataDefaultModelRecipe).
const (
	FeatureSet    = "v4"
	C1            = 0.05
	C2            = 0.01
	MaxIterations = 200
	// CVFolds and GroupBy are the cross-validation `make model` records in
	// the model, which `retrain` repeats on the base data.
	CVFolds = 5
	GroupBy = predictor.GroupMaker
)

var (
	//go:embed train.json
	trainJSON []byte
	//go:embed labelled_extra.json
	extraJSON []byte
)

// File is one embedded export.
type File struct {
	// Name is the file's name under testdata/ (and here).
	Name string
	// Data is the export, as in the file.
	Data []byte
}

// Files returns the embedded exports in training order: for the same
// normalized name a later file wins (predictor.MergeExports), as with
// `train --data testdata/train.json --data testdata/labelled_extra.json`.
// The slices are shared: do not modify them.
func Files() []File {
	return []File{{"train.json", trainJSON}, {"labelled_extra.json", extraJSON}}
}

// Datasets loads the embedded exports, in the order of Files. Each
// dataset's Hash is the SHA-256 of its file, so MergeExports of them gives
// the data hash recorded in the default model.
func Datasets() ([]*predictor.Dataset, error) {
	files := Files()
	out := make([]*predictor.Dataset, 0, len(files))
	for _, f := range files {
		ds, err := predictor.LoadExport(bytes.NewReader(f.Data))
		if err != nil {
			return nil, fmt.Errorf("embedded base data %s: %w", f.Name, err)
		}
		out = append(out, ds)
	}
	return out, nil
}

// Settings returns the default model's training settings.
func Settings() model.Settings {
	return model.Settings{C1: C1, C2: C2, MaxIterations: MaxIterations, PossibleTransitions: true, FeatureSet: FeatureSet}
}
