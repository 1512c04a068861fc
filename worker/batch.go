package worker

import (
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

// processBatch handles a task carrying several Sidekiq jobs
// (sidekiq.BatchTaskType): one cache lookup and one write for all of them,
// and otherwise every job as if it had come alone: its own poison check and
// dead-set entry, done marker, callback and reply, log line and Busy-page
// entry.
//
// A transient failure (Redis) splits the batch: the jobs not yet written are
// handed to asynq as single-job tasks (HandlerConfig.Split), which retry with
// their own retry setting, and the batch ends. Only if that fails too (Redis
// still unreachable) is the batch retried whole; finished jobs then find
// their done markers.
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

	errs := make([]error, len(raws))
	var jobs []*pjob
	var jobRaw [][]byte
	for i, raw := range raws {
		j, err := h.prepare(raw, infos[i])
		if err != nil {
			errs[i] = h.bury(ctx, raw, infos[i], err)
			continue
		}
		j.index = i
		jobs = append(jobs, j)
		jobRaw = append(jobRaw, raw)
	}

	var failure error
	if len(jobs) > 0 {
		pr := h.pin()
		failure = h.retry(ctx, func() error { return h.lookup(ctx, pr, jobs) })
		if failure == nil {
			var puts []cache.Entry
			fresh := map[string]*predictor.Prediction{}
			live := jobs[:0:0]
			for _, j := range jobs {
				if j.ok {
					continue
				}
				p, err := h.predict(pr, j, fresh)
				if err != nil { // poison: this job only
					j.ok = true
					errs[j.index] = h.bury(ctx, j.job.Raw, j.info, err)
					continue
				}
				puts = append(puts, p...)
				live = append(live, j)
			}
			failure = h.write(ctx, live, puts)
		}
	}

	// What could not be finished here: jobs not written, and poison jobs whose
	// dead-set write failed.
	if queue == "" && len(jobs) > 0 {
		queue = jobs[0].job.Queue
	}
	var left [][]byte
	var leftInfo []*jobInfo
	var buryErrs []error
	for k, j := range jobs {
		if !j.ok {
			left, leftInfo = append(left, jobRaw[k]), append(leftInfo, j.info)
		}
	}
	for i, info := range infos {
		if info.outcome == "retry" && errs[i] != nil {
			left, leftInfo = append(left, raws[i]), append(leftInfo, info)
			buryErrs = append(buryErrs, errs[i])
		}
	}
	var result error
	if len(left) > 0 {
		if failure == nil {
			failure = errors.Join(buryErrs...)
		}
		switch {
		case ctx.Err() != nil:
			// Shutdown or timeout: asynq requeues the batch; finished jobs find
			// their done markers when it runs again.
			result = failure
			setOutcome(leftInfo, "interrupted", failure)
		case h.cfg.Split == nil:
			result = failure
			setOutcome(leftInfo, "retry", failure)
		default:
			if serr := h.cfg.Split(ctx, queue, left); serr != nil {
				result = fmt.Errorf("%w (and splitting the batch failed: %w)", failure, serr)
				setOutcome(leftInfo, "retry", result)
			} else {
				setOutcome(leftInfo, "split", failure)
			}
		}
	}

	d := time.Since(start)
	for i, info := range infos {
		if info.outcome == "" {
			info.outcome = "ok"
		}
		var jerr error
		switch info.outcome {
		case "ok":
		case "split", "retry", "interrupted":
			jerr = info.err
		default:
			jerr = errs[i]
		}
		writeJobLine(h.log, info, d, jerr)
		if h.cfg.Tracker != nil && info.outcome != "interrupted" && info.outcome != "split" {
			h.cfg.Tracker.RecordResult(info.outcome != "ok")
		}
	}
	return result
}

func setOutcome(infos []*jobInfo, outcome string, err error) {
	for _, info := range infos {
		info.outcome = outcome
		if info.err == nil {
			info.err = err
		}
	}
}
