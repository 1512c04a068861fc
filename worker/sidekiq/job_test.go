package sidekiq

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "payloads", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type wantReq struct{ name, id string }

func TestParseJobRecordedPayloads(t *testing.T) {
	const aj = ActiveJobWrapperClass
	tests := []struct {
		file                string
		class, wrapped, jid string
		retry, retryCount   int
		createdMs           int64
		enqueuedMs          int64 // 0: no enqueued_at
		args                []string
		reqs                []wantReq
		replyTo             string
	}{
		{file: "sidekiq73_plain.json", class: "MaskNamePredictJob", jid: "aba7eeff5ca7c018e41f4589", retry: 25,
			createdMs: 1795936334035, enqueuedMs: 1795936334035,
			args: []string{`"Flameshroud"`, `{"request_id":42}`}, reqs: []wantReq{{"Flameshroud", `{"request_id":42}`}}},
		{file: "sidekiq73_retry3_tags.json", class: "MaskNamePredictJob", jid: "3693e572e6266dc70779496e", retry: 3,
			createdMs: 1795936334037, enqueuedMs: 1795936334037,
			args: []string{`"Voidgrin"`}, reqs: []wantReq{{"Voidgrin", "null"}}},
		{file: "sidekiq73_retry_false.json", class: "MaskNamePredictJob", jid: "bb867845371aefcde4bdcecf", retry: 0,
			createdMs: 1795936334037, enqueuedMs: 1795936334037,
			args: []string{`"Nope"`}, reqs: []wantReq{{"Nope", "null"}}},
		{file: "sidekiq73_scheduled.json", class: "MaskNamePredictJob", jid: "4003d34add801238de8072dd", retry: 25,
			createdMs: 1795936334037,
			args:      []string{`"Later"`}, reqs: []wantReq{{"Later", "null"}}},
		{file: "sidekiq73_bulk_b1.json", class: "MaskNamePredictJob", jid: "b8fb52278664ac2cb871c5ba", retry: 25,
			createdMs: 1795936334038, enqueuedMs: 1795936334038,
			args: []string{`"b1"`}, reqs: []wantReq{{"b1", "null"}}},
		{file: "sidekiq73_explicit_jid.json", class: "MaskNamePredictJob", jid: "0123456789abcdef01234567", retry: 25,
			createdMs: 1795936334038, enqueuedMs: 1795936334038,
			args: []string{`"X"`}, reqs: []wantReq{{"X", "null"}}},
		{file: "sidekiq73_activejob.json", class: aj, wrapped: "MaskNamePredictionJob", jid: "a8b73ee68461a7fa6de03177", retry: 5,
			createdMs: 1795936334693, enqueuedMs: 1795936334693,
			args: []string{`"Flameshroud"`, `{"request_id":7}`}, reqs: []wantReq{{"Flameshroud", `{"request_id":7}`}}},
		{file: "sidekiq73_activejob_scheduled.json", class: aj, wrapped: "MaskNamePredictionJob", jid: "203b1e38cb9fef6f006d1c70", retry: 5,
			createdMs: 1795936334697,
			args:      []string{`"LaterMask"`}, reqs: []wantReq{{"LaterMask", "null"}}},
		{file: "sidekiq73_retry_entry.json", class: "MaskNamePredictJob", jid: "00000000000000000000f0rt", retry: 25,
			createdMs: 1795936389378, enqueuedMs: 1795936389378,
			args: []string{`"fail_retry_true"`}, reqs: []wantReq{{"fail_retry_true", "null"}}},
		{file: "sidekiq73_dead_entry.json", class: "MaskNamePredictJob", jid: "00000000000000000000f0r0", retry: 0,
			createdMs: 1795936389378, enqueuedMs: 1795936389378,
			args: []string{`"fail_retry_0"`}, reqs: []wantReq{{"fail_retry_0", "null"}}},
		{file: "sidekiq73_repushed_retry.json", class: "MaskNamePredictJob", jid: "00000000000000000000f0ag", retry: 25,
			createdMs: 1795936289379, enqueuedMs: 1795936401940,
			args: []string{`"fail_again"`}, reqs: []wantReq{{"fail_again", "null"}}},
		{file: "sidekiq64_plain.json", class: "MaskNamePredictJob", jid: "667098add9bd987db488b2e8", retry: 25,
			createdMs: 1795936264553, enqueuedMs: 1795936264553,
			args: []string{`"Flameshroud"`, `{"request_id":42}`}, reqs: []wantReq{{"Flameshroud", `{"request_id":42}`}}},
		{file: "sidekiq64_activejob_symbol_keys.json", class: aj, wrapped: "MaskNamePredictionJob", jid: "61ec4c86423096e76a621931", retry: 25,
			createdMs: 1795936264937, enqueuedMs: 1795936264938,
			args: []string{`"Flameshroud"`, `{"request_id":7,"sym":"x"}`}, reqs: []wantReq{{"Flameshroud", `{"request_id":7,"sym":"x"}`}}},
		{file: "sidekiq8_plain.json", class: "MaskNamePredictJob", jid: "aba7eeff5ca7c018e41f4589", retry: 25,
			createdMs: 1795936334035, enqueuedMs: 1795936334036,
			args: []string{`"Flameshroud"`, `{"request_id":42}`}, reqs: []wantReq{{"Flameshroud", `{"request_id":42}`}}},
		{file: "sidekiq8_activejob.json", class: ActiveJobWrapperClassNew, wrapped: "MaskNamePredictionJob", jid: "a8b73ee68461a7fa6de03177", retry: 5,
			createdMs: 1795936334694, enqueuedMs: 1795936334694,
			args: []string{`"Flameshroud"`, `{"request_id":7}`}, reqs: []wantReq{{"Flameshroud", `{"request_id":7}`}}},
		{file: "sidekiq8_retry_entry.json", class: "MaskNamePredictJob", jid: "00000000000000000000f0rt", retry: 25,
			createdMs: 1795936389378, enqueuedMs: 1795936389378,
			args: []string{`"fail_retry_true"`}, reqs: []wantReq{{"fail_retry_true", "null"}}},
		{file: "constructed_activejob_kwargs.json", class: aj, wrapped: "MaskPredictionJob", jid: "4f1c9a0b7e2d3c4b5a697887", retry: 25,
			createdMs: 1795936334693, enqueuedMs: 1795936334693,
			args: []string{`{"mask_id":12,"mask_name":"Nightfang Visor"}`}, reqs: []wantReq{{"Nightfang Visor", "12"}}},
		{file: "constructed_sidekiq8_activejob_hash.json", class: ActiveJobWrapperClassNew, wrapped: "MaskPredictionJob", jid: "9a8b7c6d5e4f30211203f4e5", retry: 3,
			createdMs: 1795936334694, enqueuedMs: 1795936334695,
			args:    []string{`{"mask_names":["Ember Crown","Frost <Veil> & Co"],"reply_to":"maskpredictor:reply:abc"}`},
			reqs:    []wantReq{{"Ember Crown", "null"}, {"Frost <Veil> & Co", "null"}},
			replyTo: "maskpredictor:reply:abc"},
		{file: "sidekiq64_label.json", class: LabelClass, jid: "d7a76b9a8693bab969a01bb8", retry: 25,
			createdMs: 1796624959152, enqueuedMs: 1796624959153,
			args: []string{`"3M Aura 9205+ N95"`, `[{"3M":"brand"},{"Aura":"model"},{"9205+":"model"},{"N95":"filter_type"}]`, `"admin@example.com"`},
			reqs: []wantReq{{"3M Aura 9205+ N95", "null"}}},
		{file: "sidekiq8_label.json", class: LabelClass, jid: "d7a76b9a8693bab969a01bb8", retry: 25,
			createdMs: 1796624959152, enqueuedMs: 1796624959153,
			args: []string{`"3M Aura 9205+ N95"`, `[{"3M":"brand"},{"Aura":"model"},{"9205+":"model"},{"N95":"filter_type"}]`, `"admin@example.com"`},
			reqs: []wantReq{{"3M Aura 9205+ N95", "null"}}},
		{file: "constructed_activejob_label.json", class: aj, wrapped: LabelClass, jid: "7e1d2c3b4a5968778695a4b3", retry: 25,
			createdMs: 1796624959693, enqueuedMs: 1796624959693,
			args: []string{`"Moldex 2200 N95 Medium"`, `[{"Moldex":"brand"},{"2200":"model"},{"N95":"filter_type"},{"Medium":"size"}]`, `null`},
			reqs: []wantReq{{"Moldex 2200 N95 Medium", "null"}}},
		{file: "constructed_hash_form.json", class: "MaskPredictionJob", jid: "c0ffee00c0ffee00c0ffee00", retry: 25,
			createdMs: 1795936334035, enqueuedMs: 1795936334035,
			args:    []string{`{"mask_name":"Flameshroud","mask_id":12345678901234567890,"reply_to":"maskpredictor:reply:1","request_id":"r-1","v":1}`},
			reqs:    []wantReq{{"Flameshroud", "12345678901234567890"}},
			replyTo: "maskpredictor:reply:1"},
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "payloads", "*.json"))
	if len(files) != len(tests) {
		t.Errorf("%d fixture files but %d test cases: every fixture needs its expectations", len(files), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw := readFixture(t, tc.file)
			j, err := ParseJob(raw)
			if err != nil {
				t.Fatalf("ParseJob: %v", err)
			}
			if !bytes.Equal(j.Raw, raw) {
				t.Error("Raw is not the input")
			}
			if j.Class != tc.class || j.Wrapped != tc.wrapped || j.JID != tc.jid || j.Retry != tc.retry || j.RetryCount != tc.retryCount {
				t.Errorf("got class=%q wrapped=%q jid=%q retry=%d retry_count=%d, want %q %q %q %d %d",
					j.Class, j.Wrapped, j.JID, j.Retry, j.RetryCount, tc.class, tc.wrapped, tc.jid, tc.retry, tc.retryCount)
			}
			if j.Queue == "" {
				t.Error("no queue")
			}
			if got := j.CreatedAt.UnixMilli(); got != tc.createdMs {
				t.Errorf("CreatedAt = %d ms, want %d", got, tc.createdMs)
			}
			if tc.enqueuedMs == 0 {
				if !j.EnqueuedAt.IsZero() {
					t.Errorf("EnqueuedAt = %v, want zero", j.EnqueuedAt)
				}
			} else if got := j.EnqueuedAt.UnixMilli(); got != tc.enqueuedMs {
				t.Errorf("EnqueuedAt = %d ms, want %d", got, tc.enqueuedMs)
			}
			if len(j.Args) != len(tc.args) {
				t.Fatalf("Args = %s, want %v", j.Args, tc.args)
			}
			for i := range tc.args {
				if got := compactJSON(t, j.Args[i]); got != tc.args[i] {
					t.Errorf("Args[%d] = %s, want %s", i, got, tc.args[i])
				}
			}
			reqs, replyTo, err := j.Requests()
			if err != nil {
				t.Fatalf("Requests: %v", err)
			}
			if replyTo != tc.replyTo {
				t.Errorf("replyTo = %q, want %q", replyTo, tc.replyTo)
			}
			if len(reqs) != len(tc.reqs) {
				t.Fatalf("Requests = %+v, want %+v", reqs, tc.reqs)
			}
			for i, r := range reqs {
				if r.MaskName != tc.reqs[i].name || compactJSON(t, r.MaskID) != tc.reqs[i].id {
					t.Errorf("Requests[%d] = {%q %s}, want {%q %s}", i, r.MaskName, r.MaskID, tc.reqs[i].name, tc.reqs[i].id)
				}
			}
		})
	}
}

