package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

const pickleTestFile = "../testdata/crf_model.pkl"

// Values for writePickle.
type (
	pkDict []pkItem // dict with str keys, in order
	pkItem struct {
		k string
		v any
	}
	pkList []any
	pkObj  struct { // cls.__new__(cls) then BUILD with state
		module, name string
		state        any
	}
	pkRaw []byte // opcodes written as they are
)

// writePickle serializes v with protocol-2 opcodes (plus BINBYTES), the way
// pickle.dumps would for these types, so tests can make small estimators
// and precise corruptions.
func writePickle(v any) []byte {
	b := []byte{0x80, 2}
	b = appendPickle(b, v)
	return append(b, '.')
}

func appendPickle(b []byte, v any) []byte {
	le := binary.LittleEndian
	switch v := v.(type) {
	case nil:
		b = append(b, 'N')
	case bool:
		if v {
			b = append(b, 0x88)
		} else {
			b = append(b, 0x89)
		}
	case int:
		b = append(b, 'J')
		b = le.AppendUint32(b, uint32(int32(v)))
	case float64:
		b = append(b, 'G')
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
	case string:
		b = append(b, 'X')
		b = le.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	case []byte:
		b = append(b, 'B')
		b = le.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	case pkDict:
		b = append(b, '}', '(')
		for _, it := range v {
			b = appendPickle(b, it.k)
			b = appendPickle(b, it.v)
		}
		b = append(b, 'u')
	case pkList:
		b = append(b, ']', '(')
		for _, it := range v {
			b = appendPickle(b, it)
		}
		b = append(b, 'e')
	case pkObj:
		b = append(b, 'c')
		b = append(b, v.module+"\n"+v.name+"\n"...)
		b = append(b, ')', 0x81)
		b = appendPickle(b, v.state)
		b = append(b, 'b')
	case pkRaw:
		b = append(b, v...)
	default:
		panic("writePickle: unsupported type")
	}
	return b
}

// sklearnState is the __dict__ of a fitted sklearn_crfsuite CRF, as in the
// reference pickle; with replaces or adds entries.
func sklearnState(model []byte, with ...pkItem) pkDict {
	st := pkDict{
		{"algorithm", "lbfgs"},
		{"min_freq", nil},
		{"all_possible_states", nil},
		{"all_possible_transitions", true},
		{"c1", 0.25},
		{"c2", 0.05},
		{"max_iterations", 50},
		{"num_memories", nil},
		{"epsilon", nil},
		{"period", nil},
		{"delta", nil},
		{"modelfile", pkObj{"sklearn_crfsuite._fileresource", "FileResource", pkDict{
			{"name", nil}, {"auto", true}, {"keep_tempfiles", false},
			{"suffix", ".crfsuite"}, {"prefix", "model"},
			{"__FILE_RESOURCE_DATA__", model},
		}}},
		{"verbose", false},
		{"trainer_cls", nil},
		{"training_log_", pkObj{"pycrfsuite._logparser", "TrainLogParser", pkDict{
			{"state", "STORING"},
			{"featgen_num_features", 12},
			{"training_seconds", 0.5},
			{"log", pkList{"Feature generation\n", "feature.possible_states: 0\n",
				"L-BFGS optimization\nc1: 0.250000\n", "c2: 0.050000\nnum_memories: 6\n",
				"max_iterations: 50\nepsilon: 0.000010\nstop: 10\ndelta: 0.000010\n\n",
				"***** Iteration #1 *****\nc1: 99\n"}},
			{"last_iteration", pkDict{{"num", 42}, {"loss", 12.5}, {"active_features", 10}}},
		}}},
		{"_tagger", nil},
		{"_info_cached", nil},
	}
	for _, w := range with {
		i := slices.IndexFunc(st, func(it pkItem) bool { return it.k == w.k })
		if i < 0 {
			st = append(st, w)
		} else {
			st[i] = w
		}
	}
	return st
}

func sklearnPickle(model []byte, with ...pkItem) []byte {
	return writePickle(pkObj{"sklearn_crfsuite.estimator", "CRF", sklearnState(model, with...)})
}

