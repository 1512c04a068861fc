package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// nullWriter is a ResponseWriter that keeps nothing, so the benchmarks
// measure the handler.
type nullWriter struct{ h http.Header }

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) WriteHeader(int)             {}

func benchPredict(b *testing.B, o testOpts) {
	ts := newTestServer(b, o)
	body := []byte(`{"mask_name":"3M Aura 9205+ N95"}`)
	req := httptest.NewRequest("POST", "/predict", bytes.NewReader(body))
	w := &nullWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.Body = readCloser{bytes.NewReader(body)}
		clear(w.h)
		ts.api.ServeHTTP(w, req)
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// BenchmarkPredictHandler: POST /predict, the handler alone (no network).
func BenchmarkPredictHandler(b *testing.B) { benchPredict(b, testOpts{}) }

// BenchmarkPredictHandlerCache: the same name read through the Redis cache
// (a hit every time; one GET round trip to a local redis-server).
func BenchmarkPredictHandlerCache(b *testing.B) {
	rdb := redistest.Start(b, redistest.Options{}).Client()
	benchPredict(b, testOpts{rdb: rdb, cache: true})
}

// BenchmarkBatchHandlerLong: POST /predict_batch with 1,000 distinct
// ~980-character names (a 1 MB body, a 7.6 MB answer), the handler alone:
// the work the batch bound keeps to one CPU per batch.
func BenchmarkBatchHandlerLong(b *testing.B) {
	ts := newTestServer(b, testOpts{})
	names := make([]string, 1000)
	for i := range names {
		names[i] = longName(i)
	}
	body := []byte(batchBody(names))
	req := httptest.NewRequest("POST", "/predict_batch", bytes.NewReader(body))
	w := &nullWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.Body = readCloser{bytes.NewReader(body)}
		clear(w.h)
		ts.api.ServeHTTP(w, req)
	}
}
