package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/worker"
)

// service is one long-running part of the process: the job worker, the
// HTTP server. Start returns once the service runs (it must not block);
// Shutdown stops it within ctx.
type service interface {
	Name() string
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// quieter is a service that can stop taking work while it finishes what it
// runs: the worker (SIGTSTP, or Sidekiq's TSTP, which it reads itself).
type quieter interface {
	Quiet(ctx context.Context) error
}

// stopRequester is a service that can ask the process to shut down: the
// worker, when Sidekiq sends it TERM (Stop on Sidekiq Web's Busy page,
// Sidekiq::Process#stop!).
type stopRequester interface {
	StopRequested() <-chan struct{}
}

// runServices starts svcs in order, waits for ctx (SIGTERM/SIGINT from
// main) or a service's stop request (Sidekiq's TERM), then shuts them down
// in reverse order, all within timeout plus a small margin. A clean
// shutdown returns nil: exit 0.
//
// When a service can quiet (the worker), SIGTSTP quiets it instead of
// suspending the process, as Sidekiq does: no new jobs, running jobs finish,
// the process stays up (and on Sidekiq's Busy page, marked quiet) until
// SIGTERM or Sidekiq's Stop.
func runServices(ctx context.Context, log *zap.Logger, timeout time.Duration, svcs ...service) error {
	var quieters []quieter
	var stoppers []stopRequester
	for _, s := range svcs {
		if q, ok := s.(quieter); ok {
			quieters = append(quieters, q)
		}
		if r, ok := s.(stopRequester); ok {
			stoppers = append(stoppers, r)
		}
	}
	var quietSig chan os.Signal // nil: never ready
	if sigs := worker.QuietSignals(); len(quieters) > 0 && len(sigs) > 0 {
		quietSig = make(chan os.Signal, 1)
		signal.Notify(quietSig, sigs...)
		defer signal.Stop(quietSig)
	}

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

	// Background work of this function (stop-request watchers, quiets) ends
	// when the wait below does, and is waited for before returning.
	waitCtx, endWait := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer endWait()
	stopReq := make(chan struct{}, len(stoppers))
	for _, r := range stoppers {
		bg.Add(1)
		go func() {
			defer bg.Done()
			select {
			case <-r.StopRequested():
				stopReq <- struct{}{}
			case <-waitCtx.Done():
			}
		}()
	}
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("signal received; shutting down", zap.Duration("timeout", timeout))
			break wait
		case <-stopReq:
			log.Info("Sidekiq asked this process to stop; shutting down as on SIGTERM", zap.Duration("timeout", timeout))
			break wait
		case sig := <-quietSig:
			log.Info("signal received; quiet: no new jobs, running jobs finish (SIGTERM or Sidekiq's Stop ends the process)",
				zap.String("signal", sig.String()))
			for _, q := range quieters {
				bg.Add(1)
				go func() {
					defer bg.Done()
					if err := q.Quiet(waitCtx); err != nil && waitCtx.Err() == nil {
						log.Warn("quiet incomplete", zap.Error(err))
					}
				}()
			}
		}
	}
	endWait()
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
	// The HTTP server first: its metrics observe the worker's jobs.
	rc, err := wf.redis.config(sys, log)
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
		model: l, redis: rc, queues: splitQueues(wf.queues), limits: wf.limits, cacheTTL: wf.cacheTTL,
		worker: func() httpapi.WorkerStats { return workerStats(w)() },
	}, log)
	if err != nil {
		return err
	}
	rl.registerMetrics(hs.metrics)
	// /metrics' job histogram observes every job's end (queue, outcome,
	// duration), as the job's log line does.
	jobMetrics := worker.JobObserverFunc(func(e worker.JobEvent) {
		hs.metrics.ObserveJob(e.Queue, e.Outcome.String(), e.Duration)
	})
	if w, err = newWorkerService(ctx, sys, &wf, l, log, jobMetrics); err != nil {
		hs.close()
		return err
	}
	return runServices(ctx, log, wf.shutdownTimeout, w, hs, rl)
}
