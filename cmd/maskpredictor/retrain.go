package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/reload"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/predictor/basedata"
)

// Sentinel errors of retrain (exit 1).
var (
	// errGateRefused: the new recipe scored worse than the current model on
	// the held-out labels; nothing was published.
	errGateRefused = errors.New("not published: the new model is worse on the held-out labels")
	// errNoLabels: the store holds no label, so there is nothing to add to
	// the base data and nothing to judge a new model on.
	errNoLabels = errors.New("no stored labels: nothing to retrain on (label some names first)")
)

// Keys retrain writes into the published model's metadata (Meta.Extra).
// extraLabelledUntil is what the next retrain reads back to tell the labels
// this model was trained on from the newer ones.
const (
	extraLabelledUntil = "retrain_labelled_until"
	extraLabels        = "retrain_labels"
	extraLabelsHash    = "retrain_labels_sha256"
	extraBase          = "retrain_base"
	extraGate          = "retrain_gate"
)

type retrainFlags struct {
	data          stringList
	publish, out  string
	features      string
	c1, c2        float64
	maxIter       int
	folds, baseCV int
	dryRun        bool
}

// runRetrain is `retrain --publish URI`: the default model's recipe (or the
// flags') trained on the base data plus every stored label, published to
// URI only when a gate finds it not worse than the model there on held-out
// labels. docs/retrain.md is the operator's guide; the comparison:
//
//   - Compared labels: every stored label, or, when the model at URI was
//     published by retrain (it records retrain_labelled_until), only the
//     labels stored or changed since, the ones it has not seen. Otherwise
//     the current model may have been trained on some compared labels and
//     its score on them is in-sample: the gate then favours it.
//   - New recipe: K folds over the compared labels (label j in fold j mod
//     K; fewer labels than K: one fold per label, leave-one-out); each fold
//     is scored by a model trained on the base data and every other label,
//     with the fold's names removed from the base data too, so no spelling
//     of a held-out name is seen in training.
//   - Current model: the model at URI (the embedded default model when
//     there is none yet) on the same labels.
//   - Publish when the new recipe's correct tokens ≥ the current model's
//     (the same tokens, so token accuracy ≥; a tie publishes: the new
//     model is as good on the labels and has learned them). Whole-name
//     accuracy and the base data's grouped CV are printed, not gated.
func runRetrain(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("retrain", sys)
	var f retrainFlags
	var rf redisFlags
	rf.register(fs)
	fs.Var(&f.data, "data", "base data in the Rails export format (repeat for several files; a later file wins per normalized name; default: the default model's training data, embedded)")
	fs.StringVar(&f.publish, "publish", "", "model URI to compare with and publish to: s3://bucket/key or a path (required; usually $MODEL_URI)")
	fs.StringVar(&f.out, "out", "", "also write the new model to this file (whether published or not)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "show the comparison, publish nothing (exit 1 when the gate would refuse)")
	fs.IntVar(&f.folds, "folds", 5, "K: folds over the compared labels (fewer labels: leave-one-out)")
	fs.IntVar(&f.baseCV, "base-cv", basedata.CVFolds, "K of the base data's cross-validation grouped by maker, printed as a second check (0: skip)")
	fs.StringVar(&f.features, "features", basedata.FeatureSet, "feature set: "+fmt.Sprint(predictor.FeatureSetNames()))
	fs.Float64Var(&f.c1, "c1", basedata.C1, "L1 regularisation (OWL-QN)")
	fs.Float64Var(&f.c2, "c2", basedata.C2, "L2 regularisation")
	fs.IntVar(&f.maxIter, "max-iterations", basedata.MaxIterations, "L-BFGS iterations at most")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	case f.publish == "":
		return fmt.Errorf("%w: --publish URI is required (the model to compare with and replace; with --dry-run nothing is written)", errUsage)
	case f.folds < 2:
		return fmt.Errorf("%w: --folds %d, want K ≥ 2", errUsage, f.folds)
	case f.baseCV == 1 || f.baseCV < 0:
		return fmt.Errorf("%w: --base-cv %d, want K ≥ 2 (or 0)", errUsage, f.baseCV)
	case f.c1 < 0 || f.c2 < 0:
		return fmt.Errorf("%w: --c1 and --c2 must not be negative", errUsage)
	case f.maxIter < 1:
		return fmt.Errorf("%w: --max-iterations must be at least 1", errUsage)
	}
	fset, err := predictor.LookupFeatureSet(f.features)
	if err != nil {
		return fmt.Errorf("%w: --features: %v", errUsage, err)
	}
	if _, err := modelstore.Parse(f.publish); err != nil {
		return fmt.Errorf("%w: --publish: %w", errUsage, err)
	}
	base, baseDesc, err := retrainBase(sys, f.data)
	if err != nil {
		return err
	}
	st, rdb, err := openLabels(sys, &rf, labels.Config{})
	if err != nil {
		return err
	}
	defer rdb.Close()

	r := &retrainRun{sys: sys, f: f, fset: fset, rdb: rdb, base: base, baseDesc: baseDesc,
		settings: model.Settings{C1: f.c1, C2: f.c2, MaxIterations: f.maxIter, PossibleTransitions: true, FeatureSet: f.features},
		res:      labels.RetrainResult{DryRun: f.dryRun}}
	err = r.run(ctx, st)
	if err != nil && r.res.Reason == "" { // failed before deciding
		r.res.Reason = "error: " + err.Error()
	}
	r.save(ctx)
	return err
}

