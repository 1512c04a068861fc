package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

var opsAuth = []string{"Authorization", basic("ops", "pw")}

// sameOrigin is what a browser adds to the page's own fetches.
var sameOrigin = append(append([]string(nil), opsAuth...), "Sec-Fetch-Site", "same-origin")

func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
}

func errorOf(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	decode(t, body, &e)
	if e.Error == "" {
		t.Errorf("no error message in %s", body)
	}
	return e.Error
}

func TestPutLabel(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{User: "ops", Password: "pw", Token: "tok"})
	const key = "maskpredictor:prediction:3m aura 9205+ n95"

	bigName := strings.Repeat("x", 1<<20)
	tests := []struct {
		name     string
		body     string
		hdr      []string
		code     int
		errHas   string
		stored   bool
		wantBy   string
		wantSrc  string
		warnings bool
	}{
		{name: "valid, api, basic user", body: `{"mask_name":"3M Aura 9205+ N95","breakdown":[{"3M":"brand"},{"Aura":"model"},{"9205+":"model"},{"N95":"filter_type"}]}`,
			code: 200, stored: true, wantBy: "ops", wantSrc: "api"},
		{name: "valid, dashboard, token", body: `{"mask_name":"3M Aura 9205+ N95","breakdown":[{"3M":"brand"},{"Aura":"model"},{"9205+":"model"},{"N95":"filter_type"}],"source":"dashboard"}`,
			hdr: []string{"Authorization", "Bearer tok", "Sec-Fetch-Site", "same-origin"}, code: 200, stored: true, wantBy: "token", wantSrc: "dashboard"},
		{name: "labelled_by given", body: `{"mask_name":"3M Aura 9205+ N95","breakdown":[{"3M":"brand"},{"Aura":"model"},{"9205+":"model"},{"N95":"filter_type"}],"labelled_by":"alice@example.com"}`,
			code: 200, stored: true, wantBy: "alice@example.com", wantSrc: "api"},
		{name: "token mismatch", body: `{"mask_name":"3M Aura 9205+ N95","breakdown":[{"3M":"brand"},{"Aurora":"model"},{"9205+":"model"},{"N95":"filter_type"}]}`,
			code: 400, errHas: `tokenizer's is "Aura"`},
		{name: "too few entries", body: `{"mask_name":"3M Aura 9205+ N95","breakdown":[{"3M":"brand"}]}`,
			code: 400, errHas: "breakdown has 1 entries"},
		{name: "unknown label", body: `{"mask_name":"3M Aura 9205+ N95","breakdown":[{"3M":"manufacturer"},{"Aura":"model"},{"9205+":"model"},{"N95":"filter_type"}]}`,
			code: 400, errHas: `label "manufacturer"`},
		{name: "empty name", body: `{"mask_name":"","breakdown":[]}`, code: 400, errHas: "mask_name is empty"},
		{name: "no name", body: `{"breakdown":[]}`, code: 400, errHas: "no mask_name"},
		{name: "not JSON", body: `{"mask_name":`, code: 400, errHas: "invalid label"},
		{name: "foreign source", body: `{"mask_name":"3M Aura 9205+ N95","breakdown":[{"3M":"brand"},{"Aura":"model"},{"9205+":"model"},{"N95":"filter_type"}],"source":"import"}`,
			code: 400, errHas: "source must be"},
		{name: "1 MB body", body: `{"mask_name":"` + bigName + `","breakdown":[{"` + bigName + `":"brand"}]}`, code: 413, errHas: "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.rdb.Del(ctx, labels.Key, key)
			hdr := tc.hdr
			if hdr == nil {
				hdr = sameOrigin
			}
			code, _, body := f.do(t, "PUT", "/admin/api/labels", tc.body, hdr...)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, body, tc.code)
			}
			n, _ := f.rdb.HLen(ctx, labels.Key).Result()
			entry, _ := f.rdb.Get(ctx, key).Result()
			if !tc.stored {
				if msg := errorOf(t, body); !strings.Contains(msg, tc.errHas) {
					t.Errorf("error %q lacks %q", msg, tc.errHas)
				}
				if n != 0 || entry != "" {
					t.Errorf("refused label stored something: %d labels, cache entry %q", n, entry)
				}
				return
			}
			var out struct {
				Label    json.RawMessage `json:"label"`
				Warnings []string        `json:"warnings"`
			}
			decode(t, body, &out)
			var l labels.Label
			if err := l.UnmarshalJSON(out.Label); err != nil {
				t.Fatal(err)
			}
			if l.LabelledBy != tc.wantBy || l.Source != tc.wantSrc || l.LabelledAt.IsZero() || l.MaskName != "3M Aura 9205+ N95" {
				t.Errorf("stored %+v", l)
			}
			if out.Warnings == nil {
				t.Error("warnings should be an array, never null")
			}
			// The cache entry Rails reads is the label now.
			var p predictor.Prediction
			if err := p.UnmarshalJSON([]byte(entry)); err != nil {
				t.Fatalf("cache entry %q: %v", entry, err)
			}
			if p.Source != "label" || p.Confidence != 1 || strings.Join(p.Labels, " ") != "brand model model filter_type" {
				t.Errorf("cache entry %s", entry)
			}
			got, ok, err := f.store.Get(ctx, "3m aura 9205+ n95")
			if err != nil || !ok || got.LabelledBy != tc.wantBy {
				t.Errorf("store: %+v %v %v", got, ok, err)
			}
		})
	}
}

