package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/predictor"
)

var nineComponents = []string{"brand", "model", "size", "color", "style", "strap", "filter_type", "valved", "misc"}

func crf(t testing.TB) *predictor.CRF { return modeltest.DefaultCRF(t) }

type testOpts struct {
	p            Predictor
	status       *Status
	rdb          redis.UniversalClient
	cache        bool
	metricsToken string
	admin        http.Handler
	maxNames     int
	cacheTTL     time.Duration
	guard        *cache.Guard
	batchNames   int
	batchWait    time.Duration
	cacheTimeout time.Duration
}

type testServer struct {
	*httptest.Server
	api     *Server
	metrics *Metrics
	recent  *Recent
}

func newTestServer(t testing.TB, o testOpts) *testServer {
	t.Helper()
	if o.p == nil {
		o.p = crf(t)
	}
	st := Status{ModelLoaded: true, ModelVersion: o.p.Version(), ModelSource: "embedded"}
	if o.status != nil {
		st = *o.status
	}
	status := func() Status { return st }
	m := NewMetrics(MetricsConfig{Status: status, Redis: o.rdb})
	t.Cleanup(func() { _ = m.Close() })
	recent := NewRecent(64)
	ec := EngineConfig{Predictor: o.p, Metrics: m, Recent: recent, MaxNames: o.maxNames,
		Guard: o.guard, BatchNames: o.batchNames, BatchWait: o.batchWait, CacheTimeout: o.cacheTimeout}
	if o.cache {
		c, err := cache.New(o.rdb, cache.Config{TTL: o.cacheTTL})
		if err != nil {
			t.Fatal(err)
		}
		ec.Cache = c
	}
	e, err := NewEngine(ec)
	if err != nil {
		t.Fatal(err)
	}
	api, err := NewServer(Config{Engine: e, Status: status, Redis: o.rdb, Metrics: m, MetricsToken: o.metricsToken, Admin: o.admin})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api)
	t.Cleanup(ts.Close)
	return &testServer{Server: ts, api: api, metrics: m, recent: recent}
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("status %d: body is not a JSON object: %v\n%s", r.code, err, r.body)
	}
	return m
}

func do(t testing.TB, ts *testServer, method, path, body string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// checkPrediction checks the seed fields of one prediction object.
func checkPrediction(t *testing.T, m map[string]any, name string) {
	t.Helper()
	if m["mask_name"] != name {
		t.Errorf("mask_name %v, want %q", m["mask_name"], name)
	}
	toks, _ := m["tokens"].([]any)
	bd, _ := m["breakdown"].([]any)
	if len(toks) == 0 || len(bd) != len(toks) {
		t.Errorf("tokens %v, breakdown %v", m["tokens"], m["breakdown"])
	}
	comps, _ := m["components"].(map[string]any)
	for _, c := range nineComponents {
		if _, ok := comps[c].([]any); !ok {
			t.Errorf("component %q missing or not an array: %v", c, comps[c])
		}
	}
	if c, ok := m["confidence"].(float64); !ok || c <= 0 || c > 1 {
		t.Errorf("confidence %v", m["confidence"])
	}
	if v, _ := m["model_version"].(string); v == "" {
		t.Errorf("model_version %v", m["model_version"])
	}
	if m["fallback"] != false {
		t.Errorf("fallback %v", m["fallback"])
	}
}

func TestPredict(t *testing.T) {
	ts := newTestServer(t, testOpts{})
	r := do(t, ts, "POST", "/predict", `{"mask_name":"3M Aura 9205+ N95"}`)
	if r.code != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s: %s", r.code, r.header.Get("Content-Type"), r.body)
	}
	m := r.json(t)
	checkPrediction(t, m, "3M Aura 9205+ N95")
	comps := m["components"].(map[string]any)
	if fmt.Sprint(comps["brand"]) != "[3M]" || fmt.Sprint(comps["filter_type"]) != "[N95]" {
		t.Errorf("components %v", comps)
	}
	if m["normalized_name"] != "3m aura 9205+ n95" {
		t.Errorf("normalized_name %v", m["normalized_name"])
	}
}