// retrainRun is one retrain: its inputs and the result it records.
type retrainRun struct {
	sys      IO
	f        retrainFlags
	fset     predictor.FeatureSet
	settings model.Settings
	rdb      redis.UniversalClient
	base     *predictor.Dataset
	baseDesc string
	res      labels.RetrainResult
}

func (r *retrainRun) out() io.Writer { return r.sys.Stdout }

// save records the outcome for the dashboard and /metrics. Failing to
// record is a warning: the model was (or was not) published either way, and
// the exit code says which.
func (r *retrainRun) save(ctx context.Context) {
	r.res.At = time.Now().UTC()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := labels.SaveRetrain(ctx, r.rdb, r.res); err != nil {
		fmt.Fprintf(r.sys.Stderr, "warning: %v\n", err)
	}
}

func (r *retrainRun) run(ctx context.Context, st *labels.Store) error {
	w := r.out()
	all, err := readLabels(ctx, r.sys, st)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		r.res.Reason = "refused: " + errNoLabels.Error()
		return errNoLabels
	}
	lds, until, err := labelsDataset(r.sys, all)
	if err != nil {
		return err
	}
	train, stats := predictor.MergeExports(r.base, lds)
	fmt.Fprintf(w, "base data: %s, %d records\n", r.baseDesc, len(r.base.Records))
	fmt.Fprintf(w, "stored labels: %d (%d replace base records of the same normalized name); training set %d names\n",
		len(lds.Records), stats[1].Replaced, len(train.Records))
	fmt.Fprintf(w, "recipe: features %s, c1=%g c2=%g, %d iterations max\n", r.f.features, r.f.c1, r.f.c2, r.f.maxIter)

	cur, err := r.current(ctx)
	if err != nil {
		return err
	}
	r.res.CurrentVersion = cur.version
	cmp := lds.Records
	if cur.hasCutoff {
		cmp = nil
		for _, rec := range lds.Records {
			if until[predictor.Normalize(rec.MaskName)].After(cur.cutoff) {
				cmp = append(cmp, rec)
			}
		}
		fmt.Fprintf(w, "the current model was trained by retrain on the labels stored up to %s: compared are the %d labels stored or changed since (unseen by it)\n",
			cur.cutoff.Format(time.RFC3339Nano), len(cmp))
	} else if cur.fromURI {
		fmt.Fprintf(w, "the current model records no retrain labels: compared are all %d stored labels "+
			"(if it was trained on some of them, its score on those is in-sample and the gate favours it)\n", len(cmp))
	} else {
		fmt.Fprintf(w, "compared are all %d stored labels (the embedded default model was trained on the base data only)\n", len(cmp))
	}
	if len(cmp) == 0 {
		r.res.Reason = "up to date: no label stored since the current model was trained; nothing published"
		fmt.Fprintln(w, "decision: "+r.res.Reason)
		return nil
	}

	newRep, curRep, k, err := r.gate(ctx, train.Records, cmp, cur.crf)
	if err != nil {
		return err
	}
	r.res.Labels, r.res.Scored = newRep.Names, newRep.Tokens
	r.res.NewScore, r.res.NewNameScore = newRep.TokenAccuracy, newRep.NameAccuracy
	r.res.CurrentScore, r.res.CurrentNameScore = curRep.TokenAccuracy, curRep.NameAccuracy
	how := fmt.Sprintf("%d-fold", k)
	if k == len(cmp) && k < r.f.folds {
		how = fmt.Sprintf("leave-one-out (%d labels < --folds %d)", k, r.f.folds)
	}
	fmt.Fprintf(w, "\ngate: %s over %d labels (%d tokens); each fold scored by the new recipe trained on the base data and the other labels\n",
		how, newRep.Names, newRep.Tokens)
	fmt.Fprintf(w, "  %-48s  %-22s  %s\n", "", "token accuracy", "name accuracy")
	fmt.Fprintf(w, "  %-48s  %-22s  %s\n", "new recipe (held out)", accText(newRep.TokenAccuracy, newRep.CorrectTokens, newRep.Tokens),
		accText(newRep.NameAccuracy, newRep.CorrectNames, newRep.Names))
	fmt.Fprintf(w, "  %-48s  %-22s  %s\n", "current model "+cur.version, accText(curRep.TokenAccuracy, curRep.CorrectTokens, curRep.Tokens),
		accText(curRep.NameAccuracy, curRep.CorrectNames, curRep.Names))

	if r.f.baseCV > 0 {
		if err := r.baseCheck(ctx, cur.m); err != nil {
			return err
		}
	}

	m, data, err := r.final(ctx, train, lds, until, newRep, curRep)
	if err != nil {
		return err
	}
	r.res.NewVersion = predictor.ModelVersion(m)
	sf, tf := m.NumFeatures()
	fmt.Fprintf(w, "\nnew model %s: %d names, %d features\n", r.res.NewVersion, len(train.Records), sf+tf)
	if r.f.out != "" {
		if err := writeModelFile(r.f.out, m); err != nil {
			return err
		}
		fmt.Fprintf(r.sys.Stderr, "wrote %s\n", r.f.out)
	}

	pass := newRep.CorrectTokens >= curRep.CorrectTokens
	verdict := fmt.Sprintf("new %.4f ≥ current %.4f held-out token accuracy on %d labels", newRep.TokenAccuracy, curRep.TokenAccuracy, newRep.Names)
	if !pass {
		verdict = fmt.Sprintf("new %.4f < current %.4f held-out token accuracy on %d labels", newRep.TokenAccuracy, curRep.TokenAccuracy, newRep.Names)
	}
	switch {
	case !pass && r.f.dryRun:
		r.res.Reason = "dry run: would refuse: " + verdict
		fmt.Fprintln(w, "decision: "+r.res.Reason)
		return errGateRefused
	case !pass:
		r.res.Reason = "refused: " + verdict
		fmt.Fprintln(w, "decision: "+r.res.Reason)
		return errGateRefused
	case r.f.dryRun:
		r.res.Reason = "dry run: would publish: " + verdict
		fmt.Fprintln(w, "decision: "+r.res.Reason)
		return nil
	case r.res.NewVersion == cur.version && cur.fromURI:
		r.res.Reason = "up to date: the model at the URI has the new model's weights already; nothing published"
		fmt.Fprintln(w, "decision: "+r.res.Reason)
		return nil
	}
	store, err := openModelStore(ctx, r.sys, r.f.publish)
	if err != nil {
		return err
	}
	info, err := store.Put(ctx, data)
	if err != nil {
		return fmt.Errorf("publishing to %s: %w", r.f.publish, err)
	}
	r.res.Published = true
	r.res.Reason = "published: " + verdict
	fmt.Fprintln(w, "decision: "+r.res.Reason)
	fmt.Fprintf(r.sys.Stderr, "pushed %s to %s (%d bytes, store version %s); services polling it reload it\n",
		r.res.NewVersion, store.URI(), len(data), info.Version)
	return nil
}