func TestPutLabelWarnings(t *testing.T) {
	f := newFixture(t, Config{User: "ops", Password: "pw"})
	// The convention wants N95 as filter_type: stored anyway, with a warning.
	code, _, body := f.do(t, "PUT", "/admin/api/labels",
		`{"mask_name":"3M Aura N95","breakdown":[{"3M":"brand"},{"Aura":"model"},{"N95":"misc"}]}`, sameOrigin...)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var out struct{ Warnings []string }
	decode(t, body, &out)
	if len(out.Warnings) == 0 {
		t.Errorf("no warnings for N95 as misc: %s", body)
	}
	t.Logf("warnings: %q", out.Warnings)
}

func TestPutLabelFull(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{User: "ops", Password: "pw"})
	full, err := labels.New(f.rdb, labels.Config{MaxLabels: 1})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{User: "ops", Password: "pw", Status: func() httpapi.Status { return httpapi.Status{ModelLoaded: true} },
		Redis: f.rdb, Labels: full, CRF: func() *predictor.CRF { return f.crf }})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	put := func(name, bd string) (int, string) {
		req, _ := http.NewRequest("PUT", ts.URL+"/admin/api/labels", strings.NewReader(`{"mask_name":"`+name+`","breakdown":`+bd+`}`))
		req.SetBasicAuth("ops", "pw")
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	if code, msg := put("Moldex 2200", `[{"Moldex":"brand"},{"2200":"model"}]`); code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	code, msg := put("Moldex 2300", `[{"Moldex":"brand"},{"2300":"model"}]`)
	if code != http.StatusInsufficientStorage || !strings.Contains(msg, "full") {
		t.Errorf("full store: %d %q", code, msg)
	}
	// relabelling a stored name is accepted
	if code, msg := put("Moldex 2200", `[{"Moldex":"brand"},{"2200":"misc"}]`); code != 200 {
		t.Errorf("relabel: %d %s", code, msg)
	}
	if n, _ := f.rdb.HLen(ctx, labels.Key).Result(); n != 1 {
		t.Errorf("%d labels", n)
	}
}

func putLabel(t *testing.T, f *fixture, name string, labs ...string) {
	t.Helper()
	toks := predictor.Tokenize(name)
	bd := make([]predictor.Labelled, len(toks))
	for i, tok := range toks {
		bd[i] = predictor.Labelled{Token: tok, Label: labs[i%len(labs)]}
	}
	if _, _, err := f.store.Put(context.Background(), labels.Label{MaskName: name, Breakdown: bd, Source: labels.SourceAPI}); err != nil {
		t.Fatal(err)
	}
}

