package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"unicode/utf8"
)

const (
	// NativeVersion is the version of the native format this package writes
	// and the newest it reads.
	NativeVersion = 1
	// MaxFileSize bounds the bytes read from one model file or stream.
	MaxFileSize = 1 << 30

	nativeMagic     = "MPCRF\x00\r\n"
	nativeHeaderLen = len(nativeMagic) + 4
	// nativeMaxMeta bounds the metadata JSON.
	nativeMaxMeta = 1 << 20
	// nativeMaxStateCells bounds A×L, the dense state matrix a file may ask
	// for (512 MiB of float64) whatever the size of the sparse file; the
	// CRFsuite reader has the same bound.
	nativeMaxStateCells = 1 << 26
	nativeEntryLen      = 16
	nativeWriteChunk    = 64 << 10
)

var nativeCRC = crc32.MakeTable(crc32.Castagnoli)

// WriteTo writes the model in the native format (see ReadNative) and returns
// the number of bytes written. It implements io.WriterTo. The same model
// always encodes to the same bytes. WriteTo fails before writing anything if
// the model cannot be read back: an empty Meta.FeatureSet, a name longer than
// MaxStringLen or not valid UTF-8, metadata that does not encode to JSON.
func (m *Model) WriteTo(w io.Writer) (int64, error) {
	meta, err := m.nativeCheck()
	if err != nil {
		return 0, err
	}
	L := len(m.labels)
	K := uint64(0)
	for _, v := range m.state {
		if math.Float64bits(v) != 0 {
			K++
		}
	}

	e := &nativeEncoder{w: w, buf: make([]byte, 0, nativeWriteChunk+MaxStringLen+64)}
	e.buf = append(e.buf, nativeMagic...)
	e.u32(NativeVersion)
	e.u32(uint32(len(meta)))
	e.bytes(meta)
	e.strings(m.labels)
	e.strings(m.attrs)
	e.u64(K)
	for i, v := range m.state {
		if b := math.Float64bits(v); b != 0 {
			e.u32(uint32(i / L))
			e.u32(uint32(i % L))
			e.u64(b)
		}
	}
	for _, v := range m.trans {
		e.u64(math.Float64bits(v))
	}
	e.flush()
	var crc [4]byte
	binary.LittleEndian.PutUint32(crc[:], e.crc)
	e.write(crc[:])
	if e.err != nil {
		return e.n, fmt.Errorf("native model: write: %w", e.err)
	}
	return e.n, nil
}

// nativeCheck refuses, before a byte is written, a model ReadNative would
// refuse, and returns the metadata JSON.
func (m *Model) nativeCheck() ([]byte, error) {
	if m.meta.FeatureSet == "" {
		return nil, errors.New("native model: cannot write a model without a feature set name (Meta.FeatureSet)")
	}
	meta, err := json.Marshal(m.meta)
	if err != nil {
		return nil, fmt.Errorf("native model: encoding metadata: %w", err)
	}
	if len(meta) > nativeMaxMeta {
		return nil, fmt.Errorf("native model: metadata JSON is %d bytes, more than the limit of %d", len(meta), nativeMaxMeta)
	}
	if len(m.labels)*len(m.attrs) > nativeMaxStateCells {
		return nil, fmt.Errorf("native model: %d attributes × %d labels exceed the limit of %d state weights",
			len(m.attrs), len(m.labels), nativeMaxStateCells)
	}
	for _, set := range []struct {
		noun  string
		names []string
	}{{"label", m.labels}, {"attribute", m.attrs}} {
		for i, s := range set.names {
			if len(s) > MaxStringLen {
				return nil, fmt.Errorf("native model: %s %d is %d bytes long, more than the limit of %d", set.noun, i, len(s), MaxStringLen)
			}
			if !utf8.ValidString(s) {
				return nil, fmt.Errorf("native model: %s %d (%q) is not valid UTF-8", set.noun, i, s)
			}
		}
	}
	return meta, nil
}

// nativeEncoder buffers the encoding, checksums it and counts what reaches w;
// the first write error sticks.
type nativeEncoder struct {
	w   io.Writer
	buf []byte
	crc uint32
	n   int64
	err error
}

func (e *nativeEncoder) u32(v uint32) {
	e.buf = binary.LittleEndian.AppendUint32(e.buf, v)
	e.maybeFlush()
}

func (e *nativeEncoder) u64(v uint64) {
	e.buf = binary.LittleEndian.AppendUint64(e.buf, v)
	e.maybeFlush()
}

