package model

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// An sklearn-crfsuite pickle is the pickled sklearn_crfsuite.estimator.CRF.
// Its state (CRF.__getstate__, i.e. its __dict__) holds the training
// parameters as plain attributes ("algorithm", "c1", …, None where the
// CRFsuite default applies), "modelfile", a
// sklearn_crfsuite._fileresource.FileResource whose own state carries the
// CRFsuite model file's bytes under "__FILE_RESOURCE_DATA__", and
// "training_log_", a pycrfsuite._logparser.TrainLogParser with the parsed
// training log (per-iteration loss, the raw log lines).
//
// We decode the pickle with gopickle, which never runs code: every class the
// pickle names becomes an inert pyClass stub that records its constructor
// arguments and state. The model bytes are then taken from that object tree,
// never by searching the raw pickle for a CRFsuite magic.
const (
	// MaxPickleSize bounds the input ReadPickle accepts.
	MaxPickleSize = 1 << 30
	// maxPickleOps bounds the opcodes one pickle may run. Every opcode can
	// leave an object behind (some 170 bytes for an empty dict), so this
	// caps what a pickle can make us hold, whatever its size, at a few
	// hundred megabytes. A fitted estimator needs about 50 per training
	// iteration (its training log), so this allows some 40,000 iterations.
	maxPickleOps = 1 << 21
	// maxPickleMarkDepth bounds nested MARKs; each costs gopickle a fresh
	// stack. Real estimators nest a handful deep.
	maxPickleMarkDepth = 1 << 10
	// maxPickleNumberLen bounds the text or bytes of one number: gopickle
	// decodes long integers in quadratic time, and a model needs none.
	maxPickleNumberLen = 256
	// maxPickleLogText bounds how much of the training log we scan for the
	// parameter block CRFsuite prints before the first iteration.
	maxPickleLogText = 1 << 16
	// maxPickleErrorText bounds the decoder's message we pass on.
	maxPickleErrorText = 300
)

const (
	sklearnCRFClass    = "sklearn_crfsuite.estimator.CRF"
	fileResourceClass  = "sklearn_crfsuite._fileresource.FileResource"
	fileResourceData   = "__FILE_RESOURCE_DATA__"
	pickleSourceString = "sklearn-crfsuite pickle"
)

// ReadPickle decodes a pickled sklearn-crfsuite CRF estimator (pickle.dump or
// joblib.dump without compression, protocols 2 to 5): the CRFsuite model it
// embeds, plus its training parameters and the outcome of training in
// Meta.Training. Errors wrap ErrFormat.
func ReadPickle(data []byte) (*Model, error) {
	est, err := decodeSklearnPickle(data)
	if err != nil {
		return nil, err
	}
	p, err := decodeCRFsuite(est.model)
	if err != nil {
		return nil, fmt.Errorf("sklearn-crfsuite pickle: embedded model (offsets are within it): %w", err)
	}
	meta := Meta{
		FeatureSet: "v1",
		Source:     pickleSourceString,
		Training:   est.training,
		Extra:      est.extra,
	}
	return New(p.labels, p.attrs, p.state, p.trans, meta)
}

// pickleErrorf formats an error about a pickle, wrapping ErrFormat.
func pickleErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: sklearn-crfsuite pickle: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// sklearnEstimator is what we take from the unpickled estimator.
type sklearnEstimator struct {
	model    []byte
	training *TrainingParams
	extra    map[string]string
}

func decodeSklearnPickle(data []byte) (*sklearnEstimator, error) {
	root, err := unpickle(data)
	if err != nil {
		return nil, err
	}
	obj, ok := root.(*pyObject)
	if !ok {
		return nil, pickleErrorf("the pickled object has type %s, want %s", pyTypeName(root), sklearnCRFClass)
	}
	st, err := obj.stateDict()
	if err != nil {
		return nil, err
	}
	mf, ok := st["modelfile"]
	if !ok {
		return nil, pickleErrorf("the pickled %s has no modelfile attribute, so it is not an sklearn-crfsuite CRF", obj.class)
	}
	model, err := fileResourceBytes(mf)
	if err != nil {
		return nil, err
	}
	training, extra, err := trainingParams(st)
	if err != nil {
		return nil, err
	}
	// Subclasses of CRF pickle the same state under their own name.
	extra["estimator_class"] = obj.class.String()
	return &sklearnEstimator{model: model, training: training, extra: extra}, nil
}