func TestPredictErrors(t *testing.T) {
	ts := newTestServer(t, testOpts{})
	long := strings.Repeat("x", 1001)
	many := strings.TrimSpace(strings.Repeat("a ", 101))
	cases := []struct {
		name, method, body string
		code               int
		err                string
	}{
		{"GET", "GET", "", 405, "method not allowed: use POST"},
		{"PUT", "PUT", `{"mask_name":"x"}`, 405, "method not allowed: use POST"},
		{"empty body", "POST", "", 400, "mask_name required"},
		{"empty object", "POST", `{}`, 400, "mask_name required"},
		{"null", "POST", `null`, 400, "mask_name required"},
		{"array", "POST", `["3M"]`, 400, "mask_name required"},
		{"string", "POST", `"3M"`, 400, "mask_name required"},
		{"other key", "POST", `{"name":"3M"}`, 400, "mask_name required"},
		{"not JSON", "POST", `{"mask_name":`, 400, "request body is not valid JSON"},
		{"null name", "POST", `{"mask_name":null}`, 400, "mask_name required"},
		{"number name", "POST", `{"mask_name":5}`, 400, "mask_name must be a string"},
		{"no tokens", "POST", `{"mask_name":" - ( ) "}`, 400, "no tokens found in mask_name"},
		{"empty name", "POST", `{"mask_name":""}`, 400, "no tokens found in mask_name"},
		{"too long", "POST", `{"mask_name":"` + long + `"}`, 400, "mask_name too long: 1001 characters (limit 1000)"},
		{"too many tokens", "POST", `{"mask_name":"` + many + `"}`, 400, "mask_name has too many tokens: 101 tokens (limit 100)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, ts, c.method, "/predict", c.body)
			if r.code != c.code {
				t.Fatalf("status %d, want %d: %s", r.code, c.code, r.body)
			}
			if got := r.json(t); got["error"] != c.err || len(got) != 1 {
				t.Errorf("body %s, want error %q", r.body, c.err)
			}
			if c.code == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", r.header.Get("Allow"))
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	ts := newTestServer(t, testOpts{})
	big := `{"mask_name":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`
	for _, path := range []string{"/predict", "/predict_batch", "/invoke"} {
		r := do(t, ts, "POST", path, big)
		if r.code != 413 || r.json(t)["error"] != "request body too large (limit 1048576 bytes)" {
			t.Errorf("%s: %d %s", path, r.code, r.body)
		}
	}
	// Without a Content-Length (chunked), the limit holds while reading.
	req, _ := http.NewRequest("POST", ts.URL+"/predict", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked: %d", resp.StatusCode)
	}
	// Just under the limit is read (and is a name that is too long: 400).
	under := `{"mask_name":"` + strings.Repeat("x", DefaultMaxBodyBytes-20) + `"}`
	if r := do(t, ts, "POST", "/predict", under); r.code != 400 {
		t.Errorf("under the limit: %d %s", r.code, r.body)
	}
}

func TestPredictBatch(t *testing.T) {
	ts := newTestServer(t, testOpts{maxNames: 5})
	names := []string{"3M 1860s", "Zimi ZM9233 w/ Headstraps", "BreatheTeq - Large", "3M 1860s"}
	b, _ := json.Marshal(map[string]any{"mask_names": names})
	r := do(t, ts, "POST", "/predict_batch", string(b))
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	m := r.json(t)
	preds, _ := m["predictions"].([]any)
	if len(preds) != len(names) || len(m) != 1 {
		t.Fatalf("%s", r.body)
	}
	for i, p := range preds {
		checkPrediction(t, p.(map[string]any), names[i])
	}
	if r := do(t, ts, "POST", "/predict_batch", `{"mask_names":[]}`); r.code != 200 || string(r.body) != `{"predictions":[]}` {
		t.Errorf("empty batch: %d %s", r.code, r.body)
	}

	cases := []struct {
		name, method, body string
		code               int
		want               string
	}{
		{"GET", "GET", "", 405, `{"error":"method not allowed: use POST"}`},
		{"empty", "POST", "", 400, `{"error":"mask_names array required"}`},
		{"no key", "POST", `{"mask_name":"3M"}`, 400, `{"error":"mask_names array required"}`},
		{"string", "POST", `{"mask_names":"3M"}`, 400, `{"error":"mask_names array required"}`},
		{"null", "POST", `{"mask_names":null}`, 400, `{"error":"mask_names array required"}`},
		{"array body", "POST", `["3M"]`, 400, `{"error":"mask_names array required"}`},
		{"not JSON", "POST", `{"mask_names":[`, 400, `{"error":"request body is not valid JSON"}`},
		{"number element", "POST", `{"mask_names":["3M",7]}`, 400, `{"error":"mask_names[1] must be a string","index":1}`},
		{"no tokens", "POST", `{"mask_names":["3M","--"]}`, 400, `{"error":"mask_names[1]: no tokens found in mask_name","index":1}`},
		{"too many", "POST", `{"mask_names":["a","b","c","d","e","f"]}`, 400, `{"error":"too many mask_names: 6 (limit 5)"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, ts, c.method, "/predict_batch", c.body)
			if r.code != c.code || string(r.body) != c.want {
				t.Errorf("%d %s, want %d %s", r.code, r.body, c.code, c.want)
			}
		})
	}
}

func TestBatchDefaultLimit(t *testing.T) {
	ts := newTestServer(t, testOpts{})
	names := make([]string, DefaultMaxNames+1)
	for i := range names {
		names[i] = fmt.Sprintf("3M %d", i)
	}
	b, _ := json.Marshal(map[string]any{"mask_names": names})
	if r := do(t, ts, "POST", "/predict_batch", string(b)); r.code != 400 || r.json(t)["error"] != "too many mask_names: 1001 (limit 1000)" {
		t.Errorf("%d %s", r.code, r.body)
	}
	b, _ = json.Marshal(map[string]any{"mask_names": names[:DefaultMaxNames]})
	if r := do(t, ts, "POST", "/predict_batch", string(b)); r.code != 200 {
		t.Errorf("1000 names: %d", r.code)
	}
}

func decodeEnvelope(t *testing.T, r response) (LambdaResponse, map[string]any) {
	t.Helper()
	if r.code != 200 {
		t.Fatalf("HTTP %d: %s", r.code, r.body)
	}
	var env LambdaResponse
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(r.body, &keys)
	if len(keys) != 3 {
		t.Errorf("envelope keys %v, want statusCode, headers, body", keys)
	}
	if env.Headers["Access-Control-Allow-Origin"] != "*" || env.Headers["Content-Type"] != "application/json" {
		t.Errorf("headers %v", env.Headers)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(env.Body), &body); err != nil {
		t.Fatalf("body is not JSON: %v: %q", err, env.Body)
	}
	return env, body
}

func TestInvoke(t *testing.T) {
	ts := newTestServer(t, testOpts{})
	gw := func(inner string) string {
		b, _ := json.Marshal(map[string]any{"body": inner})
		return string(b)
	}
	single := `{"mask_name":"3M Aura 9205+ N95"}`
	batch := `{"mask_names":["3M 1860s","Honeywell H910"]}`
	ok := []struct{ name, event string }{
		{"single", single},
		{"batch", batch},
		{"gateway single", gw(single)},
		{"gateway batch", gw(batch)},
		{"gateway object body", `{"body":` + single + `}`},
		{"gateway base64", `{"isBase64Encoded":true,"body":"` + base64.StdEncoding.EncodeToString([]byte(single)) + `"}`},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			env, body := decodeEnvelope(t, do(t, ts, "POST", "/invoke", c.event))
			if env.StatusCode != 200 {
				t.Fatalf("statusCode %d: %s", env.StatusCode, env.Body)
			}
			if preds, ok := body["predictions"].([]any); ok {
				if len(preds) != 2 {
					t.Fatalf("%v", body)
				}
				checkPrediction(t, preds[0].(map[string]any), "3M 1860s")
				checkPrediction(t, preds[1].(map[string]any), "Honeywell H910")
			} else {
				checkPrediction(t, body, "3M Aura 9205+ N95")
			}
		})
	}
	bad := []struct{ name, event, err string }{
		{"missing", `{"name":"3M"}`, "Missing required parameter: mask_name or mask_names"},
		{"empty object", `{}`, "Missing required parameter: mask_name or mask_names"},
		{"not an object", `[1]`, "event must be a JSON object"},
		{"not JSON", `{`, "event must be a JSON object"},
		{"empty", ``, "event must be a JSON object"},
		{"gateway bad body", `{"body":"{nope"}`, "Invalid JSON in body"},
		{"gateway null body", `{"body":null}`, "Invalid JSON in body"},
		{"gateway bad base64", `{"isBase64Encoded":true,"body":"%%%"}`, "Invalid JSON in body"},
		{"names not array", `{"mask_names":"3M"}`, "mask_names must be an array"},
		{"names element", `{"mask_names":["3M",{}]}`, "mask_names[1] must be a string"},
		{"no tokens", `{"mask_name":"()"}`, "no tokens found in mask_name"},
		{"name not string", `{"mask_name":["3M"]}`, "mask_name must be a string"},
		{"batch no tokens", `{"mask_names":["3M",""]}`, "mask_names[1]: no tokens found in mask_name"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			env, body := decodeEnvelope(t, do(t, ts, "POST", "/invoke", c.event))
			if env.StatusCode != 400 || body["error"] != c.err {
				t.Errorf("statusCode %d body %s, want 400 %q", env.StatusCode, env.Body, c.err)
			}
		})
	}
	if r := do(t, ts, "GET", "/invoke", ""); r.code != 405 {
		t.Errorf("GET /invoke: %d", r.code)
	}
}

func TestHandleInvoke(t *testing.T) {
	resp, err := HandleInvoke(context.Background(), crf(t), []byte(`{"mask_names":["3M 1860s"]}`))
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Body, `{"predictions":[{"mask_name":"3M 1860s"`) {
		t.Fatalf("%v %+v", err, resp)
	}
	resp, err = HandleInvoke(context.Background(), predictor.DefaultRules(predictor.Limits{}), []byte(`{"mask_name":"3M 1860s"}`))
	if err != nil || resp.StatusCode != 200 || !strings.Contains(resp.Body, `"fallback":true`) {
		t.Fatalf("rules: %v %+v", err, resp)
	}
	resp, err = HandleInvoke(context.Background(), failing{}, []byte(`{"mask_name":"3M 1860s"}`))
	if err == nil || resp.StatusCode != 500 || resp.Body != `{"error":"internal error"}` {
		t.Fatalf("failing predictor: %v %+v", err, resp)
	}
	if _, err := HandleInvoke(context.Background(), nil, nil); err == nil {
		t.Fatal("nil predictor accepted")
	}
}

// failing is a predictor whose failures are not the caller's fault.
type failing struct{}

func (failing) PredictWith(string, predictor.Options) (*predictor.Prediction, error) {
	return nil, fmt.Errorf("disk on fire")
}
func (failing) Version() string { return "failing" }

func TestInternalErrorIs500(t *testing.T) {
	ts := newTestServer(t, testOpts{p: failing{}})
	if r := do(t, ts, "POST", "/predict", `{"mask_name":"3M"}`); r.code != 500 || string(r.body) != `{"error":"internal error"}` {
		t.Errorf("%d %s", r.code, r.body)
	}
	if r := do(t, ts, "POST", "/predict_batch", `{"mask_names":["3M"]}`); r.code != 500 {
		t.Errorf("%d %s", r.code, r.body)
	}
	// Bad input is still a 400 (limits are checked first with the cache off too).
	if r := do(t, ts, "POST", "/predict", `{"mask_name":5}`); r.code != 400 {
		t.Errorf("%d %s", r.code, r.body)
	}
}

func TestHealth(t *testing.T) {
	ts := newTestServer(t, testOpts{})
	r := do(t, ts, "GET", "/health", "")
	m := r.json(t)
	if r.code != 200 || m["status"] != "ok" || m["model_loaded"] != true || m["redis"] != "disabled" ||
		m["model_version"] != crf(t).Version() || m["model_source"] != "embedded" || m["fallback"] != false {
		t.Errorf("%d %s", r.code, r.body)
	}
	if r := do(t, ts, "HEAD", "/health", ""); r.code != 200 {
		t.Errorf("HEAD: %d", r.code)
	}
	if r := do(t, ts, "POST", "/health", ""); r.code != 405 || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %v", r.code, r.header)
	}

	rules := predictor.DefaultRules(predictor.Limits{})
	ts = newTestServer(t, testOpts{p: rules, status: &Status{ModelVersion: rules.Version(), ModelSource: "rules", FallbackReason: "MODEL_URI /nope: no such file"}})
	r = do(t, ts, "GET", "/health", "")
	m = r.json(t)
	if r.code != 200 || m["status"] != "degraded" || m["model_loaded"] != false || m["fallback"] != true ||
		m["fallback_reason"] != "model: load failed (details in the logs and on /admin/)" {
		t.Errorf("fallback: %d %s", r.code, r.body)
	}
	// The fallback still answers /predict, flagged.
	p := do(t, ts, "POST", "/predict", `{"mask_name":"3M 1860s"}`).json(t)
	if p["fallback"] != true || p["confidence"] != 0.0 {
		t.Errorf("fallback prediction %v", p)
	}
}

func TestHealthRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Private: true})
	rdb := srv.Client()
	ts := newTestServer(t, testOpts{rdb: rdb, cache: true})
	m := do(t, ts, "GET", "/health", "").json(t)
	if m["status"] != "ok" || m["redis"] != "ok" {
		t.Errorf("%v", m)
	}
	srv.Stop()
	r := do(t, ts, "GET", "/health", "")
	m = r.json(t)
	if r.code != 200 || m["status"] != "degraded" || m["redis"] != "unreachable" || m["redis_error"] == nil {
		t.Errorf("redis down: %d %v", r.code, m)
	}
	// Predictions go on without the cache.
	if r := do(t, ts, "POST", "/predict", `{"mask_name":"3M 1860s"}`); r.code != 200 {
		t.Errorf("predict with Redis down: %d %s", r.code, r.body)
	}
	if r := do(t, ts, "POST", "/predict_batch", `{"mask_names":["3M 1860s","Zimi"]}`); r.code != 200 {
		t.Errorf("batch with Redis down: %d %s", r.code, r.body)
	}
	if got := metricValue(t, ts, `maskpredictor_cache_errors_total`); got < 1 {
		t.Errorf("cache errors %v", got)
	}
}

func TestNotFound(t *testing.T) {
	ts := newTestServer(t, testOpts{})
	for _, p := range []string{"/", "/nope", "/admin", "/admin/", "/admin/queues/"} {
		if r := do(t, ts, "GET", p, ""); r.code != 404 || r.json(t)["error"] != "not found" {
			t.Errorf("%s: %d %s", p, r.code, r.body)
		}
	}
}

func TestAdminMounted(t *testing.T) {
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprint(w, r.URL.Path)
	})
	ts := newTestServer(t, testOpts{admin: admin})
	if r := do(t, ts, "GET", "/admin/queues/x", ""); r.code != 418 || string(r.body) != "/admin/queues/x" {
		t.Errorf("%d %s", r.code, r.body)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/admin", nil)
	resp, err := ts.Client().Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "/admin/" {
		t.Errorf("/admin: %d %v", resp.StatusCode, resp.Header)
	}
	if got := metricValue(t, ts, `maskpredictor_http_requests_total{code="418",route="/admin/"}`); got != 1 {
		t.Errorf("admin request counted %v times", got)
	}
}

// metricValue scrapes /metrics and returns the value of the sample whose
// name and labels start with prefix (summed over matches).
func metricValue(t testing.TB, ts *testServer, prefix string) float64 {
	t.Helper()
	r := do(t, ts, "GET", "/metrics", "")
	if r.code != 200 {
		t.Fatalf("/metrics: %d %s", r.code, r.body)
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(string(r.body), "\n") {
		if strings.HasPrefix(line, prefix) && !strings.HasPrefix(line, "#") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				sum, found = sum+v, true
			}
		}
	}
	if !found {
		return -1
	}
	return sum
}

func TestMetrics(t *testing.T) {
	rules := predictor.DefaultRules(predictor.Limits{})
	ts := newTestServer(t, testOpts{})
	do(t, ts, "POST", "/predict", `{"mask_name":"3M 1860s"}`)
	do(t, ts, "POST", "/predict_batch", `{"mask_names":["3M 1860s","Zimi ZM9233"]}`)
	do(t, ts, "POST", "/predict", `{}`)
	checks := map[string]float64{
		`maskpredictor_predictions_total{source="model"}`:                     3,
		`maskpredictor_predict_duration_seconds_count{source="model"}`:        3,
		`maskpredictor_http_requests_total{code="200",route="/predict"}`:      1,
		`maskpredictor_http_requests_total{code="400",route="/predict"}`:      1,
		`maskpredictor_http_request_duration_seconds_count{route="/predict"}`: 2,
		`maskpredictor_model_loaded`:                                          1,
		`maskpredictor_build_info{`:                                           1,
		`maskpredictor_cache_requests_total{origin="http",result="hit"}`:      0,
		`go_goroutines`:             -2, // present
		`process_cpu_seconds_total`: -2,
	}
	for k, want := range checks {
		got := metricValue(t, ts, k)
		if want == -2 && got >= 0 || got == want {
			continue
		}
		t.Errorf("%s = %v, want %v", k, got, want)
	}
	if got := metricValue(t, ts, `maskpredictor_model_info{fallback="false",source="embedded",version="`+crf(t).Version()+`"}`); got != 1 {
		t.Errorf("model_info %v", got)
	}
	ts.metrics.ObserveJob("mask_predictions", "ok", 3*time.Millisecond)
	if got := metricValue(t, ts, `maskpredictor_job_duration_seconds_count{outcome="ok",queue="mask_predictions"}`); got != 1 {
		t.Errorf("job duration count %v", got)
	}

	ts = newTestServer(t, testOpts{p: rules, status: &Status{ModelVersion: rules.Version(), ModelSource: "rules"}})
	do(t, ts, "POST", "/predict", `{"mask_name":"3M 1860s"}`)
	if got := metricValue(t, ts, `maskpredictor_predictions_total{source="fallback"}`); got != 1 {
		t.Errorf("fallback predictions %v", got)
	}
	if got := metricValue(t, ts, `maskpredictor_model_loaded`); got != 0 {
		t.Errorf("model_loaded %v", got)
	}
	if r := do(t, ts, "POST", "/metrics", ""); r.code != 405 {
		t.Errorf("POST /metrics: %d", r.code)
	}
}

func TestMetricsToken(t *testing.T) {
	ts := newTestServer(t, testOpts{metricsToken: "s3cret"})
	for _, h := range [][]string{nil, {"Authorization", "Bearer nope"}, {"Authorization", "Basic czNjcmV0Og=="}, {"Authorization", "Bearer"}} {
		r := do(t, ts, "GET", "/metrics", "", h...)
		if r.code != 401 || r.json(t)["error"] != "unauthorized" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%v: %d %s", h, r.code, r.body)
		}
	}
	for _, h := range []string{"Bearer s3cret", "bearer s3cret"} {
		r := do(t, ts, "GET", "/metrics", "", "Authorization", h)
		if r.code != 200 || !strings.Contains(string(r.body), "maskpredictor_build_info") {
			t.Errorf("%q: %d", h, r.code)
		}
	}
	// The API itself needs no token.
	if r := do(t, ts, "GET", "/health", ""); r.code != 200 {
		t.Errorf("health %d", r.code)
	}
}

func TestMetricsFreshRegistryPerServer(t *testing.T) {
	a, b := newTestServer(t, testOpts{}), newTestServer(t, testOpts{})
	do(t, a, "POST", "/predict", `{"mask_name":"3M 1860s"}`)
	if got := metricValue(t, b, `maskpredictor_predictions_total{source="model"}`); got > 0 {
		t.Errorf("server b counted server a's prediction: %v", got)
	}
}
