package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// run handles the Sidekiq jobs of one task (one, or a batch of them from
// sidekiq.BatchTaskType): one cache lookup and one write-back for all of
// them, and otherwise every job as if it had come alone: its own done
// marker, callback and reply, log line, Busy-page entry and outcome.
//
// What cannot be finished ends as it would in a Ruby Sidekiq server, each job
// on its own (settle, one round trip for all of them): a job that can never
// succeed goes to the dead set; on a transient failure (Redis unreachable for
// longer than RedisRetryFor) or when the work runs into the task's deadline,
// the jobs not yet written go to Sidekiq's retry set with its backoff, or,
// out of retries, to the dead set (nowhere for "retry": false). The task then
// completes. Only if that write fails too (Redis still away) is the task
// retried by asynq whole; jobs already written find their done markers, and
// jobs already recorded as failed their markers too. On shutdown, asynq
// requeues the task as it is.
func (h *Handler) run(ctx context.Context, raws [][]byte) error {
	queue, _ := asynq.GetQueueName(ctx)
	start := time.Now()
	evs := make([]*JobEvent, len(raws))
	ends := make([]func(), len(raws))
	for i, raw := range raws {
		evs[i] = &JobEvent{Queue: queue}
		if h.cfg.Tracker != nil {
			ends[i] = h.cfg.Tracker.Begin(raw)
		}
	}
	defer func() {
		for _, end := range ends {
			if end != nil {
				end()
			}
		}
	}()

	parsed := make([]*sidekiq.Job, len(raws)) // nil: not a job we could read
	poison := make([]error, len(raws))        // the reason a job can never succeed
	var jobs []*pjob
	for i, raw := range raws {
		j, err := h.prepare(raw, evs[i])
		if j != nil {
			parsed[i] = j.job
		}
		if err != nil {
			poison[i] = err
			continue
		}
		j.index = i
		jobs = append(jobs, j)
	}
	// The work stops a little before the task's deadline, so that what is
	// unfinished can still be recorded while asynq waits for this handler
	// (past the deadline, asynq retries the whole task at once).
	wctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		margin := min(5*time.Second, time.Until(dl)/4)
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, dl.Add(-margin))
		defer cancel()
	}
	failure := h.work(wctx, jobs, poison)
	if queue == "" && len(jobs) > 0 {
		queue = jobs[0].job.Queue
	}

	// What is left: poison jobs, and jobs not written.
	left := make([]bool, len(raws))
	for i := range raws {
		left[i] = poison[i] != nil
	}
	for _, j := range jobs {
		if !j.ok {
			left[j.index] = true
		}
	}
	result := h.settle(ctx, queue, raws, parsed, evs, left, poison, failure)

	d := time.Since(start)
	metrics := sidekiq.NewMetrics()
	for i, ev := range evs {
		ev.Duration = d
		for _, o := range h.observers {
			o.JobDone(*ev)
		}
		// Ended executions count on the Metrics tab (and, through the
		// Tracker's observer, in stat:processed), each job with its share of
		// the task's time; interrupted ones count when they run again.
		if ev.Outcome.Ended() {
			metrics.Add(parsed[i], d/time.Duration(len(raws)), ev.Outcome != OutcomeOK)
		}
	}
	if ctx.Err() == nil {
		if err := h.cfg.Sidekiq.RecordMetrics(ctx, metrics); err != nil {
			h.log.Debug("could not record the Metrics tab's execution counts", zap.Error(err))
		}
	}
	return result
}

// work stores the labels and predicts and writes back the predictions of
// jobs. A job it could not finish for a reason of its own gets it in
// poison (and ok, to be left out of the write); the error it returns is what
// stopped the others (transient).
func (h *Handler) work(ctx context.Context, jobs []*pjob, poison []error) error {
	var failure error
	// Labels first, one by one (each is its own atomic write): the task's
	// predictions then answer a name labelled in the same batch with its label,
	// as they would had the label job run before them. A transient failure
	// stops the task; what is not written fails below.
	var preds []*pjob
	for _, j := range jobs {
		if j.label == nil {
			preds = append(preds, j)
			continue
		}
		if failure != nil {
			continue
		}
		if err := h.storeLabel(ctx, j); err != nil {
			if isPoison(err) {
				poison[j.index] = err
				j.ok = true // not to be written
			} else {
				failure = err
			}
		}
	}
	if len(preds) == 0 || failure != nil {
		return failure
	}
	// One model for the whole task, even if a hot reload swaps it meanwhile:
	// the cache check and every prediction use the same one.
	pr := h.pin()
	if err := h.retry(ctx, func() error { return h.lookup(ctx, pr, preds) }); err != nil {
		return err
	}
	var puts []cache.Entry
	fresh := map[string]*predictor.Prediction{}
	live := preds[:0:0]
	for _, j := range preds {
		// A duplicate delivery is predicted again (cheap) and recognised by the
		// write-back script, which writes no second callback or reply.
		p, err := h.predict(pr, j, fresh)
		if err != nil {
			poison[j.index] = err
			j.ok = true // not to be written
			continue
		}
		puts = append(puts, p...)
		live = append(live, j)
	}
	failure = h.write(ctx, live, puts)
	for _, j := range live {
		if j.fail != nil { // this job's alone: its neighbours are written
			poison[j.index] = j.fail
		}
	}
	return failure
}