// unpickle runs gopickle on data after checkPickleOps has bounded what it can
// allocate, and turns its panics (it indexes and slices unchecked on some
// malformed input) into errors.
func unpickle(data []byte) (obj any, err error) {
	if len(data) > MaxPickleSize {
		return nil, pickleErrorf("%d bytes is larger than the %d-byte limit", len(data), MaxPickleSize)
	}
	if err := checkPickleOps(data); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			obj, err = nil, pickleErrorf("malformed pickle (the decoder failed: %s)", clip(fmt.Sprint(r)))
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(data))
	u.FindClass = findPickleClass
	obj, err = u.Load()
	if err != nil {
		// gopickle's messages can embed a whole offending object (%#v).
		if msg := err.Error(); len(msg) > maxPickleErrorText {
			return nil, pickleErrorf("malformed pickle: %s", clip(msg))
		}
		return nil, fmt.Errorf("%w: sklearn-crfsuite pickle: malformed pickle: %w", ErrFormat, err)
	}
	return obj, nil
}

// clip shortens decoder messages to maxPickleErrorText bytes.
func clip(msg string) string {
	if len(msg) <= maxPickleErrorText {
		return msg
	}
	return strings.ToValidUTF8(msg[:maxPickleErrorText], "") + "…"
}

// checkPickleOps walks the opcode stream without running it, the way
// pickletools.genops does, and refuses what would make gopickle allocate
// without bound: gopickle sizes its buffers from a pickle's length fields
// before reading, so a 10-byte pickle could ask for 2⁶³ bytes. After this
// check every length fits in the data, so gopickle allocates at most the
// input's size per argument.
func checkPickleOps(data []byte) error {
	fail := func(at int, op byte, format string, args ...any) error {
		return pickleErrorf("byte %d, opcode 0x%02x: %s", at, op, fmt.Sprintf(format, args...))
	}
	depth, ops := 0, 0
	for i := 0; i < len(data); {
		at, op := i, data[i]
		i++
		if ops++; ops > maxPickleOps {
			return fail(at, op, "more than %d opcodes", maxPickleOps)
		}
		left := len(data) - i
		fixed := 0     // bytes of fixed-size argument
		sized := 0     // bytes of a length prefix that follows
		signed := true // whether a 4-byte length prefix is signed
		lines := 0     // newline-terminated arguments
		numeric := false
		maxLen := math.MaxInt
		switch op {
		case '.': // STOP
			return nil
		case '(': // MARK
			if depth++; depth > maxPickleMarkDepth {
				return fail(at, op, "MARKs nested more than %d deep", maxPickleMarkDepth)
			}
		case 't', 'l', 'd', 'e', 'u', 0x90, 0x91, 'o', '1': // pop to MARK
			depth = max(depth-1, 0)
		case 'i': // INST: pops to MARK, two lines
			depth = max(depth-1, 0)
			lines = 2
		case '0', '2', 'N', 'Q', 'R', 'a', 'b', '}', 's', ')', ']',
			0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8f, 0x92, 0x93, 0x94, 0x97, 0x98:
			// no argument
		case 'F', 'I', 'L', 'g', 'p': // numbers as text
			lines, numeric = 1, true
		case 'P', 'S', 'V': // text
			lines = 1
		case 'c': // GLOBAL module\nname\n
			lines = 2
		case 'K', 'h', 'q', 0x80, 0x82:
			fixed = 1
		case 'M', 0x83:
			fixed = 2
		case 'J', 'j', 'r', 0x84:
			fixed = 4
		case 'G':
			fixed = 8
		case 0x95: // FRAME: the framed opcodes follow and are walked as usual
			if left < 8 {
				return fail(at, op, "truncated")
			}
			if n := binary.LittleEndian.Uint64(data[i:]); n > uint64(left-8) {
				return fail(at, op, "frame of %d bytes, only %d left", n, left-8)
			}
			fixed = 8
		case 'U', 'C', 0x8c:
			sized = 1
		case 0x8a: // LONG1
			sized, maxLen = 1, maxPickleNumberLen
		case 'T', 'X', 'B':
			sized, signed = 4, op == 'T'
		case 0x8b: // LONG4
			sized, maxLen = 4, maxPickleNumberLen
		case 0x8d, 0x8e, 0x96:
			sized = 8
		default:
			return fail(at, op, "unknown opcode")
		}
		switch {
		case fixed > 0:
			if left < fixed {
				return fail(at, op, "truncated")
			}
			i += fixed
		case sized > 0:
			if left < sized {
				return fail(at, op, "truncated")
			}
			var n uint64
			switch sized {
			case 1:
				n = uint64(data[i])
			case 4:
				v := binary.LittleEndian.Uint32(data[i:])
				if signed && int32(v) < 0 {
					return fail(at, op, "negative length %d", int32(v))
				}
				n = uint64(v)
			case 8:
				n = binary.LittleEndian.Uint64(data[i:])
			}
			switch {
			case n > uint64(left-sized):
				return fail(at, op, "length %d, only %d bytes left", n, left-sized)
			case n > uint64(maxLen):
				return fail(at, op, "integer of %d bytes (max %d)", n, maxLen)
			}
			i += sized + int(n)
		}
		for range lines {
			n := bytes.IndexByte(data[i:], '\n')
			switch {
			case n < 0:
				return fail(at, op, "argument has no terminating newline")
			case numeric && n > maxPickleNumberLen:
				return fail(at, op, "number of %d characters (max %d)", n, maxPickleNumberLen)
			}
			i += n + 1
		}
	}
	return pickleErrorf("no STOP opcode: the pickle is truncated")
}

