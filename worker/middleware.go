package worker

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
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
	outcome    string
	err        error
}

type jobInfoKey struct{}

func jobInfoFrom(ctx context.Context) *jobInfo {
	if ji, ok := ctx.Value(jobInfoKey{}).(*jobInfo); ok {
		return ji
	}
	ji := &jobInfo{}
	ji.queue, _ = asynq.GetQueueName(ctx)
	return ji
}

// LogJobs is middleware that writes one line per job: jid, queue, mask
// name(s), duration, cache hit, fallback and outcome. Successful jobs log at
// Info, retried ones at Warn, dead ones at Error. The jobs of a batch task
// are logged by the handler, one line each, the same way.
func LogJobs(log *zap.Logger) asynq.MiddlewareFunc {
	if log == nil {
		log = zap.NewNop()
	}
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			if t.Type() == sidekiq.BatchTaskType {
				return next.ProcessTask(ctx, t)
			}
			ji := &jobInfo{}
			ji.queue, _ = asynq.GetQueueName(ctx)
			start := time.Now()
			err := next.ProcessTask(context.WithValue(ctx, jobInfoKey{}, ji), t)
			writeJobLine(log, ji, time.Since(start), err)
			return err
		})
	}
}

// writeJobLine writes the line of one job (message "job", which the
// /metrics job-latency tap relies on).
func writeJobLine(log *zap.Logger, ji *jobInfo, d time.Duration, err error) {
	level := zapcore.InfoLevel
	switch ji.outcome {
	case "ok", "":
		if err != nil {
			level = zapcore.WarnLevel
		}
	case "dead", "discarded":
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
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	ce.Write(fields...)
}