func TestReadPickleReference(t *testing.T) {
	pm, err := ReadPickle(readTestdata(t, pickleTestFile))
	if err != nil {
		t.Fatal(err)
	}
	cm, err := ReadCRFsuite(readTestdata(t, crfsuiteTestFile))
	if err != nil {
		t.Fatal(err)
	}
	// The pickle embeds the same model as the .crfsuite file.
	assertSameCRF(t, cm, pm)

	meta := pm.Meta()
	if meta.FeatureSet != "v1" || meta.Source != "sklearn-crfsuite pickle" {
		t.Errorf("meta = %+v", meta)
	}
	want := TrainingParams{
		Algorithm: "lbfgs", C1: 0.1, C2: 0.1, MaxIterations: 100,
		// None in the pickle; the values CRFsuite logged.
		NumMemories: 6, Epsilon: 1e-5, Period: 10, Delta: 1e-5,
		PossibleTransitions: true,
		Iterations:          100, Loss: 219.47747,
	}
	if meta.Training == nil || *meta.Training != want {
		t.Errorf("training = %+v\nwant       %+v", meta.Training, want)
	}
	for k, v := range map[string]string{
		"estimator_class":    "sklearn_crfsuite.estimator.CRF",
		"features_generated": "2910",
		"active_features":    "1602",
		"training_seconds":   "0.062",
	} {
		if meta.Extra[k] != v {
			t.Errorf("Extra[%q] = %q, want %q", k, meta.Extra[k], v)
		}
	}
}

