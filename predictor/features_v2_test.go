package predictor

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
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

// TestV2AttributesStable pins what feature set v2 computes (the digest was
// taken before v3 was added), so v2 model files keep their meaning. If this
// fails, a change meant for a new feature set leaked into v2.
func TestV2AttributesStable(t *testing.T) {
	const want = "291dcd989831b66d1e65d20cb0a4c309f092e2343cde4f4893f000af5cb71db8"
	if got := featureDigest(t, "v2"); got != want {
		t.Fatalf("v2 attributes changed: digest %s, want %s", got, want)
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
