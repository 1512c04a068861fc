package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// errFindings makes `data lint` exit 1 without an extra error line: the
// report already says what was found.
var errFindings = errors.New("the data breaks the labelling convention (see the report)")

// dataPaths is a string flag that may be given more than once.
type dataPaths []string

func (m *dataPaths) String() string     { return strings.Join(*m, ",") }
func (m *dataPaths) Set(v string) error { *m = append(*m, v); return nil }

func runData(ctx context.Context, args []string, sys IO) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(sys.Stderr, "usage: maskpredictor data lint --data FILE [--data FILE…] [--json]\n"+
			"       maskpredictor data fix --data IN --out OUT [--dry-run]\n\n"+
			"Checks and applies the labelling convention of docs/labelling.md on Rails exports.")
		if len(args) == 0 {
			return fmt.Errorf("%w: a subcommand is required (lint, fix)", errUsage)
		}
		return errHelp
	}
	switch args[0] {
	case "lint":
		return runDataLint(ctx, args[1:], sys)
	case "fix":
		return runDataFix(ctx, args[1:], sys)
	}
	return fmt.Errorf("%w: unknown data subcommand %q (lint, fix)", errUsage, args[0])
}

func readExport(path string) ([]predictor.ExportRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	recs, err := predictor.ParseExport(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return recs, nil
}

// lintReport is the --json output of data lint.
type lintReport struct {
	Files    []string            `json:"files"`
	Records  int                 `json:"records"`
	Findings []predictor.Finding `json:"findings"`
	ByKind   map[string]int      `json:"by_kind"`
	ByRule   map[string]int      `json:"by_rule"`
}

func runDataLint(_ context.Context, args []string, sys IO) error {
	fs := newFlagSet("data lint", sys)
	var data dataPaths
	fs.Var(&data, "data", "a Rails export (repeat for several; counts are taken over all)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := parseNoArgs(fs, args, nil); err != nil {
		return err
	}
	if len(data) == 0 {
		return fmt.Errorf("%w: --data is required", errUsage)
	}
	rep := lintReport{Files: data, Findings: []predictor.Finding{}, ByKind: map[string]int{}, ByRule: map[string]int{}}
	var files []predictor.ExportFile
	for _, p := range data {
		recs, err := readExport(p)
		if err != nil {
			return err
		}
		rep.Records += len(recs)
		files = append(files, predictor.ExportFile{Name: p, Records: recs})
	}
	rep.Findings = append(rep.Findings, predictor.DefaultConvention().Lint(files)...)
	for _, f := range rep.Findings {
		rep.ByKind[f.Kind]++
		if f.Rule != "" {
			rep.ByRule[f.Rule]++
		}
	}
	if *asJSON {
		if err := json.NewEncoder(sys.Stdout).Encode(rep); err != nil {
			return fmt.Errorf("writing report: %w", err)
		}
	} else {
		for _, f := range rep.Findings {
			fmt.Fprintln(sys.Stdout, f)
		}
		fmt.Fprintf(sys.Stdout, "%d findings in %d records of %d file(s)%s\n",
			len(rep.Findings), rep.Records, len(data), countsText(rep.ByKind))
	}
	if len(rep.Findings) > 0 {
		return errFindings
	}
	return nil
}

func countsText(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return ": " + strings.Join(parts, ", ")
}

func runDataFix(_ context.Context, args []string, sys IO) error {
	fs := newFlagSet("data fix", sys)
	in := fs.String("data", "", "the Rails export to fix (never written)")
	var context dataPaths
	fs.Var(&context, "context", "another labelled export whose labels count for rule 5 and the majority (repeat for several; never written)")
	out := fs.String("out", "", "where to write the fixed export (required unless --dry-run)")
	dry := fs.Bool("dry-run", false, "print the changes, write nothing")
	if err := parseNoArgs(fs, args, nil); err != nil {
		return err
	}
	if *in == "" {
		return fmt.Errorf("%w: --data is required", errUsage)
	}
	if *out == "" && !*dry {
		return fmt.Errorf("%w: --out is required (or --dry-run)", errUsage)
	}
	if *out != "" && sameDataPath(*in, *out) {
		return fmt.Errorf("%w: --out %s is the input: data fix never writes its input", errUsage, *out)
	}
	recs, err := readExport(*in)
	if err != nil {
		return err
	}
	var ctxFiles []predictor.ExportFile
	for _, p := range context {
		if sameDataPath(*in, p) {
			return fmt.Errorf("%w: --context %s is the input", errUsage, p)
		}
		if *out != "" && sameDataPath(p, *out) {
			return fmt.Errorf("%w: --out %s is a --context file: data fix never writes its context", errUsage, *out)
		}
		crecs, err := readExport(p)
		if err != nil {
			return err
		}
		ctxFiles = append(ctxFiles, predictor.ExportFile{Name: p, Records: crecs})
		fmt.Fprintf(sys.Stdout, "context: %s (%d records)\n", p, len(crecs))
	}
	fixed, changes, left := predictor.DefaultConvention().Fix(recs, ctxFiles...)
	byRule := map[string]int{}
	for _, c := range changes {
		rule := c.Rule
		if rule == "" {
			rule = c.Kind
		}
		byRule[rule]++
		fmt.Fprintf(sys.Stdout, "record %d %q token %d %q: %s → %s (%s)\n",
			c.Index, c.MaskName, c.Position, c.Token, c.Label, c.Want, rule)
	}
	for _, l := range left {
		fmt.Fprintf(sys.Stdout, "kept as is: %s\n", l)
	}
	names := map[int]bool{}
	for _, c := range changes {
		names[c.Index] = true
	}
	fmt.Fprintf(sys.Stdout, "%d changes in %d of %d records%s; %d findings left\n",
		len(changes), len(names), len(recs), countsText(byRule), len(left))
	if *dry {
		return nil
	}
	var buf bytes.Buffer
	if err := predictor.WriteExport(&buf, fixed); err != nil {
		return err
	}
	return writeDataFile(*out, buf.Bytes())
}

// sameDataPath reports whether a and b name the same file (or the same path
// when b does not exist yet).
func sameDataPath(a, b string) bool {
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(ia, ib)
	}
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

func writeDataFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".data-fix-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := io.Copy(tmp, bytes.NewReader(b)); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
