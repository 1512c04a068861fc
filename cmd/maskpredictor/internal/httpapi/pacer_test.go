package httpapi

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A batch rests between names only while single requests are answered: as
// long as its last batchYield names took (batchDuty 0.5), and not at all
// when it is alone.
func TestPacerGivesWayToSingles(t *testing.T) {
	run := func(singleDuring bool) time.Duration {
		var singles atomic.Int64
		p := pacer{singles: &singles}
		ctx := context.Background()
		for i := 0; i < batchYield-1; i++ {
			if err := p.yield(ctx, i); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Microsecond) // the name's prediction
			if singleDuring && i == 2 {
				singles.Add(1)
			}
		}
		if err := p.yield(ctx, batchYield-1); err != nil {
			t.Fatal(err)
		}
		// The rest it decided on, not the wall time of the call: alone it
		// only yields the processor (runtime.Gosched), which a loaded
		// machine can make last over 1 ms (seen in the suite).
		return p.rested
	}
	if d := run(true); d < 2*time.Millisecond { // 7 × 0.5 ms of work → ≥ 3.5 ms of rest
		t.Errorf("rested %v beside single requests, want about the work's time", d)
	}
	if d := run(false); d != 0 {
		t.Errorf("rested %v alone, want no rest", d)
	}
	// An abandoned batch stops at its next rest.
	var singles atomic.Int64
	p := pacer{singles: &singles}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.yield(ctx, batchYield-1); err == nil {
		t.Error("a cancelled batch went on")
	}
}
