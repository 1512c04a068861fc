package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

type fixture struct {
	*httptest.Server
	rdb     *redis.Client
	version string
	crf     *predictor.CRF
	store   *labels.Store
	metrics *httpapi.Metrics
}

// newFixture serves the API with the dashboard, over a Redis that holds a
// Sidekiq queue with one waiting job, a dead job, cache entries and an
// asynq queue, as a running sidecar would leave it.
func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	crf := modeltest.DefaultCRF(t)
	ctx := context.Background()
	job, _ := json.Marshal(map[string]any{"class": "MaskPredictionJob", "queue": "mask_predictions", "jid": "abc",
		"args": []any{"3M 1860s"}, "enqueued_at": float64(time.Now().Add(-42*time.Second).UnixNano()) / 1e9})
	rdb.LPush(ctx, "queue:mask_predictions", job)
	rdb.ZAdd(ctx, "dead", redis.Z{Score: 1, Member: `{"jid":"dead1"}`})
	rdb.SAdd(ctx, "asynq:queues", "mask_predictions")

	status := func() httpapi.Status {
		return httpapi.Status{ModelLoaded: true, ModelVersion: crf.Version(), ModelSource: "embedded"}
	}
	metrics := httpapi.NewMetrics(httpapi.MetricsConfig{Status: status, Redis: rdb})
	t.Cleanup(func() { _ = metrics.Close() })
	recent := httpapi.NewRecent(0)
	engine, err := httpapi.NewEngine(httpapi.EngineConfig{Predictor: crf, Metrics: metrics, Recent: recent})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Status, cfg.Metrics, cfg.Recent, cfg.Redis = status, metrics, recent, rdb
	store, err := labels.New(rdb, labels.Config{})
	if err != nil {
		t.Fatal(err)
	}
	metrics.SetLabelStats(LabelStats(store, rdb)) // as serve.go does
	if cfg.Labels == nil {
		cfg.Labels = store
	}
	if cfg.CRF == nil {
		cfg.CRF = func() *predictor.CRF { return crf }
	}
	if cfg.RedisOptions == nil {
		cfg.RedisOptions = rdb.Options()
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	api, err := httpapi.NewServer(httpapi.Config{Engine: engine, Status: status, Redis: rdb, Metrics: metrics, Admin: h})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api)
	t.Cleanup(ts.Close)
	// Predictions: two over HTTP (remembered), one only in the cache.
	for _, n := range []string{"3M Aura 9205+ N95", "Vogmask Organic Large"} {
		if _, err := engine.Predict(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	p, err := crf.Predict("Zzyzx Qwerty 99")
	if err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, "maskpredictor:prediction:zzyzx qwerty 99", p.AppendJSON(nil), 0)
	return &fixture{Server: ts, rdb: rdb, version: crf.Version(), crf: crf, store: store, metrics: metrics}
}

func (f *fixture) get(t *testing.T, method, path string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	return f.do(t, method, path, "", hdr...)
}

// do sends body (none when empty) with the headers (name, value pairs).
func (f *fixture) do(t *testing.T, method, path, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.Client().Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestNewNeedsCredentials(t *testing.T) {
	st := func() httpapi.Status { return httpapi.Status{} }
	for _, c := range []Config{
		{Status: st},
		{User: "u", Status: st},
		{Password: "p", Status: st},
		{User: "u", Password: "p"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if Configured("", "", "") || !Configured("", "", "t") || !Configured("u", "p", "") {
		t.Error("Configured")
	}
}

func TestAuth(t *testing.T) {
	// No login throttle here: every refused combination is tried many times
	// from one address (TestLoginThrottle covers the throttle).
	f := newFixture(t, Config{User: "ops", Password: "pa:ss word", Token: "tok-123", MaxFailures: -1})
	paths := []string{"/admin/", "/admin/queues/", "/admin/queues/api/queues", "/admin/queues/api/redis_info", "/admin/nope"}
	refused := [][]string{
		nil,
		{"Authorization", basic("ops", "wrong")},
		{"Authorization", basic("wrong", "pa:ss word")},
		{"Authorization", basic("ops", "")},
		{"Authorization", "Bearer wrong"},
		{"Authorization", "Bearer "},
		{"Authorization", "Bearer pa:ss word"},
		{"Authorization", "Token tok-123"},
	}
	for _, p := range paths {
		for _, h := range refused {
			code, hdr, body := f.get(t, "GET", p, h...)
			if code != 401 || !strings.Contains(body, `"unauthorized"`) || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), `Basic realm="maskpredictor admin"`) {
				t.Errorf("%s %v: %d %s", p, h, code, body)
			}
			if strings.Contains(body, "mask_predictions") {
				t.Errorf("%s %v leaked data", p, h)
			}
		}
	}
	accepted := [][]string{
		{"Authorization", basic("ops", "pa:ss word")},
		{"Authorization", "Bearer tok-123"},
		{"Authorization", "bearer tok-123"},
		{"Authorization", basic("anyone", "tok-123")}, // the token as the Basic password (browsers)
	}
	for _, h := range accepted {
		for _, p := range []string{"/admin/", "/admin/queues/", "/admin/queues/api/queues"} {
			if code, _, body := f.get(t, "GET", p, h...); code != 200 {
				t.Errorf("%s %v: %d %s", p, h, code, body)
			}
		}
		if code, _, _ := f.get(t, "GET", "/admin/nope", h...); code != 404 {
			t.Errorf("/admin/nope: %d", code)
		}
	}
	// Security headers on every admin answer.
	_, hdr, _ := f.get(t, "GET", "/admin/", accepted[0]...)
	for k, v := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"} {
		if hdr.Get(k) != v {
			t.Errorf("%s: %q", k, hdr.Get(k))
		}
	}
	if code, _, _ := f.get(t, "POST", "/admin/", accepted[0]...); code != 405 {
		t.Errorf("POST /admin/: %d", code)
	}
	if code, hdr, _ := f.get(t, "GET", "/admin/queues", accepted[0]...); code != 301 || hdr.Get("Location") != "/admin/queues/" {
		t.Errorf("/admin/queues: %d %v", code, hdr)
	}
}

