package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

const crfsuiteTestFile = "../testdata/crf_model.crfsuite"

func readTestdata(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// cfFeature is a feature for encodeCRFsuite.
type cfFeature struct {
	typ, src, dst uint32
	w             float64
}

// encodeCRFsuite writes a model file the way crf1d_model.c does (chunk order,
// alignment, the two spare label-reference slots, CQDB layout), so
// tests can build valid files of any shape and corrupt them precisely.
func encodeCRFsuite(labels, attrs []string, feats []cfFeature) []byte {
	le := binary.LittleEndian
	b := make([]byte, crfsuiteHeaderSize)
	u32 := func(v uint32) { b = le.AppendUint32(b, v) }

	offFeat := len(b)
	b = append(b, "FEAT"...)
	u32(uint32(crfsuiteChunkHead + crfsuiteFeatSize*len(feats)))
	u32(uint32(len(feats)))
	for _, f := range feats {
		u32(f.typ)
		u32(f.src)
		u32(f.dst)
		b = le.AppendUint64(b, math.Float64bits(f.w))
	}
	offLabels := len(b)
	b = append(b, encodeCQDB(labels)...)
	offAttrs := len(b)
	b = append(b, encodeCQDB(attrs)...)

	refs := func(id string, n, spare int, typ uint32) int {
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		off := len(b)
		b = append(b, id...)
		u32(0)
		u32(uint32(n + spare))
		table := len(b)
		b = append(b, make([]byte, 4*(n+spare))...)
		for src := range n {
			le.PutUint32(b[table+4*src:], uint32(len(b)))
			var fids []uint32
			for i, f := range feats {
				if f.typ == typ && f.src == uint32(src) {
					fids = append(fids, uint32(i))
				}
			}
			u32(uint32(len(fids)))
			for _, fid := range fids {
				u32(fid)
			}
		}
		le.PutUint32(b[off+4:], uint32(len(b)-off))
		return off
	}
	offLRefs := refs("LFRF", len(labels), 2, crfsuiteTransFeature)
	offARefs := refs("AFRF", len(attrs), 0, crfsuiteStateFeature)

	copy(b, crfsuiteMagic)
	copy(b[8:], crfsuiteType)
	for i, v := range []int{len(b), -1, crfsuiteVersion, 0, len(labels), len(attrs),
		offFeat, offLabels, offAttrs, offLRefs, offARefs} {
		if v >= 0 {
			le.PutUint32(b[4+4*i:], uint32(v))
		}
	}
	return b
}

// encodeCQDB writes a CQDB chunk as cqdb_writer_close does, inserting the
// strings in id order.
func encodeCQDB(strs []string) []byte {
	le := binary.LittleEndian
	type bucket struct{ hash, off uint32 }
	var tables [cqdbNumTables][]bucket
	b := make([]byte, cqdbDataOffset)
	bwd := make([]uint32, len(strs))
	for id, s := range strs {
		key := append([]byte(s), 0)
		hv := hashlittle(key, 0)
		tables[hv%cqdbNumTables] = append(tables[hv%cqdbNumTables], bucket{hv, uint32(len(b))})
		bwd[id] = uint32(len(b))
		b = le.AppendUint32(b, uint32(id))
		b = le.AppendUint32(b, uint32(len(key)))
		b = append(b, key...)
	}
	for t, tb := range tables {
		if len(tb) == 0 {
			continue
		}
		n := 2 * len(tb)
		le.PutUint32(b[cqdbHeaderSize+8*t:], uint32(len(b)))
		le.PutUint32(b[cqdbHeaderSize+8*t+4:], uint32(n))
		slots := make([]bucket, n)
		for _, e := range tb {
			k := int(e.hash>>8) % n
			for slots[k].off != 0 {
				k = (k + 1) % n
			}
			slots[k] = e
		}
		for _, e := range slots {
			b = le.AppendUint32(b, e.hash)
			b = le.AppendUint32(b, e.off)
		}
	}
	// Current CQDB writers store the number of ids as the backward array's
	// size; old ones stored its capacity (see TestReadCRFsuiteCorrupt).
	bwdCap, bwdOff := len(strs), 0
	if len(strs) > 0 {
		bwdOff = len(b)
		for _, off := range bwd {
			b = le.AppendUint32(b, off)
		}
	}
	copy(b, cqdbChunkID)
	le.PutUint32(b[4:], uint32(len(b)))
	le.PutUint32(b[12:], cqdbByteOrder)
	le.PutUint32(b[16:], uint32(bwdCap))
	le.PutUint32(b[20:], uint32(bwdOff))
	return b
}

// encodeModelCRFsuite writes m's non-zero weights as a CRFsuite file.
func encodeModelCRFsuite(m *Model) []byte {
	L := m.NumLabels()
	var feats []cfFeature
	for a := range m.Attributes() {
		for y := range L {
			if w := m.StateWeight(int32(a), y); w != 0 {
				feats = append(feats, cfFeature{crfsuiteStateFeature, uint32(a), uint32(y), w})
			}
		}
	}
	for i := range L {
		for j := range L {
			if w := m.TransWeight(i, j); w != 0 {
				feats = append(feats, cfFeature{crfsuiteTransFeature, uint32(i), uint32(j), w})
			}
		}
	}
	return encodeCRFsuite(m.Labels(), m.Attributes(), feats)
}

var (
	smallLabels = []string{"B", "I", "O"}
	smallAttrs  = []string{"bias", "w=mask", "w=n95", "suffix:sk", "ünïcode"}
	smallFeats  = []cfFeature{
		{0, 0, 0, 0.5}, {0, 0, 2, -0.25}, {0, 1, 0, 1.75}, {0, 2, 1, 2.5},
		{0, 3, 1, -1}, {0, 4, 2, 1e-3},
		{1, 0, 1, 0.75}, {1, 1, 1, 0.5}, {1, 2, 0, -2}, {1, 1, 2, 0.125},
	}
)

// smallCRFsuite is a tiny valid model: fast to fuzz, easy to reason about.
func smallCRFsuite() []byte { return encodeCRFsuite(smallLabels, smallAttrs, smallFeats) }

func TestReadCRFsuiteReference(t *testing.T) {
	m, err := ReadCRFsuite(readTestdata(t, crfsuiteTestFile))
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := []string{"brand", "misc", "size", "model", "style", "filter_type", "strap", "color", "valved"}
	if !slices.Equal(m.Labels(), wantLabels) {
		t.Errorf("labels = %q, want %q", m.Labels(), wantLabels)
	}
	if n := len(m.Attributes()); n != 1172 {
		t.Errorf("%d attributes, want 1172", n)
	}
	// CRFsuite numbers attributes by their first non-zero feature, in the
	// order the trainer met them: the first token of the first training
	// sequence ("Dr. Puri Stylish Black Micro-Dust Protection Mask").
	for id, want := range []string{"bias", "token.lower:dr.", "token.isupper", "token.istitle", "token.isdigit"} {
		if got := m.Attributes()[id]; got != want {
			t.Errorf("attribute %d = %q, want %q", id, got, want)
		}
		if got, ok := m.AttrID(want); !ok || int(got) != id {
			t.Errorf("AttrID(%q) = %d, %v; want %d", want, got, ok, id)
		}
	}
	st, tr := m.NumFeatures()
	if st != 1536 || tr != 66 {
		t.Errorf("NumFeatures = %d state + %d transition, want 1536 + 66", st, tr)
	}
	maxW := 0.0
	for _, w := range append(m.StateWeights(), m.TransWeights()...) {
		maxW = max(maxW, math.Abs(w))
	}
	if math.Abs(maxW-3.1795) > 1e-3 {
		t.Errorf("largest |weight| = %v, want ≈ 3.18", maxW)
	}
	// Spot checks against crfsuite dump of the same file.
	brand, _ := m.LabelID("brand")
	misc, _ := m.LabelID("misc")
	bias, _ := m.AttrID("bias")
	if w := m.StateWeight(bias, brand); math.Abs(w-0.6167) > 1e-4 {
		t.Errorf("w(bias, brand) = %v, want ≈ 0.6167", w)
	}
	if w := m.TransWeight(brand, misc); w == 0 {
		t.Errorf("w(brand → misc) = 0, want a transition weight")
	}
	if meta := m.Meta(); meta.FeatureSet != "v1" || meta.Source != "crfsuite" || meta.Training != nil {
		t.Errorf("meta = %+v", meta)
	}
}

// The label CQDB we encode from the model's labels must be the very bytes
// CRFsuite wrote: a check on our reading of the format, the hash included.
func TestCRFsuiteCQDBLayout(t *testing.T) {
	data := readTestdata(t, crfsuiteTestFile)
	m, err := ReadCRFsuite(data)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	offLabels, offAttrs := le.Uint32(data[32:]), le.Uint32(data[36:])
	if got := encodeCQDB(m.Labels()); !bytes.Equal(got, data[offLabels:offAttrs]) {
		t.Errorf("re-encoded label CQDB differs from the file's (%d vs %d bytes)", len(got), offAttrs-offLabels)
		for i := range got {
			if got[i] != data[int(offLabels)+i] {
				t.Logf("first difference at chunk byte %d: % x vs % x", i, got[i:min(i+16, len(got))], data[int(offLabels)+i:int(offLabels)+i+16])
				break
			}
		}
	}
	// lookup3's published test vectors.
	for _, tc := range []struct {
		key  string
		init uint32
		want uint32
	}{
		{"", 0, 0xdeadbeef},
		{"", 0xdeadbeef, 0xbd5b7dde},
		{"Four score and seven years ago", 0, 0x17770551},
		{"Four score and seven years ago", 1, 0xcd628161},
	} {
		if got := hashlittle([]byte(tc.key), tc.init); got != tc.want {
			t.Errorf("hashlittle(%q, %#x) = %#08x, want %#08x", tc.key, tc.init, got, tc.want)
		}
	}
}

func TestCRFsuiteRoundTrip(t *testing.T) {
	m, err := ReadCRFsuite(smallCRFsuite())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Labels(), smallLabels) || !slices.Equal(m.Attributes(), smallAttrs) {
		t.Fatalf("labels %q attributes %q", m.Labels(), m.Attributes())
	}
	L := len(smallLabels)
	for _, f := range smallFeats {
		var got float64
		if f.typ == crfsuiteStateFeature {
			got = m.StateWeight(int32(f.src), int(f.dst))
		} else {
			got = m.TransWeight(int(f.src), int(f.dst))
		}
		if got != f.w {
			t.Errorf("feature %+v read as %v", f, got)
		}
	}
	if st, tr := m.NumFeatures(); st+tr != len(smallFeats) {
		t.Errorf("%d+%d features, want %d", st, tr, len(smallFeats))
	}
	if len(m.StateWeights()) != len(smallAttrs)*L {
		t.Errorf("dense state has %d cells", len(m.StateWeights()))
	}

	// The reference model, rewritten by our encoder, reads back the same.
	ref, err := ReadCRFsuite(readTestdata(t, crfsuiteTestFile))
	if err != nil {
		t.Fatal(err)
	}
	again, err := ReadCRFsuite(encodeModelCRFsuite(ref))
	if err != nil {
		t.Fatal(err)
	}
	assertSameCRF(t, ref, again)
}

