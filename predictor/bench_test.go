package predictor

import (
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/model"
)

// The benchmarks cycle through the 236 training names and report time per
// name, comparable with CRFsuite's figures in BENCHMARKS.md.

func benchNames(b *testing.B) []string {
	ds := loadTrain(b)
	names := make([]string, len(ds.Records))
	for i, r := range ds.Records {
		names[i] = r.MaskName
	}
	return names
}

func benchCRF(b *testing.B) *CRF {
	m, err := model.Load("../testdata/crf_model.crfsuite")
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewCRF(m, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkPredict is the full path: raw name → Prediction (tokenize,
// features, attribute look-up, Viterbi, marginals, confidences).
func BenchmarkPredict(b *testing.B) {
	c, names := benchCRF(b), benchNames(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Predict(names[i%len(names)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPredictJSON adds encoding the prediction to JSON.
func BenchmarkPredictJSON(b *testing.B) {
	c, names := benchCRF(b), benchNames(b)
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := c.Predict(names[i%len(names)])
		if err != nil {
			b.Fatal(err)
		}
		buf = p.AppendJSON(buf[:0])
	}
}

// resolved featurizes every name once, as CRFsuite's core_* figures do.
func resolved(b *testing.B, c *CRF, names []string) []*model.Instance {
	var sc Scratch
	out := make([]*model.Instance, len(names))
	for i, n := range names {
		inst := &model.Instance{}
		rs := newResolveSink(c.m, c.fs, c.tables, inst)
		c.fs.Featurize(Tokenize(n), &sc, &rs)
		out[i] = inst
	}
	return out
}

// BenchmarkPredictViterbi is Viterbi alone on pre-resolved attribute ids
// (CRFsuite's core_viterbi).
func BenchmarkPredictViterbi(b *testing.B) {
	c, names := benchCRF(b), benchNames(b)
	insts := resolved(b, c, names)
	path := make([]int, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tg := c.m.Tagger()
		if err := tg.Set(insts[i%len(insts)]); err != nil {
			b.Fatal(err)
		}
		tg.Viterbi(path)
		tg.Release()
	}
}

// BenchmarkPredictViterbiMarginals is Viterbi + log Z + all marginals on
// pre-resolved ids (CRFsuite's core_full).
func BenchmarkPredictViterbiMarginals(b *testing.B) {
	c, names := benchCRF(b), benchNames(b)
	insts := resolved(b, c, names)
	path := make([]int, 256)
	marg := make([]float64, 256*9)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tg := c.m.Tagger()
		if err := tg.Set(insts[i%len(insts)]); err != nil {
			b.Fatal(err)
		}
		s := tg.Viterbi(path)
		tg.Marginals(marg)
		_ = tg.Probability(path[:tg.Len()]) + s
		tg.Release()
	}
}

// BenchmarkTokenize is the tokenizer alone.
func BenchmarkTokenize(b *testing.B) {
	names := benchNames(b)
	toks := make([]string, 0, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		toks = AppendTokens(toks[:0], names[i%len(names)])
	}
}

// BenchmarkPredictDefaultModel is the full path with the embedded default
// model (feature set v2).
func BenchmarkPredictDefaultModel(b *testing.B) {
	m, err := DefaultModel()
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewCRF(m, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	names := benchNames(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Predict(names[i%len(names)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPredictDefaultModelRatio is the ratio the speed target of
// BenchmarkPredictDefaultModel is stated in (default model ÷ v1 path), with
// both paths interleaved in blocks of 64 names, so that both see the same
// phases of a noisy machine; it reports ns per name of each and their ratio.
func BenchmarkPredictDefaultModelRatio(b *testing.B) {
	m, err := DefaultModel()
	if err != nil {
		b.Fatal(err)
	}
	def, err := NewCRF(m, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	v1, names := benchCRF(b), benchNames(b)
	const block = 64
	var took [2]time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i += block {
		for k, c := range [2]*CRF{v1, def} {
			start := time.Now()
			for j := i; j < i+block; j++ {
				if _, err := c.Predict(names[j%len(names)]); err != nil {
					b.Fatal(err)
				}
			}
			took[k] += time.Since(start)
		}
	}
	n := float64((b.N + block - 1) / block * block)
	b.ReportMetric(float64(took[0].Nanoseconds())/n, "v1-ns/name")
	b.ReportMetric(float64(took[1].Nanoseconds())/n, "default-ns/name")
	b.ReportMetric(float64(took[1])/float64(took[0]), "ratio")
}
