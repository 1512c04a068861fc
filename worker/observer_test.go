package worker

import (
	"context"
	"slices"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The outcome strings are the log line's and /metrics' outcome label:
// operators' queries read them, so they are pinned.
func TestOutcomeStrings(t *testing.T) {
	want := map[Outcome]string{OutcomeOK: "ok", OutcomeRetrying: "retrying", OutcomeDead: "dead",
		OutcomeDiscarded: "discarded", OutcomeDuplicate: "duplicate", OutcomeInterrupted: "interrupted", OutcomeRetry: "retry"}
	for o, s := range want {
		if o.String() != s {
			t.Errorf("%d: %q, want %q", o, o.String(), s)
		}
		if o.Ended() == (o == OutcomeInterrupted || o == OutcomeRetry) {
			t.Errorf("%s: Ended %v", o, o.Ended())
		}
	}
	if s := Outcome(200).String(); s != "outcome(200)" {
		t.Errorf("unknown outcome: %q", s)
	}
}

// Every job's end reaches the log line, the Tracker and the extra
// observers as one event, with the same outcome.
func TestObserversSeeEveryJob(t *testing.T) {
	var (
		mu  sync.Mutex
		evs []JobEvent
	)
	tr := &tracker{}
	core, logs := observer.New(zap.InfoLevel)
	e := newHandlerEnv(t, func(c *HandlerConfig) {
		c.Tracker, c.Logger = tr, zap.New(core)
		c.Observers = []JobObserver{JobObserverFunc(func(ev JobEvent) { mu.Lock(); evs = append(evs, ev); mu.Unlock() })}
	})
	if err := e.runBatch(context.Background(), batchJobs()); err != nil {
		t.Fatal(err)
	}
	var got, lines []string
	for _, ev := range evs {
		got = append(got, ev.JID+"="+ev.Outcome.String())
		if ev.Class != "MaskPredictionJob" || ev.Queue != "mask_predictions" || len(ev.Names) == 0 || ev.Duration <= 0 {
			t.Errorf("%s: %+v", ev.JID, ev)
		}
		if (ev.Err != nil) != (ev.Outcome != OutcomeOK) {
			t.Errorf("%s: outcome %s with error %v", ev.JID, ev.Outcome, ev.Err)
		}
	}
	for _, l := range logs.FilterMessage("job").All() {
		f := l.ContextMap()
		lines = append(lines, f["jid"].(string)+"="+f["outcome"].(string))
	}
	want := []string{"b1=ok", "b2=ok", "b3=ok", "b4=dead", "b5=ok", "b6=ok"}
	if !slices.Equal(got, want) || !slices.Equal(lines, want) {
		t.Errorf("observed %v, logged %v, want %v", got, lines, want)
	}
	if len(evs) == 6 && (!evs[4].CacheHit() || evs[0].CacheHit() || len(evs[2].Names) != 2) {
		t.Errorf("cache hits: b1 %v, b5 %v; b3 names %d", evs[0].CacheHit(), evs[4].CacheHit(), len(evs[2].Names))
	}
	if tr.processed != 6 || tr.begun != 6 || tr.ended != 6 {
		t.Errorf("tracker %+v, want 6 begun, ended and processed", tr)
	}
}