// assertSameCRF compares names and weights bit for bit.
func assertSameCRF(t *testing.T, want, got *Model) {
	t.Helper()
	if !slices.Equal(want.Labels(), got.Labels()) {
		t.Errorf("labels differ: %q vs %q", want.Labels(), got.Labels())
	}
	if !slices.Equal(want.Attributes(), got.Attributes()) {
		t.Errorf("attributes differ (%d vs %d)", len(want.Attributes()), len(got.Attributes()))
	}
	eq := func(a, b []float64) bool {
		return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
	}
	if !eq(want.StateWeights(), got.StateWeights()) {
		t.Errorf("state weights differ")
	}
	if !eq(want.TransWeights(), got.TransWeights()) {
		t.Errorf("transition weights differ")
	}
}

// patch returns a copy of data with v written at off.
func patch(data []byte, off int, v uint32) []byte {
	c := slices.Clone(data)
	binary.LittleEndian.PutUint32(c[off:], v)
	return c
}

// patchBytes returns a copy of data with p written at off.
func patchBytes(data []byte, off int, p string) []byte {
	c := slices.Clone(data)
	copy(c[off:], p)
	return c
}

// truncate cuts data at n bytes and, if fixSize, makes the header agree, so
// that the reader gets past the size check to the chunks.
func truncate(data []byte, n int, fixSize bool) []byte {
	c := slices.Clone(data[:n])
	if fixSize {
		binary.LittleEndian.PutUint32(c[4:], uint32(n))
	}
	return c
}

