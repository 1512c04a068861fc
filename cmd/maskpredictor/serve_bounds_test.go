package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

func TestParseBytes(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"512KiB", 512 << 10, true},
		{"64MiB", 64 << 20, true},
		{"64 MiB", 64 << 20, true},
		{"64mb", 64 << 20, true},
		{"2G", 2 << 30, true},
		{"100B", 100, true},
		{"", 0, false},
		{"lots", 0, false},
		{"-5", 0, false},
		{"1.5MiB", 0, false},
		{"9999999999GiB", 0, false},
	}
	for _, c := range cases {
		got, err := parseBytes("X", c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !errors.Is(err, errUsage) {
			t.Errorf("parseBytes(%q): %v is not a usage error", c.in, err)
		}
	}
}

func TestServeBoundsUsageErrors(t *testing.T) {
	cases := []struct {
		env  map[string]string
		args []string
	}{
		{map[string]string{"HTTP_CACHE_TTL": "a day"}, nil},
		{nil, []string{"--http-cache-ttl", "-1h"}},
		{map[string]string{"HTTP_CACHE_BUDGET": "lots"}, nil},
		{nil, []string{"--http-cache-budget", "-1"}},
		{nil, []string{"--http-cache-budget-window", "0s"}},
		{map[string]string{"HTTP_CACHE_PRESSURE": "high"}, nil},
		{nil, []string{"--http-cache-pressure", "1.5"}},
		{nil, []string{"--batch-names", "-1"}},
		{map[string]string{"HTTP_BATCH_WAIT": "0s"}, nil},
		{nil, []string{"--max-conns", "-1"}},
		{map[string]string{"HTTP_MAX_CONNS": "many"}, nil},
		{map[string]string{"ADMIN_MAX_FAILURES": "ten"}, nil},
	}
	for _, c := range cases {
		args := append([]string{"serve", "--addr", "127.0.0.1:0"}, c.args...)
		if code, _, errs := runMain(t, c.env, "", args...); code != 2 {
			t.Errorf("%v %v: exit %d, want 2\n%s", c.env, c.args, code, errs)
		}
	}
}

// TestServeHTTPCacheTTL: entries written by HTTP requests expire after
// HTTP_CACHE_TTL (24 h by default), or CACHE_TTL when that is shorter;
// --http-cache-ttl 0 with no CACHE_TTL keeps them.
func TestServeHTTPCacheTTL(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	ctx := context.Background()
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want time.Duration // -1: no expiry
	}{
		{"default", nil, nil, 24 * time.Hour},
		{"HTTP_CACHE_TTL", map[string]string{"HTTP_CACHE_TTL": "2h"}, nil, 2 * time.Hour},
		{"shorter CACHE_TTL wins", map[string]string{"CACHE_TTL": "30m"}, nil, 30 * time.Minute},
		{"flag over env", map[string]string{"HTTP_CACHE_TTL": "2h"}, []string{"--http-cache-ttl", "3h"}, 3 * time.Hour},
		{"none", nil, []string{"--http-cache-ttl", "0"}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := rdb.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"REDIS_URL": srv.URL}
			for k, v := range c.env {
				env[k] = v
			}
			r := startCmd(t, env, append([]string{"serve", "--addr", "127.0.0.1:0"}, c.args...)...)
			if code, _, body := httpDo(t, "POST", r.base+"/predict", `{"mask_name":"Zimi ZM9233"}`); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			if code, _, body := httpDo(t, "POST", r.base+"/predict_batch", `{"mask_names":["3M 1860s","Moldex 2200"]}`); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			for _, k := range []string{"zimi zm9233", "3m 1860s", "moldex 2200"} {
				ttl, err := rdb.PTTL(ctx, "maskpredictor:prediction:"+k).Result()
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case c.want < 0 && ttl != -1*time.Millisecond && ttl != -1:
					t.Errorf("%s: TTL %v, want none", k, ttl)
				case c.want > 0 && (ttl <= c.want-time.Minute || ttl > c.want):
					t.Errorf("%s: TTL %v, want %v", k, ttl, c.want)
				}
			}
			if !strings.Contains(r.stderr.String(), `"http_cache_ttl"`) {
				t.Errorf("the HTTP cache TTL is not in the start log:\n%s", r.stderr.String())
			}
		})
	}
}

// TestServeHTTPLimits: the server as started by serve caps connections,
// answers net/http's own errors in JSON and keeps /health free of the
// Redis address and password.
func TestServeHTTPLimits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	r := startCmd(t, map[string]string{"REDIS_URL": "redis://user:Sekr1t-pw@" + deadAddr + "/0", "HTTP_MAX_CONNS": "20"},
		"serve", "--addr", "127.0.0.1:0", "--cache-timeout", "50ms")
	addr := strings.TrimPrefix(r.base, "http://")
	if !strings.Contains(r.stderr.String(), `"max_conns":20`) {
		t.Errorf("max_conns not in the start log:\n%s", r.stderr.String())
	}

	// 431 in JSON (64 KiB of headers is the limit).
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		_, _ = io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("x", 80<<10)+"\r\n\r\n")
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != 431 ||
		e["error"] != "request headers too large (limit 65536 bytes)" {
		t.Errorf("431: %d %v %v", resp.StatusCode, e, err)
	}

	// 60 idle keep-alive connections: at most 20 stay open, /health answers.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 60; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	code, h, body := httpDo(t, "GET", r.base+"/health", "")
	if code != 200 || h["redis"] != "unreachable" || h["redis_error"] != "redis: unreachable" {
		t.Errorf("/health: %d %s", code, body)
	}
	_, port, _ := net.SplitHostPort(deadAddr)
	for _, secret := range []string{"Sekr1t-pw", deadAddr, port, "user:", "redis://"} {
		if strings.Contains(body, secret) {
			t.Errorf("/health shows %q: %s", secret, body)
		}
	}
	_, _, metrics := httpDo(t, "GET", r.base+"/metrics", "")
	if open := metricLine(t, metrics, "maskpredictor_http_open_connections"); open > 20 {
		t.Errorf("%v connections open, cap 20", open)
	}
	if closed := metricLine(t, metrics, "maskpredictor_http_idle_connections_closed_total"); closed < 40 {
		t.Errorf("%v idle connections closed, want ≥ 40", closed)
	}
	if !strings.Contains(r.stderr.String(), "HTTP connection limit reached") {
		t.Errorf("no warning at the connection cap:\n%s", r.stderr.String())
	}
	if n := strings.Count(r.stderr.String(), "HTTP connection limit reached"); n != 1 {
		t.Errorf("%d warnings for one burst", n)
	}
}

// metricLine returns the value of the unlabelled metric name in a
// Prometheus text exposition.
func metricLine(t *testing.T, exposition, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}
