package predictor

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// collectSink records attributes as strings, for tests and the trainer.
type collectSink struct {
	names []string // the feature set's FixedNames
	items [][]attrKV
	cur   []attrKV
}

type attrKV struct {
	Name  string
	Value float64
}

func (c *collectSink) Attr(name []byte, v float64) { c.cur = append(c.cur, attrKV{string(name), v}) }
func (c *collectSink) Fixed(k int, v float64)      { c.cur = append(c.cur, attrKV{c.names[k], v}) }
func (c *collectSink) EndToken()                   { c.items = append(c.items, c.cur); c.cur = nil }

type attrsGolden struct {
	MaskName   string     `json:"mask_name"`
	Tokens     []string   `json:"tokens"`
	Attributes [][][2]any `json:"attributes"`
}

func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestV1AttributesMatchGolden pins feature set v1 to the attributes the
// original Python feature function produced, token by token, in order.
func TestV1AttributesMatchGolden(t *testing.T) {
	fs, err := LookupFeatureSet("v1")
	if err != nil {
		t.Fatal(err)
	}
	var sc Scratch
	n := 0
	for _, file := range []string{"attrs_train.jsonl", "attrs_mismatch.jsonl"} {
		for _, g := range readJSONL[attrsGolden](t, filepath.Join("..", "testdata", file)) {
			toks := Tokenize(g.MaskName)
			if !reflect.DeepEqual(toks, g.Tokens) {
				t.Fatalf("%q: tokens %q, want %q", g.MaskName, toks, g.Tokens)
			}
			cs := collectSink{names: fs.FixedNames()}
			fs.Featurize(toks, &sc, &cs)
			if len(cs.items) != len(g.Attributes) {
				t.Fatalf("%q: %d items, want %d", g.MaskName, len(cs.items), len(g.Attributes))
			}
			for i, want := range g.Attributes {
				got := cs.items[i]
				if len(got) != len(want) {
					t.Fatalf("%q token %d: %d attributes, want %d\n got %v\nwant %v", g.MaskName, i, len(got), len(want), got, want)
				}
				for k, w := range want {
					if got[k].Name != w[0].(string) || got[k].Value != w[1].(float64) {
						t.Fatalf("%q token %d attr %d: %v, want %v", g.MaskName, i, k, got[k], w)
					}
					n++
				}
			}
		}
	}
	if n < 26440 {
		t.Fatalf("compared %d attributes, want at least 26440", n)
	}
}