func TestListAndDeleteLabels(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{User: "ops", Password: "pw"})
	want := map[string]bool{}
	for i := range 25 {
		name := fmt.Sprintf("Brand%02d Model%02d", i, i)
		putLabel(t, f, name, "brand", "model")
		want[name] = true
	}
	got := map[string]bool{}
	cursor, pages := "", 0
	for {
		code, _, body := f.get(t, "GET", "/admin/api/labels?count=10&cursor="+cursor, opsAuth...)
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		var page struct {
			Labels []json.RawMessage `json:"labels"`
			Next   *string           `json:"next_cursor"`
		}
		decode(t, body, &page)
		if page.Next == nil || page.Labels == nil {
			t.Fatalf("page lacks labels or next_cursor: %s", body)
		}
		for _, raw := range page.Labels {
			var l labels.Label
			if err := l.UnmarshalJSON(raw); err != nil {
				t.Fatal(err)
			}
			got[l.MaskName] = true
		}
		pages++
		if *page.Next == "0" {
			break
		}
		if pages > 30 {
			t.Fatal("no end of the list")
		}
		cursor = *page.Next
	}
	if len(got) != len(want) {
		t.Errorf("listed %d labels in %d pages, want %d", len(got), pages, len(want))
	}
	for _, bad := range []string{"?cursor=x", "?cursor=-1", "?count=0", "?count=1001", "?count=ten"} {
		if code, _, body := f.get(t, "GET", "/admin/api/labels"+bad, opsAuth...); code != 400 {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}
	// One label by name (any spelling).
	if code, _, body := f.get(t, "GET", "/admin/api/labels?mask_name=brand07+MODEL07", opsAuth...); code != 200 || !strings.Contains(body, `"mask_name":"Brand07 Model07"`) {
		t.Errorf("one label: %d %s", code, body)
	}
	if code, _, _ := f.get(t, "GET", "/admin/api/labels?mask_name=nobody", opsAuth...); code != 404 {
		t.Errorf("missing label: %d", code)
	}

	// DELETE: the label and its cache entry go; a second time finds nothing.
	const key = "maskpredictor:prediction:brand03 model03"
	if n, _ := f.rdb.Exists(ctx, key).Result(); n != 1 {
		t.Fatal("Put wrote no cache entry")
	}
	for i, want := range []string{`{"deleted":true}`, `{"deleted":false}`} {
		code, _, body := f.do(t, "DELETE", "/admin/api/labels?mask_name=Brand03+Model03", "", sameOrigin...)
		if code != 200 || strings.TrimSpace(body) != want {
			t.Errorf("delete %d: %d %s", i, code, body)
		}
	}
	if n, _ := f.rdb.Exists(ctx, key).Result(); n != 0 {
		t.Error("the label's cache entry survived DELETE")
	}
	if n, _ := f.store.Len(ctx); n != 24 {
		t.Errorf("%d labels after delete", n)
	}
	if code, _, _ := f.do(t, "DELETE", "/admin/api/labels", "", sameOrigin...); code != 400 {
		t.Errorf("delete without mask_name: %d", code)
	}
}

type reviewAnswer struct {
	Names []struct {
		MaskName   string          `json:"mask_name"`
		Score      float64         `json:"score"`
		Prediction json.RawMessage `json:"prediction"`
	} `json:"names"`
	Candidates   int    `json:"candidates"`
	ModelVersion string `json:"model_version"`
}

