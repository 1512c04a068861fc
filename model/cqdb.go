package model

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// CQDB ("constant quark database") is the string↔id dictionary CRFsuite
// embeds twice in a model file, once for labels and once for attributes. The
// layout, as lib/cqdb/src/cqdb.c writes it (all fields uint32, written in the
// writer's byte order, which the byte-order mark lets us check):
//
//	header     chunk id "CQDB", chunk size, flag, byte-order mark,
//	           backward-array size, backward-array offset       (24 bytes)
//	table refs 256 × (table offset, bucket count)                (2048 bytes)
//	records    per string: int32 id, uint32 key size, key bytes + NUL
//	tables     per non-empty table: bucket count × (hash, record offset)
//	backward   one record offset per id (id → string)
//
// Every offset inside a CQDB is relative to the start of its chunk. Strings are
// keyed by lookup3 hashlittle(key + NUL, 0): table hash%256, first probe
// (hash>>8) % buckets, linear probing; a zero record offset marks an empty
// bucket.
//
// We read the strings through the backward array, which is what gives every
// id its name, and then check the hash tables against it so that a file whose
// two indexes disagree (and on which CRFsuite itself would look attributes up
// wrongly, or loop forever) is refused rather than half-trusted.
const (
	cqdbChunkID    = "CQDB"
	cqdbByteOrder  = 0x62445371
	cqdbNumTables  = 256
	cqdbHeaderSize = 24
	// cqdbDataOffset is where the first record may start: after the header
	// and the table references.
	cqdbDataOffset = cqdbHeaderSize + 8*cqdbNumTables
	// cqdbRecordHeader is the id and key-size fields that precede a key.
	cqdbRecordHeader = 8
)

// readCQDB decodes the CQDB chunk of what ("label", "attribute") that starts
// at byte base of file and returns its n strings in id order. n comes from the
// model header: the CQDB's own backward-array size is only an upper bound, as
// older CQDB writers stored the array's allocated capacity there.
func readCQDB(file []byte, base uint64, n uint32, what string) ([]string, error) {
	chunk := what + " CQDB"
	fail := func(rel uint64, format string, args ...any) error {
		return fmt.Errorf("%w: crfsuite %s (chunk at byte %d), byte %d: %s",
			ErrFormat, chunk, base, base+rel, fmt.Sprintf(format, args...))
	}
	if base >= uint64(len(file)) || uint64(len(file))-base < cqdbDataOffset {
		return nil, fmt.Errorf("%w: crfsuite %s: chunk at byte %d needs at least %d bytes, the file has %d",
			ErrFormat, chunk, base, cqdbDataOffset, len(file))
	}
	hdr := file[base:]
	if id := string(hdr[:4]); id != cqdbChunkID {
		return nil, fail(0, "chunk id %q, want %q", id, cqdbChunkID)
	}
	le := binary.LittleEndian
	size := uint64(le.Uint32(hdr[4:]))
	order := le.Uint32(hdr[12:])
	bwdCap := le.Uint32(hdr[16:])
	bwdOff := uint64(le.Uint32(hdr[20:]))
	switch {
	case order == bits.ReverseBytes32(cqdbByteOrder):
		return nil, fail(12, "big-endian CQDB (written on a big-endian machine); only little-endian models are supported")
	case order != cqdbByteOrder:
		return nil, fail(12, "byte-order mark 0x%08x, want 0x%08x", order, cqdbByteOrder)
	case size < cqdbDataOffset:
		return nil, fail(4, "chunk size %d is smaller than the %d-byte CQDB header", size, cqdbDataOffset)
	case size > uint64(len(file))-base:
		return nil, fail(4, "chunk size %d runs past the end of the file (%d bytes left)", size, uint64(len(file))-base)
	}
	db := hdr[:size]

	// Backward array: one record offset per id.
	if n > 0 {
		switch {
		case bwdOff == 0:
			return nil, fail(20, "no backward array, so ids have no names")
		case n > bwdCap:
			return nil, fail(16, "backward array holds %d ids, the model header says %d", bwdCap, n)
		case bwdOff < cqdbDataOffset || bwdOff > size || (size-bwdOff)/4 < uint64(n):
			return nil, fail(20, "backward array of %d entries at offset %d does not fit the %d-byte chunk", n, bwdOff, size)
		}
	}
	strs := make([]string, n)
	recOff := make([]uint32, n) // record offset of each id, to check the hash tables against
	index := make(map[string]uint32, n)
	for id := range n {
		at := bwdOff + 4*uint64(id)
		off := uint64(le.Uint32(db[at:]))
		if off == 0 {
			return nil, fail(at, "id %d has no string", id)
		}
		key, err := cqdbRecord(db, off)
		if err != nil {
			return nil, fail(off, "record of id %d: %v", id, err)
		}
		if rid := le.Uint32(db[off:]); rid != id {
			return nil, fail(off, "backward array entry %d points at the record of id %d", id, rid)
		}
		s := string(key[:len(key)-1])
		if prev, dup := index[s]; dup {
			return nil, fail(off, "duplicate %s %q (ids %d and %d)", what, s, prev, id)
		}
		index[s] = id
		strs[id] = s
		recOff[id] = uint32(off)
	}

	// Hash tables: every record must be reachable from exactly one bucket,
	// the one a lookup of its key would probe.
	seen := make([]bool, n)
	var found uint64
	for t := range uint64(cqdbNumTables) {
		ref := cqdbHeaderSize + 8*t
		toff := uint64(le.Uint32(db[ref:]))
		num := uint64(le.Uint32(db[ref+4:]))
		if toff == 0 {
			if num != 0 {
				return nil, fail(ref, "hash table %d has %d buckets but no offset", t, num)
			}
			continue
		}
		switch {
		case num == 0:
			return nil, fail(ref, "hash table %d at offset %d has no buckets", t, toff)
		case toff < cqdbDataOffset || toff > size || (size-toff)/8 < num:
			return nil, fail(ref, "hash table %d of %d buckets at offset %d does not fit the %d-byte chunk", t, num, toff, size)
		}
		table := db[toff : toff+8*num]
		// Find an empty bucket to start the walk from: a lookup of a
		// missing key stops only there, so a full table would hang CRFsuite.
		empty := -1
		for k := range num {
			if le.Uint32(table[8*k+4:]) == 0 {
				empty = int(k)
				break
			}
		}
		if empty < 0 {
			return nil, fail(toff, "hash table %d has no empty bucket", t)
		}
		// Walk the table once, from just after that empty bucket, keeping
		// the length of the current run of occupied buckets: a key is found
		// only if no empty bucket lies between its first probe and its slot.
		run := uint64(0)
		for i := uint64(1); i <= num; i++ {
			k := (uint64(empty) + i) % num
			at := toff + 8*k
			hash := le.Uint32(db[at:])
			off := uint64(le.Uint32(db[at+4:]))
			if off == 0 {
				run = 0
				continue
			}
			run++
			if off < cqdbDataOffset || off > size-cqdbRecordHeader {
				return nil, fail(at, "hash table %d bucket %d: record offset %d is outside the chunk", t, k, off)
			}
			id := le.Uint32(db[off:])
			if id >= n || uint64(recOff[id]) != off {
				return nil, fail(at, "hash table %d bucket %d: offset %d is not the record of any id", t, k, off)
			}
			if seen[id] {
				return nil, fail(at, "hash table %d bucket %d: %s %q is indexed twice", t, k, what, strs[id])
			}
			seen[id] = true
			found++
			keySize := uint64(le.Uint32(db[off+4:]))
			want := hashlittle(db[off+cqdbRecordHeader:off+cqdbRecordHeader+keySize], 0)
			switch {
			case hash != want:
				return nil, fail(at, "hash table %d bucket %d: hash 0x%08x, but %s %q hashes to 0x%08x", t, k, hash, what, strs[id], want)
			case uint64(want%cqdbNumTables) != t:
				return nil, fail(at, "hash table %d bucket %d: %s %q belongs in table %d", t, k, what, strs[id], want%cqdbNumTables)
			}
			if first := uint64(want>>8) % num; (k+num-first)%num >= run {
				return nil, fail(at, "hash table %d bucket %d: %s %q is not reachable from its first probe %d", t, k, what, strs[id], first)
			}
		}
	}
	if found != uint64(n) {
		return nil, fail(0, "hash tables index %d of the %d %ss", found, n, what)
	}
	return strs, nil
}

