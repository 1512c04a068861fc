package predictor

import (
	"context"
	"fmt"
	"testing"

	"github.com/maskpredictor/maskpredictor/model"
)

// resolveByName is what resolveSink must produce: every attribute the
// feature set emits, resolved by its full name, those the model does not
// know or gives no weight left out.
func resolveByName(m *model.Model, fs FeatureSet, toks []string) []string {
	var sc Scratch
	cs := collectSink{names: fs.FixedNames()}
	fs.Featurize(toks, &sc, &cs)
	var out []string
	for t, item := range cs.items {
		for _, a := range item {
			if id, ok := m.AttrID(a.Name); ok && m.AttrScores(id) && a.Value != 0 {
				out = append(out, fmt.Sprintf("%d:%d=%v", t, id, a.Value))
			}
		}
	}
	return out
}

func resolveFast(c *CRF, toks []string) []string {
	var sc Scratch
	var inst model.Instance
	rs := newResolveSink(c.m, c.fs, c.tables, &inst)
	c.fs.Featurize(toks, &sc, &rs)
	var out []string
	for t := 0; t < inst.Len(); t++ {
		for _, a := range inst.Item(t) {
			out = append(out, fmt.Sprintf("%d:%d=%v", t, a.ID, a.Value))
		}
	}
	return out
}

// TestResolveSinkMatchesNames: the table-driven resolution (one look-up per
// token, packed affixes, shapes and facts by value) gives the same
// attributes, in the same order, as resolving every attribute by its name,
// for every feature set, on the training names and on names built to hit
// the fallbacks (non-ASCII tokens, compounds with '/', unknown words,
// repeats, one-token names).
func TestResolveSinkMatchesNames(t *testing.T) {
	recs := loadTrain(t).Records
	names := []string{
		"Flo Flo Pro Med/High for Medium nose", "AirBoss AirBoss S/M", "ÉCOLE Maske Größe M", "İstanbul Maske",
		"KN95/FFP2 Earloops/Headstraps", "3M", "Σίγμα ΚΝ95", "N95 N95 N95", "xyzzy qwerty/asdf 123-456",
		"Honeywell DF300 N95 Respirator", "Kids Masks Boxes", "K\u212aN95", "a/b/c", "/",
	}
	for _, r := range recs {
		names = append(names, r.MaskName)
	}
	def, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	v1m, err := model.Load("../testdata/crf_model.crfsuite")
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]*model.Model{"v1": v1m, def.Meta().FeatureSet: def}
	for _, fsName := range FeatureSetNames() {
		if models[fsName] != nil {
			continue
		}
		fs, _ := LookupFeatureSet(fsName)
		m, err := model.Train(context.Background(), Examples(recs, fs), model.Settings{FeatureSet: fsName, C1: 0.05, C2: 0.01, MaxIterations: 50, PossibleTransitions: true})
		if err != nil {
			t.Fatal(err)
		}
		models[fsName] = m
	}
	for fsName, m := range models {
		c, err := NewCRF(m, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			toks := Tokenize(name)
			if len(toks) == 0 {
				continue
			}
			want, got := resolveByName(m, c.fs, toks), resolveFast(c, toks)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s, %q:\n fast    %v\n by name %v", fsName, name, got, want)
			}
		}
	}
}

// FuzzResolveSink: on any name, the default model's table-driven
// resolution gives what resolving every attribute by name gives.
func FuzzResolveSink(f *testing.F) {
	for _, s := range []string{"3M Aura 9205+ N95", "Flo Flo Pro Med/High", "Σίγμα ΚΝ95 a/b/c", "K\u212aN95 İ"} {
		f.Add(s)
	}
	m, err := DefaultModel()
	if err != nil {
		f.Fatal(err)
	}
	c, err := NewCRF(m, Limits{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		toks := Tokenize(name)
		if len(toks) == 0 || len(toks) > 64 {
			return
		}
		if got, want := resolveFast(c, toks), resolveByName(m, c.fs, toks); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q:\n fast    %v\n by name %v", name, got, want)
		}
	})
}