func TestReviewAPI(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{User: "ops", Password: "pw"})
	// More cache entries: this model's (candidates), another version's,
	// the rule fallback's and a label's (all three left out).
	mine := []string{"Acme Foo N95", "Kimberly Clark Duckbill", "Cleanspace Halo", "Aaa Bbb Ccc", "Moldex 2200 N95"}
	for _, n := range mine {
		p, err := f.crf.Predict(n)
		if err != nil {
			t.Fatal(err)
		}
		p.Confidence = 0.99 // stale confidences: the review predicts again
		f.rdb.Set(ctx, "maskpredictor:prediction:"+predictor.Normalize(n), p.AppendJSON(nil), 0)
	}
	other, _ := f.crf.Predict("Other Version Name")
	other.ModelVersion = "v4-000000000000"
	f.rdb.Set(ctx, "maskpredictor:prediction:other version name", other.AppendJSON(nil), 0)
	rules := predictor.DefaultRules(predictor.Limits{})
	fb, _ := rules.PredictWith("Rules Only Name", predictor.Options{})
	f.rdb.Set(ctx, "maskpredictor:prediction:rules only name", fb.AppendJSON(nil), 0)
	putLabel(t, f, "Aaa Bbb Ccc", "brand", "model", "model")         // labelled: out
	putLabel(t, f, "Vogmask Organic Large", "brand", "misc", "size") // a recent one, labelled: out

	code, _, body := f.get(t, "GET", "/admin/api/review?limit=200", opsAuth...)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var ans reviewAnswer
	decode(t, body, &ans)
	got := []string{}
	for _, n := range ans.Names {
		got = append(got, n.MaskName)
		var p predictor.Prediction
		if err := p.UnmarshalJSON(n.Prediction); err != nil {
			t.Fatal(err)
		}
		if p.Confidence == 0.99 || p.ModelVersion != f.version || len(p.TokenConfidences) != len(p.Tokens) {
			t.Errorf("%s: not predicted again by the serving model: %s", n.MaskName, n.Prediction)
		}
	}
	// Expected: the same candidates ranked by predictor.Review.
	cands := []string{"Acme Foo N95", "Kimberly Clark Duckbill", "Cleanspace Halo", "Moldex 2200 N95", "Zzyzx Qwerty 99", "3M Aura 9205+ N95"}
	var preds []*predictor.Prediction
	for _, n := range cands {
		p, _ := f.crf.Predict(n)
		p.NormalizedName = predictor.Normalize(n)
		preds = append(preds, p)
	}
	var want []string
	for _, s := range predictor.Review(f.crf, preds, 200) {
		want = append(want, s.Prediction.MaskName)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("review order\n got %q\nwant %q", got, want)
	}
	if ans.Candidates != len(cands) || ans.ModelVersion != f.version {
		t.Errorf("candidates %d version %q", ans.Candidates, ans.ModelVersion)
	}
	for _, out := range []string{"Aaa Bbb Ccc", "Vogmask Organic Large", "Other Version Name", "Rules Only Name"} {
		if strings.Contains(body, out) {
			t.Errorf("%q should not be in the review queue", out)
		}
	}
	if n, ok := f.metrics.ReviewQueue(); !ok || n != int64(len(cands)) {
		t.Errorf("review queue gauge %d %v", n, ok)
	}

	// limit
	code, _, body = f.get(t, "GET", "/admin/api/review?limit=2", opsAuth...)
	decode(t, body, &ans)
	if code != 200 || len(ans.Names) != 2 || ans.Names[0].MaskName != want[0] {
		t.Errorf("limit=2: %d %s", code, body)
	}
	code, _, body = f.get(t, "GET", "/admin/api/review", opsAuth...)
	decode(t, body, &ans)
	if code != 200 || len(ans.Names) != len(cands) { // default 20 ≥ 6
		t.Errorf("default limit: %d %s", code, body)
	}
	for _, bad := range []string{"0", "201", "x", "-3", "1.5"} {
		code, hdr, body := f.get(t, "GET", "/admin/api/review?limit="+bad, opsAuth...)
		if code != 400 || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("limit=%s: %d %s", bad, code, body)
		}
		errorOf(t, body)
	}
	if code, hdr, _ := f.do(t, "POST", "/admin/api/review", "{}", sameOrigin...); code != 405 || hdr.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST review: %d %v", code, hdr)
	}
	if code, _, _ := f.get(t, "GET", "/admin/api/nope", opsAuth...); code != 404 {
		t.Errorf("/admin/api/nope: %d", code)
	}
}