// pyClass stands in for any class a pickle names. Unpickling never runs the
// class's code; instances just record what the pickle gives them.
type pyClass struct{ module, name string }

func (c *pyClass) String() string { return c.module + "." + c.name }

// PyNew is cls.__new__(cls, *args) (NEWOBJ, and copyreg._reconstructor).
func (c *pyClass) PyNew(args ...any) (any, error) { return &pyObject{class: c, args: args}, nil }

// Call is cls(*args) (REDUCE, OBJ, INST).
func (c *pyClass) Call(args ...any) (any, error) { return &pyObject{class: c, args: args}, nil }

// pyObject is an instance of a stubbed class.
type pyObject struct {
	class *pyClass
	args  []any
	state any // what BUILD passed to __setstate__
}

// PySetState is __setstate__: keep the state for the walk that follows.
func (o *pyObject) PySetState(state any) error {
	o.state = state
	return nil
}

// stateDict returns the object's __dict__ as BUILD gave it: a dict, or the
// dict half of a (dict, slots) pair. Duplicate keys keep the last value, as in
// Python.
func (o *pyObject) stateDict() (map[string]any, error) {
	s := o.state
	if t, ok := s.(*types.Tuple); ok && t.Len() == 2 {
		s = t.Get(0)
	}
	d, ok := s.(*types.Dict)
	if !ok {
		return nil, pickleErrorf("the state of the %s object has type %s, want dict", o.class, pyTypeName(o.state))
	}
	return pyDict(d), nil
}

// pyDict indexes the string keys of a pickled dict.
func pyDict(d *types.Dict) map[string]any {
	m := make(map[string]any, d.Len())
	for _, e := range *d {
		if k, ok := e.Key.(string); ok {
			m[k] = e.Value
		}
	}
	return m
}

// findPickleClass resolves the classes a pickle names. The two Python 3
// helpers that pickle protocols 0 and 1 use to rebuild plain objects keep
// their meaning; everything else, sklearn_crfsuite.estimator.CRF included,
// becomes an inert stub.
func findPickleClass(module, name string) (any, error) {
	switch module + "." + name {
	case "copyreg._reconstructor":
		return &types.Reconstructor{}, nil
	case "builtins.object":
		return &types.ObjectClass{}, nil
	}
	return &pyClass{module: module, name: name}, nil
}

