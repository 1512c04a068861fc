package model

import (
	"context"
	"testing"
)

// BenchmarkTrain is one full training run on the 236 names with the
// reference parameters (100 iterations): interning, feature generation,
// optimisation and building the model. Loading the JSONL is excluded, as
// appending the sequences is excluded from CRFsuite's 0.078 s.
func BenchmarkTrain(b *testing.B) {
	data := trainExamples(b)
	s := referenceSettings()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Train(context.Background(), data, s); err != nil {
			b.Fatal(err)
		}
	}
}
