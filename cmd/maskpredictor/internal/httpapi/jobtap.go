package httpapi

import (
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TapJobLogs returns log with a tap that turns the worker's per-job log
// line (message "job", fields queue, duration, outcome: written by worker.Handler for every job) into
// maskpredictor_job_duration_seconds, whatever the log level. The worker
// takes no middleware from outside, and its log line is the one place a
// job's duration and outcome are reported.
func (m *Metrics) TapJobLogs(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return &jobTap{Core: c, obs: &jobObserver{m: m}}
	}))
}

// jobTap passes everything to the wrapped core and, in addition, hands
// "job" entries to the observer.
type jobTap struct {
	zapcore.Core
	obs *jobObserver
}

func (t *jobTap) Enabled(l zapcore.Level) bool {
	return l >= zapcore.InfoLevel || t.Core.Enabled(l)
}

func (t *jobTap) With(fields []zapcore.Field) zapcore.Core {
	return &jobTap{Core: t.Core.With(fields), obs: t.obs}
}

func (t *jobTap) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if ent.Message == "job" && ent.LoggerName == "" {
		ce = ce.AddCore(ent, t.obs)
	}
	if t.Core.Enabled(ent.Level) {
		return t.Core.Check(ent, ce)
	}
	return ce
}

// jobObserver is a core that only records job durations.
type jobObserver struct{ m *Metrics }

func (o *jobObserver) Enabled(zapcore.Level) bool        { return true }
func (o *jobObserver) With([]zapcore.Field) zapcore.Core { return o }
func (o *jobObserver) Sync() error                       { return nil }
func (o *jobObserver) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(ent, o)
}

func (o *jobObserver) Write(_ zapcore.Entry, fields []zapcore.Field) error {
	var (
		queue, outcome string
		d              time.Duration
		found          bool
	)
	for _, f := range fields {
		switch {
		case f.Key == "queue" && f.Type == zapcore.StringType:
			queue = f.String
		case f.Key == "outcome" && f.Type == zapcore.StringType:
			outcome = f.String
		case f.Key == "duration" && f.Type == zapcore.DurationType:
			d, found = time.Duration(f.Integer), true
		}
	}
	if found {
		o.m.ObserveJob(queue, outcome, d)
	}
	return nil
}