func TestReviewCapsTheScan(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{User: "ops", Password: "pw", ReviewMaxKeys: 50})
	pipe := f.rdb.Pipeline()
	for i := range 400 {
		n := fmt.Sprintf("Capbrand Cap%03d N95", i)
		p, _ := f.crf.Predict(n)
		pipe.Set(ctx, "maskpredictor:prediction:"+predictor.Normalize(n), p.AppendJSON(nil), 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	code, _, body := f.get(t, "GET", "/admin/api/review?limit=5", opsAuth...)
	var ans struct {
		Candidates int  `json:"candidates"`
		Partial    bool `json:"partial"`
	}
	decode(t, body, &ans)
	// ≤ 50 cache keys + the 2 recent ones
	if code != 200 || !ans.Partial || ans.Candidates > 52 || ans.Candidates == 0 {
		t.Errorf("%d candidates=%d partial=%v", code, ans.Candidates, ans.Partial)
	}
}

func TestReviewWithoutModelOrRedis(t *testing.T) {
	f := newFixture(t, Config{User: "ops", Password: "pw", CRF: func() *predictor.CRF { return nil }})
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/admin/api/review", ""},
		{"POST", "/admin/api/redecode", `{"mask_name":"3M Aura","fixed":{}}`},
	} {
		code, _, body := f.do(t, tc.method, tc.path, tc.body, sameOrigin...)
		if code != 503 || !strings.Contains(errorOf(t, body), "no model is loaded") {
			t.Errorf("%s %s on the rule fallback: %d %s", tc.method, tc.path, code, body)
		}
	}
	if code, _, body := f.get(t, "GET", "/admin/review", opsAuth...); code != 503 || !strings.Contains(body, "no model is loaded") {
		t.Errorf("page on the rule fallback: %d %.300s", code, body)
	}

	// No Redis: no store.
	crf := f.crf
	h, err := New(Config{User: "u", Password: "p", Status: func() httpapi.Status { return httpapi.Status{ModelLoaded: true} },
		CRF: func() *predictor.CRF { return crf }})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/admin/api/review", ""},
		{"GET", "/admin/api/labels", ""},
		{"PUT", "/admin/api/labels", `{"mask_name":"3M Aura","breakdown":[{"3M":"brand"},{"Aura":"model"}]}`},
		{"DELETE", "/admin/api/labels?mask_name=3M+Aura", ""},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
		req.SetBasicAuth("u", "p")
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.Contains(e.Error, "Redis") {
			t.Errorf("%s %s without Redis: %d %q", tc.method, tc.path, resp.StatusCode, e.Error)
		}
	}
	// Re-decoding needs only the model.
	req, _ := http.NewRequest("POST", ts.URL+"/admin/api/redecode", strings.NewReader(`{"mask_name":"3M Aura","fixed":{"1":"model"}}`))
	req.SetBasicAuth("u", "p")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("redecode without Redis: %d", resp.StatusCode)
	}
}

func TestRedecodeAPI(t *testing.T) {
	f := newFixture(t, Config{User: "ops", Password: "pw"})
	code, _, body := f.do(t, "POST", "/admin/api/redecode", `{"mask_name":"Zzyzx Qwerty 99","fixed":{"0":"model"}}`, sameOrigin...)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var out struct{ Prediction json.RawMessage }
	decode(t, body, &out)
	var p predictor.Prediction
	if err := p.UnmarshalJSON(out.Prediction); err != nil {
		t.Fatal(err)
	}
	want, _ := f.crf.PredictFixed("Zzyzx Qwerty 99", map[int]string{0: "model"})
	if strings.Join(p.Labels, " ") != strings.Join(want.Labels, " ") || p.TokenConfidences[0] != 1 || p.NormalizedName != "zzyzx qwerty 99" {
		t.Errorf("got %s, want labels %v", out.Prediction, want.Labels)
	}
	for _, tc := range []struct{ body, errHas string }{
		{`{"mask_name":"Zzyzx Qwerty 99","fixed":{"x":"model"}}`, "not a token index"},
		{`{"mask_name":"Zzyzx Qwerty 99","fixed":{"3":"model"}}`, "outside the name"},
		{`{"mask_name":"Zzyzx Qwerty 99","fixed":{"0":"maker"}}`, "unknown label"},
		{`{"fixed":{}}`, "mask_name is required"},
		{`{"mask_name":"   ","fixed":{}}`, "no tokens"},
		{`[`, "invalid JSON"},
	} {
		code, _, body := f.do(t, "POST", "/admin/api/redecode", tc.body, sameOrigin...)
		if code != 400 || !strings.Contains(errorOf(t, body), tc.errHas) {
			t.Errorf("%s: %d %s", tc.body, code, body)
		}
	}
}