func TestReadPickleSynthetic(t *testing.T) {
	model := smallCRFsuite()
	m, err := ReadPickle(sklearnPickle(model))
	if err != nil {
		t.Fatal(err)
	}
	direct, err := ReadCRFsuite(model)
	if err != nil {
		t.Fatal(err)
	}
	assertSameCRF(t, direct, m)
	want := TrainingParams{
		Algorithm: "lbfgs", C1: 0.25, C2: 0.05, MaxIterations: 50,
		NumMemories: 6, Epsilon: 1e-5, Period: 10, Delta: 1e-5,
		PossibleTransitions: true, Iterations: 42, Loss: 12.5,
	}
	if got := m.Meta().Training; got == nil || *got != want {
		t.Errorf("training = %+v\nwant       %+v", got, want)
	}

	// Variants that must still read.
	for name, data := range map[string][]byte{
		"subclass":        writePickle(pkObj{"myproject.models", "MaskCRF", sklearnState(model)}),
		"no training log": sklearnPickle(model, pkItem{"training_log_", nil}),
		"odd training log": sklearnPickle(model, pkItem{"training_log_", pkObj{"pycrfsuite._logparser", "TrainLogParser",
			pkDict{{"log", 7}, {"last_iteration", "x"}}}}),
		"algorithm None": sklearnPickle(model, pkItem{"algorithm", nil}),
		"int flags":      sklearnPickle(model, pkItem{"all_possible_states", 1}, pkItem{"c1", 1}),
		"python 2 str":   sklearnPickle(nil, pkItem{"modelfile", pkObj{"sklearn_crfsuite._fileresource", "FileResource", pkDict{{"__FILE_RESOURCE_DATA__", string(model)}}}}),
		"slots state": writePickle(pkObj{"sklearn_crfsuite.estimator", "CRF",
			pkRaw(append(appendPickle(nil, sklearnState(model)), 'N', 0x86))}),
		"trailing bytes after STOP": append(sklearnPickle(model), "junk"...),
	} {
		if _, err := ReadPickle(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestReadPickleCorrupt(t *testing.T) {
	ref := readTestdata(t, pickleTestFile)
	// Where the reference pickle's BINBYTES of the model starts (opcode,
	// 4-byte length, then the file); checked rather than trusted.
	const binbytes = 617
	if ref[binbytes] != 'B' || string(ref[binbytes+5:binbytes+9]) != "lCRF" {
		t.Fatal("reference pickle layout changed")
	}
	model := smallCRFsuite()
	fr := func(items ...pkItem) pkItem {
		return pkItem{"modelfile", pkObj{"sklearn_crfsuite._fileresource", "FileResource", pkDict(items)}}
	}

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no STOP opcode: the pickle is truncated"},
		{"not a pickle", []byte("\xfe\xffjunk"), "byte 0, opcode 0xfe: unknown opcode"},
		{"truncated after PROTO", ref[:1], "byte 0, opcode 0x80: truncated"},
		{"truncated in first frame", ref[:500], "byte 2, opcode 0x95: frame of 606 bytes, only 489 left"},
		{"truncated in model bytes", ref[:50000], "byte 617, opcode 0x42: length 107848, only 49378 bytes left"},
		{"truncated in second frame", ref[:120000], "opcode 0x95: frame of 34187 bytes"},
		{"truncated before STOP", ref[:len(ref)-1], "byte 108470, opcode 0x95: frame of 34187 bytes, only 34186 left"},
		{"no STOP", sklearnPickle(model)[:len(sklearnPickle(model))-1], "no STOP opcode: the pickle is truncated"},
		{"absurd BINBYTES length", patch(ref, binbytes+1, math.MaxUint32), "byte 617, opcode 0x42: length 4294967295, only 142044 bytes left"},
		{"absurd FRAME length", append([]byte{0x80, 4, 0x95}, bytes.Repeat([]byte{0xff}, 8)...), "frame of 18446744073709551615 bytes, only 0 left"},
		{"absurd BINBYTES8", append([]byte{0x80, 4, 0x8e}, bytes.Repeat([]byte{0xee}, 8)...), "byte 2, opcode 0x8e: length 17216961135462248174, only 0 bytes left"},
		{"negative BINSTRING", []byte{'T', 0xff, 0xff, 0xff, 0xff, '.'}, "byte 0, opcode 0x54: negative length -1"},
		{"unknown opcode", []byte{0x80, 4, 0xff, '.'}, "byte 2, opcode 0xff: unknown opcode"},
		{"unterminated GLOBAL", []byte("\x80\x02csklearn_crfsuite"), "argument has no terminating newline"},
		{"huge LONG", writePickle(pkRaw(append([]byte{0x8b, 0, 0, 1, 0}, make([]byte, 65536)...))), "integer of 65536 bytes (max 256)"},
		{"huge INT", writePickle(pkRaw("I" + strings.Repeat("9", 1000) + "\n")), "number of 1000 characters (max 256)"},
		{"too many opcodes", writePickle(pkRaw(bytes.Repeat([]byte{'N'}, maxPickleOps))), "opcode 0x4e: more than 2097152 opcodes"},
		{"MARKs nested deep", writePickle(pkRaw(bytes.Repeat([]byte{'('}, 2000))), "MARKs nested more than 1024 deep"},
		{"decoder panic", []byte{0x80, 2, 0x8a, 0, '.'}, "malformed pickle (the decoder failed: runtime error: index out of range"},
		{"decoder error", []byte{0x80, 2, 't', '.'}, "malformed pickle: the meta stack is empty"},
		{"empty stack at STOP", []byte{0x80, 2, '.'}, "malformed pickle: the stack is empty"},
		{"not an object", writePickle(pkDict{{"modelfile", model}}), "the pickled object has type dict, want sklearn_crfsuite.estimator.CRF"},
		{"object without state", writePickle(pkRaw("csklearn_crfsuite.estimator\nCRF\n)\x81")), "the state of the sklearn_crfsuite.estimator.CRF object has type None, want dict"},
		{"not an estimator", writePickle(pkObj{"collections", "Counter", pkDict{{"a", 1}}}), "the pickled collections.Counter has no modelfile attribute"},
		{"modelfile is bytes", sklearnPickle(model, pkItem{"modelfile", model}), "modelfile has type bytes, want sklearn_crfsuite._fileresource.FileResource"},
		{"model kept on disk", sklearnPickle(model, fr(pkItem{"name", "/srv/models/crf.crfsuite"}, pkItem{"auto", false})),
			`the model was not pickled with the estimator: it lives in the file "/srv/models/crf.crfsuite"`},
		{"never fitted", sklearnPickle(model, fr(pkItem{"name", nil})), "the estimator holds no model: it was never fitted"},
		{"model data not bytes", sklearnPickle(model, fr(pkItem{"__FILE_RESOURCE_DATA__", 3})), "the modelfile data has type int, want bytes"},
		{"embedded model corrupt", patchBytes(ref, binbytes+5+48, "FEAX"),
			`sklearn-crfsuite pickle: embedded model (offsets are within it): invalid model file: crfsuite FEAT chunk, byte 48: chunk id "FEAX", want "FEAT"`},
		{"embedded model truncated", sklearnPickle(model[:100]), "embedded model (offsets are within it): invalid model file: crfsuite header, byte 4: truncated"},
		{"embedded model empty", sklearnPickle([]byte{}), `crfsuite header, byte 0: magic ""`},
		{"c1 not a number", sklearnPickle(model, pkItem{"c1", "0.1"}), "c1 has type str, want float"},
		{"c2 NaN", sklearnPickle(model, pkItem{"c2", math.NaN()}), "c2 is NaN"},
		{"max_iterations float", sklearnPickle(model, pkItem{"max_iterations", 100.0}), "max_iterations has type float, want int"},
		{"algorithm not a str", sklearnPickle(model, pkItem{"algorithm", pkList{}}), "algorithm has type list, want str"},
		{"max_iterations huge", sklearnPickle(model, pkItem{"max_iterations", pkRaw{0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1}}), "max_iterations = 18446744073709551616 is out of range"},
		{"long decoder message", writePickle(pkRaw(append(appendPickle(nil, pkList{strings.Repeat("x", 1000)}), ')', 'R'))), "malformed pickle: REDUCE requires a Callable object"},
		{"flag not a bool", sklearnPickle(model, pkItem{"all_possible_transitions", "yes"}), "all_possible_transitions has type str, want bool"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ReadPickle(tc.data)
			if err == nil {
				t.Fatalf("read %d labels, want error containing %q", m.NumLabels(), tc.want)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error does not wrap ErrFormat: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tc.want)
			}
			if len(err.Error()) > 500 {
				t.Errorf("error of %d bytes: %.100q…", len(err.Error()), err)
			}
		})
	}
}