func (e *nativeEncoder) bytes(p []byte) {
	e.buf = append(e.buf, p...)
	e.maybeFlush()
}

func (e *nativeEncoder) strings(names []string) {
	e.u32(uint32(len(names)))
	for _, s := range names {
		e.u32(uint32(len(s)))
		e.buf = append(e.buf, s...)
		e.maybeFlush()
	}
}

func (e *nativeEncoder) maybeFlush() {
	if len(e.buf) >= nativeWriteChunk {
		e.flush()
	}
}

// flush checksums and writes the buffer.
func (e *nativeEncoder) flush() {
	e.crc = crc32.Update(e.crc, nativeCRC, e.buf)
	e.write(e.buf)
	e.buf = e.buf[:0]
}

func (e *nativeEncoder) write(p []byte) {
	if e.err != nil || len(p) == 0 {
		return
	}
	n, err := e.w.Write(p)
	e.n += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	e.err = err
}

// ReadNative reads a model in the native format written by Model.WriteTo,
// reading at most MaxFileSize bytes from r.
//
// The native format is a versioned, checksummed, little-endian binary
// codec in the spirit of gonum's mat.Dense.MarshalBinaryTo. Version 1:
//
//	offset  size      field
//	------  --------  ---------------------------------------------------------
//	header
//	0       8         magic "MPCRF\x00\r\n" (4d 50 43 52 46 00 0d 0a)
//	8       4         format version, uint32 (1)
//	metadata section
//	12      4         n, byte length of the JSON that follows (≤ 1 MiB)
//	16      n         Meta as JSON (encoding/json, valid UTF-8, non-empty feature_set)
//	labels section
//	        4         L, label count (1 … MaxLabels)
//	        L×(4+k)   each label: uint32 byte length k (≤ MaxStringLen), k bytes of UTF-8
//	attributes section
//	        4         A, attribute count (0 … MaxAttributes; A×L ≤ 2²⁶)
//	        A×(4+k)   each attribute: uint32 byte length k (≤ MaxStringLen), k bytes of UTF-8
//	state weights section (sparse)
//	        8         K, uint64 count of stored weights (≤ A×L)
//	        K×16      each: uint32 attribute id, uint32 label id, uint64 IEEE-754 bits;
//	                  sorted by (attribute, label) without repeats; the bits are
//	                  never 0 (absent entries are +0) and never NaN or ±Inf
//	transitions section (dense)
//	        L×L×8     uint64 IEEE-754 bits of w(i→j) at index i×L+j; finite
//	trailer
//	        4         CRC-32C (Castagnoli) of every preceding byte
//	                  end of file: nothing may follow
//
// Labels and attributes get their ids from their order. A weight whose bit
// pattern is not zero is stored, so −0 survives the round trip: decoding gives
// back every weight bit for bit. Encoding is deterministic (encoding/json sorts
// map keys), so a model always encodes to the same bytes.
//
// The magic's NUL, CR and LF catch text-mode transfers and keep it distinct
// from CRFsuite ("lCRF") and pickle (0x80). Readers refuse versions newer than
// theirs and keep reading older ones; any change to the layout bumps the
// version. Unknown fields in the metadata JSON are ignored. docs/model-format.md
// describes the format at more length.
//
// ReadNative never trusts its input: every count and length is checked against the
// bytes that remain and against MaxLabels, MaxAttributes and MaxStringLen
// before anything is allocated, names must be valid UTF-8, weights finite,
// and the checksum must match before the model is built. Errors about the
// content wrap ErrFormat and say which section and byte offset is wrong.
func ReadNative(r io.Reader) (*Model, error) {
	data, err := readCapped(r, MaxFileSize, "native model")
	if err != nil {
		return nil, err
	}
	return decodeNative(data)
}

// readCapped reads all of r, refusing more than limit bytes.
func readCapped(r io.Reader, limit int64, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", what, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %s: input is larger than the limit of %d bytes", ErrFormat, what, limit)
	}
	return data, nil
}

// nativeDecoder walks a native model held in memory.
type nativeDecoder struct {
	data    []byte
	off     int
	section string
}

func (d *nativeDecoder) errorf(off int, format string, args ...any) error {
	return fmt.Errorf("%w: native model: %s at offset %d: %s", ErrFormat, d.section, off, fmt.Sprintf(format, args...))
}

func (d *nativeDecoder) remaining() int { return len(d.data) - d.off }

