package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/internal/testclock"
)

// throttled is a dashboard without Redis, its login throttle on a clock
// the test moves, and its log observed.
func throttled(t *testing.T, cfg Config) (*Handler, *testclock.Clock, *observer.ObservedLogs, *httpapi.Metrics) {
	t.Helper()
	clk := testclock.New()
	core, logs := observer.New(zapcore.DebugLevel)
	m := httpapi.NewMetrics(httpapi.MetricsConfig{})
	cfg.Status = func() httpapi.Status {
		return httpapi.Status{ModelLoaded: true, ModelVersion: "v", ModelSource: "embedded"}
	}
	cfg.Now, cfg.Logger, cfg.Metrics = clk.Now, zap.New(core), m
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h, clk, logs, m
}

// attempt sends GET /admin/ from remote with an Authorization header
// (none when auth is "").
func attempt(h http.Handler, remote, auth string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/admin/", nil)
	r.RemoteAddr = remote
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestLoginThrottle(t *testing.T) {
	const password = "correct horse"
	h, clk, logs, _ := throttled(t, Config{User: "ops", Password: password, MaxFailures: 3})
	good, bad := basic("ops", password), basic("ops", "guess")
	const attacker, other = "203.0.113.7:40000", "198.51.100.2:50000"

	steps := []struct {
		name   string
		remote string
		auth   string
		code   int
	}{
		{"no credentials: the browser's first request, not a failure", attacker, "", 401},
		{"failure 1", attacker, bad, 401},
		{"failure 2", attacker, bad, 401},
		{"failure 3 reaches the limit", attacker, bad, 401},
		{"throttled, credentials unchecked", attacker, bad, 429},
		{"throttled even with the right password", attacker, good, 429},
		{"another client logs in", other, good, 200},
		{"another client's failure is its own", other, bad, 401},
		{"another address on the attacker's port range", "203.0.113.8:40000", good, 200},
	}
	for i := 0; i < 50; i++ { // a brute-force flood
		steps = append(steps, struct {
			name   string
			remote string
			auth   string
			code   int
		}{"flood", attacker, bad, 429})
	}
	for _, s := range steps {
		w := attempt(h, s.remote, s.auth)
		if w.Code != s.code {
			t.Fatalf("%s: %d, want %d: %s", s.name, w.Code, s.code, w.Body)
		}
		if s.code == 429 {
			if ra := w.Header().Get("Retry-After"); ra != "60" {
				t.Errorf("%s: Retry-After %q", s.name, ra)
			}
			if w.Header().Get("Content-Type") != "application/json" || !strings.Contains(w.Body.String(), `"error":"too many failed logins`) {
				t.Errorf("%s: %s %s", s.name, w.Header().Get("Content-Type"), w.Body)
			}
		}
	}
	// The log: warnings with the client's address, never a password, and
	// bounded: the first failure and the throttling, not one per attempt.
	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	var attackerLines int
	for _, e := range warns {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && (strings.Contains(s, "guess") || strings.Contains(s, "horse")) {
				t.Errorf("a password in the log: %v", e.ContextMap())
			}
		}
		if e.ContextMap()["client"] == "203.0.113.7" {
			attackerLines++
		}
	}
	if attackerLines != 2 {
		t.Errorf("%d warnings for the attacker's 53 failures, want 2 (first failure, throttled)", attackerLines)
	}
	if got := logs.FilterMessage("admin: credentials refused").FilterField(zap.String("client", "198.51.100.2")).Len(); got != 1 {
		t.Errorf("the other client's failure: %d warnings", got)
	}

	// Retry-After counts down; the window ends and the client may try again.
	clk.Add(45 * time.Second)
	if w := attempt(h, attacker, good); w.Code != 429 || w.Header().Get("Retry-After") != "15" {
		t.Errorf("45 s later: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	clk.Add(15 * time.Second)
	if w := attempt(h, attacker, good); w.Code != 200 {
		t.Errorf("after the window: %d %s", w.Code, w.Body)
	}
	// A success forgets earlier failures.
	attempt(h, attacker, bad)
	attempt(h, attacker, bad)
	attempt(h, attacker, good)
	attempt(h, attacker, bad)
	attempt(h, attacker, bad)
	if w := attempt(h, attacker, good); w.Code != 200 {
		t.Errorf("failures before a success counted: %d", w.Code)
	}
}

func TestLoginThrottleBehindProxy(t *testing.T) {
	h, _, _, m := throttled(t, Config{Token: "tok", MaxFailures: 2, ClientIPHeader: "X-Forwarded-For"})
	const router = "10.1.2.3:5555" // every request comes from the router
	for i := 0; i < 2; i++ {
		attempt(h, router, "Bearer nope", "X-Forwarded-For", "203.0.113.7")
	}
	if w := attempt(h, router, "Bearer nope", "X-Forwarded-For", "203.0.113.7"); w.Code != 429 {
		t.Errorf("throttled client: %d", w.Code)
	}
	// A client cannot escape by prepending addresses: the last one counts.
	if w := attempt(h, router, "Bearer nope", "X-Forwarded-For", "1.1.1.1, 203.0.113.7"); w.Code != 429 {
		t.Errorf("spoofed prefix: %d", w.Code)
	}
	if w := attempt(h, router, "Bearer tok", "X-Forwarded-For", "198.51.100.2"); w.Code != 200 {
		t.Errorf("another client behind the same router: %d", w.Code)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "maskpredictor_admin_") {
			got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if got["maskpredictor_admin_login_failures_total"] != 2 || got["maskpredictor_admin_throttled_total"] != 2 {
		t.Errorf("metrics %v", got)
	}
}

func TestClientIP(t *testing.T) {
	cases := []struct {
		remote, header string
		values         []string
		want           string
	}{
		{"192.0.2.1:1234", "", nil, "192.0.2.1"},
		{"[2001:db8::1]:1234", "", nil, "2001:db8::1"},
		{"192.0.2.1:1234", "X-Forwarded-For", nil, "192.0.2.1"},
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"203.0.113.7"}, "203.0.113.7"},
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"1.1.1.1, 203.0.113.7"}, "203.0.113.7"},
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"1.1.1.1", "203.0.113.8"}, "203.0.113.8"},
		{"192.0.2.1:1234", "X-Forwarded-For", []string{" "}, "192.0.2.1"},
		{"no-port", "", nil, "no-port"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/admin/", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.values {
			r.Header.Add(c.header, v)
		}
		if got := ClientIP(r, c.header); got != c.want {
			t.Errorf("ClientIP(%s, %s=%v) = %q, want %q", c.remote, c.header, c.values, got, c.want)
		}
	}
}

func TestThrottleMemoryBounded(t *testing.T) {
	now := time.Unix(0, 0)
	th := newThrottle(3, time.Minute, func() time.Time { return now })
	for i := 0; i < maxTracked+500; i++ {
		th.fail("client-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if n := len(th.clients); n > maxTracked {
		t.Errorf("%d clients tracked, bound %d", n, maxTracked)
	}
}
