package model

import (
	"encoding/binary"
	"fmt"
	"math"
)

// CRFsuite's first-order model file ("lCRF"/"FOMC", version 100), as
// lib/crf/src/crf1d_model.c writes it. All integers are little-endian uint32,
// weights little-endian IEEE-754 doubles, and every offset is from the start
// of the file:
//
//	header   magic "lCRF", file size, type "FOMC", version 100,
//	         num_features (never filled in by CRFsuite: 0), num_labels,
//	         num_attrs, then the offsets of FEAT, the label CQDB, the
//	         attribute CQDB, LFRF and AFRF                        (48 bytes)
//	FEAT     "FEAT", chunk size, count, then count × (type, src, dst, weight):
//	         type 0 is a state feature (attribute src, label dst), type 1 a
//	         transition (label src → label dst)
//	CQDB ×2  labels, then attributes (see cqdb.go)
//	LFRF     "LFRF", chunk size, count (num_labels + 2), one offset per label,
//	         then at each offset a count and that many feature ids: the
//	         transitions out of that label
//	AFRF     the same for attributes: the state features of each attribute
//
// CRFsuite scores through the reference lists, not the FEAT chunk. We build
// the weights from FEAT and insist that the lists agree with it exactly (each
// feature listed once, under its own source), so the dense matrices we
// return score exactly as CRFsuite would.
const (
	crfsuiteMagic      = "lCRF"
	crfsuiteType       = "FOMC"
	crfsuiteVersion    = 100
	crfsuiteHeaderSize = 48
	crfsuiteChunkHead  = 12 // chunk id, size, count
	crfsuiteFeatSize   = 20 // type, src, dst, float64 weight

	crfsuiteStateFeature = 0
	crfsuiteTransFeature = 1

	// MaxCRFsuiteSize bounds the input ReadCRFsuite accepts. The format's
	// offsets are 32 bits wide, and real models are kilobytes to megabytes.
	MaxCRFsuiteSize = 1 << 30
	// maxDenseStateWeights bounds attributes × labels. The model keeps state
	// weights dense, so this and not the file size decides its memory (8
	// bytes a cell, twice while New copies); without a bound, a few kilobytes
	// of hostile header could ask for terabytes.
	maxDenseStateWeights = 1 << 26
)

// crfsuiteParts is a decoded CRFsuite model before it becomes a *Model.
type crfsuiteParts struct {
	labels, attrs []string
	state, trans  []float64
}

// ReadCRFsuite decodes a model written by CRFsuite (crfsuite learn, or
// python-crfsuite / sklearn-crfsuite, which embed the same C library). Label
// and attribute ids are the file's own. Anything malformed (truncated,
// inconsistent, out of range, non-finite) yields an error wrapping ErrFormat
// that names the chunk and byte offset at fault.
func ReadCRFsuite(data []byte) (*Model, error) {
	p, err := decodeCRFsuite(data)
	if err != nil {
		return nil, err
	}
	return New(p.labels, p.attrs, p.state, p.trans, Meta{FeatureSet: "v1", Source: "crfsuite"})
}

type crfsuiteHeader struct {
	size, version, numFeatures, numLabels, numAttrs      uint32
	offFeatures, offLabels, offAttrs, offLRefs, offARefs uint32
}

type crfsuiteFeature struct {
	typ, src, dst uint32
	weight        float64
}

