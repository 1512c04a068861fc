package main

import (
	"testing"

	"go.uber.org/zap/zapcore"
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