func accText(acc float64, n, of int) string { return fmt.Sprintf("%.4f (%d/%d)", acc, n, of) }

// retrainBase loads the base data: the --data files, or the default
// model's training data embedded in the binary.
func retrainBase(sys IO, paths []string) (*predictor.Dataset, string, error) {
	if len(paths) > 0 {
		ds, err := loadDatasets(paths, sys)
		if err != nil {
			return nil, "", err
		}
		return ds, strings.Join(paths, " + "), nil
	}
	sets, err := basedata.Datasets()
	if err != nil {
		return nil, "", err
	}
	merged, _ := predictor.MergeExports(sets...)
	names := make([]string, 0, len(sets))
	for _, f := range basedata.Files() {
		names = append(names, f.Name)
	}
	return merged, "the default model's (embedded: " + strings.Join(names, " + ") + ")", nil
}

// labelsDataset turns the stored labels into a dataset the way `labels
// export` + `train --data` would read them (so the data hash and the model
// are those of `train --data BASE… --data labels.json`), and returns each
// name's labelled_at, keyed by normalized name.
func labelsDataset(sys IO, all []labels.Label) (*predictor.Dataset, map[string]time.Time, error) {
	var buf bytes.Buffer
	if err := predictor.WriteExport(&buf, labelRecords(all)); err != nil {
		return nil, nil, err
	}
	ds, err := predictor.LoadExport(&buf)
	if err != nil {
		return nil, nil, fmt.Errorf("stored labels: %w", err)
	}
	for _, s := range ds.Skipped {
		fmt.Fprintf(sys.Stderr, "warning: stored labels: skipping %s\n", s)
	}
	until := make(map[string]time.Time, len(all))
	for _, l := range all {
		until[l.Normalized()] = l.LabelledAt
	}
	return ds, until, nil
}

