package predictor

import (
	"bytes"
	_ "embed"
	"fmt"
	"sync"

	"github.com/maskpredictor/maskpredictor/model"
)

// defaultModelBytes is the model used when no other is configured, so the
// binary predicts with no files at all. `make model` rebuilds it.
//
//go:embed default_model.mpcrf
var defaultModelBytes []byte

var defaultModel = sync.OnceValues(func() (*model.Model, error) {
	m, err := model.ReadNative(bytes.NewReader(defaultModelBytes))
	if err != nil {
		return nil, fmt.Errorf("embedded default model: %w", err)
	}
	return m, nil
})

// DefaultModel returns the embedded default model, decoded once.
func DefaultModel() (*model.Model, error) { return defaultModel() }
