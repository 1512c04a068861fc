package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// nativeTestModel builds a model with reproducible weights: about a third of
// the state weights zero, a few −0 and extreme values, unicode names.
func nativeTestModel(t testing.TB, seed uint64, L, A int) *Model {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	labels := make([]string, L)
	for i := range labels {
		labels[i] = fmt.Sprintf("L%d-ÿ", i)
	}
	words := []string{"mot", "Straße", "日本語", "ελληνικά", "emoji🙂", "", "a=b:c"}
	attrs := make([]string, A)
	for i := range attrs {
		attrs[i] = fmt.Sprintf("%s[%d]", words[i%len(words)], i)
	}
	special := []float64{math.Copysign(0, -1), math.SmallestNonzeroFloat64, -math.MaxFloat64, 1e-310, 1}
	state := make([]float64, A*L)
	for i := range state {
		switch r.IntN(8) {
		case 0, 1, 2:
		case 3:
			state[i] = special[r.IntN(len(special))]
		default:
			state[i] = r.NormFloat64() * 3
		}
	}
	trans := make([]float64, L*L)
	for i := range trans {
		if r.IntN(5) > 0 {
			trans[i] = r.NormFloat64()
		}
	}
	trans[0] = math.Copysign(0, -1)
	meta := Meta{
		FeatureSet: "v2",
		Source:     "codec_test",
		Training: &TrainingParams{
			Algorithm: "lbfgs", C1: 0.1, C2: 1.0 / 3, MaxIterations: 100,
			Epsilon: 1e-5, PossibleTransitions: true, Loss: 1234.5678901234567,
		},
		DataHash: strings.Repeat("ab", 32),
		Extra:    map[string]string{"z": "last", "a": "first", "cv_f1": "0.97", "ü": "ñ"},
	}
	m, err := New(labels, attrs, state, trans, meta)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func encodeNative(t testing.TB, m *Model) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := m.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}

func nativeSameBits(a, b []float64) int {
	if len(a) != len(b) {
		return -2
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return i
		}
	}
	return -1
}

func assertSameNative(t *testing.T, want, got *Model) {
	t.Helper()
	if !reflect.DeepEqual(want.Labels(), got.Labels()) {
		t.Errorf("labels: got %q, want %q", got.Labels(), want.Labels())
	}
	if !reflect.DeepEqual(want.Attributes(), got.Attributes()) &&
		!(len(want.Attributes()) == 0 && len(got.Attributes()) == 0) {
		t.Errorf("attributes differ: got %d, want %d", len(got.Attributes()), len(want.Attributes()))
	}
	if i := nativeSameBits(want.StateWeights(), got.StateWeights()); i != -1 {
		t.Errorf("state weights differ at %d", i)
	}
	if i := nativeSameBits(want.TransWeights(), got.TransWeights()); i != -1 {
		t.Errorf("transition weights differ at %d", i)
	}
	if !reflect.DeepEqual(want.Meta(), got.Meta()) {
		t.Errorf("meta: got %+v, want %+v", got.Meta(), want.Meta())
	}
	for i, a := range got.Attributes() {
		if id, ok := got.AttrID(a); !ok || int(id) != i {
			t.Fatalf("attribute %q: id %d, %v; want %d", a, id, ok, i)
		}
	}
}

func TestNativeRoundTrip(t *testing.T) {
	for _, tc := range []struct{ L, A int }{{1, 0}, {1, 1}, {2, 3}, {5, 40}, {17, 500}} {
		t.Run(fmt.Sprintf("L%d_A%d", tc.L, tc.A), func(t *testing.T) {
			m := nativeTestModel(t, uint64(tc.L*1000+tc.A), tc.L, tc.A)
			enc := encodeNative(t, m)
			if again := encodeNative(t, m); !bytes.Equal(enc, again) {
				t.Fatal("two encodings of the same model differ")
			}
			got, err := ReadNative(bytes.NewReader(enc))
			if err != nil {
				t.Fatal(err)
			}
			assertSameNative(t, m, got)
			if re := encodeNative(t, got); !bytes.Equal(enc, re) {
				t.Fatal("re-encoding the decoded model changed the bytes")
			}
			// Read detects the format and gives the same model.
			viaRead, err := Read(bytes.NewReader(enc))
			if err != nil {
				t.Fatal(err)
			}
			assertSameNative(t, m, viaRead)
			// The decoded model scores like the original.
			s1, t1 := m.NumFeatures()
			s2, t2 := got.NumFeatures()
			if s1 != s2 || t1 != t2 {
				t.Errorf("features: got %d/%d, want %d/%d", s2, t2, s1, t1)
			}
		})
	}
}