func TestAPIRefusals(t *testing.T) {
	ctx := context.Background()
	const put = `{"mask_name":"3M Aura","breakdown":[{"3M":"brand"},{"Aura":"model"}]}`
	unsafeReqs := []struct{ method, path, body string }{
		{"PUT", "/admin/api/labels", put},
		{"DELETE", "/admin/api/labels?mask_name=3M+Aura", ""},
		{"POST", "/admin/api/redecode", `{"mask_name":"3M Aura","fixed":{}}`},
	}

	t.Run("unauthenticated", func(t *testing.T) {
		f := newFixture(t, Config{User: "ops", Password: "pw", MaxFailures: -1})
		reqs := append(unsafeReqs, struct{ method, path, body string }{"GET", "/admin/api/review", ""},
			struct{ method, path, body string }{"GET", "/admin/api/labels", ""},
			struct{ method, path, body string }{"GET", "/admin/review", ""})
		for _, rq := range reqs {
			for _, hdr := range [][]string{{"Sec-Fetch-Site", "same-origin"}, {"Authorization", basic("ops", "nope")}} {
				code, _, body := f.do(t, rq.method, rq.path, rq.body, hdr...)
				if code != 401 || errorOf(t, body) != "unauthorized" {
					t.Errorf("%s %s %v: %d %s", rq.method, rq.path, hdr, code, body)
				}
			}
		}
		if n, _ := f.rdb.HLen(ctx, labels.Key).Result(); n != 0 {
			t.Error("stored without credentials")
		}
	})

	t.Run("cross-origin", func(t *testing.T) {
		f := newFixture(t, Config{User: "ops", Password: "pw"})
		putLabel(t, f, "3M Aura", "brand", "model")
		for _, rq := range unsafeReqs {
			for _, hdr := range [][]string{
				{"Sec-Fetch-Site", "cross-site"},
				{"Sec-Fetch-Site", "same-site"},
				{"Origin", "https://evil.example"},
			} {
				code, hdr2, body := f.do(t, rq.method, rq.path, rq.body, append(append([]string(nil), opsAuth...), hdr...)...)
				if code != 403 || hdr2.Get("Content-Type") != "application/json" || !strings.Contains(errorOf(t, body), "cross-origin") {
					t.Errorf("%s %s %v: %d %s", rq.method, rq.path, hdr, code, body)
				}
			}
		}
		l, ok, _ := f.store.Get(ctx, "3M Aura")
		if !ok || l.Breakdown[1].Label != "model" {
			t.Error("a cross-origin request changed the label")
		}
		// Safe methods are not refused (a GET is not a write).
		if code, _, _ := f.get(t, "GET", "/admin/api/labels", append(append([]string(nil), opsAuth...), "Sec-Fetch-Site", "cross-site")...); code != 200 {
			t.Errorf("cross-site GET: %d", code)
		}
	})

	t.Run("read-only", func(t *testing.T) {
		f := newFixture(t, Config{User: "ops", Password: "pw", ReadOnly: true})
		putLabel(t, f, "3M Aura", "brand", "misc")
		for _, rq := range unsafeReqs {
			code, _, body := f.do(t, rq.method, rq.path, rq.body, sameOrigin...)
			if code != 403 || !strings.Contains(errorOf(t, body), "read-only") {
				t.Errorf("%s %s: %d %s", rq.method, rq.path, code, body)
			}
		}
		if l, ok, _ := f.store.Get(ctx, "3M Aura"); !ok || l.Breakdown[1].Label != "misc" {
			t.Error("read-only mode changed a label")
		}
		for _, p := range []string{"/admin/api/review", "/admin/api/labels"} {
			if code, _, body := f.get(t, "GET", p, opsAuth...); code != 200 {
				t.Errorf("read-only GET %s: %d %s", p, code, body)
			}
		}
		code, hdr, body := f.get(t, "GET", "/admin/review", opsAuth...)
		if code != 200 || !strings.Contains(body, `id="read-only"`) || strings.Contains(body, "<select") ||
			strings.Contains(body, `class="save"`) || strings.Contains(body, "<script") || strings.Contains(hdr.Get("Content-Security-Policy"), "script-src") {
			t.Errorf("read-only page: %d %v\n%s", code, hdr, body)
		}
		if !strings.Contains(body, "Zzyzx Qwerty 99") {
			t.Error("the read-only page lists no names")
		}
	})
}

