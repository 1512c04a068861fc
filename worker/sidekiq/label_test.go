package sidekiq

import (
	"errors"
	"strings"
	"testing"
)

// TestJobLabelRecordedPayloads: the MaskLabelJob fixtures (Sidekiq 6.4 recorded, 8
// derived, ActiveJob's wrapper) read as labels, with their markers stripped.
func TestJobLabelRecordedPayloads(t *testing.T) {
	tests := []struct {
		file, name, labelledBy string
		breakdown              []string
	}{
		{"sidekiq64_label.json", "3M Aura 9205+ N95", "admin@example.com",
			[]string{`{"3M":"brand"}`, `{"Aura":"model"}`, `{"9205+":"model"}`, `{"N95":"filter_type"}`}},
		{"sidekiq8_label.json", "3M Aura 9205+ N95", "admin@example.com",
			[]string{`{"3M":"brand"}`, `{"Aura":"model"}`, `{"9205+":"model"}`, `{"N95":"filter_type"}`}},
		{"constructed_activejob_label.json", "Moldex 2200 N95 Medium", "",
			[]string{`{"Moldex":"brand"}`, `{"2200":"model"}`, `{"N95":"filter_type"}`, `{"Medium":"size"}`}},
	}
	for _, tc := range tests {
		j, err := ParseJob(readFixture(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if !j.IsLabel() || j.CheckClass(DefaultClasses) != nil {
			t.Errorf("%s: IsLabel %v, CheckClass(DefaultClasses) %v", tc.file, j.IsLabel(), j.CheckClass(DefaultClasses))
		}
		a, err := j.Label()
		if err != nil {
			t.Fatalf("%s: Label: %v", tc.file, err)
		}
		if a.MaskName != tc.name || a.LabelledBy != tc.labelledBy || len(a.Breakdown) != len(tc.breakdown) {
			t.Fatalf("%s: %+v", tc.file, a)
		}
		for i, e := range a.Breakdown {
			if got := compactJSON(t, e); got != tc.breakdown[i] {
				t.Errorf("%s: breakdown[%d] = %s, want %s", tc.file, i, got, tc.breakdown[i])
			}
		}
	}
	// A prediction job is no label job, and MaskLabelJob is not run when it is
	// left out of the configured classes.
	j, _ := ParseJob(readFixture(t, "constructed_hash_form.json"))
	if j.IsLabel() {
		t.Error("a MaskPredictionJob reads as a label job")
	}
	l, _ := ParseJob(readFixture(t, "sidekiq64_label.json"))
	if err := l.CheckClass([]string{PredictionClass}); !errors.Is(err, ErrForeign) {
		t.Errorf("CheckClass without MaskLabelJob: %v", err)
	}
}

func TestJobLabelShapes(t *testing.T) {
	tests := []struct{ args, want string }{
		{`["3M Aura",[{"3M":"brand"},{"Aura":"model"}]]`, ""},
		{`["3M Aura",[{"3M":"brand"},{"Aura":"model"}],null]`, ""},
		{`["3M Aura",[{"3M":"brand"},{"Aura":"model"}],"me"]`, ""},
		{`["3M Aura",[]]`, ""}, // shape only: the store refuses an empty breakdown
		{`[]`, "args has 0 elements"},
		{`["3M Aura"]`, "args has 1 elements"},
		{`["3M Aura",[],"me",{}]`, "args has 4 elements"},
		{`[{"mask_name":"3M Aura"},[]]`, "args[0] must be the mask name"},
		{`["",[]]`, "mask name is empty"},
		{`[" ",[]]`, "mask name is empty"},
		{`["3M Aura",{"3M":"brand"}]`, "args[1] must be the breakdown"},
		{`["3M Aura",null]`, "args[1] must be the breakdown"},
		{`["3M Aura","3M/brand"]`, "args[1] must be the breakdown"},
		{`["3M Aura",[],42]`, "args[2] must be labelled_by"},
	}
	for _, tc := range tests {
		raw := []byte(`{"class":"MaskLabelJob","jid":"j","args":` + tc.args + `}`)
		j, err := ParseJob(raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.args, err)
		}
		_, err = j.Label()
		_, _, rerr := j.Requests() // the bridge's check reads the args through Requests
		switch {
		case tc.want == "" && (err != nil || rerr != nil):
			t.Errorf("%s: Label %v, Requests %v", tc.args, err, rerr)
		case tc.want != "" && (!errors.Is(err, ErrPoison) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: Label error %v, want poison containing %q", tc.args, err, tc.want)
		case tc.want != "" && (rerr == nil || rerr.Error() != err.Error()):
			t.Errorf("%s: Requests error %v, want Label's %v", tc.args, rerr, err)
		}
	}
}