func TestNativeLayout(t *testing.T) {
	// A hand-checked encoding of the smallest interesting model.
	m, err := New([]string{"A", "B"}, []string{"x"}, []float64{0, 2}, []float64{1, 0, 0, math.Copysign(0, -1)}, Meta{FeatureSet: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	var b nativeBuilder
	b.raw([]byte("MPCRF\x00\r\n"))
	b.u32(1)
	b.str(`{"feature_set":"v1"}`)
	b.u32(2).str("A").str("B")
	b.u32(1).str("x")
	b.u64(1).u32(0).u32(1).f64(2)
	b.f64(1).f64(0).f64(0).f64(math.Copysign(0, -1))
	want := b.seal()
	if got := encodeNative(t, m); !bytes.Equal(got, want) {
		t.Fatalf("encoding:\n got % x\nwant % x", got, want)
	}
	if !bytes.HasPrefix(want, []byte{0x4d, 0x50, 0x43, 0x52, 0x46, 0x00, 0x0d, 0x0a, 1, 0, 0, 0}) {
		t.Fatal("header")
	}
}

func TestNativeWriteRefuses(t *testing.T) {
	mk := func(labels, attrs []string, meta Meta) *Model {
		m, err := New(labels, attrs, make([]float64, len(labels)*len(attrs)), make([]float64, len(labels)*len(labels)), meta)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ok := Meta{FeatureSet: "v1"}
	for _, tc := range []struct {
		name string
		m    *Model
		want string
	}{
		{"no feature set", mk([]string{"a"}, nil, Meta{}), "without a feature set name"},
		{"bad utf8 label", mk([]string{"a\xff"}, nil, ok), `label 0 ("a\xff") is not valid UTF-8`},
		{"bad utf8 attr", mk([]string{"a"}, []string{"x", "\xc3"}, ok), "attribute 1"},
		{"long attr", mk([]string{"a"}, []string{strings.Repeat("x", MaxStringLen+1)}, ok), "more than the limit of 65536"},
		{"NaN meta", mk([]string{"a"}, nil, Meta{FeatureSet: "v1", Training: &TrainingParams{C1: math.NaN()}}), "encoding metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := tc.m.WriteTo(&buf)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if n != 0 || buf.Len() != 0 {
				t.Fatalf("wrote %d bytes (n=%d) before failing", buf.Len(), n)
			}
		})
	}
}

type nativeFailingWriter struct {
	limit int
	n     int
	short bool
}

var errNativeDiskFull = errors.New("disk full")

func (w *nativeFailingWriter) Write(p []byte) (int, error) {
	room := w.limit - w.n
	if len(p) <= room {
		w.n += len(p)
		return len(p), nil
	}
	w.n += room
	if w.short {
		return room, nil
	}
	return room, errNativeDiskFull
}

func TestNativeWriteErrors(t *testing.T) {
	m := nativeTestModel(t, 1, 9, 3000) // larger than one write chunk
	size := len(encodeNative(t, m))
	if size <= nativeWriteChunk {
		t.Fatalf("model of %d bytes does not exercise chunking", size)
	}
	for _, limit := range []int{0, 5, nativeWriteChunk - 1, nativeWriteChunk + 7, size - 2} {
		w := &nativeFailingWriter{limit: limit}
		n, err := m.WriteTo(w)
		if !errors.Is(err, errNativeDiskFull) || n != int64(limit) {
			t.Errorf("limit %d: n=%d err=%v", limit, n, err)
		}
		w = &nativeFailingWriter{limit: limit, short: true}
		n, err = m.WriteTo(w)
		if !errors.Is(err, io.ErrShortWrite) || n != int64(limit) {
			t.Errorf("short, limit %d: n=%d err=%v", limit, n, err)
		}
	}
}

// nativeBuilder assembles native files field by field for the corrupt-input
// tests; seal appends a correct checksum.
type nativeBuilder struct{ b []byte }

func (b *nativeBuilder) raw(p []byte) *nativeBuilder { b.b = append(b.b, p...); return b }
func (b *nativeBuilder) u32(v uint32) *nativeBuilder {
	b.b = binary.LittleEndian.AppendUint32(b.b, v)
	return b
}
func (b *nativeBuilder) u64(v uint64) *nativeBuilder {
	b.b = binary.LittleEndian.AppendUint64(b.b, v)
	return b
}
func (b *nativeBuilder) f64(v float64) *nativeBuilder { return b.u64(math.Float64bits(v)) }
func (b *nativeBuilder) str(s string) *nativeBuilder  { return b.u32(uint32(len(s))).raw([]byte(s)) }
func (b *nativeBuilder) off() int                     { return len(b.b) }
func (b *nativeBuilder) seal() []byte {
	return binary.LittleEndian.AppendUint32(append([]byte(nil), b.b...), crc32.Checksum(b.b, crc32.MakeTable(crc32.Castagnoli)))
}

// header writes magic, version 1 and {"feature_set":"v1"}.
func (b *nativeBuilder) header() *nativeBuilder {
	return b.raw([]byte(nativeMagic)).u32(1).str(`{"feature_set":"v1"}`)
}

// labels writes n labels named l0, l1…
func (b *nativeBuilder) labels(n int) *nativeBuilder {
	b.u32(uint32(n))
	for i := 0; i < n; i++ {
		b.str(fmt.Sprintf("l%d", i))
	}
	return b
}

// nativeModel2x2 is a valid file: labels l0 l1, attributes x y, weights as given.
func nativeModel2x2(entries func(b *nativeBuilder), trans ...float64) []byte {
	var b nativeBuilder
	b.header().labels(2).u32(2).str("x").str("y")
	entries(&b)
	if trans == nil {
		trans = []float64{0, 1, 2, 3}
	}
	for _, w := range trans {
		b.f64(w)
	}
	return b.seal()
}

func TestNativeCorrupt(t *testing.T) {
	const hdr = 12 // magic + version
	const meta = hdr + 4 + len(`{"feature_set":"v1"}`)
	const labels2 = meta + 4 + 2*(4+2) // after two labels
	const attrs2 = labels2 + 4 + 2*(4+1)
	entry := func(a, y uint32, w float64) func(*nativeBuilder) {
		return func(b *nativeBuilder) { b.u64(1).u32(a).u32(y).f64(w) }
	}
	valid := nativeModel2x2(entry(1, 0, 0.5))
	if _, err := ReadNative(bytes.NewReader(valid)); err != nil {
		t.Fatalf("the base case does not decode: %v", err)
	}
	build := func(f func(b *nativeBuilder)) []byte {
		var b nativeBuilder
		f(&b)
		return b.seal()
	}
	flip := func(at int) []byte {
		c := append([]byte(nil), valid...)
		c[at] ^= 0x10
		return c
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, `header at offset 0: truncated magic: the input is only 0 bytes`},
		{"truncated magic", []byte("MPCR"), `header at offset 0: truncated magic: the input is only 4 bytes`},
		{"bad magic", []byte("lCRF\x00\x00\x00\x00\x01\x00\x00\x00"), `header at offset 0: bad magic "lCRF\x00\x00\x00\x00", want "MPCRF\x00\r\n"`},
		{"text mode", []byte("MPCRF\x00\n\x01\x00\x00\x00"), `bad magic`},
		{"no version", []byte(nativeMagic + "\x01"), `header at offset 8: version needs 4 bytes, 1 remain (truncated?)`},
		{"version 7", build(func(b *nativeBuilder) { b.raw([]byte(nativeMagic)).u32(7) }),
			`native model version 7 is newer than this binary supports (1)`},
		{"version 0", build(func(b *nativeBuilder) { b.raw([]byte(nativeMagic)).u32(0) }), `header at offset 8: version 0 is invalid`},
		{"meta length huge", build(func(b *nativeBuilder) { b.raw([]byte(nativeMagic)).u32(1).u32(math.MaxUint32).raw(make([]byte, 13)) }),
			`metadata section at offset 12: length 4294967295 exceeds remaining 17 bytes`},
		{"meta over limit", build(func(b *nativeBuilder) {
			b.raw([]byte(nativeMagic)).u32(1).u32(nativeMaxMeta + 1).raw(make([]byte, nativeMaxMeta+1))
		}), `metadata section at offset 12: length 1048577 exceeds the limit of 1048576 bytes`},
		{"meta not json", build(func(b *nativeBuilder) { b.raw([]byte(nativeMagic)).u32(1).str(`{"feature_set":`) }),
			`metadata section at offset 16: metadata is not valid JSON`},
		{"meta not object", build(func(b *nativeBuilder) { b.raw([]byte(nativeMagic)).u32(1).str(`[1]`) }), `metadata is not valid JSON`},
		{"meta bad utf8", build(func(b *nativeBuilder) { b.raw([]byte(nativeMagic)).u32(1).str("{\"feature_set\":\"v\xff\"}") }),
			`metadata section at offset 33: metadata is not valid UTF-8`},
		{"meta no feature set", build(func(b *nativeBuilder) { b.raw([]byte(nativeMagic)).u32(1).str(`{"source":"x"}`) }),
			`metadata section at offset 16: metadata has no feature set name`},
		{"meta null", build(func(b *nativeBuilder) { b.raw([]byte(nativeMagic)).u32(1).str(`null`) }), `no feature set name`},
		{"no labels", build(func(b *nativeBuilder) { b.header().u32(0) }), fmt.Sprintf(`labels section at offset %d: no labels`, meta)},
		{"too many labels", build(func(b *nativeBuilder) { b.header().u32(5000) }),
			fmt.Sprintf(`labels section at offset %d: label count 5000 exceeds the limit of 1024`, meta)},
		{"labels past end", build(func(b *nativeBuilder) { b.header().u32(1000) }),
			fmt.Sprintf(`labels section at offset %d: label count 1000 needs at least 4000 bytes, 4 remain`, meta)},
		{"label length huge", build(func(b *nativeBuilder) { b.header().u32(1).u32(math.MaxUint32).raw([]byte("abc")) }),
			fmt.Sprintf(`labels section at offset %d: label 0: length 4294967295 exceeds remaining 7 bytes`, meta+4)},
		{"label bad utf8", build(func(b *nativeBuilder) { b.header().u32(2).str("ok").str("b\xc3(") }),
			fmt.Sprintf(`labels section at offset %d: label 1 ("b\xc3(") is not valid UTF-8`, meta+4+6+4+1)},
		{"duplicate label", build(func(b *nativeBuilder) { b.header().u32(2).str("a").str("a").u32(0).u64(0).f64(0).f64(0).f64(0).f64(0) }),
			`native model: invalid model file: duplicate label "a"`},
		{"attribute count over limit", build(func(b *nativeBuilder) { b.header().labels(2).u32(MaxAttributes + 1) }),
			fmt.Sprintf(`attributes section at offset %d: attribute count 16777217 exceeds the limit of 16777216`, labels2)},
		{"attribute length huge", build(func(b *nativeBuilder) { b.header().labels(2).u32(2).str("x").u32(math.MaxUint32).raw(make([]byte, 13)) }),
			fmt.Sprintf(`attributes section at offset %d: attribute 1: length 4294967295 exceeds remaining 17 bytes`, labels2+4+5)},
		{"attribute over MaxStringLen", build(func(b *nativeBuilder) { b.header().labels(2).u32(1).str(strings.Repeat("a", MaxStringLen+1)) }),
			fmt.Sprintf(`attributes section at offset %d: attribute 0: length 65537 exceeds the limit of 65536 bytes`, labels2+4)},
		{"attribute bad utf8", build(func(b *nativeBuilder) { b.header().labels(2).u32(1).str("\xed\xa0\x80") }), // a surrogate
			fmt.Sprintf(`attributes section at offset %d: attribute 0 ("\xed\xa0\x80") is not valid UTF-8`, labels2+8)},
		{"state matrix too big", build(func(b *nativeBuilder) {
			b.header().labels(MaxLabels).u32(nativeMaxStateCells/MaxLabels + 1).raw(make([]byte, 4*(nativeMaxStateCells/MaxLabels+1)))
		}), `65537 attributes × 1024 labels exceed the limit of 67108864 state weights`},
		{"duplicate attribute", nativeModel2x2Attrs("x", "x"), `native model: invalid model file: duplicate attribute "x"`},
		{"no weight count", build(func(b *nativeBuilder) { b.header().labels(2).u32(2).str("x").str("y") }),
			fmt.Sprintf(`state weights section at offset %d: weight count needs 8 bytes, 4 remain (truncated?)`, attrs2)},
		{"weight count over cells", nativeModel2x2(func(b *nativeBuilder) { b.u64(5) }),
			fmt.Sprintf(`state weights section at offset %d: weight count 5 exceeds 2 attributes × 2 labels`, attrs2)},
		{"weight count huge", nativeModel2x2(func(b *nativeBuilder) { b.u64(math.MaxUint64) }), `weight count 18446744073709551615 exceeds 2 attributes × 2 labels`},
		{"weights past end", nativeModel2x2(func(b *nativeBuilder) { b.u64(4) }),
			fmt.Sprintf(`state weights section at offset %d: weight count 4 needs 64 bytes, 36 remain`, attrs2)},
		{"attribute id out of range", nativeModel2x2(entry(2, 0, 1)),
			fmt.Sprintf(`state weights section at offset %d: entry 0: attribute id 2 out of range (2 attributes)`, attrs2+8)},
		{"label id out of range", nativeModel2x2(entry(0, 1<<31, 1)), `entry 0: label id 2147483648 out of range (2 labels)`},
		{"unsorted", nativeModel2x2(func(b *nativeBuilder) { b.u64(2).u32(1).u32(0).f64(1).u32(0).u32(1).f64(1) }),
			fmt.Sprintf(`state weights section at offset %d: entry 1: (attribute 0, label 1) does not follow the previous entry`, attrs2+8+16)},
		{"repeated", nativeModel2x2(func(b *nativeBuilder) { b.u64(2).u32(1).u32(0).f64(1).u32(1).u32(0).f64(2) }), `entry 1: (attribute 1, label 0) does not follow`},
		{"explicit zero", nativeModel2x2(entry(0, 0, 0)), `entry 0: zero weight stored explicitly`},
		{"NaN weight", nativeModel2x2(entry(1, 1, math.NaN())), `entry 0: weight of attribute "y" for label "l1" is NaN`},
		{"Inf weight", nativeModel2x2(entry(0, 1, math.Inf(-1))), `entry 0: weight of attribute "x" for label "l1" is -Inf`},
		{"Inf transition", nativeModel2x2(entry(0, 0, 1), 0, 0, math.Inf(1), 0),
			fmt.Sprintf(`transitions section at offset %d: weight "l1"→"l0" is +Inf`, attrs2+8+16+16)},
		{"transitions truncated", build(func(b *nativeBuilder) { b.header().labels(2).u32(0).u64(0).f64(1) }),
			fmt.Sprintf(`transitions section at offset %d: 2×2 transition weights needs 32 bytes, 12 remain (truncated?)`, labels2+4+8)},
		{"no checksum", valid[:len(valid)-4], fmt.Sprintf(`trailer at offset %d: checksum needs 4 bytes, 0 remain (truncated?)`, len(valid)-4)},
		{"half checksum", valid[:len(valid)-2], `checksum needs 4 bytes, 2 remain`},
		{"trailing bytes", append(append([]byte(nil), valid...), 0, 0, 0), fmt.Sprintf(`trailer at offset %d: 3 unexpected bytes after the checksum`, len(valid))},
		{"flipped weight", flip(attrs2 + 8 + 8 + 3), fmt.Sprintf(`trailer at offset %d: checksum mismatch: stored %#08x, computed`, len(valid)-4, binary.LittleEndian.Uint32(valid[len(valid)-4:]))},
		{"flipped transition", flip(len(valid) - 10), `checksum mismatch`},
		{"flipped name", flip(meta + 8), `checksum mismatch`},
		{"flipped checksum", flip(len(valid) - 1), `checksum mismatch`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ReadNative(bytes.NewReader(tc.data))
			if err == nil {
				t.Fatalf("decoded %d labels, want an error", m.NumLabels())
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error does not wrap ErrFormat: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n  %v\ndoes not contain\n  %s", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "invalid model file: native model") && !strings.HasPrefix(err.Error(), "native model: invalid model file") {
				t.Errorf("error %q does not start with what failed", err)
			}
		})
	}
}