func TestReadPickleTruncatedEverywhere(t *testing.T) {
	for _, data := range [][]byte{readTestdata(t, pickleTestFile), sklearnPickle(smallCRFsuite())} {
		step := max(1, len(data)/1500)
		for n := 0; n < len(data); n += step {
			if _, err := ReadPickle(data[:n]); !errors.Is(err, ErrFormat) {
				t.Fatalf("cut at %d: err = %v, want ErrFormat", n, err)
			}
		}
	}
}

// FuzzReadPickle checks that no pickle panics, hangs or allocates without
// bound, and that every failure wraps ErrFormat. As for FuzzReadCRFsuite, run
// it with a short -fuzzminimizetime: the reference seed is 140 KB.
func FuzzReadPickle(f *testing.F) {
	small := smallCRFsuite()
	f.Add(readTestdata(f, pickleTestFile))
	f.Add(sklearnPickle(small))
	f.Add(sklearnPickle(small, pkItem{"training_log_", nil}))
	f.Add(sklearnPickle(encodeCRFsuite([]string{"only"}, nil, nil)))
	f.Add(writePickle(pkObj{"sklearn_crfsuite.estimator", "CRF", pkDict{{"modelfile", pkObj{"sklearn_crfsuite._fileresource", "FileResource", pkDict{{"name", "m.crfsuite"}}}}}}))
	f.Add(writePickle(pkDict{{"a", pkList{1, 2.5, "x", nil, true}}}))
	f.Add([]byte{0x80, 2, 0x8a, 0, '.'})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadPickle(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		if m.Meta().Training == nil {
			t.Fatal("no training parameters")
		}
	})
}
