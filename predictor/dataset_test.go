package predictor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoadExport: any bytes give a dataset or an error wrapping
// ErrBadRecord, never a panic; every loaded record is consistent.
func FuzzLoadExport(f *testing.F) {
	for _, name := range []string{"train.json", "mismatched.json"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 4096)])
	}
	f.Add([]byte(`[{"mask_name":"3M Aura","breakdown":[{"3M":"brand"},{"Aura":"model"}]}]`))
	f.Add([]byte(`[{"mask_name":null},{"breakdown":[[]]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := LoadExport(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error does not wrap ErrBadRecord: %v", err)
			}
			return
		}
		for _, r := range ds.Records {
			if len(r.Tokens) == 0 || len(r.Tokens) != len(r.Labels) {
				t.Fatalf("inconsistent record %+v", r)
			}
			for _, l := range r.Labels {
				if !isComponent(l) {
					t.Fatalf("unknown label %q accepted", l)
				}
			}
		}
	})
}

func TestLoadExportSkipsMismatched(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "testdata", "mismatched.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = LoadExport(f)
	// Both records are mismatched, so nothing is usable: an error that says so.
	if !errors.Is(err, ErrBadRecord) {
		t.Fatalf("got %v", err)
	}
}

func loadString(t testing.TB, s string) *Dataset {
	t.Helper()
	ds, err := LoadExport(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestMergeExports(t *testing.T) {
	a := loadString(t, `[{"mask_name":"3M Aura","breakdown":[{"3M":"brand"},{"Aura":"model"}]},
		{"mask_name":"Moldex 2200","breakdown":[{"Moldex":"brand"},{"2200":"model"}]},
		{"mask_name":"3M  AURA","breakdown":[{"3M":"brand"},{"AURA":"misc"}]},
		{"mask_name":"Bad","breakdown":[{"Bod":"misc"}]}]`)
	b := loadString(t, `[{"mask_name":"3m aura","breakdown":[{"3m":"brand"},{"aura":"model"}]},
		{"mask_name":"Honeywell DF300","breakdown":[{"Honeywell":"brand"},{"DF300":"model"}]}]`)
	c := loadString(t, `[{"mask_name":"MOLDEX 2200","breakdown":[{"MOLDEX":"brand"},{"2200":"model"}]},
		{"mask_name":"Honeywell DF300","breakdown":[{"Honeywell":"brand"},{"DF300":"model"}]}]`)
	names := func(ds *Dataset) []string {
		var out []string
		for _, r := range ds.Records {
			out = append(out, r.MaskName)
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		sets      []*Dataset
		want      []string
		stats     []MergeStats
		skipped   int
		sameHash  *Dataset
		hashInput []string
	}{
		{"one file is unchanged, duplicates kept", []*Dataset{a}, []string{"3M Aura", "Moldex 2200", "3M  AURA"},
			[]MergeStats{{3, 0}}, 1, a, nil},
		{"later file wins", []*Dataset{a, b}, []string{"Moldex 2200", "3m aura", "Honeywell DF300"},
			[]MergeStats{{3, 0}, {2, 2}}, 1, nil, []string{a.Hash, b.Hash}},
		{"three files", []*Dataset{a, b, c}, []string{"3m aura", "MOLDEX 2200", "Honeywell DF300"},
			[]MergeStats{{3, 0}, {2, 2}, {2, 2}}, 1, nil, []string{a.Hash, b.Hash, c.Hash}},
		{"order matters", []*Dataset{b, a}, []string{"Honeywell DF300", "3M Aura", "Moldex 2200", "3M  AURA"},
			[]MergeStats{{2, 0}, {3, 1}}, 1, nil, []string{b.Hash, a.Hash}},
	} {
		got, stats := MergeExports(tc.sets...)
		if !reflect.DeepEqual(names(got), tc.want) || !reflect.DeepEqual(stats, tc.stats) || len(got.Skipped) != tc.skipped {
			t.Errorf("%s: got %q %+v, %d skipped; want %q %+v", tc.name, names(got), stats, len(got.Skipped), tc.want, tc.stats)
		}
		want := ""
		if tc.sameHash != nil {
			want = tc.sameHash.Hash
		} else {
			sum := sha256.Sum256([]byte(strings.Join(tc.hashInput, "\n") + "\n"))
			want = hex.EncodeToString(sum[:])
		}
		if got.Hash != want {
			t.Errorf("%s: hash %s, want %s", tc.name, got.Hash, want)
		}
	}
	// The inputs are not modified.
	if len(a.Records) != 3 || len(b.Records) != 2 {
		t.Fatal("MergeExports modified its inputs")
	}
}

// FuzzLoadExports: several exports load and merge without a panic; the
// merged records are consistent, no normalized name comes from two files,
// and the replaced counts add up.
func FuzzLoadExports(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "train.json"))
	if err != nil {
		f.Fatal(err)
	}
	small := []byte(`[{"mask_name":"3M Aura","breakdown":[{"3M":"brand"},{"Aura":"model"}]}]`)
	f.Add(b[:min(len(b), 4096)], small, small)
	f.Add(small, []byte(`[{"mask_name":"3m  AURA","breakdown":[{"3m":"brand"},{"AURA":"misc"}]}]`), []byte(`[]`))
	f.Add([]byte(`[{"mask_name":"x","breakdown":[{"x":"misc"}]},{"mask_name":"X","breakdown":[{"X":"brand"}]}]`),
		[]byte(`[{"mask_name":"ｘ","breakdown":[{"ｘ":"size"}]}]`), []byte(`[{"mask_name":null}]`))
	f.Fuzz(func(t *testing.T, d0, d1, d2 []byte) {
		var sets []*Dataset
		for _, d := range [][]byte{d0, d1, d2} {
			ds, err := LoadExport(bytes.NewReader(d))
			if err != nil {
				if !errors.Is(err, ErrBadRecord) {
					t.Fatalf("error does not wrap ErrBadRecord: %v", err)
				}
				continue
			}
			sets = append(sets, ds)
		}
		if len(sets) == 0 {
			return
		}
		merged, stats := MergeExports(sets...)
		if len(stats) != len(sets) {
			t.Fatalf("%d stats for %d sets", len(stats), len(sets))
		}
		in, replaced := 0, 0
		for _, s := range stats {
			in += s.Records
			replaced += s.Replaced
		}
		if len(merged.Records)+replaced != in {
			t.Fatalf("%d merged + %d replaced != %d loaded", len(merged.Records), replaced, in)
		}
		origin := map[string]int{} // normalized name → the set it came from
		for si, ds := range sets {
			for _, r := range ds.Records {
				origin[Normalize(r.MaskName)] = si
			}
		}
		for _, r := range merged.Records {
			if len(r.Tokens) == 0 || len(r.Tokens) != len(r.Labels) {
				t.Fatalf("inconsistent record %+v", r)
			}
			if len(sets) > 1 {
				found := false
				for _, r2 := range sets[origin[Normalize(r.MaskName)]].Records {
					if r2.MaskName == r.MaskName {
						found = true
					}
				}
				if !found {
					t.Fatalf("%q kept from a file that a later file overrides", r.MaskName)
				}
			}
		}
	})
}