func TestTokenOnly(t *testing.T) {
	f := newFixture(t, Config{Token: "only-token"})
	if code, _, _ := f.get(t, "GET", "/admin/", "Authorization", "Bearer only-token"); code != 200 {
		t.Errorf("bearer: %d", code)
	}
	// No Basic user is configured: an empty user/password pair is no way in.
	if code, _, _ := f.get(t, "GET", "/admin/", "Authorization", basic("", "")); code != 401 {
		t.Errorf("empty basic: %d", code)
	}
}

func TestOverview(t *testing.T) {
	f := newFixture(t, Config{User: "ops", Password: "pw"})
	code, hdr, body := f.get(t, "GET", "/admin/", "Authorization", basic("ops", "pw"))
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("%d %v", code, hdr)
	}
	if !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("CSP %q", hdr.Get("Content-Security-Policy"))
	}
	for _, want := range []string{
		`<code id="model-version">` + f.version + `</code>`,
		"model loaded", "embedded",
		"<code>mask_predictions</code></td><td class=\"num\">1</td><td class=\"num\">4", // depth 1, latency 4x s
		`<strong id="dead">1</strong>`,
		"Zzyzx Qwerty 99", "3M Aura 9205&#43; N95", "Vogmask Organic Large", // cache sample + recent (html-escaped)
		`href="/admin/queues/"`,
		"HTTP hits / misses",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if !strings.Contains(body, "<th>Entries</th><td class=\"num\">1</td>") {
		t.Errorf("cache entries not counted:\n%s", body)
	}
}

func TestOverviewWithoutRedis(t *testing.T) {
	h, err := New(Config{User: "u", Password: "p", Status: func() httpapi.Status {
		return httpapi.Status{ModelVersion: "rules-1", ModelSource: "rules", FallbackReason: "MODEL_URI x: not found"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	req, _ := http.NewRequest("GET", ts.URL+"/admin/", nil)
	req.SetBasicAuth("u", "p")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{"rule-based fallback", "MODEL_URI x: not found", "not configured", "<code>mask_predictions</code>", "no predictions yet"} {
		if !strings.Contains(body, want) {
			t.Errorf("lacks %q", want)
		}
	}
	if strings.Contains(body, "/admin/queues/") {
		t.Error("links asynqmon, which needs Redis")
	}
	req, _ = http.NewRequest("GET", ts.URL+"/admin/queues/", nil)
	req.SetBasicAuth("u", "p")
	resp, err = ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("asynqmon without Redis: %d", resp.StatusCode)
	}
}

func TestAsynqmonReadOnly(t *testing.T) {
	auth := []string{"Authorization", basic("ops", "pw")}
	ro := newFixture(t, Config{User: "ops", Password: "pw", ReadOnly: true})
	if code, _, body := ro.get(t, "GET", "/admin/queues/api/queues", auth...); code != 200 || !strings.Contains(body, `"queue":"mask_predictions"`) {
		t.Errorf("GET queues: %d %s", code, body)
	}
	if code, _, _ := ro.get(t, "POST", "/admin/queues/api/queues/mask_predictions:pause", auth...); code != 405 {
		t.Errorf("read-only pause: %d", code)
	}
	if code, _, _ := ro.get(t, "DELETE", "/admin/queues/api/queues/mask_predictions", auth...); code != 405 {
		t.Errorf("read-only delete: %d", code)
	}
	if n, _ := ro.rdb.Exists(context.Background(), "asynq:{mask_predictions}:paused").Result(); n != 0 {
		t.Error("read-only mode paused the queue")
	}

	rw := newFixture(t, Config{User: "ops", Password: "pw"})
	// Unauthenticated writes never reach asynqmon.
	if code, _, _ := rw.get(t, "POST", "/admin/queues/api/queues/mask_predictions:pause"); code != 401 {
		t.Errorf("anonymous pause: %d", code)
	}
	// A cross-site request riding on the browser's Basic credentials is refused.
	if code, _, _ := rw.get(t, "POST", "/admin/queues/api/queues/mask_predictions:pause",
		append(auth, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")...); code != 403 {
		t.Errorf("cross-site pause: %d", code)
	}
	if n, _ := rw.rdb.Exists(context.Background(), "asynq:{mask_predictions}:paused").Result(); n != 0 {
		t.Error("cross-site request paused the queue")
	}
	// The same request from the dashboard's own page works.
	if code, _, body := rw.get(t, "POST", "/admin/queues/api/queues/mask_predictions:pause",
		append(auth, "Sec-Fetch-Site", "same-origin")...); code != 204 && code != 200 {
		t.Errorf("same-origin pause: %d %s", code, body)
	}
	if n, _ := rw.rdb.Exists(context.Background(), "asynq:{mask_predictions}:paused").Result(); n != 1 {
		t.Error("pause did not reach asynq")
	}
}
