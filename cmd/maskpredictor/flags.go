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
// positional arguments, and returns the positional ones. Everything after
// "--" is positional, so a name may start with '-'.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		// Parse only up to a "--": flag.Parse would consume it, and the
		// next round would take what follows for flags again.
		end := len(args)
		for i, a := range args {
			if a == "--" {
				end = i
				break
			}
		}
		if err := parseFlags(fs, args[:end]); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 { // every flag before "--" (or the end) consumed
			if end < len(args) {
				pos = append(pos, args[end+1:]...)
			}
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = append(append([]string(nil), rest[1:]...), args[end:]...)
	}
	return pos, nil
}

// parseNoArgs parses the flags of a command that takes no positional
// arguments (the services). envErr is an error found while reading the
// environment into flag defaults; it is reported after a successful parse,
// so -h still works with a bad environment.
func parseNoArgs(fs *flag.FlagSet, args []string, envErr error) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if envErr != nil {
		return envErr
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}
