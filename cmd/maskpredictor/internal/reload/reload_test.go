package reload_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore/s3test"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/reload"
	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// variant is a model file whose predictions are told apart from the other
// variants' by their labels: the default model with label names exchanged.
type variant = modeltest.Variant

var loadNames = []string{
	"3M Aura 9205+ N95", "3M 1860s", "Zimi ZM9233", "BreatheTeq - Large",
	"Honeywell DC365 N95 Small", "Powecom KN95 Black Earloop", "Moldex 2200N95 Medium/Large",
	"Kimberly-Clark Duckbill N95 Regular", "Envo Mask Original Medium Black",
}

func variants(t testing.TB) []variant { return modeltest.Variants(t, loadNames, modeltest.Swaps) }

func serveVariant(t testing.TB, v variant) *predictor.Serving {
	t.Helper()
	c, err := reload.Load(v.Data, predictor.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return predictor.ServeCRF(c, "test")
}

func s3Store(t testing.TB, srv *s3test.Server, key string) modelstore.Store {
	t.Helper()
	st, err := modelstore.Open(context.Background(), srv.URI(key), modelstore.Config{Getenv: srv.Getenv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func put(t testing.TB, st modelstore.Store, data []byte) modelstore.Info {
	t.Helper()
	in, err := st.Put(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// waitFor polls cond every millisecond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHotReloadUnderLoad replaces the S3 object several times (and uploads
// a corrupt model once) while goroutines predict in a loop: no prediction
// fails, and every prediction's labels are the ones its model_version gives.
func TestHotReloadUnderLoad(t *testing.T) {
	vs := variants(t)
	byVersion := map[string]variant{}
	for _, v := range vs {
		byVersion[v.Version] = v
	}
	srv := s3test.Start(t, "models")
	st := s3Store(t, srv, "prod/model.bin")
	first := put(t, st, vs[0].Data)
	live := predictor.NewLive(serveVariant(t, vs[0]))
	core, logs := observer.New(zap.InfoLevel)
	var rejectedEvents atomic.Int64
	r, err := reload.New(reload.Config{
		Store: st, Live: live, Current: first.Version,
		Poll: 5 * time.Millisecond, Logger: zap.New(core),
		OnEvent: func(ev reload.Event) {
			if ev.Outcome == reload.Rejected {
				rejectedEvents.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(ctx) //nolint:errcheck

	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		total    atomic.Int64
		failures atomic.Int64
		mixed    atomic.Int64
		perVer   sync.Map
		firstBad atomic.Pointer[string]
	)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				n := loadNames[(g+i)%len(loadNames)]
				p, err := live.PredictWith(n, predictor.Options{})
				total.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				v, ok := byVersion[p.ModelVersion]
				if !ok || !slices.Equal(v.Labels[n], p.Labels) {
					mixed.Add(1)
					s := fmt.Sprintf("%q: version %s labels %v", n, p.ModelVersion, p.Labels)
					firstBad.CompareAndSwap(nil, &s)
					continue
				}
				c, _ := perVer.LoadOrStore(p.ModelVersion, new(atomic.Int64))
				c.(*atomic.Int64).Add(1)
			}
		}(g)
	}

	// Cycle through the variants twice; a corrupt upload in the middle.
	sequence := []int{1, 2, 3, 4, 0, -1, 2, 1, 3}
	start := time.Now()
	for _, i := range sequence {
		if i < 0 {
			before := r.Stats().Rejected
			serving := live.Version()
			corrupt := slices.Clone(vs[1].Data)
			corrupt = corrupt[:len(corrupt)/2] // a truncated upload
			put(t, st, corrupt)
			waitFor(t, "the corrupt model to be rejected", func() bool { return r.Stats().Rejected > before })
			if live.Version() != serving {
				t.Fatalf("after a rejected model, serving %s, want %s", live.Version(), serving)
			}
			// And a model that parses but has foreign labels.
			m, err := predictor.DefaultModel()
			if err != nil {
				t.Fatal(err)
			}
			labels := slices.Clone(m.Labels())
			labels[0] = "manufacturer"
			bad, err := model.New(labels, m.Attributes(), m.StateWeights(), m.TransWeights(), m.Meta())
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := bad.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			put(t, st, buf.Bytes())
			waitFor(t, "the foreign-label model to be rejected", func() bool { return r.Stats().Rejected > before+1 })
			if live.Version() != serving {
				t.Fatalf("after a rejected model, serving %s, want %s", live.Version(), serving)
			}
			continue
		}
		put(t, st, vs[i].Data)
		want := vs[i].Version
		waitFor(t, "reload to "+want, func() bool { return live.Version() == want })
		// Let predictions run on this model for a moment.
		for target := total.Load() + 2000; total.Load() < target; {
			time.Sleep(100 * time.Microsecond)
		}
	}
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()

	if s := firstBad.Load(); s != nil {
		t.Errorf("first mixed prediction: %s", *s)
	}
	if failures.Load() != 0 || mixed.Load() != 0 {
		t.Fatalf("%d failed and %d mixed predictions of %d", failures.Load(), mixed.Load(), total.Load())
	}
	stats := r.Stats()
	if stats.Reloads != 8 || stats.Rejected != 2 || rejectedEvents.Load() != 2 {
		t.Errorf("stats %+v, %d rejected events; want 8 reloads, 2 rejected", stats, rejectedEvents.Load())
	}
	versions := 0
	perVer.Range(func(k, v any) bool { versions++; return true })
	if versions != len(vs) {
		t.Errorf("predictions came from %d versions, want %d", versions, len(vs))
	}
	if n := logs.FilterMessage("new model rejected; the old model keeps serving").Len(); n != 2 {
		t.Errorf("%d rejection log lines, want 2", n)
	}
	if n := logs.FilterMessage("model reloaded").Len(); n != 8 {
		t.Errorf("%d reload log lines, want 8", n)
	}
	t.Logf("%d predictions, 0 failed, 0 mixed, %d reloads + %d rejections in %v; %d HEAD, %d GET requests",
		total.Load(), stats.Reloads, stats.Rejected, elapsed.Round(time.Millisecond), srv.Requests("HEAD"), srv.Requests("GET"))
}

// TestPollIsCheapWhenUnchanged: an unchanged object costs one HEAD per poll
// and is never downloaded again.
func TestPollIsCheapWhenUnchanged(t *testing.T) {
	vs := variants(t)
	srv := s3test.Start(t, "models")
	st := s3Store(t, srv, "m.bin")
	in := put(t, st, vs[0].Data)
	live := predictor.NewLive(serveVariant(t, vs[0]))
	r, err := reload.New(reload.Config{Store: st, Live: live, Current: in.Version, Poll: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if ev := r.Check(ctx, reload.TriggerPoll); ev.Outcome != reload.Unchanged || ev.Err != nil {
			t.Fatalf("check %d: %+v", i, ev)
		}
	}
	if h, g := srv.Requests("HEAD"), srv.Requests("GET"); h != 5 || g != 0 {
		t.Fatalf("%d HEAD and %d GET requests for 5 unchanged polls; want 5 and 0", h, g)
	}
	// The same bytes uploaded again keep the ETag: still unchanged.
	put(t, st, vs[0].Data)
	if ev := r.Check(ctx, reload.TriggerPoll); ev.Outcome != reload.Unchanged {
		t.Fatalf("re-upload of identical bytes: %+v", ev)
	}
	// A signal fetches and validates even when the ETag is the same.
	if ev := r.Check(ctx, reload.TriggerSignal); ev.Outcome != reload.Unchanged || srv.Requests("GET") != 1 {
		t.Fatalf("signal check: %+v, %d GETs", ev, srv.Requests("GET"))
	}
	// A rejected version is not downloaded again on every poll.
	put(t, st, []byte("not a model"))
	if ev := r.Check(ctx, reload.TriggerPoll); ev.Outcome != reload.Rejected || !errors.Is(ev.Err, reload.ErrInvalidModel) || !errors.Is(ev.Err, model.ErrFormat) {
		t.Fatalf("garbage: %+v", ev)
	}
	gets := srv.Requests("GET")
	if ev := r.Check(ctx, reload.TriggerPoll); ev.Outcome != reload.Unchanged || srv.Requests("GET") != gets {
		t.Fatalf("poll after a rejection: %+v, GETs %d → %d", ev, gets, srv.Requests("GET"))
	}
	if live.Version() != vs[0].Version {
		t.Fatal("the rejected model replaced the serving one")
	}
}

// TestFallbackThenModel: the process started on the rule fallback because
// the object was missing; the store failing is a Failed check (logged once
// per streak); once the model is uploaded it serves.
func TestFallbackThenModel(t *testing.T) {
	vs := variants(t)
	path := filepath.Join(t.TempDir(), "model.bin")
	st, err := modelstore.Open(context.Background(), path, modelstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	live := predictor.NewLive(predictor.ServeRules(predictor.DefaultRules(predictor.Limits{}), "rules", "MODEL_URI: not found"))
	core, logs := observer.New(zap.InfoLevel)
	r, err := reload.New(reload.Config{Store: st, Live: live, Poll: -1, Logger: zap.New(core), Source: "MODEL_URI " + path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		ev := r.Check(ctx, reload.TriggerPoll)
		if ev.Outcome != reload.Failed || !errors.Is(ev.Err, modelstore.ErrNotFound) {
			t.Fatalf("missing file: %+v", ev)
		}
	}
	if n := logs.FilterMessage("model store unreadable; the current model keeps serving").Len(); n != 1 {
		t.Errorf("%d failure log lines for one streak, want 1", n)
	}
	put(t, st, vs[2].Data)
	if ev := r.Check(ctx, reload.TriggerPoll); ev.Outcome != reload.Reloaded || ev.ModelVersion != vs[2].Version {
		t.Fatalf("after upload: %+v", ev)
	}
	cur := live.Current()
	if !cur.ModelLoaded() || cur.FallbackReason() != "" || cur.Source() != "MODEL_URI "+path {
		t.Fatalf("serving loaded=%v reason=%q source=%q", cur.ModelLoaded(), cur.FallbackReason(), cur.Source())
	}
	if logs.FilterMessage("model store readable again").Len() != 1 {
		t.Error("no recovery log line")
	}
	s := r.Stats()
	if s.Checks != 4 || s.Failures != 3 || s.Reloads != 1 || s.LastError != "" || s.LastReload.IsZero() {
		t.Errorf("stats %+v", s)
	}
}

// TestTriggerAndShutdown: Trigger runs a check on the loop's goroutine;
// Shutdown stops it.
func TestTriggerAndShutdown(t *testing.T) {
	vs := variants(t)
	srv := s3test.Start(t, "models")
	st := s3Store(t, srv, "m.bin")
	in := put(t, st, vs[0].Data)
	live := predictor.NewLive(serveVariant(t, vs[0]))
	events := make(chan reload.Event, 4)
	r, err := reload.New(reload.Config{Store: st, Live: live, Current: in.Version, Poll: time.Hour,
		OnEvent: func(ev reload.Event) { events <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	put(t, st, vs[1].Data)
	r.Trigger()
	select {
	case ev := <-events:
		if ev.Trigger != reload.TriggerSignal || ev.Outcome != reload.Reloaded || live.Version() != vs[1].Version {
			t.Fatalf("triggered check: %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Trigger ran no check")
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Shutdown(sctx); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	vs := variants(t)
	if _, err := reload.Load(vs[0].Data, predictor.Limits{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := reload.Load(nil, predictor.Limits{}, nil); !errors.Is(err, reload.ErrInvalidModel) {
		t.Fatalf("empty: %v", err)
	}
	// Weights so large that scores overflow are caught by the samples'
	// confidences (model.New itself refuses NaN and infinite weights).
	m, _ := predictor.DefaultModel()
	state := m.StateWeights()
	for i := range state {
		state[i] = math.MaxFloat64 * float64(1-2*(i%2))
	}
	bad, err := model.New(m.Labels(), m.Attributes(), state, m.TransWeights(), m.Meta())
	if err != nil {
		t.Fatal(err)
	}
	c, err := predictor.NewCRF(bad, predictor.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reload.Validate(c, reload.SampleNames()); !errors.Is(err, reload.ErrInvalidModel) {
		t.Fatalf("overflowing weights validated: %v", err)
	}
	// A sample that cannot predict rejects the model.
	good, _ := predictor.NewCRF(m, predictor.Limits{})
	if err := reload.Validate(good, []string{" - "}); !errors.Is(err, predictor.ErrNoTokens) {
		t.Fatalf("untokenizable sample: %v", err)
	}
}

func TestCollector(t *testing.T) {
	vs := variants(t)
	path := filepath.Join(t.TempDir(), "model.bin")
	st, _ := modelstore.Open(context.Background(), path, modelstore.Config{})
	live := predictor.NewLive(serveVariant(t, vs[0]))
	r, err := reload.New(reload.Config{Store: st, Live: live, Poll: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r.Check(ctx, reload.TriggerPoll) // missing: failed
	put(t, st, []byte("garbage"))
	r.Check(ctx, reload.TriggerPoll) // rejected
	put(t, st, vs[1].Data)
	r.Check(ctx, reload.TriggerPoll) // reloaded
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(reload.Collector(r))
	want := `
# HELP maskpredictor_model_reload_checks_total Checks of the model store for a new model (polls and SIGHUP).
# TYPE maskpredictor_model_reload_checks_total counter
maskpredictor_model_reload_checks_total 3
# HELP maskpredictor_model_reloads_total Model reload attempts by outcome: reloaded (swapped in), rejected (failed to load or validate; the old model kept serving), failed (the store could not be read).
# TYPE maskpredictor_model_reloads_total counter
maskpredictor_model_reloads_total{outcome="failed"} 1
maskpredictor_model_reloads_total{outcome="rejected"} 1
maskpredictor_model_reloads_total{outcome="reloaded"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"maskpredictor_model_reload_checks_total", "maskpredictor_model_reloads_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "maskpredictor_model_last_reload_timestamp_seconds"); err != nil || n != 1 {
		t.Fatalf("last reload gauge: %d, %v", n, err)
	}
}
