package model

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// attrsRecord is one line of testdata/attrs_train.jsonl: CRFsuite's training
// input for one name.
type attrsRecord struct {
	Tokens     []string            `json:"tokens"`
	Labels     []string            `json:"labels"`
	Attributes [][]json.RawMessage `json:"attributes"`
}

// loadExamples reads a JSONL file of tokens, labels and per-token
// [name, value] attribute lists into training examples, in file order.
func loadExamples(tb testing.TB, name string) []Example {
	tb.Helper()
	fh, err := os.Open(filepath.Join("..", "testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	var out []Example
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for line := 1; sc.Scan(); line++ {
		var rec attrsRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			tb.Fatalf("%s:%d: %v", name, line, err)
		}
		ex := Example{Labels: rec.Labels, Items: make([][]Feature, len(rec.Attributes))}
		for t, attrs := range rec.Attributes {
			item := make([]Feature, len(attrs))
			for k, raw := range attrs {
				var pair []any
				if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
					tb.Fatalf("%s:%d: token %d attribute %d: %s", name, line, t, k, raw)
				}
				n, ok1 := pair[0].(string)
				v, ok2 := pair[1].(float64)
				if !ok1 || !ok2 {
					tb.Fatalf("%s:%d: token %d attribute %d: %s", name, line, t, k, raw)
				}
				item[k] = Feature{Name: n, Value: v}
			}
			ex.Items[t] = item
		}
		out = append(out, ex)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

var (
	trainOnce sync.Once
	trainData []Example
)

// trainExamples returns the 236 training names (loaded once per test binary).
func trainExamples(tb testing.TB) []Example {
	tb.Helper()
	trainOnce.Do(func() { trainData = loadExamples(tb, "attrs_train.jsonl") })
	if len(trainData) == 0 {
		tb.Fatal("no training data")
	}
	return trainData
}

// referenceSettings are the parameters the reference model was trained with.
func referenceSettings() Settings {
	return Settings{C1: 0.1, C2: 0.1, MaxIterations: 100, PossibleTransitions: true, FeatureSet: "v1"}
}

// tagExample runs Viterbi on one example's attributes with m.
func tagExample(tb testing.TB, m *Model, ex Example) []string {
	tb.Helper()
	labels, _, _, _ := tagExampleFull(tb, m, ex)
	return labels
}

// recordAll keeps every Progress.
type recordAll struct{ got []Progress }

func (r *recordAll) Record(p Progress) error { r.got = append(r.got, p); return nil }

func TestTrainReference(t *testing.T) {
	data := trainExamples(t)
	rec := &recordAll{}
	s := referenceSettings()
	s.Recorder = rec
	m, err := Train(context.Background(), data, s)
	if err != nil {
		t.Fatal(err)
	}
	meta := m.Meta()
	if got := meta.Extra["features_generated"]; got != "2910" {
		t.Errorf("features generated = %s, want 2910", got)
	}
	sf, tf := m.NumFeatures()
	t.Logf("features %d (%d state + %d transition), attributes %d, loss %.6f after %d iterations (%s)",
		sf+tf, sf, tf, len(m.Attributes()), meta.Training.Loss, meta.Training.Iterations, meta.Extra["stop_reason"])
	if len(rec.got) != len(referenceLog) {
		t.Fatalf("%d iterations, reference has %d", len(rec.got), len(referenceLog))
	}
	// CRFsuite prints 6 decimals; every figure must print the same.
	f6 := func(v float64) string { return fmt.Sprintf("%.6f", v) }
	worst, mismatches := 0.0, 0
	for i, p := range rec.got {
		r := referenceLog[i]
		worst = max(worst, math.Abs(p.Loss-r.loss)/r.loss)
		if p.Iteration != r.it || f6(p.Loss) != f6(r.loss) || f6(p.XNorm) != f6(r.xnorm) || f6(p.GNorm) != f6(r.gnorm) ||
			p.ActiveFeatures != r.active || p.Evaluations != r.ls || f6(p.Step) != f6(r.step) {
			mismatches++
			t.Errorf("iteration %d: loss %.6f xnorm %.6f gnorm %.6f active %d trials %d step %.6f; CRFsuite: %.6f %.6f %.6f %d %d %.6f",
				p.Iteration, p.Loss, p.XNorm, p.GNorm, p.ActiveFeatures, p.Evaluations, p.Step,
				r.loss, r.xnorm, r.gnorm, r.active, r.ls, r.step)
		}
	}
	t.Logf("%d/%d iterations print identically to CRFsuite's log; worst relative loss difference %.3g",
		len(rec.got)-mismatches, len(rec.got), worst)
	if d := math.Abs(meta.Training.Loss - 219.477470); d > 0.01 {
		t.Errorf("final loss %.6f, reference 219.477470 (Δ %.3g)", meta.Training.Loss, d)
	}
	if sf+tf != 1602 || sf != 1536 || tf != 66 || len(m.Attributes()) != 1172 {
		t.Errorf("got %d features (%d state + %d transition) over %d attributes, reference 1602 (1536 + 66) over 1172",
			sf+tf, sf, tf, len(m.Attributes()))
	}

	// Labels, marginals and scores against CRFsuite's own model. A model
	// CRFsuite retrains itself differs from the stored one by up to 7.2e-10
	// in the weights and 3e-10 in the marginals (crfsuite.md), so the
	// tolerance for marginals is the goldens' 1e-9.
	golden := loadGolden(t)
	agree, tokens, names := 0, 0, 0
	worstMarg, worstScore, worstNorm := 0.0, 0.0, 0.0
	for i, ex := range data {
		got, score, logNorm, marg := tagExampleFull(t, m, ex)
		g := golden[i]
		same := true
		for k := range got {
			tokens++
			if got[k] == g.Labels[k] {
				agree++
			} else {
				same = false
			}
			for y, l := range m.Labels() {
				worstMarg = max(worstMarg, math.Abs(marg[k*len(m.Labels())+y]-g.Marginals[k][l]))
			}
		}
		if same {
			names++
		}
		worstScore = max(worstScore, math.Abs(score-g.ViterbiScore))
		worstNorm = max(worstNorm, math.Abs(logNorm-g.LogNorm))
	}
	t.Logf("Viterbi labels agree with CRFsuite's model on %d/%d tokens, %d/%d names", agree, tokens, names, len(data))
	t.Logf("largest differences from CRFsuite's model: marginal %.3g, viterbi_score %.3g, log_norm %.3g", worstMarg, worstScore, worstNorm)
	if agree != tokens {
		t.Errorf("only %d/%d tokens agree with CRFsuite's labels", agree, tokens)
	}
	if worstMarg > 1e-9 {
		t.Errorf("marginals differ from CRFsuite's by up to %.3g (tolerance 1e-9)", worstMarg)
	}
}

// tagExampleFull is tagExample plus the Viterbi score, log Z and the
// marginals (T×L, position-major).
func tagExampleFull(tb testing.TB, m *Model, ex Example) ([]string, float64, float64, []float64) {
	tb.Helper()
	var in Instance
	for _, item := range ex.Items {
		for _, f := range item {
			id, ok := m.AttrID(f.Name)
			if !ok {
				id = -1
			}
			in.Add(id, f.Value)
		}
		in.EndItem()
	}
	tg := m.Tagger()
	defer tg.Release()
	if err := tg.Set(&in); err != nil {
		tb.Fatal(err)
	}
	path := make([]int, len(ex.Items))
	score := tg.Viterbi(path)
	out := make([]string, len(path))
	for t, y := range path {
		out[t] = m.Labels()[y]
	}
	marg := make([]float64, len(path)*m.NumLabels())
	tg.Marginals(marg)
	return out, score, tg.LogNorm(), marg
}

// goldenRecord is one line of testdata/golden_train.jsonl: CRFsuite's
// output for its own model.
type goldenRecord struct {
	Labels       []string             `json:"labels"`
	Marginals    []map[string]float64 `json:"marginals"`
	ViterbiScore float64              `json:"viterbi_score"`
	LogNorm      float64              `json:"log_norm"`
}

func loadGolden(tb testing.TB) []goldenRecord {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "golden_train.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []goldenRecord
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var rec goldenRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			tb.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// cvReference is crfsuite.md's per-fold table for 5-fold cross-validation.
var cvReference = []struct {
	generated, active, activeAttrs, generatedAttrs int
	loss                                           float64
	correct, tokens                                int
}{
	{2594, 1402, 1024, 1930, 183.536008, 189, 222},
	{2445, 1400, 1026, 1805, 182.227262, 220, 256},
	{2541, 1393, 1012, 1866, 183.753649, 205, 237},
	{2572, 1451, 1074, 1887, 190.460948, 227, 251},
	{2598, 1384, 1014, 1911, 176.305016, 199, 234},
}

// TestTrainCrossValidation reproduces crfsuite.md's 5-fold cross-validation:
// item k is in fold k%5, each fold's model is trained on the other items in
// file order with the reference parameters, and the pooled out-of-fold token
// accuracy must be within half a point of CRFsuite's 0.8667 (1040/1200).
func TestTrainCrossValidation(t *testing.T) {
	data := trainExamples(t)
	const K = 5
	correct, tokens := 0, 0
	for fold := 0; fold < K; fold++ {
		var train, test []Example
		for i, ex := range data {
			if i%K == fold {
				test = append(test, ex)
			} else {
				train = append(train, ex)
			}
		}
		m, err := Train(context.Background(), train, referenceSettings())
		if err != nil {
			t.Fatalf("fold %d: %v", fold, err)
		}
		fc, ft := 0, 0
		for _, ex := range test {
			for k, l := range tagExample(t, m, ex) {
				ft++
				if l == ex.Labels[k] {
					fc++
				}
			}
		}
		correct += fc
		tokens += ft
		ref := cvReference[fold]
		meta := m.Meta()
		sf, tf := m.NumFeatures()
		t.Logf("fold %d: accuracy %.4f (%d/%d; CRFsuite %d/%d), loss %.6f (CRFsuite %.6f), features %s generated (%d), %d active (%d), %d attributes (%d)",
			fold, float64(fc)/float64(ft), fc, ft, ref.correct, ref.tokens, meta.Training.Loss, ref.loss,
			meta.Extra["features_generated"], ref.generated, sf+tf, ref.active, len(m.Attributes()), ref.activeAttrs)
		if got := meta.Extra["features_generated"]; got != fmt.Sprint(ref.generated) {
			t.Errorf("fold %d: %s features generated, CRFsuite %d", fold, got, ref.generated)
		}
		if d := math.Abs(meta.Training.Loss - ref.loss); d > 1e-3 {
			t.Errorf("fold %d: loss %.6f, CRFsuite %.6f", fold, meta.Training.Loss, ref.loss)
		}
		if d := sf + tf - ref.active; d < -5 || d > 5 {
			t.Errorf("fold %d: %d active features, CRFsuite %d", fold, sf+tf, ref.active)
		}
	}
	acc := float64(correct) / float64(tokens)
	t.Logf("pooled token accuracy %.4f (%d/%d); CRFsuite 0.8667 (1040/1200)", acc, correct, tokens)
	if math.Abs(acc-0.8667) > 0.005 {
		t.Errorf("pooled accuracy %.4f, want 0.8667 ± 0.005", acc)
	}
}

// TestTrainDeterministic trains twice (once with a Recorder, once
// concurrently with another run) and wants the weights bit for bit equal.
func TestTrainDeterministic(t *testing.T) {
	data := trainExamples(t)
	if testing.Short() {
		data = data[:60]
	}
	s := referenceSettings()
	a, err := Train(context.Background(), data, s)
	if err != nil {
		t.Fatal(err)
	}
	s.Recorder = &recordAll{}
	var b, c *Model
	var errB, errC error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b, errB = Train(context.Background(), data, s) }()
	go func() { defer wg.Done(); c, errC = Train(context.Background(), data, referenceSettings()) }()
	wg.Wait()
	if errB != nil || errC != nil {
		t.Fatal(errB, errC)
	}
	for _, other := range []*Model{b, c} {
		if !slices.Equal(a.Attributes(), other.Attributes()) || !slices.Equal(a.Labels(), other.Labels()) {
			t.Fatal("labels or attributes differ between runs")
		}
		if !bitsEqual(a.StateWeights(), other.StateWeights()) || !bitsEqual(a.TransWeights(), other.TransWeights()) {
			t.Fatal("weights differ between runs")
		}
		if math.Float64bits(a.Meta().Training.Loss) != math.Float64bits(other.Meta().Training.Loss) {
			t.Fatal("losses differ between runs")
		}
	}
}

func bitsEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return false
		}
	}
	return true
}