func TestReadCRFsuiteCorrupt(t *testing.T) {
	ref := readTestdata(t, crfsuiteTestFile)
	le := binary.LittleEndian
	hdr := func(field int) int { return int(le.Uint32(ref[4+4*field:])) }
	offFeat, offLabels, offAttrs, offLRefs, offARefs := hdr(6), hdr(7), hdr(8), hdr(9), hdr(10)
	brand := offLabels + bytes.Index(ref[offLabels:offAttrs], []byte("brand\x00"))
	if brand < offLabels {
		t.Fatal("no brand record in the label CQDB")
	}
	// A CQDB record starts 8 bytes before its key.
	brandRec := brand - 8 - offLabels
	feat0 := offFeat + crfsuiteChunkHead
	lrefList0 := int(le.Uint32(ref[offLRefs+crfsuiteChunkHead:]))

	small := smallCRFsuite()

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, `crfsuite header, byte 0: magic "", want "lCRF"`},
		{"bad magic", patchBytes(ref, 0, "XCRF"), `magic "XCRF", want "lCRF"`},
		{"pickle not crfsuite", []byte("\x80\x04\x95"), `magic "\x80\x04\x95"`},
		{"truncated in header", ref[:20], "truncated: 20 bytes, the header alone is 48"},
		{"truncated after header", ref[:48], "byte 4: truncated: the header says the file has 107848 bytes, there are 48"},
		{"truncated in FEAT", ref[:1000], "truncated: the header says the file has 107848 bytes, there are 1000"},
		{"truncated in attributes", ref[:50000], "there are 50000"},
		{"truncated by one byte", ref[:len(ref)-1], "there are 107847"},
		{"trailing data", append(slices.Clone(ref), 0), "there are 107849 (trailing data)"},
		{"cut in attribute CQDB, size fixed", truncate(ref, 40000, true),
			fmt.Sprintf("attribute CQDB (chunk at byte %d), byte %d: chunk size", offAttrs, offAttrs+4)},
		{"cut in AFRF, size fixed", truncate(ref, offARefs+100, true), "crfsuite AFRF chunk"},
		{"cut before AFRF, size fixed", truncate(ref, offARefs, true),
			fmt.Sprintf("AFRF chunk: offset %d leaves no room for a 12-byte chunk header in a %d-byte file", offARefs, offARefs)},
		{"wrong model type", patchBytes(ref, 8, "FOMX"), `byte 8: model type "FOMX", want "FOMC"`},
		{"wrong version", patch(ref, 12, 101), "byte 12: version 101, want 100"},
		{"header feature count", patch(ref, 16, 7), "byte 16: 7 features, but the FEAT chunk has 1602"},
		{"no labels", patch(ref, 20, 0), "byte 20: no labels"},
		{"absurd label count", patch(ref, 20, math.MaxUint32), "byte 20: 4294967295 labels (max 1024)"},
		{"absurd attribute count", patch(ref, 24, math.MaxUint32), "byte 24: 4294967295 attributes (max 16777216)"},
		{"dense state too large", patch(patch(ref, 20, 1024), 24, 1<<20), "1048576 attributes × 1024 labels is more than 67108864 state weights"},
		{"more labels than the CQDB", patch(ref, 20, 10), "byte 32116: backward array holds 9 ids, the model header says 10"},
		{"more attributes than the CQDB", patch(ref, 24, 1173), "backward array holds 1172 ids, the model header says 1173"},
		// Old CQDB writers stored the backward array's capacity, rounded up
		// as (size+1)*2, instead of the number of ids: still readable.
		{"CQDB backward size is a capacity", patch(ref, offLabels+16, 14), ""},
		{"CQDB backward array past the chunk", patch(patch(ref, 20, 10), offLabels+16, 14), "backward array of 10 entries at offset 2347 does not fit the 2383-byte chunk"},
		{"fewer attributes than the CQDB", patch(ref, 24, 1171), "hash table"},
		{"FEAT offset past the end", patch(ref, 28, 0xFFFFFF00), "crfsuite FEAT chunk: offset 4294967040 leaves no room"},
		{"label CQDB offset past the end", patch(ref, 32, uint32(len(ref))), "crfsuite label CQDB: chunk at byte 107848 needs at least 2072 bytes"},
		{"attribute CQDB offset wrong", patch(ref, 36, uint32(offLabels)), "crfsuite attribute CQDB"},
		{"LFRF offset past the end", patch(ref, 40, math.MaxUint32), "crfsuite LFRF chunk: offset 4294967295"},
		{"AFRF offset inside FEAT", patch(ref, 44, uint32(feat0)), `crfsuite AFRF chunk, byte 60: chunk id "\x00\x00\x00\x00", want "AFRF"`},
		{"flipped FEAT id", patchBytes(ref, offFeat, "FEAX"), `crfsuite FEAT chunk, byte 48: chunk id "FEAX", want "FEAT"`},
		{"flipped label CQDB id", patchBytes(ref, offLabels, "CQDX"), fmt.Sprintf(`label CQDB (chunk at byte %d), byte %d: chunk id "CQDX", want "CQDB"`, offLabels, offLabels)},
		{"flipped attribute CQDB id", patchBytes(ref, offAttrs, "XQDB"), `chunk id "XQDB", want "CQDB"`},
		{"flipped LFRF id", patchBytes(ref, offLRefs, "LFRG"), `chunk id "LFRG", want "LFRF"`},
		{"flipped AFRF id", patchBytes(ref, offARefs, "AFRE"), `chunk id "AFRE", want "AFRF"`},
		{"FEAT chunk size past the end", patch(ref, offFeat+4, math.MaxUint32), "chunk size 4294967295 does not fit"},
		{"absurd feature count", patch(ref, offFeat+8, math.MaxUint32), "4294967295 features (max 67108864)"},
		{"feature count off by one", patch(ref, offFeat+8, 1603), "chunk holds 32040 bytes of features, 1603 features need 32060"},
		{"feature type", patch(ref, feat0, 7), "byte 60: feature 0 has type 7, want 0 (state) or 1 (transition)"},
		{"feature attribute out of range", patch(ref, feat0+4, 1172), "byte 64: feature 0: attribute id 1172 out of range (1172 attributes)"},
		{"feature label out of range", patch(ref, feat0+8, 9), "byte 68: feature 0: label id 9 out of range (9 labels)"},
		{"transition source out of range", patch(patch(ref, feat0, 1), feat0+4, 9), "feature 0: label id 9 out of range (9 labels)"},
		{"NaN weight", patch(patch(ref, feat0+12, 1), feat0+16, 0x7ff80000), "byte 72: feature 0: weight is NaN"},
		{"infinite weight", patch(patch(ref, feat0+12, 0), feat0+16, 0xfff00000), "feature 0: weight is -Inf"},
		{"CQDB written big-endian", patch(ref, offLabels+12, 0x71534462), "big-endian CQDB"},
		{"CQDB byte-order mark", patch(ref, offLabels+12, 1), "byte-order mark 0x00000001, want 0x62445371"},
		{"CQDB size past the end", patch(ref, offAttrs+4, math.MaxUint32), "chunk size 4294967295 runs past the end of the file"},
		{"CQDB size below its header", patch(ref, offAttrs+4, 100), "chunk size 100 is smaller than the 2072-byte CQDB header"},
		{"CQDB without backward array", patch(ref, offLabels+20, 0), "no backward array, so ids have no names"},
		{"CQDB backward array past the end", patch(ref, offLabels+20, math.MaxUint32), "backward array of 9 entries at offset 4294967295 does not fit"},
		{"label string changed", patchBytes(ref, brand, "brend"), `but label "brend" hashes to`},
		{"label string lost its NUL", patchBytes(ref, brand+5, "x"), "key is not NUL-terminated"},
		{"label string with a NUL", patchBytes(ref, brand+2, "\x00"), "key has a NUL at byte 2"},
		{"label key size absurd", patch(ref, offLabels+brandRec+4, math.MaxUint32), "key of 4294967295 bytes (max 65537)"},
		{"label key size past the chunk", patch(ref, offLabels+brandRec+4, 60000), "key of 60000 bytes runs past the end of the chunk"},
		{"label record id", patch(ref, offLabels+brandRec, 3), "backward array entry 0 points at the record of id 3"},
		{"LFRF list count absurd", patch(ref, lrefList0, math.MaxUint32), "list of id 0 has 4294967295 entries, which run past the end of the chunk"},
		{"LFRF list count zero", patch(ref, lrefList0, 0), "is in the FEAT chunk but in no reference list, so CRFsuite would never score it"},
		{"LFRF list offset past the end", patch(ref, offLRefs+crfsuiteChunkHead, math.MaxUint32), "list of id 0 at byte 4294967295 is outside the chunk's lists"},
		{"LFRF names a state feature", patch(ref, lrefList0+4, 0), "list of id 0 names feature 0, which is not one of its transition features"},
		{"LFRF feature out of range", patch(ref, lrefList0+4, 5000), "list of id 0: feature id 5000 out of range (1602 features)"},
		{"LFRF count below labels", patch(ref, offLRefs+8, 8), "8 lists for 9 ids"},
		{"duplicate label", encodeCRFsuite([]string{"B", "I", "B"}, smallAttrs, nil), `duplicate label "B" (ids 0 and 2)`},
		{"duplicate attribute", encodeCRFsuite(smallLabels, []string{"x", "y", "x"}, nil), `duplicate attribute "x" (ids 0 and 2)`},
		{"duplicate feature", encodeCRFsuite(smallLabels, smallAttrs, append(slices.Clone(smallFeats), cfFeature{1, 2, 0, 3})),
			`feature 10 duplicates an earlier transition "O" → "B"`},
		{"listed twice", func() []byte {
			// AFRF list of attribute 0 names feature 0 twice (count 2 → the
			// second slot is feature 1, rewrite it to 0).
			off := int(le.Uint32(small[44:]))
			list := int(le.Uint32(small[off+crfsuiteChunkHead:]))
			return patch(small, list+8, 0)
		}(), "list of id 0 names feature 0 a second time"},
		{"empty string label", encodeCRFsuite([]string{"B", ""}, nil, nil), ""}, // valid: CRFsuite allows it
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ReadCRFsuite(tc.data)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("read %d labels, want error containing %q", m.NumLabels(), tc.want)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error does not wrap ErrFormat: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// Every truncation must fail cleanly: with the header's size left alone it is
// reported as truncation; with the size patched to match, some chunk must
// notice it is missing data.
func TestReadCRFsuiteTruncatedEverywhere(t *testing.T) {
	for _, data := range [][]byte{readTestdata(t, crfsuiteTestFile), smallCRFsuite()} {
		step := max(1, len(data)/997)
		for n := 0; n < len(data); n += step {
			_, err := ReadCRFsuite(data[:n])
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("cut at %d: err = %v, want ErrFormat", n, err)
			}
			if n >= 4 && !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("cut at %d: error %q does not say truncated", n, err)
			}
			if n >= crfsuiteHeaderSize {
				if _, err := ReadCRFsuite(truncate(data, n, true)); !errors.Is(err, ErrFormat) {
					t.Fatalf("cut at %d with size fixed: err = %v, want ErrFormat", n, err)
				}
			}
		}
	}
}

