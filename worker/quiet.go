package worker

import (
	"context"
	"fmt"
	"runtime"

	"go.uber.org/zap"
)

// Quiet and stop, the Sidekiq way.
//
// A Sidekiq process is told to quiet or stop through its signals list
// (`<identity>-signals`: Sidekiq Web's Quiet and Stop buttons, "Quiet All" /
// "Stop All", Sidekiq::Process#quiet! / #stop!, Sidekiq::ProcessSet.new.each(&:quiet!)
// in a deploy hook) or by the OS signals TSTP and TERM. The Server reads the
// list on each heartbeat, as Sidekiq's launcher does (sidekiq.HeartbeatConfig.OnSignal),
// and so advertises itself as a full process ("embedded": false): Sidekiq 7+'s
// Busy page shows both buttons for it and Process#quiet!/stop! accept it.
//
//   - TSTP: Quiet. The process takes no new job and finishes the running ones.
//   - TERM: Quiet at once, and StopRequested is closed: the owner (the
//     maskpredictor binary) then shuts down as on SIGTERM, within ShutdownTimeout.
//   - TTIN: the stacks of every goroutine are logged (Sidekiq logs its threads').
//
// The OS signal SIGTSTP is the binary's to catch (QuietSignals); it calls Quiet.

// Quiet stops taking new jobs, as a Sidekiq process does on TSTP:
//
//   - the bridge moves no more jobs out of queue:<name> (jobs pushed from now on
//     stay there, for other processes, and Sidekiq Web counts them as Enqueued);
//   - the asynq pool starts no new task; running tasks finish, are written back and
//     counted as usual. Tasks the bridge had already handed to asynq wait there for
//     another sidecar's pool, or go back to their Sidekiq queue at Shutdown;
//   - the scheduler stops moving due schedule/retry entries (Sidekiq's poller stops
//     on quiet too; other processes go on moving them);
//   - then the heartbeat shows the process as quiet (the "quiet" label; no Quiet
//     button) and beats at once: once it shows quiet, nothing new is taken.
//
// The process stays on the Busy page until Shutdown, which is still to be called (as
// after Sidekiq's TSTP comes TERM). Quiet cannot be undone. It returns when the steps
// are done or ctx ends (they then go on in the background); a second call, or a call
// after Shutdown began, waits for the same steps. Before Start it does nothing.
func (s *Server) Quiet(ctx context.Context) error {
	s.mu.Lock()
	started := s.state != 0
	s.mu.Unlock()
	if !started {
		return nil
	}
	s.startQuiet()
	select {
	case <-s.quietDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("worker quiet: %w", ctx.Err())
	}
}

// StopRequested is closed when Sidekiq asks this process to stop (a TERM in its
// signals list: Sidekiq Web's Stop or Stop All, Sidekiq::Process#stop!). The Server
// has quieted itself by then; its owner is to call Shutdown, as on SIGTERM.
func (s *Server) StopRequested() <-chan struct{} { return s.stopReq }

// Quieted reports whether the quiet steps are done (after Quiet, a TSTP or TERM from
// Sidekiq, or Shutdown): no new job is taken.
func (s *Server) Quieted() bool {
	select {
	case <-s.quietDone:
		return true
	default:
		return false
	}
}

// onSignal is the heartbeat's OnSignal: it must not block.
func (s *Server) onSignal(sig string) {
	switch sig {
	case "TSTP":
		s.log.Info("Sidekiq asked this process to quiet (TSTP): no new jobs; running jobs finish")
		s.startQuiet()
	case "TERM":
		s.log.Info("Sidekiq asked this process to stop (TERM): quiet, then shut down", zap.Duration("timeout", s.cfg.ShutdownTimeout))
		s.startQuiet()
		s.stopOnce.Do(func() { close(s.stopReq) })
	case "TTIN":
		s.log.Info("Sidekiq asked for a thread dump (TTIN)", zap.String("goroutines", goroutineDump()))
	default:
		s.log.Warn("unknown signal from Sidekiq ignored", zap.String("signal", sig))
	}
}

// startQuiet runs the quiet steps once, in the background.
func (s *Server) startQuiet() {
	s.quietOnce.Do(func() { go s.quietSteps() })
}

// quietSteps is Quiet's work (see there). Each step is bounded by Redis' own
// timeouts and the gates, which Shutdown releases.
func (s *Server) quietSteps() {
	defer close(s.quietDone)
	if err := s.bridge.Quiet(context.Background()); err != nil {
		s.log.Warn("worker quiet: the bridge", zap.Error(err))
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.stopScheduler(sctx); err != nil {
		s.log.Warn("worker quiet: the scheduler", zap.Error(err))
	}
	// No dequeue may sleep in the adaptive poll: asynq's Stop waits for the
	// processor's current look for work to end.
	s.idle.shutdown()
	s.srv.Stop()
	s.hb.Quiet()
	s.hb.Kick()
	s.log.Info("worker quiet: no new jobs are taken; running jobs finish")
}

// awaitQuietSteps waits for quiet steps under way (Shutdown, before it takes the
// process off the Busy page), at most until ctx ends.
func (s *Server) awaitQuietSteps(ctx context.Context) {
	s.quietOnce.Do(func() { close(s.quietDone) }) // none started: nothing to wait for
	select {
	case <-s.quietDone:
	case <-ctx.Done():
	}
}

// stopScheduler shuts the scheduler down once (Quiet or Shutdown, whichever is first).
func (s *Server) stopScheduler(ctx context.Context) error {
	var err error
	s.schedOnce.Do(func() {
		if s.sched != nil {
			err = s.sched.Shutdown(ctx)
		}
	})
	return err
}

// goroutineDump is every goroutine's stack, at most 1 MiB.
func goroutineDump() string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= 1<<20 {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