// need fails unless n more bytes remain.
func (d *nativeDecoder) need(n uint64, what string) error {
	if n > uint64(d.remaining()) {
		return d.errorf(d.off, "%s needs %d bytes, %d remain (truncated?)", what, n, d.remaining())
	}
	return nil
}

func (d *nativeDecoder) u32(what string) (uint32, error) {
	if err := d.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(d.data[d.off:])
	d.off += 4
	return v, nil
}

func (d *nativeDecoder) u64(what string) (uint64, error) {
	if err := d.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(d.data[d.off:])
	d.off += 8
	return v, nil
}

// count reads a uint32 element count and checks it against limit and against
// the remaining bytes, each element taking at least minSize of them.
func (d *nativeDecoder) count(noun string, limit int, minSize uint64) (int, error) {
	at := d.off
	n, err := d.u32(noun + " count")
	if err != nil {
		return 0, err
	}
	if uint64(n) > uint64(limit) {
		return 0, d.errorf(at, "%s count %d exceeds the limit of %d", noun, n, limit)
	}
	if min := uint64(n) * minSize; min > uint64(d.remaining()) {
		return 0, d.errorf(at, "%s count %d needs at least %d bytes, %d remain", noun, n, min, d.remaining())
	}
	return int(n), nil
}

// strings reads n length-prefixed UTF-8 strings. It validates them all before
// allocating, then backs them with one string holding the whole run.
func (d *nativeDecoder) strings(noun string, n int) ([]string, error) {
	start := d.off
	for i := 0; i < n; i++ {
		at := d.off
		k, err := d.u32(fmt.Sprintf("%s %d length", noun, i))
		if err != nil {
			return nil, err
		}
		if uint64(k) > uint64(d.remaining()) {
			return nil, d.errorf(at, "%s %d: length %d exceeds remaining %d bytes", noun, i, k, d.remaining())
		}
		if k > MaxStringLen {
			return nil, d.errorf(at, "%s %d: length %d exceeds the limit of %d bytes", noun, i, k, MaxStringLen)
		}
		s := d.data[d.off : d.off+int(k)]
		if bad := invalidUTF8At(s); bad >= 0 {
			return nil, d.errorf(d.off+bad, "%s %d (%q) is not valid UTF-8", noun, i, s)
		}
		d.off += int(k)
	}
	run := string(d.data[start:d.off])
	names := make([]string, n)
	p := 0
	for i := range names {
		k := int(binary.LittleEndian.Uint32(d.data[start+p:]))
		names[i] = run[p+4 : p+4+k]
		p += 4 + k
	}
	return names, nil
}