// fileResourceBytes returns the model file a pickled FileResource carries.
func fileResourceBytes(v any) ([]byte, error) {
	fr, ok := v.(*pyObject)
	if !ok || fr.class.String() != fileResourceClass {
		return nil, pickleErrorf("modelfile has type %s, want %s", pyTypeName(v), fileResourceClass)
	}
	st, err := fr.stateDict()
	if err != nil {
		return nil, err
	}
	switch data := st[fileResourceData].(type) {
	case []byte:
		return data, nil
	case string: // Python 2 pickles bytes as str
		return []byte(data), nil
	case nil:
		if name, ok := st["name"].(string); ok {
			return nil, pickleErrorf("the model was not pickled with the estimator: it lives in the file %q (CRF(model_filename=…)); read that file as a CRFsuite model", name)
		}
		return nil, pickleErrorf("the estimator holds no model: it was never fitted")
	default:
		return nil, pickleErrorf("the modelfile data has type %s, want bytes", pyTypeName(data))
	}
}

// trainingParams reads the estimator's training parameters. sklearn-crfsuite
// keeps None for "CRFsuite's default"; CRFsuite prints the values it actually
// used at the top of the training log, so those fill the gaps. It also takes
// the number of iterations and the final loss from the parsed log.
func trainingParams(st map[string]any) (*TrainingParams, map[string]string, error) {
	tp := &TrainingParams{}
	extra := map[string]string{}
	var logState map[string]any
	if tl, ok := st["training_log_"].(*pyObject); ok {
		if s, err := tl.stateDict(); err == nil {
			logState = s
		}
	}
	logged := loggedParams(logState["log"])

	alg, err := pyOptString(st, "algorithm")
	if err != nil {
		return nil, nil, err
	}
	if alg == "" {
		alg = "lbfgs" // pycrfsuite's default trainer
	}
	tp.Algorithm = alg

	floats := []struct {
		key, logKey string
		dst         *float64
	}{
		{"c1", "c1", &tp.C1},
		{"c2", "c2", &tp.C2},
		{"epsilon", "epsilon", &tp.Epsilon},
		{"delta", "delta", &tp.Delta},
	}
	for _, f := range floats {
		v, ok, err := pyOptFloat(st, f.key)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			v, _ = strconv.ParseFloat(logged[f.logKey], 64)
		}
		*f.dst = finiteOr0(v)
	}
	ints := []struct {
		key     string
		logKeys []string
		dst     *int
	}{
		{"max_iterations", []string{"max_iterations"}, &tp.MaxIterations},
		{"num_memories", []string{"num_memories"}, &tp.NumMemories},
		// L-BFGS logs its period as "stop".
		{"period", []string{"period", "stop"}, &tp.Period},
	}
	for _, f := range ints {
		v, ok, err := pyOptInt(st, f.key)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range f.logKeys {
			if !ok {
				v, err = strconv.Atoi(logged[k])
				ok = err == nil
			}
		}
		*f.dst = v
	}
	bools := []struct {
		key, logKey string
		dst         *bool
	}{
		{"all_possible_transitions", "feature.possible_transitions", &tp.PossibleTransitions},
		{"all_possible_states", "feature.possible_states", &tp.PossibleStates},
	}
	for _, f := range bools {
		v, ok, err := pyOptBool(st, f.key)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			v = logged[f.logKey] == "1"
		}
		*f.dst = v
	}

	// The outcome of training, from pycrfsuite's TrainLogParser. Its shape
	// is an implementation detail of pycrfsuite, so anything unexpected is
	// skipped rather than refused.
	last, _ := logState["last_iteration"].(*types.Dict)
	if last == nil {
		if its, ok := logState["iterations"].(*types.List); ok && its.Len() > 0 {
			last, _ = its.Get(its.Len() - 1).(*types.Dict)
		}
	}
	if last != nil {
		it := pyDict(last)
		if n, ok := it["num"].(int); ok && n > 0 {
			tp.Iterations = n
		}
		if loss, ok := pyNumber(it["loss"]); ok {
			tp.Loss = finiteOr0(loss)
		}
		if n, ok := it["active_features"].(int); ok {
			extra["active_features"] = strconv.Itoa(n)
		}
	}
	if n, ok := logState["featgen_num_features"].(int); ok {
		extra["features_generated"] = strconv.Itoa(n)
	}
	if s, ok := pyNumber(logState["training_seconds"]); ok && !math.IsNaN(s) && !math.IsInf(s, 0) {
		extra["training_seconds"] = strconv.FormatFloat(s, 'g', -1, 64)
	}
	return tp, extra, nil
}