// cqdbRecord returns the key of the record at offset off of db, with its
// terminating NUL, after checking that the record lies inside db.
func cqdbRecord(db []byte, off uint64) ([]byte, error) {
	size := uint64(len(db))
	if off < cqdbDataOffset || off > size || size-off < cqdbRecordHeader {
		return nil, fmt.Errorf("offset %d is outside the record area of the %d-byte chunk", off, size)
	}
	keySize := uint64(binary.LittleEndian.Uint32(db[off+4:]))
	switch {
	case keySize == 0:
		return nil, fmt.Errorf("empty key (not even a NUL)")
	case keySize > MaxStringLen+1:
		return nil, fmt.Errorf("key of %d bytes (max %d)", keySize, MaxStringLen+1)
	case keySize > size-off-cqdbRecordHeader:
		return nil, fmt.Errorf("key of %d bytes runs past the end of the chunk", keySize)
	}
	key := db[off+cqdbRecordHeader : off+cqdbRecordHeader+keySize]
	if key[keySize-1] != 0 {
		return nil, fmt.Errorf("key is not NUL-terminated")
	}
	if i := bytes.IndexByte(key[:keySize-1], 0); i >= 0 {
		return nil, fmt.Errorf("key has a NUL at byte %d, so CRFsuite would see a shorter string", i)
	}
	return key, nil
}

// hashlittle is Bob Jenkins' lookup3 hashlittle, the hash CQDB files are
// keyed by. This is its byte-at-a-time path, which the C code's aligned
// word-reading paths are defined to agree with.
func hashlittle(k []byte, initval uint32) uint32 {
	a := 0xdeadbeef + uint32(len(k)) + initval
	b, c := a, a
	for len(k) > 12 {
		a += hashWord(k[0:4])
		b += hashWord(k[4:8])
		c += hashWord(k[8:12])
		// mix
		a -= c
		a ^= bits.RotateLeft32(c, 4)
		c += b
		b -= a
		b ^= bits.RotateLeft32(a, 6)
		a += c
		c -= b
		c ^= bits.RotateLeft32(b, 8)
		b += a
		a -= c
		a ^= bits.RotateLeft32(c, 16)
		c += b
		b -= a
		b ^= bits.RotateLeft32(a, 19)
		a += c
		c -= b
		c ^= bits.RotateLeft32(b, 4)
		b += a
		k = k[12:]
	}
	if len(k) == 0 {
		return c
	}
	var tail [12]byte
	copy(tail[:], k)
	a += hashWord(tail[0:4])
	b += hashWord(tail[4:8])
	c += hashWord(tail[8:12])
	// final
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}

// hashWord reads a little-endian uint32 from the first 4 bytes of p.
func hashWord(p []byte) uint32 { return binary.LittleEndian.Uint32(p) }
