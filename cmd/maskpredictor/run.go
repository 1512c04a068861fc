package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// service is one long-running part of the process: the job worker, the
// HTTP server. Start returns once the service runs (it must not block);
// Shutdown stops it within ctx.
type service interface {
	Name() string
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// runServices starts svcs in order, waits for ctx (SIGTERM/SIGINT from
// main), then shuts them down in reverse order, all within timeout plus a
// small margin. A clean shutdown returns nil: exit 0.
func runServices(ctx context.Context, log *zap.Logger, timeout time.Duration, svcs ...service) error {
	var started []service
	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout+2*time.Second)
		defer cancel()
		var errs []error
		for i := len(started) - 1; i >= 0; i-- {
			if err := started[i].Shutdown(sctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", started[i].Name(), err))
			}
		}
		return errors.Join(errs...)
	}
	for _, s := range svcs {
		if err := s.Start(ctx); err != nil {
			_ = shutdown()
			return fmt.Errorf("starting %s: %w", s.Name(), err)
		}
		started = append(started, s)
	}
	<-ctx.Done()
	log.Info("signal received; shutting down", zap.Duration("timeout", timeout))
	if err := shutdown(); err != nil {
		// Nothing is lost when a shutdown step fails (jobs still in flight
		// are recovered by the next worker); report it, exit 0 regardless.
		log.Warn("shutdown incomplete", zap.Error(err))
	}
	return nil
}

// runRun is `maskpredictor run`: the worker and, beside it in the same
// process, the HTTP server (added to the services here when it exists).
func runRun(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("run", sys)
	var wf workerFlags
	envErr := wf.register(fs, sys)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if envErr != nil {
		return envErr
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	log := logger(sys)
	defer log.Sync() //nolint:errcheck // stderr
	w, err := newWorkerService(ctx, sys, &wf, log)
	if err != nil {
		return err
	}
	svcs := []service{w}
	// The HTTP API (cmd/maskpredictor/internal/httpapi) joins here:
	// svcs = append(svcs, httpService)
	return runServices(ctx, log, wf.shutdownTimeout, svcs...)
}
