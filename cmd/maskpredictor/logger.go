package main

import (
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logger builds the process logger from LOG_LEVEL (debug|info|warn|error,
// default info) and LOG_FORMAT (json|console; default console on a
// terminal, JSON otherwise). Only cmd decides how logs look; libraries get
// the *zap.Logger.
func logger(sys IO) *zap.Logger {
	level := zapcore.InfoLevel
	if s := sys.Env("LOG_LEVEL"); s != "" {
		if err := level.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
			level = zapcore.InfoLevel
		}
	}
	format := strings.ToLower(sys.Env("LOG_FORMAT"))
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
	return zap.New(zapcore.NewCore(enc, ws, level))
}
