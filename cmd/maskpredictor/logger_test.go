package main

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestStderrLine(t *testing.T) {
	cases := []struct {
		in    string
		level zapcore.Level
		msg   string
	}{
		{"SDK 2026/12/07 04:14:37 WARN falling back to IMDSv1: operation error ec2imds: getToken", zapcore.WarnLevel, "aws sdk: falling back to IMDSv1: operation error ec2imds: getToken"},
		{"SDK 2026/12/07 04:14:37 DEBUG Request\r", zapcore.DebugLevel, "aws sdk: Request"},
		{"SDK 2026/12/07 04:14:37 ERROR boom", zapcore.ErrorLevel, "aws sdk: boom"},
		{"some library's line", zapcore.WarnLevel, "some library's line"},
		{"   ", zapcore.WarnLevel, ""},
	}
	for _, c := range cases {
		level, msg := stderrLine(c.in)
		if level != c.level || msg != c.msg {
			t.Errorf("stderrLine(%q) = %v %q, want %v %q", c.in, level, msg, c.level, c.msg)
		}
	}
}

// TestRedisLoggerLevels: go-redis' routine Sentinel notes go at info, its
// troubles at warn.
func TestRedisLoggerLevels(t *testing.T) {
	for _, c := range []struct {
		format string
		want   zapcore.Level
	}{
		{"sentinel: selected addr=%s masterAddr=%s", zapcore.InfoLevel},
		{"sentinel: new master=%q addr=%q", zapcore.InfoLevel},
		{"sentinel: discovered new sentinel=%q for master=%q", zapcore.InfoLevel},
		{"sentinel: GetMasterAddrByName name=%q failed: %s", zapcore.WarnLevel},
		{"redis: discarding bad PubSub connection: %s", zapcore.WarnLevel},
	} {
		core, logs := observer.New(zapcore.DebugLevel)
		redisLogger{zap.New(core).Sugar()}.Printf(context.Background(), c.format, "a", "b")
		if e := logs.All(); len(e) != 1 || e[0].Level != c.want {
			t.Errorf("%q: %v, want one line at %v", c.format, e, c.want)
		}
	}
}
