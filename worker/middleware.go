package worker

import (
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
	outcome    string   // one of the outcome constants
	retryCount int      // the retry_count its failure was recorded with
	retryAt    time.Time
	err        error
}

// A job's outcome (the log line's "outcome").
const (
	outcomeOK          = "ok"          // predicted (or stored, for a label) and written back
	outcomeRetrying    = "retrying"    // failed; in Sidekiq's retry set
	outcomeDead        = "dead"        // in Sidekiq's dead set (poison, or out of retries)
	outcomeDiscarded   = "discarded"   // out of retries with "retry": false / "dead": false
	outcomeDuplicate   = "duplicate"   // failed, but another run of the delivery had ended it
	outcomeInterrupted = "interrupted" // shutdown or asynq's deadline: asynq requeues the task
	outcomeRetry       = "retry"       // the failure could not be recorded: asynq retries the task
)

// writeJobLine writes the line of one job (message "job", which the
// /metrics job-latency tap relies on).
func writeJobLine(log *zap.Logger, ji *jobInfo, d time.Duration, err error) {
	level := zapcore.InfoLevel
	switch ji.outcome {
	case outcomeOK, "":
		if err != nil {
			level = zapcore.WarnLevel
		}
	case outcomeDead, outcomeDiscarded:
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
	outcome := ji.outcome
	if outcome == "" {
		outcome = "ok"
		if err != nil {
			outcome = "error"
		}
	}
	fields = append(fields, zap.String("outcome", outcome))
	switch outcome {
	case outcomeRetrying:
		fields = append(fields, zap.Int("retry_count", ji.retryCount), zap.Time("retry_at", ji.retryAt))
	case outcomeDead, outcomeDiscarded:
		fields = append(fields, zap.Int("retry_count", ji.retryCount))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	ce.Write(fields...)
}