// TestReviewPage checks the server-rendered page: one select per token
// with the prediction selected, the script allowed by its hash and nothing
// else, the security headers.
func TestReviewPage(t *testing.T) {
	f := newFixture(t, Config{User: "ops", Password: "pw"})
	code, hdr, body := f.get(t, "GET", "/admin/review", opsAuth...)
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("%d %v", code, hdr)
	}
	for k, v := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
		if hdr.Get(k) != v {
			t.Errorf("%s: %q", k, hdr.Get(k))
		}
	}
	csp := hdr.Get("Content-Security-Policy")
	m := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(body, -1)
	if len(m) != 1 {
		t.Fatalf("%d scripts", len(m))
	}
	sum := sha256.Sum256([]byte(m[0][1]))
	hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if !strings.Contains(csp, "; script-src "+hash+";") || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") ||
		strings.Contains(csp, "'unsafe-eval'") {
		t.Errorf("CSP %q does not allow exactly the page's script (%s)", csp, hash)
	}
	if strings.Contains(body, "src=") || strings.Contains(body, "<link") {
		t.Error("external assets")
	}
	// "Zzyzx Qwerty 99": brand brand model, one select per token, the
	// prediction selected.
	p, _ := f.crf.Predict("Zzyzx Qwerty 99")
	i := strings.Index(body, `data-name="Zzyzx Qwerty 99"`)
	if i < 0 {
		t.Fatalf("Zzyzx Qwerty 99 not on the page:\n%s", body)
	}
	item := body[i:]
	item = item[:strings.Index(item, "</section>")]
	if n := strings.Count(item, "<select"); n != 3 {
		t.Errorf("%d selects", n)
	}
	if n := strings.Count(item, "<option"); n != 3*len(predictor.ComponentLabels) {
		t.Errorf("%d options", n)
	}
	for k, lab := range p.Labels {
		re := regexp.MustCompile(fmt.Sprintf(`(?s)data-pos="%d" data-token="%s".*?<option value="%s" selected>`, k, regexp.QuoteMeta(p.Tokens[k]), lab))
		if !re.MatchString(item) {
			t.Errorf("token %d %q: %q not preselected", k, p.Tokens[k], lab)
		}
	}
	for _, want := range []string{`class="save"`, `class="skip"`, "<kbd>s</kbd>", "<kbd>k</kbd>", "<kbd>Enter</kbd>", `id="candidates">3<`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The overview links it.
	if _, _, ov := f.get(t, "GET", "/admin/", opsAuth...); !strings.Contains(ov, `href="/admin/review"`) {
		t.Error("the overview does not link the review page")
	}
	if code, _, _ := f.do(t, "POST", "/admin/review", "", sameOrigin...); code != 405 {
		t.Errorf("POST /admin/review: %d", code)
	}
}