func nativeModel2x2Attrs(a, b string) []byte {
	var nb nativeBuilder
	nb.header().labels(2).u32(2).str(a).str(b).u64(0).f64(0).f64(0).f64(0).f64(0)
	return nb.seal()
}

func TestNativeErrorText(t *testing.T) {
	// The whole message, to pin the format down.
	var b nativeBuilder
	b.header().labels(2).u32(2).str("x").u32(math.MaxUint32).raw(make([]byte, 13))
	_, err := ReadNative(bytes.NewReader(b.seal()))
	const want = "invalid model file: native model: attributes section at offset 61: attribute 1: length 4294967295 exceeds remaining 17 bytes"
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

func TestNativeTruncatedEverywhere(t *testing.T) {
	enc := encodeNative(t, nativeTestModel(t, 3, 3, 6))
	for n := 0; n < len(enc); n++ {
		_, err := ReadNative(bytes.NewReader(enc[:n]))
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("truncated to %d of %d bytes: err = %v", n, len(enc), err)
		}
		if n >= nativeHeaderLen && !strings.Contains(err.Error(), "remain") {
			t.Fatalf("truncated to %d of %d bytes: %v does not say what is missing", n, len(enc), err)
		}
	}
}

func TestNativeEveryByteMatters(t *testing.T) {
	enc := encodeNative(t, nativeTestModel(t, 4, 3, 6))
	c := make([]byte, len(enc))
	for i := range enc {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			copy(c, enc)
			c[i] ^= x
			if _, err := ReadNative(bytes.NewReader(c)); !errors.Is(err, ErrFormat) {
				t.Fatalf("byte %d ^ %#x: err = %v", i, x, err)
			}
		}
	}
}

