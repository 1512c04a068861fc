package httpapi

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// TestBatchDoesNotStraddleReload: while the model in service is swapped
// continuously, every batch answer carries a single model version.
func TestBatchDoesNotStraddleReload(t *testing.T) {
	model := predictor.ServeCRF(crf(t), "test")
	rules := predictor.ServeRules(predictor.DefaultRules(predictor.Limits{}), "rules", "test")
	live := predictor.NewLive(model)
	e, err := NewEngine(EngineConfig{Predictor: live})
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 200)
	for i := range names {
		names[i] = fmt.Sprintf("3M Aura %d N95 Medium", 9000+i)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			if i%2 == 0 {
				live.Swap(rules)
			} else {
				live.Swap(model)
			}
		}
	}()
	seen := map[string]bool{}
	for round := 0; round < 200; round++ {
		ps, err := e.PredictBatch(context.Background(), names)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps[1:] {
			if p.ModelVersion != ps[0].ModelVersion {
				t.Fatalf("round %d: one batch answered by %s and %s", round, ps[0].ModelVersion, p.ModelVersion)
			}
		}
		seen[ps[0].ModelVersion] = true
	}
	stop.Store(true)
	<-done
	if len(seen) != 2 {
		t.Logf("only saw versions %v (the swapper may have been starved)", seen)
	}
}
