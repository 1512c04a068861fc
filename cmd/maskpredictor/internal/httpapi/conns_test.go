package httpapi

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// limitedServer is an http.Server behind a ConnLimiter, as serve runs it.
type limitedServer struct {
	addr    string
	limiter *ConnLimiter
	metrics *Metrics
	logs    *observer.ObservedLogs
}

func startLimited(t *testing.T, h http.Handler, cfg ConnLimitConfig) *limitedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	m := NewMetrics(MetricsConfig{})
	cfg.Metrics, cfg.Logger = m, zap.New(core)
	l := NewConnLimiter(cfg)
	srv := &http.Server{
		Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
		MaxHeaderBytes: cfg.MaxHeaderBytes, ConnState: l.ConnState,
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l.Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return &limitedServer{addr: ln.Addr().String(), limiter: l, metrics: m, logs: logs}
}

// rawResponse sends raw bytes on a new connection and reads the answer.
func rawResponse(t *testing.T, addr string, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = io.WriteString(c, raw) }() // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestNetHTTPErrorsAreJSON: the answers net/http writes itself, before any
// handler runs, have JSON bodies like every other error (raw TCP clients).
func TestNetHTTPErrorsAreJSON(t *testing.T) {
	api := newTestServer(t, testOpts{}).api
	s := startLimited(t, api, ConnLimitConfig{MaxHeaderBytes: 8 << 10})
	big := strings.Repeat("x", 20<<10)
	cases := []struct {
		name string
		raw  string
		code int
		err  string
	}{
		{"headers too large", "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", 431, "request headers too large (limit 8192 bytes)"},
		{"request line too large", "GET /" + big + " HTTP/1.1\r\nHost: x\r\n\r\n", 431, "request headers too large (limit 8192 bytes)"},
		{"garbage", "HELLO\r\n\r\n", 400, "malformed HTTP request"},
		{"bad header line", "GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "malformed HTTP request"},
		{"no Host", "GET /health HTTP/1.1\r\n\r\n", 400, "bad request: missing required Host header"},
		{"unknown transfer coding", "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: zstd\r\n\r\n", 501, "unsupported transfer encoding"},
		{"unsupported version", "GET /health HTTP/2.5\r\nHost: x\r\n\r\n", 505, "http version not supported: unsupported protocol version"},
		// Errors our handlers write are untouched.
		{"handler 404", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not found"},
		{"handler 400", "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 400, "mask_name required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := rawResponse(t, s.addr, c.raw)
			if resp.StatusCode != c.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.code, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %q for %d bytes", cl, len(body))
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("body is not JSON: %q", body)
			}
			if m["error"] != c.err || len(m) != 1 {
				t.Errorf("body %s, want error %q", body, c.err)
			}
		})
	}
}

// idleConn opens a connection, sends one keep-alive request and reads its
// answer, leaving the connection open and idle.
func idleConn(addr string) (net.Conn, *bufio.Reader, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return c, br, nil
}

// closedByServer reports whether the server has closed c.
func closedByServer(c net.Conn, br *bufio.Reader) bool {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := br.ReadByte()
	return err == io.EOF
}

func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}

// TestIdleConnectionsBounded: thousands of idle keep-alive connections
// hold at most the cap; the longest-idle ones are closed to make room, so
// a new client is served at once; one warning for the whole burst.
func TestIdleConnectionsBounded(t *testing.T) {
	api := newTestServer(t, testOpts{}).api
	const max, n = 200, 2000
	s := startLimited(t, api, ConnLimitConfig{Max: max})
	goroutines, rss := runtime.NumGoroutine(), rssKiB()

	conns := make([]net.Conn, 0, n)
	readers := make([]*bufio.Reader, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, br, err := idleConn(s.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns, readers = append(conns, c), append(readers, br)
	}
	if open := s.limiter.Open(); open > max {
		t.Errorf("%d connections open, cap %d", open, max)
	}
	g := runtime.NumGoroutine() - goroutines
	t.Logf("%d idle connections opened against a cap of %d: %d open on the server, +%d goroutines, RSS %d → %d KiB",
		n, max, s.limiter.Open(), g, rss, rssKiB())
	if g > max+50 {
		t.Errorf("+%d goroutines for %d connections capped at %d", g, n, max)
	}
	// The oldest were closed by the server; the newest are still served.
	if !closedByServer(conns[0], readers[0]) {
		t.Error("the longest-idle connection is still open")
	}
	if closedByServer(conns[n-1], readers[n-1]) {
		t.Error("the newest connection was closed")
	}
	start := time.Now()
	resp, body := rawResponse(t, s.addr, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Errorf("/health at the cap: %d %s", resp.StatusCode, body)
	}
	t.Logf("/health answered in %v with %d idle connections held", time.Since(start), n)
	if got := testutilCounter(t, s.metrics, "maskpredictor_http_idle_connections_closed_total"); got < n-max {
		t.Errorf("idle connections closed: %v, want ≥ %d", got, n-max)
	}
	if got := s.logs.FilterMessageSnippet("connection limit").Len(); got != 1 {
		t.Errorf("%d warnings for one burst, want 1", got)
	}
}

// TestConnectionsRefusedWhenAllBusy: at the cap with every connection
// active, a new one waits, then gets a 503 JSON answer; one warning.
func TestConnectionsRefusedWhenAllBusy(t *testing.T) {
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started.Done()
			<-release
		}
		WriteError(w, 200, "ok")
	})
	s := startLimited(t, h, ConnLimitConfig{Max: 2, Wait: 50 * time.Millisecond})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://" + s.addr + "/slow")
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	started.Wait()
	for i := 0; i < 3; i++ {
		start := time.Now()
		resp, body := rawResponse(t, s.addr, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("Content-Type") != "application/json" ||
			!strings.Contains(string(body), `"error":"too many connections`) {
			t.Errorf("over the cap: %d %v %s", resp.StatusCode, resp.Header, body)
		}
		if i == 0 && time.Since(start) < 40*time.Millisecond {
			t.Errorf("refused after %v, without waiting for a slot", time.Since(start))
		}
	}
	close(release)
	wg.Wait()
	// Slots freed: served again.
	resp, _ := rawResponse(t, s.addr, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("after the slow requests: %d", resp.StatusCode)
	}
	if got := testutilCounter(t, s.metrics, "maskpredictor_http_connections_refused_total"); got != 3 {
		t.Errorf("refused %v, want 3", got)
	}
	if got := s.logs.FilterMessageSnippet("connection limit").Len(); got != 1 {
		t.Errorf("%d warnings for one burst, want 1", got)
	}
}

func TestDefaultMaxConnsFor(t *testing.T) {
	for _, c := range []struct {
		nofile uint64
		want   int
	}{{0, 1024}, {1 << 20, 1024}, {2048, 1024}, {1024, 512}, {20, 16}} {
		if got := DefaultMaxConnsFor(c.nofile); got != c.want {
			t.Errorf("DefaultMaxConnsFor(%d) = %d, want %d", c.nofile, got, c.want)
		}
	}
}

// testutilCounter reads a counter or gauge from m's registry.
func testutilCounter(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		sum := 0.0
		for _, mt := range mf.GetMetric() {
			if c := mt.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := mt.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
		return sum
	}
	t.Fatalf("no metric %s", name)
	return 0
}