// Flipping any single byte of the small model either leaves a model that
// reads (weights and padding carry no structure) or yields ErrFormat; never a
// panic.
func TestReadCRFsuiteEveryByte(t *testing.T) {
	data := smallCRFsuite()
	for i := range data {
		c := slices.Clone(data)
		c[i] ^= 0x5a
		if _, err := ReadCRFsuite(c); err != nil && !errors.Is(err, ErrFormat) {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
}

// FuzzReadCRFsuite checks that any input either reads as a model that
// survives a round trip through the format or fails with ErrFormat.
//
// Run it with -fuzzminimizetime=2s or so: the reference seed is 100 KB and Go
// minimizes every new interesting input with an O(n²) pass, so with the
// default (60s) a 60-second run spends nearly all its time minimizing one
// input derived from that seed.
func FuzzReadCRFsuite(f *testing.F) {
	ref := readTestdata(f, crfsuiteTestFile)
	small := smallCRFsuite()
	f.Add(ref)
	f.Add(small)
	f.Add(encodeCRFsuite([]string{"only"}, nil, nil))
	f.Add(encodeCRFsuite(smallLabels, smallAttrs, smallFeats[6:]))
	f.Add(truncate(small, len(small)/2, true))
	f.Add(patch(small, 20, 1000))
	f.Add(patch(small, 24, 0))
	f.Add(patchBytes(small, 48, "FEAX"))
	f.Add([]byte("lCRF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadCRFsuite(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		// Whatever reads must survive a round trip through the format.
		again, err := ReadCRFsuite(encodeModelCRFsuite(m))
		if err != nil {
			t.Fatalf("re-encoded model does not read: %v", err)
		}
		assertSameCRF(t, m, again)
	})
}
