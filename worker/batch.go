package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// processBatch handles a task carrying several Sidekiq jobs
// (sidekiq.BatchTaskType): one cache lookup and one write-back for all of
// them, and otherwise every job as if it had come alone: its own done
// marker, callback and reply, log line and Busy-page entry.
//
// Whatever cannot be finished here is handed to asynq as single-job tasks
// (HandlerConfig.Split, under the jobs' delivery ids, so a batch that runs
// again cannot hand a job over twice), where the single-job path takes over:
//   - a job that can never succeed, which its own task then sends to the
//     dead set, exactly once;
//   - on a transient failure (Redis) or when the task's deadline passes,
//     the jobs not yet written, which then retry with Sidekiq's backoff and
//     their own retry setting; a job whose setting allows no retry ends here
//     instead (dead set, or nothing for "retry": false), as in Sidekiq.
//
// Only if the hand-over fails too (Redis still unreachable) is the batch
// retried whole; jobs already written then find their done markers. On
// shutdown, asynq requeues the batch as it is.
func (h *Handler) processBatch(ctx context.Context, t *asynq.Task) error {
	raws, err := sidekiq.DecodeBatch(t.Payload())
	if err != nil {
		// Only the bridge makes these; a bad one stays in asynq's archive,
		// where asynqmon shows it, rather than being retried for nothing.
		id, _ := asynq.GetTaskID(ctx)
		h.log.Error("batch task cannot be decoded; archived", zap.String("task_id", id), zap.Error(err))
		return fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	queue, _ := asynq.GetQueueName(ctx)
	start := time.Now()
	infos := make([]*jobInfo, len(raws))
	ends := make([]func(), len(raws))
	for i, raw := range raws {
		infos[i] = &jobInfo{queue: queue}
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

	poison := make([]error, len(raws)) // the reason a job can never succeed
	var jobs []*pjob
	for i, raw := range raws {
		j, err := h.prepare(raw, infos[i])
		if err != nil {
			poison[i] = err
			continue
		}
		j.index = i
		jobs = append(jobs, j)
	}
	// The work stops a little before the task's deadline, so that what is
	// unfinished can still be handed over while asynq waits for this handler
	// (past the deadline, asynq retries the whole batch at once).
	wctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		margin := min(5*time.Second, time.Until(dl)/4)
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, dl.Add(-margin))
		defer cancel()
	}
	var failure error
	// Labels first, one by one (each is its own atomic write): the batch's
	// predictions then answer a name labelled in the same batch with its label,
	// as they would had the label job run before them. A transient failure
	// stops the batch; what is not written is handed over below.
	var preds []*pjob
	for _, j := range jobs {
		if j.label == nil {
			preds = append(preds, j)
			continue
		}
		if failure != nil {
			continue
		}
		if err := h.storeLabel(wctx, j); err != nil {
			if isPoison(err) {
				poison[j.index] = err
				j.ok = true // not to be written; handed over below
			} else {
				failure = err
			}
		}
	}
	if len(preds) > 0 && failure == nil {
		pr := h.pin()
		failure = h.retry(wctx, func() error { return h.lookup(wctx, pr, preds) })
		if failure == nil {
			var puts []cache.Entry
			fresh := map[string]*predictor.Prediction{}
			live := preds[:0:0]
			for _, j := range preds {
				p, err := h.predict(pr, j, fresh)
				if err != nil {
					poison[j.index] = err
					j.ok = true // not to be written; handed over below
					continue
				}
				puts = append(puts, p...)
				live = append(live, j)
			}
			failure = h.write(wctx, live, puts)
			for _, j := range live {
				if j.fail != nil { // this job's alone: its neighbours are written
					poison[j.index] = j.fail
				}
			}
		}
	}
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
	result := h.handOver(ctx, queue, raws, infos, left, poison, failure)

	d := time.Since(start)
	for _, info := range infos {
		if info.outcome == "" {
			info.outcome = "ok"
		}
		var jerr error
		if info.outcome != "ok" {
			jerr = info.err
		}
		writeJobLine(h.log, info, d, jerr)
		switch info.outcome {
		case "split", "interrupted", "retry": // counted when they run again
		default:
			if h.cfg.Tracker != nil {
				h.cfg.Tracker.RecordResult(info.outcome != "ok")
			}
		}
	}
	return result
}

// handOver deals with the jobs of a batch marked in left (see
// processBatch) and returns the batch task's result. ctx is the task's own
// context; failure is what stopped the work, if anything.
func (h *Handler) handOver(ctx context.Context, queue string, raws [][]byte, infos []*jobInfo, left []bool, poison []error, failure error) error {
	if !slices.Contains(left, true) {
		return nil
	}
	for i, l := range left {
		if l {
			infos[i].err = cmp.Or(poison[i], failure)
		}
	}
	switch {
	case ctx.Err() != nil:
		// Shutdown, or asynq's own deadline: asynq requeues or retries the
		// batch whole, whatever this returns.
		setLeftOutcome(infos, left, "interrupted")
		return cmp.Or(failure, ctx.Err())
	case h.cfg.Split == nil:
		// No single-job tasks to hand over to: bury poison jobs here, retry
		// the rest with the batch.
		for i, l := range left {
			if l && poison[i] != nil {
				left[i] = false
				if err := h.bury(ctx, raws[i], infos[i], poison[i]); err != nil {
					left[i], infos[i].err = true, err
					failure = cmp.Or(failure, err)
				}
			}
		}
		setLeftOutcome(infos, left, "retry")
		return failure
	}
	// Jobs whose own retry setting allows no retry end with this failure, as
	// in Sidekiq, but only once the others are handed over: if that fails,
	// the batch runs again whole and so do they.
	var hand [][]byte
	var ending []int          // indexes of jobs that may not retry
	discard := map[int]bool{} // of those, the ones that leave no dead-set entry
	for i, l := range left {
		if !l {
			continue
		}
		if poison[i] == nil {
			if limit, d := sidekiq.RetryPolicy(raws[i]); limit == 0 {
				ending, discard[i] = append(ending, i), d
				continue
			}
		}
		hand = append(hand, raws[i])
	}
	splitFailed := func(err error) error {
		err = fmt.Errorf("%w (and handing the batch's jobs over as single tasks failed: %w)", cmp.Or(failure, errBatchPoison), err)
		setLeftOutcome(infos, left, "retry")
		for i, l := range left {
			if l {
				infos[i].err = err
			}
		}
		return err
	}
	if len(hand) > 0 {
		if err := h.cfg.Split(ctx, queue, hand); err != nil {
			return splitFailed(err)
		}
	}
	setLeftOutcome(infos, left, "split")
	for _, i := range ending {
		if !h.exhaust(ctx, raws[i], infos[i], failure, 0, discard[i]) {
			// The dead-set write failed: let its own task fail and end it.
			if err := h.cfg.Split(ctx, queue, [][]byte{raws[i]}); err != nil {
				clear(left)
				left[i] = true
				return splitFailed(err)
			}
			infos[i].outcome = "split"
		}
	}
	return nil
}

// errBatchPoison is the batch's error when only poison jobs could not be
// handed over.
var errBatchPoison = errors.New("poison jobs of the batch not yet in the dead set")

func setLeftOutcome(infos []*jobInfo, left []bool, outcome string) {
	for i, l := range left {
		if l {
			infos[i].outcome = outcome
		}
	}
}
