package cache_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/predictor"
)

func newCRF(t *testing.T) *predictor.CRF { return modeltest.DefaultCRF(t) }

func TestConfigValidate(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	if _, err := cache.New(rdb, cache.Config{TTL: -time.Second}); err == nil {
		t.Error("negative TTL accepted")
	}
	if _, err := cache.New(rdb, cache.Config{TTL: time.Microsecond}); err == nil {
		t.Error("sub-millisecond TTL accepted")
	}
	if _, err := cache.New(nil, cache.Config{}); err == nil {
		t.Error("nil client accepted")
	}
	c, err := cache.New(rdb, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Key("3m aura"); got != "maskpredictor:prediction:3m aura" {
		t.Errorf("Key = %q", got)
	}
}

func TestPutGet(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	c, err := cache.New(rdb, cache.Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	crf := newCRF(t)
	name := "3M Aura 9205+ N95"
	norm := predictor.Normalize(name)
	p, err := crf.Predict(name)
	if err != nil {
		t.Fatal(err)
	}
	p.NormalizedName = norm

	if _, ok, err := c.Get(ctx, norm, crf.Version()); err != nil || ok {
		t.Fatalf("empty cache: ok=%v err=%v", ok, err)
	}
	if err := c.Put(ctx, norm, p); err != nil {
		t.Fatal(err)
	}
	// The stored value is exactly the prediction's JSON: what Rails reads.
	raw, err := rdb.Get(ctx, "maskpredictor:prediction:3m aura 9205+ n95").Result()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := p.MarshalJSON()
	if raw != string(want) {
		t.Errorf("stored %s\nwant   %s", raw, want)
	}
	if ttl := rdb.TTL(ctx, c.Key(norm)).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL %v", ttl)
	}

	got, ok, err := c.Get(ctx, norm, crf.Version())
	if err != nil || !ok {
		t.Fatalf("Get: ok=%v err=%v", ok, err)
	}
	if !reflect.DeepEqual(got.Labels, p.Labels) || got.ModelVersion != p.ModelVersion || got.Confidence != p.Confidence {
		t.Errorf("got %+v\nwant %+v", got, p)
	}
	// Another model version is a miss; "" accepts any.
	if _, ok, _ := c.Get(ctx, norm, "v1-other"); ok {
		t.Error("other model version was a hit")
	}
	if _, ok, _ := c.Get(ctx, norm, ""); !ok {
		t.Error(`wantVersion "" was a miss`)
	}
	if _, _, err := c.Get(ctx, "", ""); !errors.Is(err, cache.ErrEmptyName) {
		t.Errorf("empty name: %v", err)
	}
}

func TestGetManyAndCorruptEntries(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	c, err := cache.New(rdb, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	crf := newCRF(t)
	rules := predictor.DefaultRules(predictor.Limits{})
	names := []string{"3M Aura 9205+ N95", "Moldex 2200 N95", "Honeywell DF300", "absent name"}
	var entries []cache.Entry
	for i, n := range names[:2] {
		p, err := crf.Predict(n)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 { // a rule prediction: another version
			p, _ = rules.Predict(n)
		}
		entries = append(entries, cache.Entry{Normalized: predictor.Normalize(n), Prediction: p})
	}
	if err := c.PutMany(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, c.Key(predictor.Normalize(names[2])), "{not json", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.TTL(ctx, c.Key(entries[0].Normalized)).Val(); ttl != -1 {
		t.Errorf("TTL 0 should keep the entry: ttl %v", ttl)
	}
	norms := make([]string, len(names))
	for i, n := range names {
		norms[i] = predictor.Normalize(n)
	}
	got, err := c.GetMany(ctx, norms, crf.Version())
	if err != nil {
		t.Fatal(err)
	}
	if got[0] == nil || got[1] != nil || got[2] != nil || got[3] != nil {
		t.Errorf("GetMany hits = %v %v %v %v, want hit, miss (rules version), miss (corrupt), miss", got[0] != nil, got[1] != nil, got[2] != nil, got[3] != nil)
	}
	got, err = c.GetMany(ctx, norms, rules.Version())
	if err != nil {
		t.Fatal(err)
	}
	if got[1] == nil || !got[1].Fallback {
		t.Errorf("rules entry: %+v", got[1])
	}
	if _, err := c.GetMany(ctx, []string{"a", ""}, ""); !errors.Is(err, cache.ErrEmptyName) {
		t.Errorf("empty name: %v", err)
	}
}

func TestAnswerUsesCallerTokens(t *testing.T) {
	crf := newCRF(t)
	filled, err := crf.Predict("3M Aura 9205+ N95")
	if err != nil {
		t.Fatal(err)
	}
	name := "３Ｍ aura—9205+ n95"
	norm := predictor.Normalize(name)
	if norm != predictor.Normalize(filled.MaskName) {
		t.Fatalf("test names do not share a key: %q", norm)
	}
	toks := predictor.Tokenize(name)
	got, ok := cache.Answer(filled, name, norm, toks)
	if !ok {
		t.Fatal("Answer: miss")
	}
	if got.MaskName != name || !reflect.DeepEqual(got.Tokens, toks) || !reflect.DeepEqual(got.Labels, filled.Labels) {
		t.Errorf("Answer = %+v", got)
	}
	if got.NormalizedName != norm {
		t.Errorf("normalized name %q", got.NormalizedName)
	}
	// The cached prediction itself is untouched.
	if filled.MaskName != "3M Aura 9205+ N95" || filled.Tokens[0] != "3M" {
		t.Errorf("Answer modified the cached prediction: %+v", filled)
	}
	// The JSON answers with the caller's tokens in breakdown and components.
	b, _ := got.MarshalJSON()
	var back predictor.Prediction
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if back.Tokens[0] != "３Ｍ" || back.Components()["brand"][0] != "３Ｍ" {
		t.Errorf("JSON %s", b)
	}
	// A spelling that tokenizes differently is a miss.
	if _, ok := cache.Answer(filled, "3M Aura", "3m aura", []string{"3M", "Aura"}); ok {
		t.Error("token count mismatch answered")
	}
}

// TestFullWidthSpellingsShareAnEntry: "Honeywell（DF300）N95" and
// "Honeywell (DF300) N95" share a key and tokenize alike, so the entry one
// fills answers the other with its own tokens (issue 14).
func TestFullWidthSpellingsShareAnEntry(t *testing.T) {
	crf := newCRF(t)
	for _, pair := range [][2]string{
		{"Honeywell (DF300) N95", "Honeywell（DF300）N95"},
		{"Honeywell（DF300）N95", "Honeywell (DF300) N95"},
		{"3M-8210, N95", "3M－8210，N95"},
	} {
		filled, err := crf.Predict(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		name := pair[1]
		norm := predictor.Normalize(name)
		if norm != predictor.Normalize(pair[0]) {
			t.Fatalf("%q and %q do not share a key", pair[0], name)
		}
		got, ok := cache.Answer(filled, name, norm, predictor.Tokenize(name))
		if !ok || !reflect.DeepEqual(got.Tokens, predictor.Tokenize(name)) || !reflect.DeepEqual(got.Labels, filled.Labels) {
			t.Errorf("%q answered from %q: %+v %v", name, pair[0], got, ok)
		}
	}
}
