package main

import (
	"errors"
	"flag"
	"fmt"
)

// errHelp is returned when -h was asked for: the usage was printed, exit 0.
var errHelp = errors.New("help requested")

// newFlagSet returns a FlagSet that reports errors instead of exiting.
func newFlagSet(name string, sys IO) *flag.FlagSet {
	fs := flag.NewFlagSet("maskpredictor "+name, flag.ContinueOnError)
	fs.SetOutput(sys.Stderr)
	return fs
}

// parseFlags parses args, mapping flag errors to errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