type nativeErrReader struct{}

func (nativeErrReader) Read([]byte) (int, error) { return 0, errNativeDiskFull }

func TestReadCapped(t *testing.T) {
	if _, err := readCapped(bytes.NewReader(make([]byte, 11)), 10, "test"); !errors.Is(err, ErrFormat) ||
		!strings.Contains(err.Error(), "larger than the limit of 10 bytes") {
		t.Fatalf("over the limit: %v", err)
	}
	if data, err := readCapped(bytes.NewReader(make([]byte, 10)), 10, "test"); err != nil || len(data) != 10 {
		t.Fatalf("at the limit: %d bytes, %v", len(data), err)
	}
	if _, err := ReadNative(nativeErrReader{}); !errors.Is(err, errNativeDiskFull) || errors.Is(err, ErrFormat) {
		t.Fatalf("read error: %v", err)
	}
	if _, err := Read(nativeErrReader{}); !errors.Is(err, errNativeDiskFull) || errors.Is(err, ErrFormat) {
		t.Fatalf("read error: %v", err)
	}
}

func TestDetectFormat(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   Format
	}{
		{nativeMagic, FormatNative},
		{nativeMagic + "\x01\x00\x00\x00", FormatNative},
		{"MPCRF\x00\r", FormatUnknown},
		{"lCRF", FormatCRFsuite},
		{"lCRF\x48\xa5\x01\x00", FormatCRFsuite},
		{"\x80\x02", FormatPickle},
		{"\x80\x05\x95", FormatPickle},
		{"\x80\x04\x95^\x02\x00\x00\x00", FormatPickle},
		{"\x80\x01", FormatUnknown},
		{"\x80\x06", FormatUnknown},
		{"\x80", FormatUnknown},
		{"", FormatUnknown},
		{"{\"a\":1}", FormatUnknown},
	} {
		if got := DetectFormat([]byte(tc.prefix)); got != tc.want {
			t.Errorf("DetectFormat(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	for f, want := range map[Format]string{FormatUnknown: "unknown", FormatNative: "native", FormatCRFsuite: "crfsuite", FormatPickle: "pickle", 9: "Format(9)"} {
		if f.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(f), f.String(), want)
		}
	}
}

