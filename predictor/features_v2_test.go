package predictor

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/maskpredictor/maskpredictor/model"
)

func TestShape(t *testing.T) {
	for in, want := range map[string]string{"KN95": "X9", "Aura": "Xx", "9205+": "9+", "3M": "9X", "w/": "x/", "Med/High": "Xx/Xx"} {
		if got := string(appendShape(nil, in)); got != want {
			t.Errorf("shape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestV2Ablation runs 5-fold cross-validation for v1, v2 and v2 without each
// of its parts. It takes a while, so it runs only with MASKPREDICTOR_ABLATION=1;
// BENCHMARKS.md records its output.
func TestV2Ablation(t *testing.T) {
	if os.Getenv("MASKPREDICTOR_ABLATION") == "" {
		t.Skip("set MASKPREDICTOR_ABLATION=1 to run the feature ablation")
	}
	ds := loadTrain(t)
	variants := map[string]FeatureSet{"v1": v1{}, "v2": featureSets["v2"], "v3": featureSets["v3"]}
	all := v2Parts{shape: true, window2: true, fromEnd: true, vocab: true}
	for _, drop := range []string{"shape", "window2", "fromEnd", "vocab"} {
		p := all
		switch drop {
		case "shape":
			p.shape = false
		case "window2":
			p.window2 = false
		case "fromEnd":
			p.fromEnd = false
		case "vocab":
			p.vocab = false
		}
		variants["v2-"+drop] = newV2("v2-"+drop, p)
	}
	brandsOnly, firstOnly := all, all
	brandsOnly.brands, firstOnly.firstWord = true, true
	variants["v3-firstWord"] = newV2("v3-firstWord", brandsOnly)
	variants["v3-brands"] = newV2("v3-brands", firstOnly)
	for _, c := range [][3]float64{{0.1, 0.1, 100}, {0.05, 0.01, 200}} {
		s := model.Settings{C1: c[0], C2: c[1], MaxIterations: int(c[2]), PossibleTransitions: true}
		for name, fs := range variants {
			rep, err := CrossValidate(context.Background(), ds.Records, fs, s, 5)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("c1=%g c2=%g it=%g %-10s token %.4f (%d/%d)  name %.4f (%d/%d)  macroF1 %.4f", c[0], c[1], c[2], name, rep.TokenAccuracy, rep.CorrectTokens, rep.Tokens, rep.NameAccuracy, rep.CorrectNames, rep.Names, rep.MacroF1)
		}
	}
}

// featureDigest hashes every attribute a feature set emits for the names of
// testdata/train.json, in order.
func featureDigest(t *testing.T, name string) string {
	t.Helper()
	fs, err := LookupFeatureSet(name)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	var sc Scratch
	for _, r := range loadTrain(t).Records {
		cs := collectSink{names: fs.FixedNames()}
		fs.Featurize(r.Tokens, &sc, &cs)
		for _, item := range cs.items {
			for _, a := range item {
				fmt.Fprintf(h, "%s=%g\x00", a.Name, a.Value)
			}
			h.Write([]byte{'\n'})
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestAttributesStable pins what the earlier feature sets compute (v2's
// digest was taken before v3 was added, v3's before v4), so their model
// files keep their meaning. If this fails, a change meant for a new feature
// set leaked into an old one.
func TestAttributesStable(t *testing.T) {
	for fs, want := range map[string]string{
		"v1": "021faf3602e910111a027e28163250446bd1ef7dd66647ff7236b5dec904d890",
		"v2": "291dcd989831b66d1e65d20cb0a4c309f092e2343cde4f4893f000af5cb71db8",
		"v3": "7e77ffd45481bcc5cb19358f70b448719d316cae88e6c3d0def1a191b70abc6b",
	} {
		if got := featureDigest(t, fs); got != want {
			t.Errorf("%s attributes changed: digest %s, want %s", fs, got, want)
		}
	}
}

// TestV4IsV3WithoutShapeWithRepeats: v4 emits v3's attributes but the word
// shape, in v3's order, then the repeated-token flags.
func TestV4IsV3WithoutShapeWithRepeats(t *testing.T) {
	v3, v4 := featureSets["v3"], featureSets["v4"]
	names := []string{"Flo Flo Pro Med/High for Medium nose", "AirBoss AirBoss S/M", "N95 n95 N95"}
	for _, r := range loadTrain(t).Records {
		names = append(names, r.MaskName)
	}
	for _, name := range names {
		a3, a4 := attrsOf(t, v3, name), attrsOf(t, v4, name)
		low := Tokenize(name)
		for i := range low {
			low[i] = strings.ToLower(low[i])
		}
		for i := range a3 {
			var want []string
			for _, a := range a3[i] {
				if !strings.HasPrefix(a, "token.shape:") {
					want = append(want, a)
				}
			}
			if i > 0 && low[i] == low[i-1] {
				want = append(want, "token.repeat=1")
			}
			if i+1 < len(low) && low[i] == low[i+1] {
				want = append(want, "next.repeat=1")
			}
			if !slices.Equal(a4[i], want) {
				t.Fatalf("%q token %d: v4 %v, want %v", name, i, a4[i], want)
			}
		}
	}
}

// TestV4Ablation is the grouped cross-validation behind v4 (BENCHMARKS.md,
// issue 12): v3, v4, and v4 without each of its parts, on the training data
// and the extra names, folds grouped by maker, K = 3…10. It takes about a
// minute, so it runs only with MASKPREDICTOR_ABLATION=1.
func TestV4Ablation(t *testing.T) {
	if os.Getenv("MASKPREDICTOR_ABLATION") == "" {
		t.Skip("set MASKPREDICTOR_ABLATION=1 to run the feature ablation")
	}
	var sets []*Dataset
	for _, f := range []string{"train.json", "labelled_extra.json"} {
		sets = append(sets, loadExportFile(t, filepath.Join("..", "testdata", f)))
	}
	ds, _ := MergeExports(sets...)
	all := v2Parts{window2: true, fromEnd: true, vocab: true, brands: true, firstWord: true, repeat: true}
	variants := []FeatureSet{featureSets["v3"], featureSets["v4"], newV2("v4+shape", func() v2Parts { p := all; p.shape = true; return p }())}
	for _, drop := range []string{"window2", "fromEnd", "vocab", "brands", "firstWord", "repeat"} {
		p := all
		switch drop {
		case "window2":
			p.window2 = false
		case "fromEnd":
			p.fromEnd = false
		case "vocab":
			p.vocab = false
		case "brands":
			p.brands = false
		case "firstWord":
			p.firstWord = false
		case "repeat":
			p.repeat = false
		}
		variants = append(variants, newV2("v4-"+drop, p))
	}
	s := model.Settings{C1: 0.05, C2: 0.01, MaxIterations: 200, PossibleTransitions: true}
	for _, k := range []int{5, 3, 4, 8, 10} {
		for _, fs := range variants {
			if k != 5 && fs.Name() != "v3" && fs.Name() != "v4" {
				continue
			}
			rep, err := CrossValidateGrouped(context.Background(), ds.Records, fs, s, k, GroupMaker)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("K=%-2d %-12s grouped token %.4f (%d/%d)  name %.4f (%d/%d)", k, fs.Name(), rep.TokenAccuracy, rep.CorrectTokens, rep.Tokens, rep.NameAccuracy, rep.CorrectNames, rep.Names)
		}
	}
}

func attrsOf(t *testing.T, fs FeatureSet, name string) [][]string {
	t.Helper()
	var sc Scratch
	cs := collectSink{names: fs.FixedNames()}
	fs.Featurize(Tokenize(name), &sc, &cs)
	out := make([][]string, len(cs.items))
	for i, item := range cs.items {
		for _, a := range item {
			if a.Value != 0 {
				out[i] = append(out[i], fmt.Sprintf("%s=%g", a.Name, a.Value))
			}
		}
	}
	return out
}

// TestV3ExtendsV2 checks that v3 emits v2's attributes first, then only its
// own: brand-lexicon flags and the first word.
func TestV3ExtendsV2(t *testing.T) {
	v2, v3 := featureSets["v2"], featureSets["v3"]
	if got := v3.FixedNames()[:len(v2.FixedNames())]; !reflect.DeepEqual(got, v2.FixedNames()) {
		t.Fatalf("v3 fixed names do not extend v2's: %v", got)
	}
	for _, r := range loadTrain(t).Records {
		a2, a3 := attrsOf(t, v2, r.MaskName), attrsOf(t, v3, r.MaskName)
		for i := range a2 {
			if !slices.Equal(a3[i][:len(a2[i])], a2[i]) {
				t.Fatalf("%q token %d: v3 does not start with v2's attributes", r.MaskName, i)
			}
			for _, a := range a3[i][len(a2[i]):] {
				if !strings.HasPrefix(a, "first.lower:") && !strings.Contains(a, "brandlex=") {
					t.Fatalf("%q token %d: unexpected v3 attribute %q", r.MaskName, i, a)
				}
			}
		}
	}
	got := attrsOf(t, v3, "Kimberly-Clark Kleenguard N95")
	extra := func(i int) []string { return got[i][len(attrsOf(t, v2, "Kimberly-Clark Kleenguard N95")[i]):] }
	for i, want := range [][]string{
		{"token.brandlex=1", "next.brandlex=1"},
		{"token.brandlex=1", "prev.brandlex=1", "first.lower:kimberly=1"},
		{"prev.brandlex=1", "first.lower:kimberly=1"},
		{"first.lower:kimberly=1"},
	} {
		if !slices.Equal(extra(i), want) {
			t.Errorf("token %d: v3 adds %q, want %q", i, extra(i), want)
		}
	}
}

func TestBrandLexicon(t *testing.T) {
	lex := DefaultBrandLexicon()
	if lex.Len() < 50 {
		t.Fatalf("embedded brand lexicon has %d brands", lex.Len())
	}
	for name, want := range map[string][]bool{
		"3M Aura 9205+ N95":                  {true, false, false, false},
		"Kimberly-Clark Kleenguard N95":      {true, true, false, false},
		"PRESTIGE AMERITECH ProGear N95":     {true, true, false, false},
		"Owens & Minor Halyard Fluidshield":  {true, true, true, true, false},
		"Dr. Puri KF94":                      {true, true, false},
		"Well Before Kids Mask":              {true, true, false, false},
		"Well Kids Mask":                     {false, false, false},
		"Dräger X-plore 1750":                {true, false, false, false},
		"Mask 3M":                            {false, true},
		"Prestige":                           {false},
		"Honeywell/Moldex":                   {false},
		"Acme Outdoor Research Kids Mask 3M": {false, true, true, false, false, true},
	} {
		if got := lex.Match(Tokenize(name)); !slices.Equal(got, want) {
			t.Errorf("Match(%q) = %v, want %v", name, got, want)
		}
	}
	if _, err := ParseBrandLexicon("3M\nAcme\n3m\n"); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate brand: err = %v", err)
	}
	if _, err := ParseBrandLexicon("# only a comment\n - \n"); err == nil {
		t.Error("a line without tokens was accepted")
	}
}

// TestV3FeaturizeNoAllocs: v3's brand matching needs no memory for names of
// up to 32 tokens once the scratch has grown.
func TestV3FeaturizeNoAllocs(t *testing.T) {
	fs := featureSets["v3"]
	var sc Scratch
	toks := Tokenize("Owens & Minor Halyard Fluidshield N95 Particulate Respirator Regular")
	sink := discardSink{}
	fs.Featurize(toks, &sc, sink)
	if n := testing.AllocsPerRun(100, func() { fs.Featurize(toks, &sc, sink) }); n != 0 {
		t.Errorf("Featurize allocates %v times per name", n)
	}
}

type discardSink struct{}

func (discardSink) Attr([]byte, float64) {}
func (discardSink) Fixed(int, float64)   {}
func (discardSink) EndToken()            {}

// The closed-value attributes listed among the fixed ones (fClosedKV…) need
// numComponents to be the number of labels, and keep their string names.
func TestClosedKVFixedNames(t *testing.T) {
	if numComponents != len(ComponentLabels) {
		t.Fatalf("numComponents %d, %d labels", numComponents, len(ComponentLabels))
	}
	names := featureSets["v2"].FixedNames()
	if names[fClosedKV] != "position.rindex:0" || names[numV2Fixed-1] != "next.vocab:"+ComponentLabels[numComponents-1] {
		t.Errorf("closed-value names %v", names[fClosedKV:numV2Fixed])
	}
}

func loadExportFile(t testing.TB, path string) *Dataset {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ds, err := LoadExport(f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}
