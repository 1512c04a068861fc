package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisFlags choose the Redis the worker, the cache and Rails share.
type redisFlags struct {
	url string
}

func (rf *redisFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&rf.url, "redis-url", "", "Redis URL, redis:// or rediss:// (default: $REDIS_TLS_URL, else $REDIS_URL, else redis://localhost:6379/0)")
}

// redisURL picks the URL: the flag, REDIS_TLS_URL (Heroku's TLS endpoint),
// REDIS_URL, or the local default.
func (rf *redisFlags) redisURL(sys IO) (string, string) {
	switch {
	case rf.url != "":
		return rf.url, "--redis-url"
	case sys.Env("REDIS_TLS_URL") != "":
		return sys.Env("REDIS_TLS_URL"), "REDIS_TLS_URL"
	case sys.Env("REDIS_URL") != "":
		return sys.Env("REDIS_URL"), "REDIS_URL"
	}
	return "redis://localhost:6379/0", "default"
}

// options parses the URL into go-redis options. rediss:// verifies the
// server certificate unless REDIS_TLS_SKIP_VERIFY=true (Heroku Redis uses
// self-signed certificates), which is logged as a warning.
func (rf *redisFlags) options(sys IO, log *zap.Logger) (*redis.Options, error) {
	raw, source := rf.redisURL(sys)
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errUsage, source, redactErr(err, raw))
	}
	skip := false
	if s := sys.Env("REDIS_TLS_SKIP_VERIFY"); s != "" {
		if skip, err = strconv.ParseBool(s); err != nil {
			return nil, fmt.Errorf("%w: REDIS_TLS_SKIP_VERIFY=%q is not a boolean", errUsage, s)
		}
	}
	if opt.TLSConfig != nil && skip {
		opt.TLSConfig.InsecureSkipVerify = true //nolint:gosec // explicitly asked for (Heroku's self-signed certificates)
		log.Warn("REDIS_TLS_SKIP_VERIFY=true: the Redis server's TLS certificate is NOT verified",
			zap.String("redis", redact(raw)))
	} else if skip {
		log.Warn("REDIS_TLS_SKIP_VERIFY is set but the Redis URL is not rediss://; ignored", zap.String("redis", redact(raw)))
	}
	if opt.TLSConfig != nil && opt.TLSConfig.MinVersion == 0 {
		opt.TLSConfig.MinVersion = tls.VersionTLS12
	}
	if opt.TLSConfig != nil && opt.Dialer == nil {
		timeout := opt.DialTimeout
		if timeout <= 0 {
			timeout = 5 * time.Second // go-redis' default
		}
		opt.Dialer = tlsDialer(timeout, opt.TLSConfig)
	}
	return opt, nil
}

// tlsDialer dials rediss:// as go-redis does (TCP, then the TLS handshake,
// within DialTimeout), but honours the caller's context during the
// handshake and says what went wrong: go-redis' own dialer reports a
// handshake with a plain Redis port, which never answers it, as a bare
// "context deadline exceeded".
func tlsDialer(timeout time.Duration, cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c := tls.Client(raw, cfg)
		if err := c.HandshakeContext(hctx); err != nil {
			_ = raw.Close()
			return nil, &tlsHandshakeError{addr: addr, timeout: timeout, err: err}
		}
		return c, nil
	}
}

// tlsHandshakeError is a failed TLS handshake with Redis, with a hint.
type tlsHandshakeError struct {
	addr    string
	timeout time.Duration
	err     error
}

func (e *tlsHandshakeError) Error() string {
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(e.err, &cv):
		return fmt.Sprintf("TLS handshake with redis at %s failed: the server's certificate is not trusted "+
			"(Heroku Redis uses self-signed certificates: set REDIS_TLS_SKIP_VERIFY=true): %v", e.addr, e.err)
	case errors.As(e.err, &rh), errors.Is(e.err, context.DeadlineExceeded):
		return fmt.Sprintf("TLS handshake with redis at %s failed: is the port TLS? (rediss:// needs a TLS port; "+
			"a plain Redis port never answers the handshake; use redis:// for it): %v", e.addr, e.err)
	}
	return fmt.Sprintf("TLS handshake with redis at %s failed: %v", e.addr, e.err)
}

// Unwrap keeps the cause for errors.Is/As, except a timeout, which was the
// handshake's own (DialTimeout), not the caller's context: callers must
// not take it for their own deadline.
func (e *tlsHandshakeError) Unwrap() error {
	if errors.Is(e.err, context.DeadlineExceeded) || errors.Is(e.err, context.Canceled) {
		return nil
	}
	return e.err
}

// newRedis returns a client for opt with a pool sized for concurrency.
// Buffers are 8 KiB instead of go-redis' 32 KiB per direction and
// connection: a job's commands and replies are a few KiB, larger ones
// still pass (in several reads), and 40 connections then hold 0.6 MiB
// instead of 2.5 MiB of buffers.
func newRedis(opt *redis.Options, poolSize int) *redis.Client {
	o := *opt
	if o.PoolSize == 0 {
		o.PoolSize = poolSize
	}
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = 8 << 10
	}
	if o.WriteBufferSize == 0 {
		o.WriteBufferSize = 8 << 10
	}
	return redis.NewClient(&o)
}

// redact hides the password of a Redis URL for logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func redactErr(err error, raw string) string {
	msg := err.Error()
	// Find the userinfo by hand: raw may be too broken for url.Parse.
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if c := strings.IndexByte(rest[:at], ':'); c >= 0 && c+1 < at {
			msg = strings.ReplaceAll(msg, rest[c+1:at], "xxxxx")
		}
	}
	return msg
}

// waitRedis pings until Redis answers or ctx ends, with capped exponential
// backoff. It logs at debug level only: the caller logs the first failure,
// and the worker's Redis gate logs the outage and the recovery once each.
func waitRedis(ctx context.Context, rdb redis.UniversalClient, log *zap.Logger, what string) error {
	d := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Debug("Redis reachable", zap.String("for", what), zap.Int("attempts", attempt))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Debug("Redis unreachable; retrying", zap.String("for", what), zap.Error(err),
			zap.Int("attempt", attempt), zap.Duration("backoff", d))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		d = min(d*2, 10*time.Second)
	}
}

// envDuration reads a duration from the environment ("25s", or plain
// seconds "25").
func envDuration(sys IO, key string, def time.Duration) (time.Duration, error) {
	s := sys.Env(key)
	if s == "" {
		return def, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("%w: %s=%q is not a duration", errUsage, key, s)
}

func envInt(sys IO, key string, def int) (int, error) {
	s := sys.Env(key)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not an integer", errUsage, key, s)
	}
	return n, nil
}

func envString(sys IO, key, def string) string {
	if s := sys.Env(key); s != "" {
		return s
	}
	return def
}
