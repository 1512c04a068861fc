package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/reload"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// reloadFlags configure the model hot reload of the long-running commands
// (worker, serve, run).
type reloadFlags struct {
	poll time.Duration
}

func (rf *reloadFlags) register(fs *flag.FlagSet, sys IO) error {
	def, err := envDuration(sys, "MODEL_POLL", reload.DefaultPoll)
	fs.DurationVar(&rf.poll, "model-poll", def,
		"how often to check MODEL_URI (or --model) for a new model: the S3 object's ETag, the file's mtime; "+
			"0: no polling, SIGHUP still reloads ($MODEL_POLL)")
	return err
}

// modelReload is the hot reload as a service of the process: the reloader
// when the model came from MODEL_URI or --model, and SIGHUP, which asks it
// to reload now. SIGHUP is caught even when there is nothing to reload (the
// embedded model, --rules), so that `systemctl reload` or a terminal hangup
// never kills the worker.
type modelReload struct {
	r    *reload.Reloader // nil: nothing to reload
	log  *zap.Logger
	sig  chan os.Signal
	done chan struct{}
}

// newModelReload builds the reload service for the model l (from loadFull:
// the reloader swaps models in l.live).
func newModelReload(ctx context.Context, sys IO, mf *modelFlags, rf *reloadFlags, l loaded,
	lim predictor.Limits, log *zap.Logger) (*modelReload, error) {
	if rf.poll < 0 {
		return nil, fmt.Errorf("%w: --model-poll %v is negative", errUsage, rf.poll)
	}
	s := &modelReload{log: log}
	var uri, source, current string
	switch {
	case l.live == nil:
		return nil, errors.New("internal error: the hot reload needs a live model holder")
	case mf.rules, isEmbeddedModelArg(mf.path): // the embedded model never changes
		return s, nil
	case mf.path != "":
		uri, source = mf.path, "--model "+mf.path
	case sys.Env("MODEL_URI") != "":
		uri = sys.Env("MODEL_URI")
		source, current = "MODEL_URI "+uri, l.storeVersion
	default:
		return s, nil
	}
	st, err := openModelStore(ctx, sys, uri)
	if err != nil {
		return nil, err
	}
	poll := rf.poll
	if poll == 0 {
		poll = -1 // reload.Config: no polling
	}
	s.r, err = reload.New(reload.Config{
		Store: st, Live: l.live, Current: current, Source: source,
		Limits: lim, Poll: poll, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Reloader is the reloader (nil when the model does not come from a store),
// for metrics.
func (s *modelReload) Reloader() *reload.Reloader { return s.r }

// registerMetrics adds the reloader's counters to the HTTP server's
// /metrics (nothing when there is no reloader).
func (s *modelReload) registerMetrics(m *httpapi.Metrics) {
	if s.r != nil && m != nil {
		m.Registry().MustRegister(reload.Collector(s.r))
	}
}

func (s *modelReload) Name() string { return "model-reload" }

func (s *modelReload) Start(ctx context.Context) error {
	if s.r != nil {
		if err := s.r.Start(ctx); err != nil {
			return err
		}
	}
	s.sig = make(chan os.Signal, 1)
	s.done = make(chan struct{})
	signal.Notify(s.sig, syscall.SIGHUP)
	go func() {
		defer close(s.done)
		for range s.sig {
			if s.r == nil {
				s.log.Info("SIGHUP: the model does not come from MODEL_URI or --model; nothing to reload")
				continue
			}
			s.log.Info("SIGHUP: reloading the model")
			s.r.Trigger()
		}
	}()
	return nil
}

func (s *modelReload) Shutdown(ctx context.Context) error {
	if s.sig != nil {
		signal.Stop(s.sig)
		close(s.sig)
		<-s.done
	}
	if s.r != nil {
		return s.r.Shutdown(ctx)
	}
	return nil
}
