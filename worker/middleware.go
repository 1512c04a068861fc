package worker

import (
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// jobInfo is what the handler reports about one job for its log line.
type jobInfo struct {
	jid, queue string
	names      []sidekiq.Request
	hits       int
	fallback   bool
	duplicate  bool     // the write-back of this delivery had already happened
	label      bool     // a MaskLabelJob
	warnings   []string // its label's convention findings (stored anyway)
	outcome    Outcome
	retryCount int // the retry_count its failure was recorded with
	retryAt    time.Time
	err        error
}

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

// writeJobLine writes the line of one job (message "job", which the
// /metrics job-latency tap relies on).
func writeJobLine(log *zap.Logger, ji *jobInfo, d time.Duration, err error) {
	level := zapcore.InfoLevel
	switch ji.outcome {
	case OutcomeOK:
	case OutcomeDead, OutcomeDiscarded:
		level = zapcore.ErrorLevel
	default:
		level = zapcore.WarnLevel
	}
	ce := log.Check(level, "job")
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, 10)
	fields = append(fields, zap.String("jid", ji.jid), zap.String("queue", ji.queue))
	switch len(ji.names) {
	case 0:
	case 1:
		fields = append(fields, zap.String("mask_name", abbrev(ji.names[0].MaskName)))
	default:
		names := make([]string, len(ji.names))
		for i, r := range ji.names {
			names[i] = abbrev(r.MaskName)
		}
		fields = append(fields, zap.Strings("mask_names", names))
	}
	fields = append(fields,
		zap.Duration("duration", d),
		zap.Bool("cache_hit", len(ji.names) > 0 && ji.hits == len(ji.names)),
		zap.Bool("fallback", ji.fallback),
	)
	if len(ji.names) > 1 {
		fields = append(fields, zap.Int("cache_hits", ji.hits))
	}
	if ji.duplicate {
		fields = append(fields, zap.Bool("duplicate_delivery", true))
	}
	if ji.label {
		fields = append(fields, zap.Bool("label", true))
		if len(ji.warnings) > 0 {
			fields = append(fields, zap.Strings("label_warnings", ji.warnings))
		}
	}
	fields = append(fields, zap.String("outcome", ji.outcome.String()))
	switch ji.outcome {
	case OutcomeRetrying:
		fields = append(fields, zap.Int("retry_count", ji.retryCount), zap.Time("retry_at", ji.retryAt))
	case OutcomeDead, OutcomeDiscarded:
		fields = append(fields, zap.Int("retry_count", ji.retryCount))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	ce.Write(fields...)
}
