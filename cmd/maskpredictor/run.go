package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
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
// process, the HTTP server (serve.go); SIGTERM stops HTTP first, then the worker.
func runRun(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("run", sys)
	var wf workerFlags
	var hf httpFlags
	envErr := wf.register(fs, sys)
	if err := hf.register(fs, sys); envErr == nil {
		envErr = err
	}
	if err := parseNoArgs(fs, args, envErr); err != nil {
		return err
	}
	log := logger(sys)
	defer log.Sync() //nolint:errcheck // stderr
	// The HTTP server first: its metrics observe the worker's job log lines.
	opt, err := wf.redis.options(sys, log)
	if err != nil {
		return err
	}
	l, err := wf.model.loadFull(ctx, sys, wf.limits)
	if err != nil {
		return err
	}
	rl, err := newModelReload(ctx, sys, &wf.model, &wf.reload, l, wf.limits, log)
	if err != nil {
		return err
	}
	var w *workerService
	hs, err := newHTTPService(&hf, httpDeps{
		model: l, redisOpt: opt, queues: splitQueues(wf.queues), limits: wf.limits, cacheTTL: wf.cacheTTL,
		worker: func() httpapi.WorkerStats { return workerStats(w)() },
	}, log)
	if err != nil {
		return err
	}
	rl.registerMetrics(hs.metrics)
	if w, err = newWorkerService(ctx, sys, &wf, l, hs.metrics.TapJobLogs(log)); err != nil {
		hs.close()
		return err
	}
	return runServices(ctx, log, wf.shutdownTimeout, w, hs, rl)
}
