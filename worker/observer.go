package worker

import (
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// JobObserver is told about the end of every job of every task the handler
// runs, once, with how it ended. It is the one place a job's end is
// reported: the log line (message "job"), the Busy-page tracker's
// stat:processed count and, from cmd, /metrics' job histogram are all
// observers of the same event, so that none of them has to reconstruct it
// (the histogram used to parse the log line). JobDone is called on the
// handler's goroutine, after the job's write-back or failure is recorded:
// it must be quick and safe for concurrent use.
type JobObserver interface {
	JobDone(JobEvent)
}

// JobObserverFunc adapts a function to JobObserver.
type JobObserverFunc func(JobEvent)

// JobDone calls f(e).
func (f JobObserverFunc) JobDone(e JobEvent) { f(e) }

// JobEvent is one job's end.
type JobEvent struct {
	JID   string
	Class string // the class it runs as (ActiveJob's wrapped class); "" when unreadable
	Queue string
	// Names are the names it asked for (a label job: the one it labels); nil
	// when its args could not be read.
	Names    []sidekiq.Request
	Hits     int           // names answered from the cache (or earlier in the batch)
	Fallback bool          // a prediction came from the rule fallback
	Duration time.Duration // its task's time: a batch's jobs share one
	Outcome  Outcome
	Err      error // why it failed; nil with OutcomeOK

	Duplicate     bool     // the write-back of this delivery had already happened
	Label         bool     // a MaskLabelJob
	LabelWarnings []string // its label's convention findings (stored anyway)
	RetryCount    int      // the retry_count its failure was recorded with
	RetryAt       time.Time
}

// CacheHit reports whether every name was answered from the cache.
func (e *JobEvent) CacheHit() bool { return len(e.Names) > 0 && e.Hits == len(e.Names) }

// Outcome is how one job of a task ended. Its String is the log line's
// "outcome" and the outcome label of /metrics' job histogram, which
// operators' queries and alerts read: those strings must not change.
//
// The names map onto it so: done → OutcomeOK; cached → OutcomeOK
// too (a cache hit is the event's CacheHit, not a fate: the job ended the
// same way); poison → OutcomeDead (or, for a job back from the dead set,
// OutcomeRetrying once, see sidekiq.RedeadField); retrying → OutcomeRetrying;
// dead → OutcomeDead, or OutcomeDiscarded when "retry": false / "dead": false
// keep it out of the dead set; returned → OutcomeInterrupted (asynq requeues
// the task) or OutcomeRetry (asynq retries it). OutcomeDuplicate is a
// delivery another run had already ended.
type Outcome uint8

// The outcomes. The zero value is OutcomeOK: a job nothing went wrong with.
const (
	OutcomeOK          Outcome = iota // "ok": predicted (or stored, for a label) and written back
	OutcomeRetrying                   // "retrying": failed; in Sidekiq's retry set
	OutcomeDead                       // "dead": in Sidekiq's dead set (poison, or out of retries)
	OutcomeDiscarded                  // "discarded": out of retries with "retry": false / "dead": false
	OutcomeDuplicate                  // "duplicate": failed, but another run of the delivery had ended it
	OutcomeInterrupted                // "interrupted": shutdown or asynq's deadline; asynq requeues the task
	OutcomeRetry                      // "retry": the failure could not be recorded; asynq retries the task
)

var outcomeNames = [...]string{"ok", "retrying", "dead", "discarded", "duplicate", "interrupted", "retry"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Ended reports whether the job's execution ended here (it counts in
// stat:processed and on the Metrics tab); an interrupted or retried task
// runs its jobs again, and they count then.
func (o Outcome) Ended() bool { return o != OutcomeInterrupted && o != OutcomeRetry }

// trackerObserver counts each job whose execution ended in stat:processed
// (JobTracker.RecordResult; failures count in stat:failed where they are
// recorded, by sidekiq.Client.Fail). The job's Busy-page entry is not an
// end event: run brackets it with JobTracker.Begin and its done.
type trackerObserver struct{ t JobTracker }

func (o trackerObserver) JobDone(e JobEvent) {
	if e.Outcome.Ended() {
		o.t.RecordResult(false)
	}
}

// logObserver writes each job's line.
type logObserver struct{ log *zap.Logger }

func (o logObserver) JobDone(e JobEvent) { writeJobLine(o.log, &e) }

// writeJobLine writes the line of one job (message "job"), at error level
// for a job that ended without success, warning for one that will run again.
func writeJobLine(log *zap.Logger, e *JobEvent) {
	level := zapcore.WarnLevel
	switch e.Outcome {
	case OutcomeOK:
		level = zapcore.InfoLevel
	case OutcomeDead, OutcomeDiscarded:
		level = zapcore.ErrorLevel
	}
	ce := log.Check(level, "job")
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, 10)
	fields = append(fields, zap.String("jid", e.JID), zap.String("queue", e.Queue))
	switch len(e.Names) {
	case 0:
	case 1:
		fields = append(fields, zap.String("mask_name", abbrev(e.Names[0].MaskName)))
	default:
		names := make([]string, len(e.Names))
		for i, r := range e.Names {
			names[i] = abbrev(r.MaskName)
		}
		fields = append(fields, zap.Strings("mask_names", names))
	}
	fields = append(fields,
		zap.Duration("duration", e.Duration),
		zap.Bool("cache_hit", e.CacheHit()),
		zap.Bool("fallback", e.Fallback),
	)
	if len(e.Names) > 1 {
		fields = append(fields, zap.Int("cache_hits", e.Hits))
	}
	if e.Duplicate {
		fields = append(fields, zap.Bool("duplicate_delivery", true))
	}
	if e.Label {
		fields = append(fields, zap.Bool("label", true))
		if len(e.LabelWarnings) > 0 {
			fields = append(fields, zap.Strings("label_warnings", e.LabelWarnings))
		}
	}
	fields = append(fields, zap.String("outcome", e.Outcome.String()))
	switch e.Outcome {
	case OutcomeRetrying:
		fields = append(fields, zap.Int("retry_count", e.RetryCount), zap.Time("retry_at", e.RetryAt))
	case OutcomeDead, OutcomeDiscarded:
		fields = append(fields, zap.Int("retry_count", e.RetryCount))
	}
	if e.Err != nil {
		fields = append(fields, zap.Error(e.Err))
	}
	ce.Write(fields...)
}