// invalidUTF8At returns the index of the first byte of b that is not part of
// valid UTF-8, or -1.
func invalidUTF8At(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

func finite(w float64) bool { return !math.IsNaN(w) && !math.IsInf(w, 0) }

// decodeNative decodes a whole native model file.
func decodeNative(data []byte) (*Model, error) {
	d := &nativeDecoder{data: data, section: "header"}

	// Header.
	if !bytes.HasPrefix(data, []byte(nativeMagic)) {
		if len(data) < len(nativeMagic) && bytes.HasPrefix([]byte(nativeMagic), data) {
			return nil, d.errorf(0, "truncated magic: the input is only %d bytes", len(data))
		}
		head := data[:min(len(data), len(nativeMagic))]
		return nil, d.errorf(0, "bad magic %q, want %q", head, nativeMagic)
	}
	d.off = len(nativeMagic)
	version, err := d.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version > NativeVersion:
		return nil, fmt.Errorf("%w: native model version %d is newer than this binary supports (%d)", ErrFormat, version, NativeVersion)
	case version == 0:
		return nil, d.errorf(len(nativeMagic), "version 0 is invalid")
	}

	// Metadata.
	d.section = "metadata section"
	at := d.off
	n, err := d.u32("metadata length")
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(d.remaining()) {
		return nil, d.errorf(at, "length %d exceeds remaining %d bytes", n, d.remaining())
	}
	if n > nativeMaxMeta {
		return nil, d.errorf(at, "length %d exceeds the limit of %d bytes", n, nativeMaxMeta)
	}
	raw := data[d.off : d.off+int(n)]
	if bad := invalidUTF8At(raw); bad >= 0 {
		return nil, d.errorf(d.off+bad, "metadata is not valid UTF-8")
	}
	var meta Meta
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, d.errorf(d.off, "metadata is not valid JSON: %v", err)
	}
	if meta.FeatureSet == "" {
		return nil, d.errorf(d.off, "metadata has no feature set name (feature_set)")
	}
	d.off += int(n)

	// Labels.
	d.section = "labels section"
	at = d.off
	L, err := d.count("label", MaxLabels, 4)
	if err != nil {
		return nil, err
	}
	if L == 0 {
		return nil, d.errorf(at, "no labels")
	}
	labels, err := d.strings("label", L)
	if err != nil {
		return nil, err
	}

	// Attributes.
	d.section = "attributes section"
	at = d.off
	A, err := d.count("attribute", MaxAttributes, 4)
	if err != nil {
		return nil, err
	}
	if A*L > nativeMaxStateCells {
		return nil, d.errorf(at, "%d attributes × %d labels exceed the limit of %d state weights", A, L, nativeMaxStateCells)
	}
	attrs, err := d.strings("attribute", A)
	if err != nil {
		return nil, err
	}

	// State weights: validate now, fill the dense matrix once the checksum
	// has been verified.
	d.section = "state weights section"
	at = d.off
	K, err := d.u64("weight count")
	if err != nil {
		return nil, err
	}
	cells := uint64(A) * uint64(L)
	if K > cells {
		return nil, d.errorf(at, "weight count %d exceeds %d attributes × %d labels", K, A, L)
	}
	if size := K * nativeEntryLen; size > uint64(d.remaining()) {
		return nil, d.errorf(at, "weight count %d needs %d bytes, %d remain", K, size, d.remaining())
	}
	sparse := d.off
	prev := int64(-1)
	for k := uint64(0); k < K; k++ {
		p := data[d.off:]
		a := binary.LittleEndian.Uint32(p)
		y := binary.LittleEndian.Uint32(p[4:])
		bits := binary.LittleEndian.Uint64(p[8:])
		switch {
		case uint64(a) >= uint64(A):
			return nil, d.errorf(d.off, "entry %d: attribute id %d out of range (%d attributes)", k, a, A)
		case uint64(y) >= uint64(L):
			return nil, d.errorf(d.off, "entry %d: label id %d out of range (%d labels)", k, y, L)
		}
		idx := int64(a)*int64(L) + int64(y)
		if idx <= prev {
			return nil, d.errorf(d.off, "entry %d: (attribute %d, label %d) does not follow the previous entry (entries must be sorted and unique)", k, a, y)
		}
		if bits == 0 {
			return nil, d.errorf(d.off, "entry %d: zero weight stored explicitly", k)
		}
		if w := math.Float64frombits(bits); !finite(w) {
			return nil, d.errorf(d.off, "entry %d: weight of attribute %q for label %q is %v", k, attrs[a], labels[y], w)
		}
		prev = idx
		d.off += nativeEntryLen
	}

	// Transitions.
	d.section = "transitions section"
	if err := d.need(uint64(L)*uint64(L)*8, fmt.Sprintf("%d×%d transition weights", L, L)); err != nil {
		return nil, err
	}
	dense := d.off
	for i := 0; i < L*L; i++ {
		if w := math.Float64frombits(binary.LittleEndian.Uint64(data[d.off:])); !finite(w) {
			return nil, d.errorf(d.off, "weight %q→%q is %v", labels[i/L], labels[i%L], w)
		}
		d.off += 8
	}

	// Trailer.
	d.section = "trailer"
	at = d.off
	stored, err := d.u32("checksum")
	if err != nil {
		return nil, err
	}
	if d.remaining() > 0 {
		return nil, d.errorf(d.off, "%d unexpected bytes after the checksum", d.remaining())
	}
	if sum := crc32.Checksum(data[:at], nativeCRC); sum != stored {
		return nil, d.errorf(at, "checksum mismatch: stored %#08x, computed %#08x (the file is corrupt)", stored, sum)
	}

	state := make([]float64, cells)
	for p := data[sparse:dense]; len(p) > 0; p = p[nativeEntryLen:] {
		a := int(binary.LittleEndian.Uint32(p))
		y := int(binary.LittleEndian.Uint32(p[4:]))
		state[a*L+y] = math.Float64frombits(binary.LittleEndian.Uint64(p[8:]))
	}
	trans := make([]float64, L*L)
	for i := range trans {
		trans[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[dense+8*i:]))
	}
	m, err := New(labels, attrs, state, trans, meta)
	if err != nil {
		return nil, fmt.Errorf("native model: %w", err)
	}
	return m, nil
}