func decodeCRFsuite(data []byte) (*crfsuiteParts, error) {
	if len(data) > MaxCRFsuiteSize {
		return nil, fmt.Errorf("%w: crfsuite: %d bytes is larger than the %d-byte limit", ErrFormat, len(data), MaxCRFsuiteSize)
	}
	if len(data) < len(crfsuiteMagic) || string(data[:4]) != crfsuiteMagic {
		return nil, fmt.Errorf("%w: crfsuite header, byte 0: magic %q, want %q", ErrFormat, data[:min(len(data), 4)], crfsuiteMagic)
	}
	if len(data) < crfsuiteHeaderSize {
		return nil, fmt.Errorf("%w: crfsuite header: truncated: %d bytes, the header alone is %d", ErrFormat, len(data), crfsuiteHeaderSize)
	}
	le := binary.LittleEndian
	var h crfsuiteHeader
	for i, f := range []*uint32{&h.size, nil, &h.version, &h.numFeatures, &h.numLabels, &h.numAttrs,
		&h.offFeatures, &h.offLabels, &h.offAttrs, &h.offLRefs, &h.offARefs} {
		if f != nil {
			*f = le.Uint32(data[4+4*i:])
		}
	}
	hdrErr := func(at int, format string, args ...any) error {
		return fmt.Errorf("%w: crfsuite header, byte %d: %s", ErrFormat, at, fmt.Sprintf(format, args...))
	}
	switch typ := string(data[8:12]); {
	case uint64(h.size) > uint64(len(data)):
		return nil, hdrErr(4, "truncated: the header says the file has %d bytes, there are %d", h.size, len(data))
	case uint64(h.size) < uint64(len(data)):
		return nil, hdrErr(4, "the header says the file has %d bytes, there are %d (trailing data)", h.size, len(data))
	case typ != crfsuiteType:
		return nil, hdrErr(8, "model type %q, want %q (first-order CRF)", typ, crfsuiteType)
	case h.version != crfsuiteVersion:
		return nil, hdrErr(12, "version %d, want %d", h.version, crfsuiteVersion)
	case h.numLabels == 0:
		return nil, hdrErr(20, "no labels")
	case h.numLabels > MaxLabels:
		return nil, hdrErr(20, "%d labels (max %d)", h.numLabels, MaxLabels)
	case h.numAttrs > MaxAttributes:
		return nil, hdrErr(24, "%d attributes (max %d)", h.numAttrs, MaxAttributes)
	case uint64(h.numAttrs)*uint64(h.numLabels) > maxDenseStateWeights:
		return nil, hdrErr(24, "%d attributes × %d labels is more than %d state weights", h.numAttrs, h.numLabels, maxDenseStateWeights)
	}

	labels, err := readCQDB(data, uint64(h.offLabels), h.numLabels, "label")
	if err != nil {
		return nil, err
	}
	attrs, err := readCQDB(data, uint64(h.offAttrs), h.numAttrs, "attribute")
	if err != nil {
		return nil, err
	}

	feats, err := readCRFsuiteFeatures(data, &h)
	if err != nil {
		return nil, err
	}
	L, A := uint64(h.numLabels), uint64(h.numAttrs)
	p := &crfsuiteParts{
		labels: labels,
		attrs:  attrs,
		state:  make([]float64, A*L),
		trans:  make([]float64, L*L),
	}
	// A feature's cell may be set only once; a duplicate would make the
	// dense matrix disagree with CRFsuite, which adds both up.
	set := make([]bool, A*L+L*L)
	for i, f := range feats {
		var cell uint64
		var w *float64
		if f.typ == crfsuiteStateFeature {
			cell = uint64(f.src)*L + uint64(f.dst)
			w = &p.state[cell]
		} else {
			cell = uint64(f.src)*L + uint64(f.dst)
			w = &p.trans[cell]
			cell += A * L
		}
		if set[cell] {
			return nil, fmt.Errorf("%w: crfsuite FEAT chunk (byte %d), byte %d: feature %d duplicates an earlier %s",
				ErrFormat, h.offFeatures, uint64(h.offFeatures)+crfsuiteChunkHead+crfsuiteFeatSize*uint64(i), i, crfsuiteDescribe(f, labels, attrs))
		}
		set[cell] = true
		*w = f.weight
	}

	refs := make([]uint8, len(feats))
	if err := readCRFsuiteRefs(data, h.offLRefs, "LFRF", h.numLabels, crfsuiteTransFeature, feats, refs); err != nil {
		return nil, err
	}
	if err := readCRFsuiteRefs(data, h.offARefs, "AFRF", h.numAttrs, crfsuiteStateFeature, feats, refs); err != nil {
		return nil, err
	}
	for i, n := range refs {
		if n == 0 {
			return nil, fmt.Errorf("%w: crfsuite: feature %d (%s) is in the FEAT chunk but in no reference list, so CRFsuite would never score it",
				ErrFormat, i, crfsuiteDescribe(feats[i], labels, attrs))
		}
	}
	return p, nil
}

// readCRFsuiteFeatures decodes and range-checks the FEAT chunk.
func readCRFsuiteFeatures(data []byte, h *crfsuiteHeader) ([]crfsuiteFeature, error) {
	base := uint64(h.offFeatures)
	fail := func(at uint64, format string, args ...any) error {
		return fmt.Errorf("%w: crfsuite FEAT chunk (byte %d), byte %d: %s", ErrFormat, base, at, fmt.Sprintf(format, args...))
	}
	body, count, err := crfsuiteChunk(data, h.offFeatures, "FEAT")
	if err != nil {
		return nil, err
	}
	switch {
	case count > MaxFeatures:
		return nil, fail(base+8, "%d features (max %d)", count, MaxFeatures)
	case uint64(len(body)) != crfsuiteFeatSize*uint64(count):
		return nil, fail(base+4, "chunk holds %d bytes of features, %d features need %d", len(body), count, crfsuiteFeatSize*uint64(count))
	case h.numFeatures != 0 && h.numFeatures != count:
		// CRFsuite leaves the header's count at 0; if a writer did fill it
		// in, it must agree.
		return nil, fmt.Errorf("%w: crfsuite header, byte 16: %d features, but the FEAT chunk has %d", ErrFormat, h.numFeatures, count)
	}
	le := binary.LittleEndian
	feats := make([]crfsuiteFeature, count)
	for i := range feats {
		rec := body[crfsuiteFeatSize*i:]
		at := base + crfsuiteChunkHead + crfsuiteFeatSize*uint64(i)
		f := crfsuiteFeature{
			typ:    le.Uint32(rec),
			src:    le.Uint32(rec[4:]),
			dst:    le.Uint32(rec[8:]),
			weight: math.Float64frombits(le.Uint64(rec[12:])),
		}
		srcMax, srcWhat := h.numLabels, "label"
		switch f.typ {
		case crfsuiteStateFeature:
			srcMax, srcWhat = h.numAttrs, "attribute"
		case crfsuiteTransFeature:
		default:
			return nil, fail(at, "feature %d has type %d, want 0 (state) or 1 (transition)", i, f.typ)
		}
		switch {
		case f.src >= srcMax:
			return nil, fail(at+4, "feature %d: %s id %d out of range (%d %ss)", i, srcWhat, f.src, srcMax, srcWhat)
		case f.dst >= h.numLabels:
			return nil, fail(at+8, "feature %d: label id %d out of range (%d labels)", i, f.dst, h.numLabels)
		case math.IsNaN(f.weight) || math.IsInf(f.weight, 0):
			return nil, fail(at+12, "feature %d: weight is %v", i, f.weight)
		}
		feats[i] = f
	}
	return feats, nil
}

