package predictor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
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
