package model

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Format is a model file format, as told by the file's first bytes.
type Format int

// The formats Read tells apart.
const (
	// FormatUnknown is anything else.
	FormatUnknown Format = iota
	// FormatNative is this package's own format (Model.WriteTo, ReadNative).
	FormatNative
	// FormatCRFsuite is a model written by CRFsuite's crf1d writer ("lCRF").
	FormatCRFsuite
	// FormatPickle is a Python pickle (protocol 2 to 5) of an
	// sklearn-crfsuite estimator.
	FormatPickle
)

// String names the format: "native", "crfsuite", "pickle" or "unknown".
func (f Format) String() string {
	switch f {
	case FormatNative:
		return "native"
	case FormatCRFsuite:
		return "crfsuite"
	case FormatPickle:
		return "pickle"
	case FormatUnknown:
		return "unknown"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// detectLen is how many leading bytes DetectFormat looks at.
const detectLen = len(nativeMagic)

// DetectFormat tells the format of a model file from its first bytes (8 are
// enough; fewer may give FormatUnknown).
func DetectFormat(prefix []byte) Format {
	switch {
	case bytes.HasPrefix(prefix, []byte(nativeMagic)):
		return FormatNative
	case bytes.HasPrefix(prefix, []byte("lCRF")):
		return FormatCRFsuite
	case len(prefix) >= 2 && prefix[0] == 0x80 && prefix[1] >= 2 && prefix[1] <= 5:
		return FormatPickle
	}
	return FormatUnknown
}

// Read reads a model in any format it can tell from the first bytes: native
// (ReadNative), CRFsuite (ReadCRFsuite) or a pickled sklearn-crfsuite
// estimator (ReadPickle). It reads at most MaxFileSize bytes, and no more
// than the first 8 of an input it does not recognize; that error wraps both
// ErrUnknownFormat and ErrFormat and shows the bytes.
func Read(r io.Reader) (*Model, error) {
	var buf [detectLen]byte
	n, err := io.ReadFull(r, buf[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("model: read: %w", err)
	}
	head := buf[:n]
	f := DetectFormat(head)
	if f == FormatUnknown {
		return nil, unknownFormatError(head)
	}
	data, err := readCapped(io.MultiReader(bytes.NewReader(head), r), MaxFileSize, f.String()+" model")
	if err != nil {
		return nil, err
	}
	switch f {
	case FormatNative:
		return decodeNative(data)
	case FormatCRFsuite:
		return ReadCRFsuite(data)
	default:
		return ReadPickle(data)
	}
}

// unknownFormatError says what the first bytes were, with a hint when they
// look like something we know.
func unknownFormatError(head []byte) error {
	if len(head) == 0 {
		return fmt.Errorf("%w: empty input (%w)", ErrUnknownFormat, ErrFormat)
	}
	var hint string
	switch {
	case bytes.HasPrefix([]byte(nativeMagic), head):
		hint = "; a truncated native model?"
	case bytes.HasPrefix(head, []byte(nativeMagic[:5])):
		hint = "; a native model mangled by a text-mode transfer?"
	case head[0] == 0x80 && len(head) > 1:
		hint = fmt.Sprintf("; a pickle of protocol %d, only 2 to 5 are read", head[1])
	case head[0] == 0x80:
		hint = "; a truncated pickle?"
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		hint = "; gzip-compressed, decompress it first"
	case bytes.HasPrefix([]byte("lCRF"), head):
		hint = "; a truncated CRFsuite model?"
	}
	return fmt.Errorf("%w: first bytes % x (%q) are not a native, CRFsuite or pickle model%s (%w)",
		ErrUnknownFormat, head, head, hint, ErrFormat)
}

// Load reads the model file at path in any format Read knows.
func Load(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("load model %s: %w: %d bytes, more than the limit of %d", path, ErrFormat, fi.Size(), MaxFileSize)
	}
	m, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return m, nil
}
