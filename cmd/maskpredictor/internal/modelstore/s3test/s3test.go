// Package s3test gives tests a real S3 HTTP API on loopback: gofakes3 with
// its in-memory backend, served by net/http on 127.0.0.1 for the length of
// one test. The AWS SDK talks to it exactly as to an S3-compatible store
// (AWS_ENDPOINT_URL, path-style addressing, SigV4-signed requests).
package s3test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is a running fake S3.
type Server struct {
	// URL is the endpoint (http://127.0.0.1:port).
	URL string
	// Bucket is the bucket created at start.
	Bucket string

	srv *httptest.Server
	mu  sync.Mutex
	ops map[string]int // "GET", "HEAD", "PUT" → count of object requests
}

// Start serves a fresh in-memory S3 with one bucket, stopped when tb ends.
func Start(tb testing.TB, bucket string) *Server {
	tb.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		tb.Fatalf("s3test: creating bucket %q: %v", bucket, err)
	}
	faker := gofakes3.New(backend, gofakes3.WithAutoBucket(false))
	s := &Server{Bucket: bucket, ops: map[string]int{}}
	h := faker.Server()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ops[r.Method]++
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	s.URL = s.srv.URL
	tb.Cleanup(s.srv.Close)
	return s
}

// Env is the environment a maskpredictor process needs to reach the
// server: endpoint, region and static credentials.
func (s *Server) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL":      s.URL,
		"AWS_REGION":            "us-east-1",
		"AWS_ACCESS_KEY_ID":     "test-key",
		"AWS_SECRET_ACCESS_KEY": "test-secret",
	}
}

// Getenv looks variables up in Env, then in extra.
func (s *Server) Getenv(extra map[string]string) func(string) string {
	env := s.Env()
	return func(k string) string {
		if v, ok := extra[k]; ok {
			return v
		}
		return env[k]
	}
}

// URI is s3://<bucket>/<key>.
func (s *Server) URI(key string) string { return "s3://" + s.Bucket + "/" + key }

// Requests returns how many requests of an HTTP method the server saw.
func (s *Server) Requests(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops[method]
}