// recorderFunc adapts a function to Recorder.
type recorderFunc func(Progress) error

func (f recorderFunc) Record(p Progress) error { return f(p) }

func TestTrainCancel(t *testing.T) {
	data := trainExamples(t)[:40]

	// Cancelled mid-training (from the recorder, so the point is exact).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := 0
	s := referenceSettings()
	s.Recorder = recorderFunc(func(p Progress) error {
		seen = p.Iteration
		if p.Iteration == 5 {
			cancel()
		}
		return nil
	})
	m, err := Train(ctx, data, s)
	if m != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Train after cancel = %v, %v; want an error wrapping context.Canceled", m, err)
	}
	if seen != 5 {
		t.Errorf("training went on to iteration %d after the context was cancelled at 5", seen)
	}
	t.Logf("cancelled: %v", err)

	// A deadline that expires inside the optimisation, from another
	// goroutine: the objective notices it between sequences. The settings
	// never converge within the deadline.
	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer tcancel()
	begin := time.Now()
	long := Settings{C2: 0.01, MaxIterations: 1 << 30, Epsilon: 1e-300, Delta: 1e-300}
	if _, err := Train(tctx, trainExamples(t), long); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Train past its deadline = %v, want an error wrapping context.DeadlineExceeded", err)
	} else if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("cancellation took %v", d)
	}

	// Already cancelled: nothing runs.
	if _, err := Train(ctx, data, referenceSettings()); !errors.Is(err, context.Canceled) {
		t.Errorf("Train with a cancelled context = %v", err)
	}

	// A deadline in the past.
	dctx, dcancel := context.WithTimeout(context.Background(), -1)
	defer dcancel()
	if _, err := Train(dctx, data, referenceSettings()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Train with an expired deadline = %v", err)
	}

	// The recorder stops training by returning an error.
	errEnough := errors.New("enough")
	s.Recorder = recorderFunc(func(p Progress) error {
		seen = p.Iteration
		if p.Iteration == 3 {
			return errEnough
		}
		return nil
	})
	m, err = Train(context.Background(), data, s)
	if m != nil || !errors.Is(err, errEnough) || seen != 3 {
		t.Fatalf("Train with a failing recorder = %v, %v after iteration %d; want errEnough after 3", m, err, seen)
	}
	t.Logf("recorder: %v", err)
}

