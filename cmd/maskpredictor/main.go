// Command maskpredictor labels the tokens of respirator/mask product names
// with a linear-chain CRF and serves those labels to a Rails app: a
// Sidekiq-compatible worker, a Redis cache, an HTTP API and this CLI.
//
// main only wires: every subcommand lives in its own file and takes its
// input, output and context from Main, so tests run them in-process.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, lambdaArgs(os.Args[0], os.Args[1:], os.Getenv), Env(os.Getenv), os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Env looks up an environment variable ("" when unset).
type Env func(string) string

// IO is what a subcommand reads and writes.
type IO struct {
	Env    Env
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// errUsage marks errors that are the caller's fault (exit 2).
var errUsage = errors.New("usage")

type command struct {
	summary string
	run     func(ctx context.Context, args []string, sys IO) error
}

func commands() map[string]command {
	return map[string]command{
		"predict": {"label mask names (arguments, or one per line on stdin)", runPredict},
		"model":   {"model files: info, convert, push, pull (s3://)", runModel},
		"train":   {"train a model from a Rails export (--cv K cross-validates)", runTrain},
		"eval":    {"accuracy of a model on labelled names", runEval},
		"data":    {"training data: lint (check the labelling convention), fix (apply it)", runData},
		"worker":  {"work prediction jobs from Sidekiq queues (Redis)", runWorker},
		"run":     {"the worker and the HTTP server in one process", runRun},
		"serve":   {"the HTTP API: /predict, /predict_batch, /invoke, /health, /metrics, /admin/", runServe},
		"enqueue": {"push prediction jobs as Rails does; --wait prints the predictions", runEnqueue},
		"lambda":  {"the AWS Lambda function (provided.al2023; deploy/lambda/build.sh)", runLambda},
		"labels":  {"the label store (Redis): export (a Rails export), import FILE, list", runLabels},
		"review":  {"rank a list of names for labelling (most worth a label first)", runReview},
		"retrain": {"train on the base data + stored labels; publish only if not worse on held-out labels", runRetrain},
	}
}

// Main runs one subcommand and returns the process exit code.
func Main(ctx context.Context, args []string, env Env, stdin io.Reader, stdout, stderr io.Writer) int {
	if env == nil {
		env = func(string) string { return "" }
	}
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "maskpredictor: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	err := cmd.run(ctx, args[1:], IO{Env: env, Stdin: stdin, Stdout: stdout, Stderr: stderr})
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "maskpredictor %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "maskpredictor %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: maskpredictor <command> [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'maskpredictor <command> -h' for a command's flags.")
}