func TestLabelMetricsAndOverview(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{User: "ops", Password: "pw"})
	metrics := func() string {
		code, _, body := f.get(t, "GET", "/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		return body
	}
	body := metrics()
	for _, absent := range []string{"maskpredictor_review_queue_length ", "maskpredictor_last_retrain_"} {
		if strings.Contains(body, "\n"+absent) {
			t.Errorf("%s reported before it exists", absent)
		}
	}
	if _, _, ov := f.get(t, "GET", "/admin/", opsAuth...); !strings.Contains(ov, `id="labels-stored">0<`) || strings.Contains(ov, "not counted") {
		t.Error("overview of an empty store")
	}
	if !strings.Contains(body, "\nmaskpredictor_labels_stored 0\n") || !strings.Contains(body, "\nmaskpredictor_labels{source=\"dashboard\"} 0\n") {
		t.Errorf("empty store not reported:\n%s", grepLines(body, "maskpredictor_labels"))
	}

	putLabel(t, f, "3M Aura", "brand", "model")
	putLabel(t, f, "3M Vflex", "brand", "model")
	if code, _, b := f.do(t, "PUT", "/admin/api/labels", `{"mask_name":"Moldex 2200","breakdown":[{"Moldex":"brand"},{"2200":"model"}],"source":"dashboard"}`, sameOrigin...); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	if code, _, _ := f.get(t, "GET", "/admin/api/review", opsAuth...); code != 200 {
		t.Fatal(code)
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := labels.SaveRetrain(ctx, f.rdb, labels.RetrainResult{At: at, Published: true, NewScore: 0.95, CurrentScore: 0.93,
		NewNameScore: 0.81, CurrentNameScore: 0.77, Labels: 3, NewVersion: "v4-new", CurrentVersion: "v4-old", Reason: "better on held-out labels"}); err != nil {
		t.Fatal(err)
	}
	body = metrics()
	for _, want := range []string{
		"\nmaskpredictor_labels_stored 3\n",
		"\nmaskpredictor_labels{source=\"api\"} 2\n",
		"\nmaskpredictor_labels{source=\"dashboard\"} 1\n",
		"\nmaskpredictor_labels{source=\"sidekiq\"} 0\n",
		"\nmaskpredictor_labels_scrape_error 0\n",
		"\nmaskpredictor_review_queue_length 3\n", // Zzyzx + the two recent ones
		fmt.Sprintf("\nmaskpredictor_last_retrain_timestamp_seconds %g\n", float64(at.Unix())),
		"\nmaskpredictor_last_retrain_token_accuracy{model=\"new\"} 0.95\n",
		"\nmaskpredictor_last_retrain_token_accuracy{model=\"current\"} 0.93\n",
		"\nmaskpredictor_last_retrain_name_accuracy{model=\"new\"} 0.81\n",
		"\nmaskpredictor_last_retrain_published 1\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", strings.TrimSpace(want), grepLines(body, "maskpredictor_l", "maskpredictor_review"))
		}
	}
	_, _, ov := f.get(t, "GET", "/admin/", opsAuth...)
	for _, want := range []string{`id="labels-stored">3<`, "from api</th><td class=\"num\">2<", "from dashboard</th><td class=\"num\">1<",
		`id="review-queue">3 candidates`, "published", "0.950 / 0.930", "0.810 / 0.770", "<code>v4-new</code>"} {
		if !strings.Contains(ov, want) {
			t.Errorf("overview lacks %q", want)
		}
	}

	// A large store: only the total, no per-source series (HGETALL is not
	// paid at every scrape).
	pipe := f.rdb.Pipeline()
	for i := range LabelsCountedMax + 1 {
		pipe.HSet(ctx, labels.Key, fmt.Sprintf("bulk %d", i), `{"mask_name":"x","breakdown":[{"x":"misc"}],"labelled_by":"","source":"import"}`)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	body = metrics()
	if !strings.Contains(body, fmt.Sprintf("\nmaskpredictor_labels_stored %d\n", LabelsCountedMax+4)) || strings.Contains(body, "\nmaskpredictor_labels{") {
		t.Errorf("large store:\n%s", grepLines(body, "maskpredictor_labels"))
	}
	_, _, ov = f.get(t, "GET", "/admin/", opsAuth...)
	if !strings.Contains(ov, "not counted (more than 5000 labels)") {
		t.Error("overview of a large store")
	}
}

func grepLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