// currentModel is the model the new one is compared with.
type currentModel struct {
	m       *model.Model
	crf     *predictor.CRF
	version string
	fromURI bool // false: nothing at the URI, the embedded default model
	// cutoff is the newest labelled_at of the labels it was trained on, when
	// retrain published it.
	cutoff    time.Time
	hasCutoff bool
}

// current reads the model at --publish as `model pull` would (and checks it
// as a reload would); when there is none yet, the embedded default model,
// which is what the services serve without a model at MODEL_URI.
func (r *retrainRun) current(ctx context.Context) (currentModel, error) {
	w := r.out()
	m, storeVersion, err := loadURI(ctx, r.sys, r.f.publish)
	cur := currentModel{fromURI: true}
	switch {
	case errors.Is(err, modelstore.ErrNotFound):
		if m, err = predictor.DefaultModel(); err != nil {
			return cur, err
		}
		cur.fromURI = false
		fmt.Fprintf(w, "current model: none at %s yet; comparing with the embedded default model %s\n", r.f.publish, predictor.ModelVersion(m))
	case err != nil:
		return cur, fmt.Errorf("current model at %s: %w (push a good model with `model push` first)", r.f.publish, err)
	default:
		fmt.Fprintf(w, "current model: %s at %s (store version %s)\n", predictor.ModelVersion(m), r.f.publish, storeVersion)
	}
	cur.m, cur.version = m, predictor.ModelVersion(m)
	if cur.crf, err = predictor.NewCRF(m, bigLimits); err != nil {
		return cur, fmt.Errorf("current model: %w", err)
	}
	if s := m.Meta().Extra[extraLabelledUntil]; s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return cur, fmt.Errorf("current model: %s %q is not a time", extraLabelledUntil, s)
		}
		cur.cutoff, cur.hasCutoff = t, true
	}
	return cur, nil
}

// bigLimits score labelled names whatever their length: they were within
// the limits when stored, and scoring must not drop any.
var bigLimits = predictor.Limits{MaxChars: 1 << 20, MaxTokens: 1 << 20}