func TestTrainProgressAndMeta(t *testing.T) {
	data := trainExamples(t)[:30]
	rec := &recordAll{}
	s := Settings{C1: 0.05, C2: 0.2, MaxIterations: 15, PossibleTransitions: false, FeatureSet: "test", Recorder: rec}
	m, err := Train(context.Background(), data, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != 15 {
		t.Fatalf("%d progress reports, want 15", len(rec.got))
	}
	for i, p := range rec.got {
		if p.Iteration != i+1 || p.Evaluations < 1 || p.Step <= 0 || p.XNorm <= 0 || p.GNorm <= 0 || p.ActiveFeatures <= 0 {
			t.Errorf("report %d: %+v", i, p)
		}
		if i > 0 && (p.Loss > rec.got[i-1].Loss || p.Elapsed < rec.got[i-1].Elapsed) {
			t.Errorf("report %d: loss or time went backwards: %+v after %+v", i, p, rec.got[i-1])
		}
	}
	meta := m.Meta()
	want := TrainingParams{
		Algorithm: "owlqn", C1: 0.05, C2: 0.2, MaxIterations: 15, NumMemories: 6, Epsilon: 1e-5,
		Period: 10, Delta: 1e-5, PossibleTransitions: false, Iterations: 15, Loss: rec.got[14].Loss,
		Sequences: 30, Items: 0,
	}
	for _, ex := range data {
		want.Items += len(ex.Items)
	}
	if meta.Training == nil || *meta.Training != want {
		t.Errorf("Meta.Training = %+v, want %+v", meta.Training, want)
	}
	if meta.FeatureSet != "test" || meta.Source != "maskpredictor train" || meta.Extra["stop_reason"] != "max_iterations" {
		t.Errorf("Meta = %+v", meta)
	}
	// Only observed transitions exist without PossibleTransitions.
	_, tf := m.NumFeatures()
	if L := m.NumLabels(); tf >= L*L {
		t.Errorf("%d transition features for %d labels without PossibleTransitions", tf, L)
	}
}

// TestTrainL2 exercises plain L-BFGS with More–Thuente (c1 = 0), which has
// no reference log: the loss must decrease and training must stop by one of
// liblbfgs's criteria.
func TestTrainL2(t *testing.T) {
	if testing.Short() {
		t.Skip("300-iteration run skipped in -short mode")
	}
	data := trainExamples(t)
	rec := &recordAll{}
	s := Settings{C2: 1, MaxIterations: 300, PossibleTransitions: true, Recorder: rec}
	m, err := Train(context.Background(), data, s)
	if err != nil {
		t.Fatal(err)
	}
	meta := m.Meta()
	sf, tf := m.NumFeatures()
	last := rec.got[len(rec.got)-1]
	t.Logf("c1=0 c2=1: %d iterations, loss %.6f, %d features, stop %s, |g|/|x| = %.2e",
		meta.Training.Iterations, meta.Training.Loss, sf+tf, meta.Extra["stop_reason"], last.GNorm/max(1, last.XNorm))
	if meta.Training.Algorithm != "lbfgs" {
		t.Errorf("algorithm %q", meta.Training.Algorithm)
	}
	for i := 1; i < len(rec.got); i++ {
		if rec.got[i].Loss > rec.got[i-1].Loss {
			t.Errorf("loss rose at iteration %d: %v → %v", i+1, rec.got[i-1].Loss, rec.got[i].Loss)
		}
	}
	if r := meta.Extra["stop_reason"]; r != "converged" && r != "delta" {
		t.Errorf("stopped by %s, want convergence or the delta test", r)
	}
	// Without L1 every feature with a non-zero gradient ends non-zero; the
	// exceptions are state features of attributes whose value is always 0
	// (token.hasdash), whose gradient is identically 0.
	ts, err := newTrainSet(data, true)
	if err != nil {
		t.Fatal(err)
	}
	fires := make([]bool, ts.K)
	for _, oc := range ts.occ {
		fires[oc.fid] = true
	}
	live := ts.K - ts.numState
	for _, f := range fires[:ts.numState] {
		if f {
			live++
		}
	}
	if sf+tf != live {
		t.Errorf("%d non-zero weights, want the %d features that ever fire (of %d)", sf+tf, live, ts.K)
	}
	acc := 0
	for _, ex := range data {
		for k, l := range tagExample(t, m, ex) {
			if l == ex.Labels[k] {
				acc++
			}
		}
	}
	t.Logf("training accuracy %d/1200", acc)
	if acc < 1150 {
		t.Errorf("training accuracy %d/1200", acc)
	}
}

func TestSettingsWithDefaults(t *testing.T) {
	got := Settings{C1: 0, C2: 0}.WithDefaults()
	want := Settings{MaxIterations: 100, NumMemories: 6, Epsilon: 1e-5, Period: 10, Delta: 1e-5}
	if got.C1 != 0 || got.C2 != 0 || got.MaxIterations != want.MaxIterations || got.NumMemories != want.NumMemories ||
		got.Epsilon != want.Epsilon || got.Period != want.Period || got.Delta != want.Delta {
		t.Errorf("WithDefaults = %+v", got)
	}
	kept := Settings{C1: 0.3, C2: 0.7, MaxIterations: 7, NumMemories: 3, Epsilon: 1e-3, Period: 4, Delta: 1e-2}
	if kept.WithDefaults() != kept {
		t.Errorf("WithDefaults changed explicit values: %+v", kept.WithDefaults())
	}
}

func TestTrainInvalid(t *testing.T) {
	good := []Example{{Items: [][]Feature{{{"a", 1}}, {{"b", 1}}}, Labels: []string{"x", "y"}}}
	for _, tc := range []struct {
		name string
		data []Example
		s    Settings
		msg  string
	}{
		{"no data", nil, Settings{}, "no training sequences"},
		{"empty sequence", []Example{good[0], {}}, Settings{}, "sequence 1 has no items"},
		{"label mismatch", []Example{{Items: good[0].Items, Labels: []string{"x"}}}, Settings{}, "sequence 0 has 2 items but 1 labels"},
		{"NaN value", []Example{{Items: [][]Feature{{{"a", math.NaN()}}}, Labels: []string{"x"}}}, Settings{}, `attribute "a" has value NaN`},
		{"negative c1", good, Settings{C1: -1}, "c1 = -1"},
		{"NaN c2", good, Settings{C2: math.NaN()}, "c2 = NaN"},
		{"negative iterations", good, Settings{MaxIterations: -5}, "max iterations = -5"},
		{"negative memories", good, Settings{NumMemories: -1}, "num memories"},
		{"negative epsilon", good, Settings{Epsilon: -1}, "epsilon"},
		{"negative period", good, Settings{Period: -1}, "period"},
		{"infinite delta", good, Settings{Delta: math.Inf(1)}, "delta"},
	} {
		_, err := Train(context.Background(), tc.data, tc.s)
		if !errors.Is(err, ErrInvalidTraining) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want ErrInvalidTraining mentioning %q", tc.name, err, tc.msg)
		}
	}
}

// TestTrainTiny covers degenerate but valid input: one item, one label.
func TestTrainTiny(t *testing.T) {
	data := []Example{{Items: [][]Feature{{{"a", 1}, {"z", 0}}}, Labels: []string{"only"}}}
	m, err := Train(context.Background(), data, Settings{C2: 1})
	if err != nil {
		t.Fatal(err)
	}
	// One label: the likelihood is 1 whatever the weights, so w = 0 is
	// optimal, nothing is stored, and tagging still works.
	if sf, tf := m.NumFeatures(); sf+tf != 0 || len(m.Attributes()) != 0 {
		t.Errorf("got %d+%d features over %v", sf, tf, m.Attributes())
	}
	if got := tagExample(t, m, data[0]); len(got) != 1 || got[0] != "only" {
		t.Errorf("tagged %v", got)
	}
	t.Logf("stop reason %s, %d iterations, loss %v", m.Meta().Extra["stop_reason"], m.Meta().Training.Iterations, m.Meta().Training.Loss)
}
