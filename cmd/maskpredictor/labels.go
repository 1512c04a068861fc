package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// errRefused is returned by `labels import` when some records were not
// stored (each reason is printed): exit 1, the others stay stored.
var errRefused = errors.New("records refused")

const labelsUsage = "labels export [--out FILE] | labels import [--labelled-by WHO] FILE | labels list [--json]"

// runLabels is `labels export|import|list`: the label store (package
// labels) from the command line, on the Redis every other command uses.
func runLabels(ctx context.Context, args []string, sys IO) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, labelsUsage)
	}
	switch args[0] {
	case "export":
		return runLabelsExport(ctx, args[1:], sys)
	case "import":
		return runLabelsImport(ctx, args[1:], sys)
	case "list":
		return runLabelsList(ctx, args[1:], sys)
	case "-h", "--help", "help":
		fmt.Fprintf(sys.Stderr, "usage: maskpredictor %s\n", labelsUsage)
		return errHelp
	default:
		return fmt.Errorf("%w: unknown labels command %q (export, import, list)", errUsage, args[0])
	}
}

// openLabels connects to Redis as the other commands do (--redis-url,
// REDIS_TLS_URL, REDIS_URL) and returns the label store over it. The
// caller closes the client.
func openLabels(sys IO, rf *redisFlags, cfg labels.Config) (*labels.Store, redis.UniversalClient, error) {
	log := logger(sys)
	rc, err := rf.config(sys, log)
	if err != nil {
		return nil, nil, err
	}
	rdb := rc.client(2)
	st, err := labels.New(rdb, cfg)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return st, rdb, nil
}

// readLabels returns every stored label (sorted by normalized name) and
// warns about entries that cannot be decoded: they are left out.
func readLabels(ctx context.Context, sys IO, st *labels.Store) ([]labels.Label, error) {
	all, bad, err := st.All(ctx)
	if err != nil {
		return nil, err
	}
	if bad > 0 {
		fmt.Fprintf(sys.Stderr, "warning: %d entries of %s cannot be decoded; left out\n", bad, st.Config().Key)
	}
	return all, nil
}

// readAllLabels is what export and list share: the Redis flags beside the
// command's own (already on fs), no positional arguments, then every label.
func readAllLabels(ctx context.Context, fs *flag.FlagSet, args []string, sys IO) ([]labels.Label, error) {
	var rf redisFlags
	rf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q (%s)", errUsage, pos, labelsUsage)
	}
	st, rdb, err := openLabels(sys, &rf, labels.Config{})
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	return readLabels(ctx, sys, st)
}

// labelRecords turns labels into Rails export records (sorted as given).
func labelRecords(all []labels.Label) []predictor.ExportRecord {
	recs := make([]predictor.ExportRecord, len(all))
	for i, l := range all {
		recs[i] = l.Record()
	}
	return recs
}

// runLabelsExport is `labels export [--out FILE]`: every label as a Rails
// export, sorted by normalized name, so two exports of the same labels are
// byte-identical and the file is ready for `train --data` / `eval --data`.
func runLabelsExport(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("labels export", sys)
	out := fs.String("out", "", "write the export to FILE (atomically) instead of stdout")
	all, err := readAllLabels(ctx, fs, args, sys)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := predictor.WriteExport(&buf, labelRecords(all)); err != nil {
		return err
	}
	if *out == "" {
		if _, err := sys.Stdout.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("writing export: %w", err)
		}
		return nil
	}
	if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(sys.Stderr, "wrote %s: %d labels\n", *out, len(all))
	return nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory and a rename, so a reader (a `train --data` started by cron)
