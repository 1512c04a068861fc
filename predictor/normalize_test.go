package predictor

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

type normalizeVector struct {
	Note       string `json:"note"`
	Name       string `json:"name"`
	Normalized string `json:"normalized"`
}

func loadNormalizeVectors(t *testing.T) []normalizeVector {
	t.Helper()
	data, err := os.ReadFile("../testdata/normalize_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []normalizeVector `json:"vectors"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) < 20 {
		t.Fatalf("only %d vectors", len(f.Vectors))
	}
	return f.Vectors
}

func TestNormalizeVectors(t *testing.T) {
	for _, v := range loadNormalizeVectors(t) {
		if got := Normalize(v.Name); got != v.Normalized {
			t.Errorf("%s: Normalize(%+q) = %+q, want %+q", v.Note, v.Name, got, v.Normalized)
		}
		if got := Normalize(v.Normalized); got != v.Normalized {
			t.Errorf("%s: not idempotent: Normalize(%+q) = %+q", v.Note, v.Normalized, got)
		}
	}
}

// slowNormalize is the definition, without the ASCII fast path.
func slowNormalize(name string) string {
	s := cases.Fold().String(norm.NFKC.String(name))
	return strings.Join(Tokenize(s), " ")
}

func TestNormalizeASCIIFastPath(t *testing.T) {
	for _, s := range []string{"", " ", "A", "  3M  Aura-9205+ ,N95 ", "a\x1cb\x1fc\x0bd", "(M/L)[x]", "\x00\x7f"} {
		if got, want := Normalize(s), slowNormalize(s); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"3M Aura 9205+ N95", "Stra\u00dfe", "\uff13\uff2d", "a -b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Normalize(s)
		if want := slowNormalize(s); got != want {
			t.Fatalf("Normalize(%q) = %q, want %q", s, got, want)
		}
		if strings.HasPrefix(got, " ") || strings.HasSuffix(got, " ") || strings.Contains(got, "  ") {
			t.Fatalf("Normalize(%q) = %q: stray spaces", s, got)
		}
	})
}

// TestNormalizeRuby runs the Ruby module's test against the same vectors.
func TestNormalizeRuby(t *testing.T) {
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		t.Skip("ruby not installed")
	}
	script, _ := filepath.Abs("../deploy/rails/test/normalize_test.rb")
	vectors, _ := filepath.Abs("../testdata/normalize_vectors.json")
	cmd := exec.Command(ruby, script)
	cmd.Env = append(os.Environ(), "NORMALIZE_VECTORS="+vectors)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ruby %s: %v\n%s", script, err, out)
	}
	if !strings.Contains(string(out), " 0 failures, 0 errors") {
		t.Fatalf("unexpected ruby output:\n%s", out)
	}
}

func BenchmarkNormalize(b *testing.B) {
	for _, name := range []string{"3M Aura 9205+ N95 Particulate Respirator", "\uff13\uff2d Aura\u00a09205+ N95"} {
		b.Run("", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Normalize(name)
			}
		})
	}
}
