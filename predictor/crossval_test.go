package predictor

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/maskpredictor/maskpredictor/model"
)

func loadTrainJSON(t testing.TB) []Record {
	t.Helper()
	fh, err := os.Open(filepath.Join("..", "testdata", "train.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ds, err := LoadExport(fh)
	if err != nil {
		t.Fatal(err)
	}
	return ds.Records
}

func rec(name string, labels ...string) Record {
	return Record{MaskName: name, Tokens: Tokenize(name), Labels: labels}
}

func TestMaker(t *testing.T) {
	for _, tc := range []struct {
		r    Record
		want string
	}{
		{rec("3M Aura 9205+ N95", "brand", "model", "model", "filter_type"), "3m"},
		{rec("Chaomei Daily Chemicals KN95", "brand", "brand", "brand", "filter_type"), "chaomei daily chemicals"},
		{rec("AirBoss AirBoss Mask", "brand", "brand", "misc"), "airboss airboss"},
		{rec("Aura ＭＩＮＩ 3M", "model", "model", "brand"), "3m"},
		{rec("KN95 Mask White", "filter_type", "misc", "color"), "kn95"},
		{rec("Ｆｌｏ Mask", "model", "misc"), "flo"},
	} {
		if got := Maker(tc.r); got != tc.want {
			t.Errorf("Maker(%q) = %q, want %q", tc.r.MaskName, got, tc.want)
		}
	}
}

func TestParseGroupBy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want GroupBy
		ok   bool
	}{{"none", GroupNone, true}, {"maker", GroupMaker, true}, {"brand", "", false}, {"", "", false}} {
		got, err := ParseGroupBy(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseGroupBy(%q) = %q, %v", tc.in, got, err)
		}
	}
}

// TestFoldsGroupedByMaker: no maker is ever split across folds, the folds
// are balanced (they differ by at most the largest maker's size, and here by
// at most a few names), and the assignment does not depend on record order.
func TestFoldsGroupedByMaker(t *testing.T) {
	recs := loadTrainJSON(t)
	for _, k := range []int{2, 3, 5, 10} {
		folds, err := Folds(recs, k, GroupMaker)
		if err != nil {
			t.Fatal(err)
		}
		foldOf := map[string]int{}
		groupSize := map[string]int{}
		size := make([]int, k)
		for i, r := range recs {
			m := Maker(r)
			if f, ok := foldOf[m]; ok && f != folds[i] {
				t.Fatalf("k=%d: maker %q in folds %d and %d", k, m, f, folds[i])
			}
			foldOf[m] = folds[i]
			groupSize[m]++
			size[folds[i]]++
		}
		largest := 0
		for _, n := range groupSize {
			largest = max(largest, n)
		}
		spread := slices.Max(size) - slices.Min(size)
		if spread > largest || slices.Min(size) == 0 {
			t.Errorf("k=%d: fold sizes %v, largest maker %d", k, size, largest)
		}
		if k == 5 && spread > 2 {
			t.Errorf("k=5: fold sizes %v not balanced", size)
		}
		// The same makers in another order land in the same folds.
		rev := slices.Clone(recs)
		slices.Reverse(rev)
		rfolds, err := Folds(rev, k, GroupMaker)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rev {
			if rfolds[i] != foldOf[Maker(r)] {
				t.Fatalf("k=%d: fold of %q depends on record order", k, r.MaskName)
			}
		}
	}
}

func TestFolds(t *testing.T) {
	recs := []Record{
		rec("3M Aura", "brand", "model"),
		rec("3M 8210", "brand", "model"),
		rec("Honeywell DF300", "brand", "model"),
		rec("Moldex 2200", "brand", "model"),
		rec("3M 1860", "brand", "model"),
		rec("Moldex 2300", "brand", "model"),
	}
	for _, tc := range []struct {
		name string
		k    int
		by   GroupBy
		want []int
		err  bool
	}{
		{"plain", 4, GroupNone, []int{0, 1, 2, 3, 0, 1}, false},
		{"plain default", 2, "", []int{0, 1, 0, 1, 0, 1}, false},
		// 3m (3 names) → fold 0, moldex (2) → fold 1, honeywell (1) → fold 2.
		{"maker k=3", 3, GroupMaker, []int{0, 0, 2, 1, 0, 1}, false},
		// 3m → 0, moldex → 1, honeywell → 1 (2 < 3).
		{"maker k=2", 2, GroupMaker, []int{0, 0, 1, 1, 0, 1}, false},
		{"more folds than makers", 4, GroupMaker, nil, true},
		{"k=1", 1, GroupNone, nil, true},
		{"k>n", 7, GroupNone, nil, true},
		{"unknown grouping", 2, "brand", nil, true},
	} {
		got, err := Folds(recs, tc.k, tc.by)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Folds = %v, %v; want %v (error %v)", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// TestCrossValidateGrouped: grouped CV runs, scores every record once, and
// plain CrossValidate equals CrossValidateGrouped with GroupNone.
func TestCrossValidateGrouped(t *testing.T) {
	recs := loadTrainJSON(t)[:80]
	fs, err := LookupFeatureSet("v1")
	if err != nil {
		t.Fatal(err)
	}
	s := model.Settings{C1: 0.1, C2: 0.1, MaxIterations: 5, PossibleTransitions: true}
	ctx := context.Background()
	plain, err := CrossValidate(ctx, recs, fs, s, 3)
	if err != nil {
		t.Fatal(err)
	}
	none, err := CrossValidateGrouped(ctx, recs, fs, s, 3, GroupNone)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plain, none) {
		t.Fatal("CrossValidate differs from CrossValidateGrouped(GroupNone)")
	}
	grouped, err := CrossValidateGrouped(ctx, recs, fs, s, 3, GroupMaker)
	if err != nil {
		t.Fatal(err)
	}
	if grouped.Names != len(recs) || grouped.Tokens != plain.Tokens {
		t.Fatalf("grouped report covers %d names, %d tokens; want %d, %d", grouped.Names, grouped.Tokens, len(recs), plain.Tokens)
	}
}