// settle ends the jobs marked in left (see run) and returns the task's
// result. ctx is the task's own context; failure is what stopped the work,
// if anything.
func (h *Handler) settle(ctx context.Context, queue string, raws [][]byte, parsed []*sidekiq.Job, evs []*JobEvent,
	left []bool, poison []error, failure error) error {
	var idx []int
	for i, l := range left {
		if l {
			idx = append(idx, i)
			evs[i].Err = cmp.Or(poison[i], failure)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		// Shutdown, or asynq's own deadline: asynq requeues or retries the
		// task whole, whatever this returns.
		for _, i := range idx {
			evs[i].Outcome = OutcomeInterrupted
		}
		return cmp.Or(failure, ctx.Err())
	}
	if errors.Is(failure, ErrNotReplicated) {
		// Written on the primary (markers set) but not on enough replicas:
		// Sidekiq's retry set would find the markers and record nothing, so
		// the task goes back to asynq whole and runs again; the poison jobs
		// among them are recorded now, as always.
		var bad []int
		for _, i := range idx {
			if poison[i] != nil {
				bad = append(bad, i)
			} else {
				evs[i].Outcome = OutcomeRetry
			}
		}
		if len(bad) > 0 {
			_ = h.settle(ctx, queue, raws, parsed, evs, onlyThese(len(raws), bad), poison, nil)
		}
		return failure
	}
	fs := make([]sidekiq.Failure, len(idx))
	for k, i := range idx {
		jid := ""
		if parsed[i] != nil {
			jid = parsed[i].JID
		}
		f := sidekiq.Failure{Raw: raws[i], Job: parsed[i], Queue: queue, Marker: sidekiq.MarkerKey(jid, raws[i])}
		if err := poison[i]; err != nil {
			h.poison.Add(1)
			f.Poison, f.ErrorClass, f.ErrorMessage = true, sidekiq.ErrorClass(err), err.Error()
		} else {
			f.ErrorClass, f.ErrorMessage = ErrorClassTransient, failure.Error()
		}
		fs[k] = f
	}
	var res []sidekiq.FailResult
	err := h.retry(ctx, func() error {
		var err error
		res, err = h.cfg.Sidekiq.Fail(ctx, fs, sidekiq.FailOptions{Delay: h.cfg.RetryDelay, MarkerTTL: h.cfg.DoneTTL})
		return err
	})
	if err != nil {
		err = fmt.Errorf("recording %d failed jobs in Sidekiq's retry or dead set: %w (first failure: %w)",
			len(idx), err, cmp.Or(failure, poison[idx[0]]))
		for _, i := range idx {
			evs[i].Outcome, evs[i].Err = OutcomeRetry, err
		}
		return err
	}
	for k, i := range idx {
		ev, r := evs[i], res[k]
		ev.RetryCount = r.RetryCount
		switch r.Fate {
		case sidekiq.FateRetry:
			h.retrying.Add(1)
			ev.Outcome, ev.RetryAt = OutcomeRetrying, r.At
		case sidekiq.FateDead:
			h.dead.Add(1)
			ev.Outcome = OutcomeDead
			if !errors.Is(poison[i], errBadReplyKey) { // that key is the one thing not to write to
				h.replyError(ctx, parsed[i], fs[k].ErrorClass+": "+fs[k].ErrorMessage)
			}
		case sidekiq.FateDiscarded:
			// No dead-set entry, as in Sidekiq, but never without a trace: the
			// log line (outcome "discarded", at error level), the counter, and the
			// reply to a waiting caller.
			h.discarded.Add(1)
			ev.Outcome = OutcomeDiscarded
			h.replyError(ctx, parsed[i], fmt.Sprintf("discarded (retry: false): failed %d times, last: %s",
				r.RetryCount+1, fs[k].ErrorMessage))
		default:
			// The delivery had ended already: another run of it wrote it back or
			// recorded its failure.
			ev.Outcome, ev.Duplicate = OutcomeDuplicate, true
		}
	}
	return nil
}

// onlyThese is a left of n jobs marking idx.
func onlyThese(n int, idx []int) []bool {
	left := make([]bool, n)
	for _, i := range idx {
		left[i] = true
	}
	return left
}
