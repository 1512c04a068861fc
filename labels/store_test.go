package labels_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

func bd(pairs ...string) []predictor.Labelled {
	var out []predictor.Labelled
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, predictor.Labelled{Token: pairs[i], Label: pairs[i+1]})
	}
	return out
}

func newStore(t *testing.T, cfg labels.Config) (*labels.Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	st, err := labels.New(srv.Client(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st, srv
}

// TestPutRewritesCache: a stored label is in the hash, its cache entry is
// the label's prediction (source label, confidence 1, no expiry), and the
// cache's look-up answers it for any model version and any spelling.
func TestPutRewritesCache(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	st, srv := newStore(t, labels.Config{Now: func() time.Time { return at }})
	rdb := srv.Client()
	// A model prediction already cached for the name.
	c, err := cache.New(rdb, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	model := &predictor.Prediction{MaskName: "Flo Flo Pro", Tokens: []string{"Flo", "Flo", "Pro"}, Labels: []string{"brand", "brand", "model"}, ModelVersion: "v4-x", Confidence: 0.7}
	if err := c.Put(ctx, "flo flo pro", model); err != nil {
		t.Fatal(err)
	}
	l, warnings, err := st.Put(ctx, labels.Label{MaskName: "Flo Flo Pro", Breakdown: bd("Flo", "brand", "Flo", "model", "Pro", "model"), LabelledBy: "ann", Source: labels.SourceAPI})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 || !l.LabelledAt.Equal(at) {
		t.Fatalf("warnings %v, labelled_at %v", warnings, l.LabelledAt)
	}
	raw, err := rdb.HGet(ctx, labels.Key, "flo flo pro").Result()
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]any
	if err := json.Unmarshal([]byte(raw), &stored); err != nil {
		t.Fatal(err)
	}
	if stored["mask_name"] != "Flo Flo Pro" || stored["labelled_by"] != "ann" || stored["source"] != "api" || stored["labelled_at"] != "2026-12-07T06:00:00.000000000Z" {
		t.Fatalf("stored %s", raw)
	}
	entry, err := rdb.Get(ctx, cache.KeyPrefix+"flo flo pro").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"source":"label"`, `"confidence":1`, `"fallback":false`, `{"Flo":"model"}`} {
		if !strings.Contains(entry, want) {
			t.Errorf("cache entry lacks %s: %s", want, entry)
		}
	}
	if ttl := rdb.TTL(ctx, cache.KeyPrefix+"flo flo pro").Val(); ttl != -1 {
		t.Errorf("label cache entry TTL %v, want none", ttl)
	}
	// The cache entry overwritten by a model again: the look-up still answers the label.
	if err := c.Put(ctx, "flo flo pro", model); err != nil {
		t.Fatal(err)
	}
	p, ok, err := c.Get(ctx, "flo flo pro", "v9-other")
	if err != nil || !ok || p.Source != "label" || p.Labels[1] != "model" || p.Confidence != 1 {
		t.Fatalf("lookup: %+v %v %v", p, ok, err)
	}
	got, ok, err := st.Get(ctx, "FLO  flo pro")
	if err != nil || !ok || got.Breakdown[1].Label != "model" {
		t.Fatalf("get: %+v %v %v", got, ok, err)
	}
	// Delete: the label and its cache entry go, the model answers again.
	if err := rdb.Set(ctx, cache.KeyPrefix+"flo flo pro", l.Prediction().AppendJSON(nil), 0).Err(); err != nil {
		t.Fatal(err)
	}
	found, err := st.Delete(ctx, "flo flo pro")
	if err != nil || !found {
		t.Fatalf("delete: %v %v", found, err)
	}
	if n := rdb.Exists(ctx, cache.KeyPrefix+"flo flo pro").Val(); n != 0 {
		t.Error("label cache entry left after delete")
	}
	if found, _ := st.Delete(ctx, "flo flo pro"); found {
		t.Error("second delete found a label")
	}
	if _, ok, _ := c.Get(ctx, "flo flo pro", ""); ok {
		t.Error("look-up answers a deleted label")
	}
}

// TestPutRefusesBadLabels: each invalid label is refused with its reason
// and stores nothing, in the hash or the cache.
func TestPutRefusesBadLabels(t *testing.T) {
	ctx := context.Background()
	st, srv := newStore(t, labels.Config{})
	rdb := srv.Client()
	huge := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name string
		l    labels.Label
		want string
	}{
		{"empty name", labels.Label{MaskName: "  ", Breakdown: nil}, "empty"},
		{"no breakdown", labels.Label{MaskName: "3M 8210"}, "breakdown has 0 entries"},
		{"token mismatch", labels.Label{MaskName: "3M 8210", Breakdown: bd("3M", "brand", "8211", "model")}, `breakdown token 1 is "8211"`},
		{"too few tokens", labels.Label{MaskName: "3M 8210 N95", Breakdown: bd("3M", "brand", "8210", "model")}, "3 tokens"},
		{"unknown label", labels.Label{MaskName: "3M 8210", Breakdown: bd("3M", "brand", "8210", "modle")}, `label "modle"`},
		{"1 MB name", labels.Label{MaskName: huge, Breakdown: bd(huge, "brand")}, "characters"},
		{"too many tokens", labels.Label{MaskName: strings.Repeat("a ", 101)}, "101 tokens"},
		{"bad source", labels.Label{MaskName: "3M", Breakdown: bd("3M", "brand"), Source: "email"}, "unknown source"},
		{"long labelled_by", labels.Label{MaskName: "3M", Breakdown: bd("3M", "brand"), LabelledBy: strings.Repeat("b", 201)}, "labelled_by"},
	} {
		_, _, err := st.Put(ctx, tc.l)
		if !errors.Is(err, labels.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", tc.name, err, tc.want)
		}
	}
	if n := rdb.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("%d keys written by refused labels", n)
	}
}

// TestPutWarnsOnConvention: a label against the convention is stored, with
// the convention's findings as warnings.
func TestPutWarnsOnConvention(t *testing.T) {
	st, _ := newStore(t, labels.Config{})
	_, warnings, err := st.Put(context.Background(), labels.Label{MaskName: "Acme KN95 Style", Breakdown: bd("Acme", "brand", "KN95", "style", "Style", "misc")})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `token 1 "KN95": style → filter_type`) {
		t.Fatalf("warnings %q", warnings)
	}
}

// TestStoreBounded: past MaxLabels a new name is refused (ErrFull), a
// stored one can still be relabelled.
func TestStoreBounded(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t, labels.Config{MaxLabels: 2})
	for _, n := range []string{"Acme", "Bcme"} {
		if _, _, err := st.Put(ctx, labels.Label{MaskName: n, Breakdown: bd(n, "brand")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.Put(ctx, labels.Label{MaskName: "Ccme", Breakdown: bd("Ccme", "brand")}); !errors.Is(err, labels.ErrFull) {
		t.Fatalf("third name: %v, want ErrFull", err)
	}
	if _, _, err := st.Put(ctx, labels.Label{MaskName: "ACME", Breakdown: bd("ACME", "model")}); err != nil {
		t.Fatalf("relabel: %v", err)
	}
	if n, _ := st.Len(ctx); n != 2 {
		t.Fatalf("%d labels", n)
	}
}

// TestListAndAll: All is sorted by normalized name; List pages through
// every label once.
func TestListAndAll(t *testing.T) {
	ctx := context.Background()
	st, srv := newStore(t, labels.Config{})
	names := []string{"Zeta N95", "alpha KN95", "Moldex 2200", "3M 8210"}
	for _, n := range names {
		toks := predictor.Tokenize(n)
		l := labels.Label{MaskName: n, Source: labels.SourceImport}
		for _, tok := range toks {
			l.Breakdown = append(l.Breakdown, predictor.Labelled{Token: tok, Label: "misc"})
		}
		if _, _, err := st.Put(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	srv.Client().HSet(ctx, labels.Key, "garbage", "{not json")
	all, bad, err := st.All(ctx)
	if err != nil || bad != 1 || len(all) != 4 {
		t.Fatalf("all: %d labels, %d bad, %v", len(all), bad, err)
	}
	for i, want := range []string{"3m 8210", "alpha kn95", "moldex 2200", "zeta n95"} {
		if all[i].Normalized() != want {
			t.Errorf("all[%d] = %q, want %q", i, all[i].Normalized(), want)
		}
	}
	if m := labels.BySource(all); m["import"] != 4 {
		t.Errorf("by source %v", m)
	}
	seen := map[string]int{}
	var cursor uint64
	for {
		p, err := st.List(ctx, cursor, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range p.Labels {
			seen[l.Normalized()]++
		}
		if cursor = p.Next; cursor == 0 {
			break
		}
	}
	if len(seen) != 4 {
		t.Fatalf("listed %v", seen)
	}
}

// TestNewestWins: a label older than the stored one (a replayed job) does
// not replace it; a newer one does.
func TestNewestWins(t *testing.T) {
	ctx := context.Background()
	st, srv := newStore(t, labels.Config{})
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	put := func(at time.Time, label string) labels.Label {
		t.Helper()
		l, _, err := st.Put(ctx, labels.Label{MaskName: "Acme 100", Breakdown: bd("Acme", "brand", "100", label), LabelledAt: at})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	put(t0.Add(time.Second), "model")
	if got := put(t0, "misc"); got.Breakdown[1].Label != "model" || !got.LabelledAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("older label replaced the newer: %+v", got)
	}
	if entry := srv.Client().Get(ctx, cache.KeyPrefix+"acme 100").Val(); !strings.Contains(entry, `{"100":"model"}`) {
		t.Fatalf("cache entry %s", entry)
	}
	if got := put(t0.Add(time.Second+time.Nanosecond), "size"); got.Breakdown[1].Label != "size" {
		t.Fatalf("newer label not stored: %+v", got)
	}
}