// readCRFsuiteRefs checks the reference chunk (LFRF or AFRF) at off: for each of the
// n sources, the list of features it fires must name features of the given
// type whose source is that id. refs counts how often each feature is listed.
func readCRFsuiteRefs(data []byte, off uint32, name string, n uint32, typ uint32, feats []crfsuiteFeature, refs []uint8) error {
	base := uint64(off)
	fail := func(at uint64, format string, args ...any) error {
		return fmt.Errorf("%w: crfsuite %s chunk (byte %d), byte %d: %s", ErrFormat, name, base, at, fmt.Sprintf(format, args...))
	}
	body, count, err := crfsuiteChunk(data, off, name)
	if err != nil {
		return err
	}
	// CRFsuite writes two spare entries after the labels' lists; attributes
	// get exactly one each.
	if count < n || uint64(count) > uint64(len(body))/4 {
		return fail(base+8, "%d lists for %d ids in a %d-byte chunk", count, n, len(body))
	}
	le := binary.LittleEndian
	end := base + crfsuiteChunkHead + uint64(len(body))
	lists := base + crfsuiteChunkHead + 4*uint64(count) // first byte after the offset table
	for id := range n {
		at := base + crfsuiteChunkHead + 4*uint64(id)
		lo := uint64(le.Uint32(data[at:]))
		if lo < lists || lo > end-4 {
			return fail(at, "list of id %d at byte %d is outside the chunk's lists (bytes %d to %d)", id, lo, lists, end)
		}
		num := uint64(le.Uint32(data[lo:]))
		if num > (end-lo-4)/4 {
			return fail(lo, "list of id %d has %d entries, which run past the end of the chunk", id, num)
		}
		for j := range num {
			fat := lo + 4 + 4*j
			fid := le.Uint32(data[fat:])
			switch {
			case uint64(fid) >= uint64(len(feats)):
				return fail(fat, "list of id %d: feature id %d out of range (%d features)", id, fid, len(feats))
			case feats[fid].typ != typ || feats[fid].src != id:
				return fail(fat, "list of id %d names feature %d, which is not one of its %s features", id, fid, crfsuiteFeatureKind(typ))
			case refs[fid] != 0:
				return fail(fat, "list of id %d names feature %d a second time", id, fid)
			}
			refs[fid]++
		}
	}
	return nil
}

// crfsuiteChunk checks the chunk header at off (id, size, count) and returns the
// bytes after the header and the count.
func crfsuiteChunk(data []byte, off uint32, id string) ([]byte, uint32, error) {
	base := uint64(off)
	if base > uint64(len(data)) || uint64(len(data))-base < crfsuiteChunkHead {
		return nil, 0, fmt.Errorf("%w: crfsuite %s chunk: offset %d leaves no room for a %d-byte chunk header in a %d-byte file",
			ErrFormat, id, off, crfsuiteChunkHead, len(data))
	}
	le := binary.LittleEndian
	if got := string(data[base : base+4]); got != id {
		return nil, 0, fmt.Errorf("%w: crfsuite %s chunk, byte %d: chunk id %q, want %q", ErrFormat, id, off, got, id)
	}
	size := uint64(le.Uint32(data[base+4:]))
	if size < crfsuiteChunkHead || size > uint64(len(data))-base {
		return nil, 0, fmt.Errorf("%w: crfsuite %s chunk (byte %d), byte %d: chunk size %d does not fit (%d bytes left in the file)",
			ErrFormat, id, off, base+4, size, uint64(len(data))-base)
	}
	return data[base+crfsuiteChunkHead : base+size], le.Uint32(data[base+8:]), nil
}

func crfsuiteFeatureKind(typ uint32) string {
	if typ == crfsuiteStateFeature {
		return "state"
	}
	return "transition"
}

// crfsuiteDescribe names a feature for error messages. Its ids are already
// range-checked.
func crfsuiteDescribe(f crfsuiteFeature, labels, attrs []string) string {
	if f.typ == crfsuiteStateFeature {
		return fmt.Sprintf("state feature %q → %q", attrs[f.src], labels[f.dst])
	}
	return fmt.Sprintf("transition %q → %q", labels[f.src], labels[f.dst])
}