// loggedParams collects the "key: value" lines CRFsuite logs before the first
// iteration (c1, num_memories, feature.possible_transitions, …). log is the
// TrainLogParser's list of logged chunks.
func loggedParams(log any) map[string]string {
	params := map[string]string{}
	l, ok := log.(*types.List)
	if !ok {
		return params
	}
	var text strings.Builder
	for _, s := range *l {
		if s, ok := s.(string); ok && text.Len() < maxPickleLogText {
			text.WriteString(s)
		}
	}
	for line := range strings.Lines(text.String()) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "*****") || strings.HasPrefix(line, "Epoch") {
			break // training has started
		}
		if k, v, ok := strings.Cut(line, ": "); ok {
			if _, seen := params[k]; !seen {
				params[k] = strings.TrimSpace(v)
			}
		}
	}
	return params
}

// finiteOr0 keeps Meta JSON-encodable: encoding/json refuses NaN and ±Inf.
func finiteOr0(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// pyOptString reads an optional str attribute; None or absent is "".
func pyOptString(st map[string]any, key string) (string, error) {
	switch v := st[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", pickleErrorf("%s has type %s, want str", key, pyTypeName(v))
	}
}

// pyOptFloat reads an optional number; ok is false for None or absent.
func pyOptFloat(st map[string]any, key string) (f float64, ok bool, err error) {
	v := st[key]
	if v == nil {
		return 0, false, nil
	}
	f, ok = pyNumber(v)
	switch {
	case !ok:
		return 0, false, pickleErrorf("%s has type %s, want float", key, pyTypeName(v))
	case math.IsNaN(f) || math.IsInf(f, 0):
		return 0, false, pickleErrorf("%s is %v", key, f)
	}
	return f, true, nil
}

// pyOptInt reads an optional int; ok is false for None or absent.
func pyOptInt(st map[string]any, key string) (n int, ok bool, err error) {
	switch v := st[key].(type) {
	case nil:
		return 0, false, nil
	case int:
		return v, true, nil
	case *big.Int:
		return 0, false, pickleErrorf("%s = %s is out of range", key, v)
	default:
		return 0, false, pickleErrorf("%s has type %s, want int", key, pyTypeName(v))
	}
}

// pyOptBool reads an optional flag; CRFsuite takes 0/1 ints as well.
func pyOptBool(st map[string]any, key string) (b, ok bool, err error) {
	switch v := st[key].(type) {
	case nil:
		return false, false, nil
	case bool:
		return v, true, nil
	case int:
		return v != 0, true, nil
	default:
		return false, false, pickleErrorf("%s has type %s, want bool", key, pyTypeName(v))
	}
}

// pyNumber converts a pickled int or float.
func pyNumber(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	}
	return 0, false
}

// pyTypeName names the Python type of an unpickled value, for errors.
func pyTypeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case *types.ByteArray:
		return "bytearray"
	case *types.Dict, *types.OrderedDict:
		return "dict"
	case *types.List:
		return "list"
	case *types.Tuple:
		return "tuple"
	case *types.Set, *types.FrozenSet:
		return "set"
	case *pyObject:
		return v.class.String()
	case *pyClass:
		return "class " + v.String()
	}
	return fmt.Sprintf("%T", v)
}