// nativeCountingReader counts the bytes read through it.
type nativeCountingReader struct {
	r io.Reader
	n int
}

func (c *nativeCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadUnknown(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"", "unknown model file format: empty input (invalid model file)"},
		{"hello, world", `unknown model file format: first bytes 68 65 6c 6c 6f 2c 20 77 ("hello, w") are not a native, CRFsuite or pickle model (invalid model file)`},
		{"MPCRF\x00", "a truncated native model?"},
		{"MPCRF\x00\n\x01\x00\x00\x00", "mangled by a text-mode transfer"},
		{"\x80\x01]q\x00", "a pickle of protocol 1, only 2 to 5 are read"},
		{"\x80", "a truncated pickle?"},
		{"\x1f\x8b\x08\x00", "gzip-compressed"},
		{"lCR", "a truncated CRFsuite model?"},
	} {
		data := tc.data
		if len(data) >= detectLen {
			data += strings.Repeat("x", 10000) // must not be read
		}
		cr := &nativeCountingReader{r: strings.NewReader(data)}
		_, err := Read(cr)
		if !errors.Is(err, ErrUnknownFormat) || !errors.Is(err, ErrFormat) {
			t.Errorf("%q: err = %v, want ErrUnknownFormat and ErrFormat", tc.data, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error\n  %v\ndoes not contain\n  %s", tc.data, err, tc.want)
		}
		if cr.n > detectLen {
			t.Errorf("%q: read %d bytes of an unknown input", tc.data, cr.n)
		}
	}
}