// gate scores the new recipe on the compared labels out of fold and the
// current model on the same labels. It returns both reports and K.
func (r *retrainRun) gate(ctx context.Context, train []predictor.Record, cmp []predictor.Record, cur *predictor.CRF) (newRep, curRep predictor.Report, k int, err error) {
	k = min(r.f.folds, len(cmp))
	held := make([]map[string]bool, k)
	for f := range held {
		held[f] = map[string]bool{}
	}
	for j, rec := range cmp {
		held[j%k][predictor.Normalize(rec.MaskName)] = true
	}
	preds := make([][]string, len(cmp))
	for fold := 0; fold < k; fold++ {
		var recs []predictor.Record
		for _, rec := range train {
			if !held[fold][predictor.Normalize(rec.MaskName)] {
				recs = append(recs, rec)
			}
		}
		m, err := model.Train(ctx, predictor.Examples(recs, r.fset), r.settings)
		if err != nil {
			return newRep, curRep, k, fmt.Errorf("training gate fold %d: %w", fold, err)
		}
		c, err := predictor.NewCRF(m, bigLimits)
		if err != nil {
			return newRep, curRep, k, fmt.Errorf("gate fold %d: %w", fold, err)
		}
		for j := fold; j < len(cmp); j += k {
			p, err := c.PredictTokens(cmp[j].MaskName, cmp[j].Tokens, predictor.Options{})
			if err != nil {
				return newRep, curRep, k, fmt.Errorf("gate fold %d, %q: %w", fold, cmp[j].MaskName, err)
			}
			preds[j] = p.Labels
		}
	}
	newSc, curSc := predictor.NewScorer(), predictor.NewScorer()
	for j, rec := range cmp {
		newSc.Add(rec.MaskName, rec.Tokens, rec.Labels, preds[j])
		p, err := cur.PredictTokens(rec.MaskName, rec.Tokens, predictor.Options{})
		if err != nil {
			return newRep, curRep, k, fmt.Errorf("current model on %q: %w", rec.MaskName, err)
		}
		curSc.Add(rec.MaskName, rec.Tokens, rec.Labels, p.Labels)
	}
	return newSc.Report(), curSc.Report(), k, nil
}

// baseCheck prints the new recipe's cross-validation on the base data,
// grouped by maker, beside the figures the current model records (train
// --cv stores them): a recipe change that hurts names of unseen makers
// shows here even when the labels cannot tell.
func (r *retrainRun) baseCheck(ctx context.Context, cur *model.Model) error {
	w := r.out()
	rep, err := predictor.CrossValidateGrouped(ctx, r.base.Records, r.fset, r.settings, r.f.baseCV, predictor.GroupMaker)
	if err != nil {
		return fmt.Errorf("base data cross-validation: %w", err)
	}
	fmt.Fprintf(w, "\nsecond check (printed, not gated): %d-fold cross-validation of the new recipe on the base data, grouped by maker\n", r.f.baseCV)
	fmt.Fprintf(w, "  %-48s  %-22s  %s\n", "new recipe", accText(rep.TokenAccuracy, rep.CorrectTokens, rep.Tokens),
		accText(rep.NameAccuracy, rep.CorrectNames, rep.Names))
	ex := cur.Meta().Extra
	if t, n := ex["cv_grouped_token_accuracy"], ex["cv_grouped_name_accuracy"]; t != "" {
		fmt.Fprintf(w, "  %-48s  %-22s  %s\n", "current model's record (its own training data)", t, n)
	}
	return nil
}

// final trains the new model on everything and returns it with its bytes,
// checked as `model push` checks (a reload must accept it).
func (r *retrainRun) final(ctx context.Context, train, lds *predictor.Dataset, until map[string]time.Time, newRep, curRep predictor.Report) (*model.Model, []byte, error) {
	m, err := model.Train(ctx, predictor.Examples(train.Records, r.fset), r.settings)
	if err != nil {
		return nil, nil, fmt.Errorf("training: %w", err)
	}
	var last time.Time
	for _, t := range until {
		if t.After(last) {
			last = t
		}
	}
	meta := m.Meta()
	meta.DataHash = train.Hash
	extra := map[string]string{}
	for k, v := range meta.Extra {
		extra[k] = v
	}
	extra[extraLabelledUntil] = last.UTC().Format(time.RFC3339Nano)
	extra[extraLabels] = fmt.Sprint(len(lds.Records))
	extra[extraLabelsHash] = lds.Hash
	extra[extraBase] = r.baseDesc
	extra[extraGate] = fmt.Sprintf("held-out token accuracy %s vs current %s (%s) on %d labels",
		accText(newRep.TokenAccuracy, newRep.CorrectTokens, newRep.Tokens),
		accText(curRep.TokenAccuracy, curRep.CorrectTokens, curRep.Tokens), r.res.CurrentVersion, newRep.Names)
	meta.Extra = extra
	if m, err = m.WithMeta(meta); err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		return nil, nil, fmt.Errorf("encoding the new model: %w", err)
	}
	if _, err := reload.Load(buf.Bytes(), predictor.Limits{}, nil); err != nil {
		return nil, nil, fmt.Errorf("the new model would be rejected by the service: %w", err)
	}
	return m, buf.Bytes(), nil
}
