package worker

import "testing"

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