func compactJSON(t testing.TB, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("invalid JSON %q: %v", b, err)
	}
	return buf.String()
}

func TestParseJobTimestamps(t *testing.T) {
	tests := []struct {
		v    string
		want time.Time
	}{
		{`1795936334.0353854`, time.Unix(1795936334, 35385400)},   // Sidekiq 6/7: float seconds
		{`1795936334035`, time.UnixMilli(1795936334035)},          // Sidekiq 8: integer ms
		{`1795936334.0`, time.Unix(1795936334, 0)},                // whole second, still a float
		{`1795936334`, time.Unix(1795936334, 0)},                  // an integer that can only be seconds
		{`1.7959363340353854e9`, time.Unix(1795936334, 35385400)}, // exponent: seconds
		{`"2026-11-29T07:12:14Z"`, time.Time{}},                   // not Sidekiq's: ignored
		{`null`, time.Time{}},
		{`-5`, time.Time{}},
	}
	for _, tc := range tests {
		raw := []byte(`{"class":"K","jid":"j","args":["x"],"created_at":` + tc.v + `}`)
		j, err := ParseJob(raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.v, err)
		}
		if d := j.CreatedAt.Sub(tc.want); !j.CreatedAt.IsZero() && (d > time.Microsecond || d < -time.Microsecond) || j.CreatedAt.IsZero() != tc.want.IsZero() {
			t.Errorf("created_at %s → %v, want %v", tc.v, j.CreatedAt, tc.want)
		}
	}
}

