package main

import (
	"bufio"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logger builds the process logger from LOG_LEVEL (debug|info|warn|error,
// default info) and LOG_FORMAT (json|console; default console on a
// terminal, JSON otherwise). Only cmd decides how logs look; libraries get
// the *zap.Logger.
func logger(sys IO) *zap.Logger {
	var warnings []string
	level := zapcore.InfoLevel
	if s := sys.Env("LOG_LEVEL"); s != "" {
		if err := level.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
			level = zapcore.InfoLevel
			warnings = append(warnings, "LOG_LEVEL "+strconv.Quote(s)+" is not debug, info, warn or error; using info")
		}
	}
	format := strings.ToLower(sys.Env("LOG_FORMAT"))
	if format != "" && format != "json" && format != "console" {
		warnings = append(warnings, "LOG_FORMAT "+strconv.Quote(format)+" is not json or console; using the default")
		format = ""
	}
	if format == "" {
		format = "json"
		if isTerminal(sys.Stderr) {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	if format == "console" {
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		if !isTerminal(sys.Stderr) {
			cfg.EncodeLevel = zapcore.CapitalLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(cfg)
	} else {
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	}
	ws := zapcore.AddSync(sys.Stderr)
	if f, ok := sys.Stderr.(*os.File); ok {
		ws = zapcore.Lock(f)
	}
	log := zap.New(zapcore.NewCore(enc, ws, level))
	for _, w := range warnings {
		log.Warn(w)
	}
	if sys.Stderr == any(os.Stderr) {
		// The real process (not a test running Main): what libraries write
		// with Go's standard log package (asynq's metrics collector,
		// asynqmon, net/http) goes through zap too, so that LOG_FORMAT=json
		// gives only JSON lines.
		if _, err := zap.RedirectStdLogAt(log.Named("stdlog"), zapcore.WarnLevel); err != nil {
			log.Warn("standard log output not redirected", zap.Error(err))
		}
		// go-redis writes its own notes ("Conn has unread data", pool and
		// PubSub trouble) with a logger of its own to stderr.
		redis.SetLogger(redisLogger{log.Named("go-redis").Sugar()})
		if format == "json" {
			captureStderr(log.Named("stderr"))
		}
	}
	return log
}

// captureStderr turns what is written to os.Stderr from now on into JSON
// log lines: libraries that log with a logger of their own made later
// write there, such as the AWS SDK's default logger ("SDK 2026/01/02
// 15:04:05 WARN falling back to IMDSv1: …" when no credentials are
// configured and the model is in S3). The process's own logger keeps the
// real stderr; a crash (the Go runtime writes to fd 2 itself) is not
// touched.
func captureStderr(log *zap.Logger) {
	r, w, err := os.Pipe()
	if err != nil {
		log.Warn("stderr not captured", zap.Error(err))
		return
	}
	os.Stderr = w
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			level, msg := stderrLine(sc.Text())
			if msg != "" {
				log.Log(level, msg)
			}
		}
	}()
}

// sdkPrefix is the AWS SDK's standard logger's prefix: "SDK " and the
// date and time, then the classification (WARN, DEBUG).
var sdkPrefix = regexp.MustCompile(`^SDK \d{4}/\d\d/\d\d \d\d:\d\d:\d\d (WARN|DEBUG|INFO|ERROR)?\s*`)

// stderrLine reads the level and message of a line written to stderr.
func stderrLine(line string) (zapcore.Level, string) {
	line = strings.TrimSpace(line)
	if m := sdkPrefix.FindStringSubmatch(line); m != nil {
		level := zapcore.WarnLevel
		switch m[1] {
		case "DEBUG":
			level = zapcore.DebugLevel
		case "INFO":
			level = zapcore.InfoLevel
		case "ERROR":
			level = zapcore.ErrorLevel
		}
		return level, "aws sdk: " + line[len(m[0]):]
	}
	return zapcore.WarnLevel, line
}

// redisLogger routes go-redis' internal log lines through zap.
type redisLogger struct{ s *zap.SugaredLogger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	if routineRedisNote(format) {
		l.s.Infof(format, v...)
		return
	}
	l.s.Warnf(format, v...)
}

// routineRedisNote tells go-redis' notes that report normal work from its
// troubles: with Sentinel it notes every sentinel it picks, every primary
// it learns (at each start and failover) and every sentinel it discovers.
// The failover itself is logged once per process at warn ("Redis primary
// changed"), so these go at info: alerts on warn lines would fire on every
// start otherwise.
func routineRedisNote(format string) bool {
	for _, p := range []string{"sentinel: selected addr=", "sentinel: new master=", "sentinel: discovered new sentinel="} {
		if strings.HasPrefix(format, p) {
			return true
		}
	}
	return false
}
