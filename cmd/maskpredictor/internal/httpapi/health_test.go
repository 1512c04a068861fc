package httpapi

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// silentListener accepts connections and never answers: a Redis that
// hangs.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestHealthHidesInternals: for failing Redis and model configurations,
// the unauthenticated /health names the kind of failure and nothing else:
// no host, port, URL, bucket, key or password. The details are logged.
func TestHealthHidesInternals(t *testing.T) {
	const password = "pw-Secret-4242"
	authed := redistest.Start(t, redistest.Options{Private: true})
	// (redistest pings without a password while it starts: set it after.)
	if err := authed.Client().ConfigSet(context.Background(), "requirepass", password).Err(); err != nil {
		t.Fatal(err)
	}
	const s3 = "MODEL_URI s3://acme-private-models/prod/mask/model.bin"
	loadErr := s3 + ": operation error S3: GetObject, https response error StatusCode: 403, RequestID: 7Q2X, api error AccessDenied: Access Denied"
	cases := []struct {
		name     string
		opt      *redis.Options
		status   Status
		redis    string
		reason   string
		source   string
		fallback string
		secrets  []string
	}{
		{
			name: "redis refuses connections", opt: &redis.Options{Addr: closedPort(t)},
			redis: "unreachable", reason: "redis: unreachable",
		},
		{
			name: "redis hangs", opt: &redis.Options{Addr: silentListener(t), ReadTimeout: 100 * time.Millisecond, DialTimeout: 100 * time.Millisecond},
			redis: "unreachable", reason: "redis: timeout",
		},
		{
			name: "wrong password", opt: &redis.Options{Addr: authed.Addr, Password: "Wrong-Pass-99"},
			redis: "unreachable", reason: "redis: authentication failed", secrets: []string{"Wrong-Pass-99", password},
		},
		{
			name: "no password", opt: &redis.Options{Addr: authed.Addr},
			redis: "unreachable", reason: "redis: authentication failed",
		},
		{
			name: "database out of range", opt: &redis.Options{Addr: authed.Addr, Password: password, DB: 99},
			redis: "unreachable", reason: "redis: bad database number", secrets: []string{password},
		},
		{
			name:   "model from S3 not loadable",
			status: Status{ModelVersion: "rules-1", ModelSource: "rules", FallbackReason: loadErr},
			redis:  "disabled", source: "rules", fallback: "model: load failed (details in the logs and on /admin/)",
			secrets: []string{"acme-private-models", "prod/mask", "model.bin", "7Q2X"},
		},
		{
			name:   "model from S3 loaded",
			status: Status{ModelLoaded: true, ModelVersion: "v3-x", ModelSource: s3},
			redis:  "disabled", source: "MODEL_URI (s3)",
			secrets: []string{"acme-private-models", "prod/mask", "model.bin"},
		},
		{
			name:   "model file",
			status: Status{ModelLoaded: true, ModelVersion: "v3-x", ModelSource: "--model /srv/secret-dir/m.bin"},
			redis:  "disabled", source: "--model (file)", secrets: []string{"secret-dir"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			st := c.status
			if st.ModelVersion == "" {
				st = Status{ModelLoaded: true, ModelVersion: "v3-x", ModelSource: "embedded"}
			}
			if c.source == "" {
				c.source = "embedded"
			}
			e, err := NewEngine(EngineConfig{Predictor: crf(t)})
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{Engine: e, Status: func() Status { return st }, Logger: zap.New(core), HealthTimeout: 300 * time.Millisecond}
			var addr string
			if c.opt != nil {
				c.opt.MaxRetries = -1
				rdb := redis.NewClient(c.opt)
				t.Cleanup(func() { _ = rdb.Close() })
				cfg.Redis, addr = rdb, c.opt.Addr
			}
			api, err := NewServer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(api)
			t.Cleanup(ts.Close)
			ts2 := &testServer{Server: ts, api: api}
			for i := 0; i < 3; i++ {
				r := do(t, ts2, "GET", "/health", "")
				m := r.json(t)
				if r.code != 200 || m["redis"] != c.redis || m["model_source"] != c.source {
					t.Fatalf("%d %s", r.code, r.body)
				}
				if c.reason != "" && (m["redis_error"] != c.reason || m["status"] != "degraded") {
					t.Errorf("redis_error %v, want %q", m["redis_error"], c.reason)
				}
				if c.fallback != "" && m["fallback_reason"] != c.fallback {
					t.Errorf("fallback_reason %v, want %q", m["fallback_reason"], c.fallback)
				}
				body := string(r.body)
				secrets := append([]string{"127.0.0.1", "localhost", "redis://", "s3://"}, c.secrets...)
				if addr != "" {
					_, port, _ := net.SplitHostPort(addr)
					secrets = append(secrets, addr, ":"+port)
				}
				for _, s := range secrets {
					if strings.Contains(body, s) {
						t.Errorf("/health shows %q: %s", s, body)
					}
				}
			}
			if c.reason != "" {
				// The detail is in the log, once for the three checks.
				lines := logs.FilterMessage("health: Redis check failed").All()
				if len(lines) != 1 {
					t.Fatalf("%d log lines for 3 failed checks, want 1", len(lines))
				}
				if detail := lines[0].ContextMap()["error"]; detail == nil || detail == "" {
					t.Errorf("log line without the error: %v", lines[0].ContextMap())
				}
			}
		})
	}
}

func TestPublicSource(t *testing.T) {
	for in, want := range map[string]string{
		"embedded":                     "embedded",
		"rules":                        "rules",
		"MODEL_URI s3://b/k":           "MODEL_URI (s3)",
		"MODEL_URI file:///srv/m.bin":  "MODEL_URI (file)",
		"MODEL_URI /srv/m.bin":         "MODEL_URI (file)",
		"MODEL_URI https://h:9/x":      "MODEL_URI (https)",
		"--model ./m.bin":              "--model (file)",
		"something else entirely: x/y": "(hidden)",
	} {
		if got := PublicSource(in); got != want {
			t.Errorf("PublicSource(%q) = %q, want %q", in, got, want)
		}
	}
}