// never sees half an export.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// runLabelsImport is `labels import FILE`: seed the store from a Rails
// export. Every record goes through Store.Put (the validation every other
// way in uses), with source "import"; the file is parsed whole first, so a
// malformed file stores nothing. A refused record does not stop the others:
// each refusal is printed with its reason and the command exits 1.
func runLabelsImport(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("labels import", sys)
	var rf redisFlags
	rf.register(fs)
	by := fs.String("labelled-by", "", "labelled_by of the imported labels (default: \"import FILE-NAME\")")
	defMax, err := envLabelsMax(sys)
	if err != nil {
		return err
	}
	maxLabels := fs.Int("max-labels", defMax, "the store's bound ($LABELS_MAX, as the serving processes read it)")
	quiet := fs.Bool("quiet", false, "do not print the labelling convention's warnings")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: %s", errUsage, labelsUsage)
	}
	if *maxLabels < 0 {
		return fmt.Errorf("%w: --max-labels %d must not be negative", errUsage, *maxLabels)
	}
	path := pos[0]
	if *by == "" {
		*by = "import " + filepath.Base(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading labels: %w", err)
	}
	recs, err := predictor.ParseExport(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	st, rdb, err := openLabels(sys, &rf, labels.Config{MaxLabels: *maxLabels})
	if err != nil {
		return err
	}
	defer rdb.Close()
	stored, refused, warned := 0, 0, 0
	now := time.Now().UTC()
	for i, r := range recs {
		l := labels.Label{MaskName: r.MaskName, Breakdown: r.Breakdown, LabelledAt: now,
			LabelledBy: *by, Source: labels.SourceImport}
		_, warnings, err := st.Put(ctx, l)
		switch {
		case errors.Is(err, labels.ErrInvalid), errors.Is(err, labels.ErrFull):
			refused++
			fmt.Fprintf(sys.Stderr, "refused record %d (%q): %v\n", i, r.MaskName, err)
			continue
		case err != nil: // Redis: the rest would fail the same way
			return fmt.Errorf("record %d (%q): %w (%d stored before it)", i, r.MaskName, err, stored)
		}
		stored++
		if len(warnings) > 0 {
			warned++
		}
		if !*quiet {
			for _, w := range warnings {
				fmt.Fprintf(sys.Stderr, "warning: record %d (%q): %s\n", i, r.MaskName, w)
			}
		}
	}
	fmt.Fprintf(sys.Stdout, "%s: %d records, %d stored (%d with convention warnings), %d refused\n",
		path, len(recs), stored, warned, refused)
	if refused > 0 {
		return fmt.Errorf("%w: %d of %d (reasons above)", errRefused, refused, len(recs))
	}
	return nil
}

// runLabelsList is `labels list [--json]`: one line per label, sorted by
// normalized name; --json prints one JSON object per line (the stored shape).
func runLabelsList(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("labels list", sys)
	asJSON := fs.Bool("json", false, "one JSON object per line: mask_name, breakdown, labelled_at, labelled_by, source")
	all, err := readAllLabels(ctx, fs, args, sys)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(sys.Stdout)
	if *asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, l := range all {
			if err := enc.Encode(l); err != nil {
				return fmt.Errorf("writing labels: %w", err)
			}
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, l := range all {
			at := ""
			if !l.LabelledAt.IsZero() {
				at = l.LabelledAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", at, orDash(l.Source), orDash(strings.Map(oneLine, l.LabelledBy)), strings.Map(oneLine, l.MaskName), breakdownText(l.Breakdown))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("writing labels: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing labels: %w", err)
	}
	if !*asJSON {
		fmt.Fprintf(sys.Stderr, "%d labels\n", len(all))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// breakdownText is "token/label token/label …", tabs and newlines in a
// token shown as spaces so one label stays one line.
func breakdownText(bd []predictor.Labelled) string {
	var b strings.Builder
	for i, e := range bd {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strings.Map(oneLine, e.Token))
		b.WriteByte('/')
		b.WriteString(e.Label)
	}
	return b.String()
}

func oneLine(r rune) rune {
	if r == '\t' || r == '\n' || r == '\r' {
		return ' '
	}
	return r
}

// envLabelsMax is LABELS_MAX, the label store's bound, which serve, worker,
// run and labels import read alike.
func envLabelsMax(sys IO) (int, error) {
	n, err := envInt(sys, "LABELS_MAX", labels.DefaultMaxLabels)
	if err == nil && n < 0 {
		err = fmt.Errorf("%w: LABELS_MAX=%d must not be negative", errUsage, n)
	}
	return n, err
}