// TestParseJobRetry pins Sidekiq's reading of "retry" (an Integer is the limit, false
// none, anything else 25) and checks that RetryPolicy, the failure path's reader, agrees
// with ParseJob on every value: one parser, one answer.
func TestParseJobRetry(t *testing.T) {
	tests := []struct {
		retry, dead string // "" = absent
		limit       int
		discard     bool
	}{
		{retry: `true`, limit: 25},
		{retry: `false`, limit: 0, discard: true},
		{retry: `0`, limit: 0},
		{retry: `3`, limit: 3},
		{retry: `5.0`, limit: 25}, // a Float in Ruby
		{retry: `1e308`, limit: 25},
		{retry: `1E2`, limit: 25},
		{retry: `99999999999999999999`, limit: math.MaxInt32}, // a Bignum
		{retry: `-1`, limit: 0},
		{retry: `"5"`, limit: 25},
		{retry: `null`, limit: 25},
		{retry: `{}`, limit: 25},
		{retry: `2.5`, limit: 25},
		{limit: 25},
		{retry: `3`, dead: `false`, limit: 3, discard: true},
		{retry: `3`, dead: `true`, limit: 3},
		{dead: `false`, limit: 25, discard: true},
	}
	for _, tc := range tests {
		raw := `{"class":"K","jid":"j","args":["x"]`
		if tc.retry != "" {
			raw += `,"retry":` + tc.retry
		}
		if tc.dead != "" {
			raw += `,"dead":` + tc.dead
		}
		raw += "}"
		j, err := ParseJob([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		limit, discard := RetryPolicy([]byte(raw))
		if limit != tc.limit || discard != tc.discard {
			t.Errorf("%s → RetryPolicy %d %v, want %d %v", raw, limit, discard, tc.limit, tc.discard)
		}
		if j.Retry != limit { // the bridge's asynq MaxRetry and the failure path agree
			t.Errorf("%s: ParseJob retry %d, RetryPolicy %d", raw, j.Retry, limit)
		}
	}
}

func TestParseJobPoison(t *testing.T) {
	tests := map[string]string{
		``:                                       "not JSON",
		`{"class":"K","jid":"j","args":["x"]`:    "not JSON",
		`\x00\xff`:                               "not JSON",
		`["x"]`:                                  "not a JSON object",
		`"x"`:                                    "not a JSON object",
		`null`:                                   "not a JSON object",
		`{"class":"K","args":["x"]}`:             `no "jid"`,
		`{"class":"K","jid":"","args":["x"]}`:    `"jid" is empty`,
		`{"class":"K","jid":42,"args":["x"]}`:    `"jid" must be a string`,
		`{"jid":"j","args":["x"]}`:               `no "class"`,
		`{"class":["K"],"jid":"j","args":["x"]}`: `"class" must be a string`,
		`{"class":"K","jid":"j"}`:                `no "args"`,
		`{"class":"K","jid":"j","args":"x"}`:     `"args" must be a JSON array`,
		`{"class":"K","jid":"j","args":null}`:    `"args" must be a JSON array`,
		`{"class":"K","jid":"j","queue":1,"args":["x"]}`:                                              `"queue" must be a string`,
		`{"class":"ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper","jid":"j","args":["x"]}`:     "serialized job object",
		`{"class":"Sidekiq::ActiveJob::Wrapper","jid":"j","args":[{"job_class":"X"}]}`:                `no "arguments"`,
		`{"class":"Sidekiq::ActiveJob::Wrapper","jid":"j","args":[{"arguments":"x"}]}`:                `"arguments" must be an array`,
		`{"class":"Sidekiq::ActiveJob::Wrapper","jid":"j","args":[]}`:                                 "exactly one argument",
		`{"class":"MaskPredictor::InvalidPayload","jid":"j","args":["not json"],"error_message":"x"}`: "cannot be retried",
	}
	for in, want := range tests {
		raw := []byte(in)
		if in == `\x00\xff` {
			raw = []byte{0, 0xff}
		}
		_, err := ParseJob(raw)
		if !errors.Is(err, ErrPoison) {
			t.Errorf("ParseJob(%s) = %v, want ErrPoison", in, err)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseJob(%s) error %q does not say %q", in, err, want)
		}
	}
}

func TestRequestsForms(t *testing.T) {
	tests := []struct {
		args    string
		reqs    []wantReq
		replyTo string
	}{
		{`["Flameshroud"]`, []wantReq{{"Flameshroud", "null"}}, ""},
		{`["Flameshroud", 42]`, []wantReq{{"Flameshroud", "42"}}, ""},
		{`["Flameshroud", "m-42"]`, []wantReq{{"Flameshroud", `"m-42"`}}, ""},
		{`["Flameshroud", null]`, []wantReq{{"Flameshroud", "null"}}, ""},
		{`[{"mask_name":"Flameshroud","mask_id":42}]`, []wantReq{{"Flameshroud", "42"}}, ""},
		{`[{"mask_name":"Flameshroud"}]`, []wantReq{{"Flameshroud", "null"}}, ""},
		{`[{"mask_name":"Flameshroud","mask_id":42,"reply_to":"maskpredictor:reply:k1"}]`, []wantReq{{"Flameshroud", "42"}}, "maskpredictor:reply:k1"},
		{`[{"mask_name":"Flameshroud","reply_to":null}]`, []wantReq{{"Flameshroud", "null"}}, ""},
		{`[{"mask_names":["A","B  c"]}]`, []wantReq{{"A", "null"}, {"B  c", "null"}}, ""},
		{`[{"mask_names":["A"],"reply_to":"maskpredictor:reply:k2","request_id":9}]`, []wantReq{{"A", "null"}}, "maskpredictor:reply:k2"},
	}
	for _, tc := range tests {
		j, err := ParseJob([]byte(`{"class":"K","jid":"j","args":` + tc.args + `}`))
		if err != nil {
			t.Fatalf("%s: %v", tc.args, err)
		}
		reqs, replyTo, err := j.Requests()
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		if replyTo != tc.replyTo || len(reqs) != len(tc.reqs) {
			t.Errorf("%s: got %+v %q, want %+v %q", tc.args, reqs, replyTo, tc.reqs, tc.replyTo)
			continue
		}
		for i, r := range reqs {
			if r.MaskName != tc.reqs[i].name || string(r.MaskID) != tc.reqs[i].id {
				t.Errorf("%s: [%d] = {%q %s}, want %v", tc.args, i, r.MaskName, r.MaskID, tc.reqs[i])
			}
		}
	}
}

func TestRequestsPoison(t *testing.T) {
	tests := map[string]string{
		`[]`:                                     "args is empty",
		`["a", 1, 2]`:                            "3 elements",
		`[42]`:                                   "mask name (string) or a hash",
		`[null]`:                                 "mask name (string) or a hash",
		`[["a"]]`:                                "mask name (string) or a hash",
		`[""]`:                                   "empty",
		`[{"name":"a"}]`:                         `without "mask_name" or "mask_names"`,
		`[{"mask_name":"a"}, 1]`:                 "exactly one argument",
		`[{"mask_name":42}]`:                     `"mask_name" must be a string`,
		`[{"mask_name":""}]`:                     `"mask_name" is empty`,
		`[{"mask_name":"a","mask_names":["b"]}]`: "both",
		`[{"mask_names":[]}]`:                    `"mask_names" is empty`,
		`[{"mask_names":"a"}]`:                   `"mask_names" must be an array`,
		`[{"mask_names":null}]`:                  `"mask_names" must be an array`,
		`[{"mask_names":["a",1]}]`:               `"mask_names"[1] must be a string`,
		`[{"mask_names":["a",""]}]`:              `"mask_names"[1] is empty`,
		`[{"mask_name":"a","reply_to":5}]`:       `"reply_to" must be a string`,
		`[{"mask_name":"a","reply_to":"queue:default"}]`:                                        `"reply_to" "queue:default" is not under "maskpredictor:reply:"`,
		`[{"mask_name":"a","reply_to":"maskpredictor:reply:"}]`:                                 `is not under`,
		`[{"mask_name":"a","reply_to":"maskpredictor:prediction:x"}]`:                           `is not under`,
		`[{"mask_names":["a"],"reply_to":"stat:processed"}]`:                                    `is not under`,
		`[{"mask_name":"a","reply_to":"maskpredictor:reply:` + strings.Repeat("x", 300) + `"}]`: `over the limit of 256`,
	}
	for args, want := range tests {
		j, err := ParseJob([]byte(`{"class":"K","jid":"j","args":` + args + `}`))
		if err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		_, _, err = j.Requests()
		if !errors.Is(err, ErrPoison) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrPoison saying %q", args, err, want)
		}
	}
}

func TestActiveJobMarkersStripped(t *testing.T) {
	raw := `{"class":"Sidekiq::ActiveJob::Wrapper","jid":"j","args":[{"job_class":"MaskPredictionJob","arguments":[
		{"mask_name":"A","meta":{"deep":{"k":1,"_aj_symbol_keys":["k"]},"_aj_hash_with_indifferent_access":true},"_aj_symbol_keys":["mask_name"]},
		{"_aj_globalid":"gid://app/Mask/7"},
		{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"sym"},
		[{"x":1,"_aj_ruby2_keywords":["x"]}]
	]}]}`
	j, err := ParseJob([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if j.Wrapped != "MaskPredictionJob" {
		t.Errorf("Wrapped = %q (from job_class when there is no \"wrapped\")", j.Wrapped)
	}
	want := []string{`{"mask_name":"A","meta":{"deep":{"k":1}}}`, `"gid://app/Mask/7"`, `"sym"`, `[{"x":1}]`}
	for i, w := range want {
		if got := compactJSON(t, j.Args[i]); got != w {
			t.Errorf("Args[%d] = %s, want %s", i, got, w)
		}
	}
}

func TestTaskID(t *testing.T) {
	a := []byte(`{"class":"K","jid":"0123456789abcdef01234567","args":["x"],"retry_count":0}`)
	b := []byte(`{"class":"K","jid":"0123456789abcdef01234567","args":["x"],"retry_count":1}`)
	ja, _ := ParseJob(a)
	jb, _ := ParseJob(b)
	ja2, _ := ParseJob(append([]byte(nil), a...))
	if ja.TaskID() != ja2.TaskID() {
		t.Error("same bytes, different TaskID: crash re-delivery would not be deduplicated")
	}
	if ja.TaskID() == jb.TaskID() {
		t.Error("different bytes, same TaskID: Sidekiq Web's Retry would be swallowed")
	}
	if !strings.HasPrefix(ja.TaskID(), "0123456789abcdef01234567-") || len(ja.TaskID()) != 24+1+16 {
		t.Errorf("TaskID = %q, want <jid>-<16 hex>", ja.TaskID())
	}
	long := DeliveryID(strings.Repeat("j", 1000), a)
	if len(long) != maxTaskIDJIDLen+17 {
		t.Errorf("long jid TaskID has %d chars", len(long))
	}
}

func TestSetFields(t *testing.T) {
	tests := []struct {
		in     string
		fields []field
		want   string
	}{
		{`{"a":1,"b":{"c":2},"d":"x"}`, []field{{"b", []byte(`3`)}}, `{"a":1,"b":3,"d":"x"}`},
		{`{"a":1}`, []field{{"e", []byte(`"y"`)}}, `{"a":1,"e":"y"}`},
		{`{}`, []field{{"e", []byte(`1`)}, {"f", []byte(`2`)}}, `{"e":1,"f":2}`},
		{` { "a" : [1, {"a":2}] , "b":1 } `, []field{{"a", []byte(`0`)}}, ` { "a" : 0 , "b":1 } `},
		{`{"a":1,"a":2}`, []field{{"a", []byte(`3`)}}, `{"a":3,"a":3}`},
		{`{"x":"<&>"}`, []field{{"k<", []byte(`1`)}}, `{"x":"<&>","k<":1}`},
	}
	for _, tc := range tests {
		got, err := setFields([]byte(tc.in), tc.fields...)
		if err != nil || string(got) != tc.want {
			t.Errorf("setFields(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{``, `[]`, `{"a":1} x`, `{"a":}`} {
		if _, err := setFields([]byte(bad), field{"a", []byte("1")}); err == nil {
			t.Errorf("setFields(%q) accepted", bad)
		}
	}
}

func TestFloatSecondsAlwaysHasFraction(t *testing.T) {
	if got := string(floatSeconds(time.Unix(1795936334, 0))); got != "1795936334.0" {
		t.Errorf("whole second = %s: Sidekiq 8 would read an integer as milliseconds", got)
	}
	if got := string(floatSeconds(time.Unix(1795936334, 35385400))); !strings.HasPrefix(got, "1795936334.0353") {
		t.Errorf("got %s", got)
	}
}

// FuzzParseJob checks that no input panics, that every error is a poison error, and
// that what is accepted is consistent.
func FuzzParseJob(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "payloads", "*.json"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `[]`, `{"class":"K","jid":"j","args":[{"mask_names":["a",""]}]}`,
		`{"class":"Sidekiq::ActiveJob::Wrapper","jid":"j","args":[{"arguments":[{"_aj_globalid":1}]}]}`,
		`{"class":"K","jid":"j","args":["a",{"b":[1e400]}],"created_at":1e400,"retry":1e30}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		j, err := ParseJob(raw)
		if err != nil {
			if !errors.Is(err, ErrPoison) {
				t.Fatalf("ParseJob error does not wrap ErrPoison: %v", err)
			}
			return
		}
		if j.JID == "" || j.Class == "" || j.Args == nil || !bytes.Equal(j.Raw, raw) {
			t.Fatalf("accepted an incomplete job: %+v", j)
		}
		if j.Retry < 0 || !j.Failed && j.RetryCount != 0 {
			t.Fatalf("negative retry limit, or a retry_count without one: %+v", j)
		}
		for _, a := range j.Args {
			if !json.Valid(a) {
				t.Fatalf("invalid JSON arg %q", a)
			}
		}
		if j.TaskID() == "" {
			t.Fatal("empty TaskID")
		}
		reqs, _, err := j.Requests()
		if err != nil {
			if !errors.Is(err, ErrPoison) {
				t.Fatalf("Requests error does not wrap ErrPoison: %v", err)
			}
			return
		}
		if len(reqs) == 0 {
			t.Fatal("no requests and no error")
		}
		for _, r := range reqs {
			if r.MaskName == "" || !json.Valid(r.MaskID) {
				t.Fatalf("bad request %+v", r)
			}
		}
		// What the bridge and the dead set write must stay a job ParseJob reads.
		if out, err := setFields(raw, field{"enqueued_at", floatSeconds(time.Now())}); err == nil {
			if _, err := ParseJob(out); err != nil {
				t.Fatalf("setFields broke the job: %v\n%s", err, out)
			}
		}
	})
}