func TestReadDispatch(t *testing.T) {
	// Whatever the CRFsuite and pickle readers make of the files, Read must
	// hand them the files rather than refuse the format.
	for _, name := range []string{"crf_model.crfsuite", "crf_model.pkl"} {
		data, err := os.ReadFile(filepath.Join("..", "testdata", name))
		if err != nil {
			t.Skip(err)
		}
		if _, err := Read(bytes.NewReader(data)); errors.Is(err, ErrUnknownFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	m := nativeTestModel(t, 5, 4, 30)
	path := filepath.Join(dir, "model.mpcrf")
	if err := os.WriteFile(path, encodeNative(t, m), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	assertSameNative(t, m, got)

	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.mpcrf")
	enc := encodeNative(t, m)
	if err := os.WriteFile(bad, enc[:len(enc)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "trailer") {
		t.Errorf("truncated file: %v", err)
	}
	text := filepath.Join(dir, "model.txt")
	if err := os.WriteFile(text, []byte("not a model\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(text); !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), text) {
		t.Errorf("text file: %v", err)
	}
}

func FuzzReadNative(f *testing.F) {
	f.Add(encodeNative(f, nativeTestModel(f, 6, 3, 5)))
	f.Add(encodeNative(f, nativeTestModel(f, 7, 1, 0)))
	f.Add(nativeModel2x2(func(b *nativeBuilder) { b.u64(2).u32(0).u32(1).f64(1).u32(1).u32(0).f64(-2) }))
	f.Add([]byte(nativeMagic))
	tbl := crc32.MakeTable(crc32.Castagnoli)
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(data []byte) {
			m, err := ReadNative(bytes.NewReader(data))
			if err != nil {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("error does not wrap ErrFormat: %v", err)
				}
				return
			}
			// Whatever decodes re-encodes to something that decodes to the
			// same model and encodes to the same bytes again.
			var b1 bytes.Buffer
			if _, err := m.WriteTo(&b1); err != nil {
				t.Fatalf("decoded model does not encode: %v", err)
			}
			m2, err := ReadNative(bytes.NewReader(b1.Bytes()))
			if err != nil {
				t.Fatalf("re-encoded model does not decode: %v", err)
			}
			if i := nativeSameBits(m.StateWeights(), m2.StateWeights()); i != -1 {
				t.Fatalf("state weights differ at %d", i)
			}
			if i := nativeSameBits(m.TransWeights(), m2.TransWeights()); i != -1 {
				t.Fatalf("transition weights differ at %d", i)
			}
			if !reflect.DeepEqual(m.Labels(), m2.Labels()) || !reflect.DeepEqual(m.Meta(), m2.Meta()) || len(m.Attributes()) != len(m2.Attributes()) {
				t.Fatal("labels, attributes or meta differ after a round trip")
			}
			var b2 bytes.Buffer
			if _, err := m2.WriteTo(&b2); err != nil || !bytes.Equal(b1.Bytes(), b2.Bytes()) {
				t.Fatalf("encoding is not stable: %v", err)
			}
		}
		check(data)
		// Again with the checksum repaired, so that the fuzzer reaches the
		// code behind it.
		if len(data) >= nativeHeaderLen+4 {
			fixed := append([]byte(nil), data...)
			n := len(fixed) - 4
			binary.LittleEndian.PutUint32(fixed[n:], crc32.Checksum(fixed[:n], tbl))
			check(fixed)
		}
	})
}

func TestNativeFromCRFsuite(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "crf_model.crfsuite"))
	if err != nil {
		t.Skip(err)
	}
	m, err := ReadCRFsuite(data)
	if err != nil {
		t.Fatal(err)
	}
	enc := encodeNative(t, m)
	got, err := ReadNative(bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	assertSameNative(t, m, got)
	if re := encodeNative(t, got); !bytes.Equal(enc, re) {
		t.Fatal("re-encoding changed the bytes")
	}
	viaLoad, err := Load(filepath.Join("..", "testdata", "crf_model.crfsuite"))
	if err != nil {
		t.Fatal(err)
	}
	assertSameNative(t, m, viaLoad)
	s, tr := m.NumFeatures()
	t.Logf("CRFsuite %d bytes (%d labels, %d attributes, %d+%d features) → native %d bytes",
		len(data), m.NumLabels(), len(m.Attributes()), s, tr, len(enc))
}

func ExampleModel_WriteTo() {
	// Two labels, two attributes; state weights are attribute-major.
	m, err := New(
		[]string{"O", "MASK"},
		[]string{"word=hello", "shape=Xxxxx"},
		[]float64{0.5, 0, 0, 1.25},
		[]float64{0.1, -0.2, 0.3, 0},
		Meta{FeatureSet: "v1", Source: "example"},
	)
	if err != nil {
		panic(err)
	}

	var buf bytes.Buffer
	n, err := m.WriteTo(&buf)
	if err != nil {
		panic(err)
	}
	fmt.Printf("wrote %d bytes, format %v\n", n, DetectFormat(buf.Bytes()))

	back, err := Read(&buf) // or ReadNative, or Load(path) for a file
	if err != nil {
		panic(err)
	}
	id, _ := back.AttrID("shape=Xxxxx")
	fmt.Println(back.Labels(), back.StateWeight(id, 1), back.TransWeight(0, 1), back.Meta().FeatureSet)
	// Output:
	// wrote 181 bytes, format native
	// [O MASK] 1.25 -0.2 v1
}
