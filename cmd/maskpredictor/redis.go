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
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisFlags choose the Redis the worker, the cache and Rails share.
type redisFlags struct {
	url   string
	built *redisConfig // config's answer: one per process (run's worker and HTTP share it)
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
		opt.Dialer = tlsDialer(dialTimeout(opt), opt.TLSConfig)
	}
	return opt, nil
}

// dialTimeout is opt's DialTimeout, or go-redis' default.
func dialTimeout(opt *redis.Options) time.Duration {
	if opt.DialTimeout > 0 {
		return opt.DialTimeout
	}
	return 5 * time.Second // go-redis' default
}

// tlsDialer dials rediss:// as go-redis does (TCP, then the TLS handshake,
// within DialTimeout), but honours the caller's context during the
// handshake and says what went wrong: go-redis' own dialer reports a
// handshake with a plain Redis port, which never answers it, as a bare
// "context deadline exceeded".
//
// A cfg without ServerName (Sentinel: the sentinels, the primary and the
// replicas each have their own address) verifies every connection against
// the host of the address it dials, as tls.Dial does.
func tlsDialer(timeout time.Duration, cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c := tls.Client(raw, tlsConfigFor(cfg, addr))
		if err := c.HandshakeContext(hctx); err != nil {
			_ = raw.Close()
			return nil, &tlsHandshakeError{addr: addr, timeout: timeout, err: err}
		}
		return c, nil
	}
}

// tlsConfigFor is cfg for a connection to addr: cfg itself when it names
// the server, else a copy with the host of addr as ServerName.
func tlsConfigFor(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
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

// redisConfig is the one Redis configuration of every command: the data
// nodes' settings from the URL (password, username, DB, TLS), and either
// the URL's host or, with REDIS_SENTINELS, the primary the sentinels name.
// Every client of a command comes from its client method.
type redisConfig struct {
	// opt holds the data nodes' settings; its Addr is unused with Sentinel.
	opt *redis.Options
	// url and source are where the settings came from (redacted for logs).
	url, source string
	// sentinels (host:port), master and sentinelPassword configure Sentinel;
	// no sentinels: the URL's host is the primary.
	sentinels        []string
	master           string
	sentinelPassword string
	// primary is the data node this process's clients last connected to.
	primary *primaryTracker
}

// config reads the Redis settings: options' URL, and REDIS_SENTINELS,
// REDIS_SENTINEL_MASTER and REDIS_SENTINEL_PASSWORD. With sentinels, the
// URL's host is ignored (its password, username, DB and TLS settings
// apply to the data nodes; its TLS settings also to the sentinels).
func (rf *redisFlags) config(sys IO, log *zap.Logger) (*redisConfig, error) {
	if rf.built != nil {
		return rf.built, nil
	}
	opt, err := rf.options(sys, log)
	if err != nil {
		return nil, err
	}
	raw, source := rf.redisURL(sys)
	c := &redisConfig{opt: opt, url: redact(raw), source: source,
		master: strings.TrimSpace(sys.Env("REDIS_SENTINEL_MASTER")), sentinelPassword: sys.Env("REDIS_SENTINEL_PASSWORD")}
	if c.sentinels, err = parseSentinels(sys.Env("REDIS_SENTINELS")); err != nil {
		return nil, err
	}
	switch {
	case len(c.sentinels) > 0 && c.master == "":
		return nil, fmt.Errorf("%w: REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: "+
			"set it to the master name the sentinels monitor (sentinel monitor <name> …; Sidekiq's name: option), e.g. mymaster", errUsage)
	case len(c.sentinels) == 0 && c.master != "":
		return nil, fmt.Errorf("%w: REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not: "+
			"list the sentinels as host:port,host:port", errUsage)
	case len(c.sentinels) == 0 && c.sentinelPassword != "":
		return nil, fmt.Errorf("%w: REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS is not", errUsage)
	}
	if c.sentinel() && opt.TLSConfig != nil {
		// go-redis' ParseURL set ServerName to the URL's host, which Sentinel
		// ignores: the failover client dials the sentinels, the primary and the
		// replicas with this configuration and dialer, and each is verified
		// against the host of its own address instead.
		cfg := opt.TLSConfig.Clone()
		cfg.ServerName = ""
		opt.TLSConfig, opt.Dialer = cfg, tlsDialer(dialTimeout(opt), cfg)
	}
	c.primary = &primaryTracker{log: log, sentinel: c.sentinel()}
	if !c.sentinel() {
		c.primary.addr = opt.Addr
	}
	rf.built = c
	return c, nil
}

// parseSentinels reads REDIS_SENTINELS: comma-separated host:port.
func parseSentinels(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return nil, fmt.Errorf("%w: REDIS_SENTINELS: %q is not host:port (comma-separated, e.g. 10.0.0.1:26379,10.0.0.2:26379)", errUsage, a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: REDIS_SENTINELS: %q has no valid port", errUsage, a)
		}
		out = append(out, a)
	}
	return out, nil
}

// sentinel reports whether the primary comes from Sentinel.
func (c *redisConfig) sentinel() bool { return len(c.sentinels) > 0 }

// configured reports whether Redis was asked for (a URL other than the
// default, or sentinels): serve uses Redis only then.
func (c *redisConfig) configured() bool { return c.source != "default" || c.sentinel() }

// fields describe the configuration for the start-up log line (no password).
func (c *redisConfig) fields() []zap.Field {
	if c.sentinel() {
		return []zap.Field{zap.Strings("redis_sentinels", c.sentinels), zap.String("redis_sentinel_master", c.master),
			zap.Int("redis_db", c.opt.DB), zap.Bool("redis_tls", c.opt.TLSConfig != nil), zap.String("redis_settings_from", c.source)}
	}
	return []zap.Field{zap.String("redis", c.url), zap.String("redis_from", c.source)}
}

// Mode says where the primary comes from, for /admin/: the sentinels and
// master name, or the URL's source (REDIS_URL, REDIS_TLS_URL, --redis-url).
func (c *redisConfig) Mode() string {
	if c.sentinel() {
		return "Sentinel, master " + strconv.Quote(c.master) + " via " + strings.Join(c.sentinels, ", ")
	}
	return c.source
}

// Primary is host:port of the data node this process writes to: the
// URL's, or the one Sentinel named when a client last connected ("" before
// the first connection).
func (c *redisConfig) Primary() string { return c.primary.get() }

// factory, primaryFunc and modeOrEmpty hand the configuration to the
// dashboard; nil (no Redis) gives nils.
func (c *redisConfig) factory() func(int) redis.UniversalClient {
	if c == nil {
		return nil
	}
	return c.client
}

func (c *redisConfig) primaryFunc() func() string {
	if c == nil {
		return nil
	}
	return c.Primary
}

func (c *redisConfig) modeOrEmpty() string {
	if c == nil {
		return ""
	}
	return c.Mode()
}

// client returns a Redis client with a pool of poolSize: a plain client for
// the URL's host, or go-redis' failover client, which asks the sentinels
// for the primary, follows their +switch-master announcements, and drops
// its connections to a node that is no longer primary. Buffers are 8 KiB
// instead of go-redis' 32 KiB per direction and connection: a job's
// commands and replies are a few KiB, larger ones still pass (in several
// reads), and 40 connections then hold 0.6 MiB instead of 2.5 MiB.
func (c *redisConfig) client(poolSize int) redis.UniversalClient {
	return c.newClient(poolSize, true)
}

// workerClient is client for the worker's Redis clients, without
// sentinelLookup: the worker's Redis gate (worker/outage.go), a hook inside
// it, holds dials back during an outage and lets one through as its probe,
// and a lookup detached from its caller would wait in the gate in the
// background, keeping the gate from recovering (seen: a worker still
// degraded 60 s after the primary came back from a total outage). The
// worker's calls have long deadlines, so go-redis' own lookup moves past a
// hung sentinel for them (the red team: workers followed a hung host in
// 2.5–13 s).
func (c *redisConfig) workerClient(poolSize int) redis.UniversalClient {
	return c.newClient(poolSize, false)
}

func (c *redisConfig) newClient(poolSize int, detachLookups bool) redis.UniversalClient {
	o := *c.opt
	if o.PoolSize == 0 {
		o.PoolSize = poolSize
	}
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = 8 << 10
	}
	if o.WriteBufferSize == 0 {
		o.WriteBufferSize = 8 << 10
	}
	if !c.sentinel() {
		return redis.NewClient(&o)
	}
	rdb := redis.NewFailoverClient(c.failoverOptions(&o))
	rdb.AddHook(c.primary)
	if detachLookups {
		rdb.AddHook(newSentinelLookup(&o, c.master))
	} else {
		rdb.AddHook(sentinelExplainer{c.master})
	}
	return rdb
}

// sentinelLookup lets the failover client's primary lookup outlive a
// caller's short deadline. Each dial of a failover client first asks the
// sentinel it last used for the primary. When that sentinel hangs (it
// usually runs on the primary's host, so a host that drops off the network
// takes both), the answer takes the sentinel client's read timeout, and
// only then does go-redis ask the others. But a lookup cut off by the
// caller's deadline keeps the hung sentinel, and the HTTP side's calls
// have short ones (a cache lookup 100 ms, /health 1 s): measured, serve
// stayed on the dead primary for 79 s after the sentinels had promoted a
// replica in 3 s. So a dial whose deadline is shorter than a full lookup
// (its budget) goes on detached from the caller until it has an answer,
// one at a time per client: the caller still gets its error at its
// deadline, and the detached dial's connection is closed, but go-redis
// has moved to a live sentinel and the new primary, so the next call
// works. It also says what a failed lookup means (sentinelError).
type sentinelLookup struct {
	budget   time.Duration
	master   string
	inflight atomic.Bool
}

// newSentinelLookup sizes the budget for o: go-redis asks the hung
// sentinel twice, then the others, and waits for every one of them (the
// hung one's last read included) before it answers; a host off the network
// costs dial timeouts instead of reads. With go-redis' defaults (3 s, 5 s),
// 22 s.
func newSentinelLookup(o *redis.Options, master string) *sentinelLookup {
	read := o.ReadTimeout
	if read <= 0 {
		read = 3 * time.Second
	}
	return &sentinelLookup{budget: 4*read + 2*dialTimeout(o), master: master}
}

func (l *sentinelLookup) DialHook(next redis.DialHook) redis.DialHook {
	return sentinelExplainer{l.master}.DialHook(l.lookup(next))
}

func (l *sentinelLookup) lookup(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) >= l.budget || !l.inflight.CompareAndSwap(false, true) {
			return next(ctx, network, addr)
		}
		type dialed struct {
			cn  net.Conn
			err error
		}
		done := make(chan dialed, 1)
		go func() {
			defer l.inflight.Store(false)
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.budget)
			defer cancel()
			cn, err := next(dctx, network, addr)
			done <- dialed{cn, err}
		}()
		select {
		case d := <-done:
			return d.cn, d.err
		case <-ctx.Done():
			go func() {
				if d := <-done; d.cn != nil {
					_ = d.cn.Close()
				}
			}()
			return nil, ctx.Err()
		}
	}
}

// sentinelExplainer is sentinelLookup's error explanation alone (the
// worker's clients).
type sentinelExplainer struct{ master string }

func (e sentinelExplainer) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := next(ctx, network, addr)
		if err != nil {
			err = explainSentinelError(err, e.master)
		}
		return cn, err
	}
}

func (e sentinelExplainer) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (e sentinelExplainer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// sentinelError is a primary lookup the sentinels answered, but not with a
// primary: go-redis reports both cases below as "all sentinels specified
// in configuration are unreachable", which sends an operator to the
// network. Reason is fit for /health (no names, no addresses); the worker
// logs it as the outage's reason.
type sentinelError struct {
	reason, detail string
	err            error
}

func (e *sentinelError) Error() string {
	return "redis sentinel: " + e.reason + ": " + e.detail + " (" + e.err.Error() + ")"
}
func (e *sentinelError) Unwrap() error            { return e.err }
func (e *sentinelError) RedisFaultReason() string { return e.reason }

// explainSentinelError turns go-redis' errors for a wrong master name (every
// sentinel answers "nil") and a wrong sentinel password into sentinelErrors.
func explainSentinelError(err error, master string) error {
	msg := err.Error()
	const prefix = "redis: all sentinels specified in configuration are unreachable: "
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		return err
	}
	answers := strings.Split(rest, "\n")
	nils, auth := 0, 0
	for _, a := range answers {
		switch {
		case a == "redis: nil":
			nils++
		case strings.Contains(a, "WRONGPASS"), strings.Contains(a, "NOAUTH"), strings.Contains(a, "invalid password"),
			strings.Contains(a, "invalid username-password"):
			auth++
		}
	}
	switch {
	case nils == len(answers):
		return &sentinelError{reason: "no sentinel knows the master name (REDIS_SENTINEL_MASTER)",
			detail: fmt.Sprintf("%d of %d sentinels know no master named %q", nils, len(answers), master), err: err}
	case auth == len(answers):
		return &sentinelError{reason: "sentinel authentication failed (REDIS_SENTINEL_PASSWORD)",
			detail: "every sentinel refused the password", err: err}
	}
	return err
}

func (l *sentinelLookup) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (l *sentinelLookup) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// failoverOptions are the failover client's options: o's settings (the
// URL's, with client's pool and buffers) for the sentinels and data nodes.
func (c *redisConfig) failoverOptions(o *redis.Options) *redis.FailoverOptions {
	return &redis.FailoverOptions{
		MasterName: c.master, SentinelAddrs: c.sentinels, SentinelPassword: c.sentinelPassword,
		ClientName: o.ClientName, Dialer: o.Dialer, OnConnect: o.OnConnect, Protocol: o.Protocol,
		Username: o.Username, Password: o.Password, DB: o.DB,
		MaxRetries: o.MaxRetries, MinRetryBackoff: o.MinRetryBackoff, MaxRetryBackoff: o.MaxRetryBackoff,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		ContextTimeoutEnabled: o.ContextTimeoutEnabled,
		ReadBufferSize:        o.ReadBufferSize, WriteBufferSize: o.WriteBufferSize,
		PoolFIFO: o.PoolFIFO, PoolSize: o.PoolSize, PoolTimeout: o.PoolTimeout,
		MinIdleConns: o.MinIdleConns, MaxIdleConns: o.MaxIdleConns, MaxActiveConns: o.MaxActiveConns,
		ConnMaxIdleTime: o.ConnMaxIdleTime, ConnMaxLifetime: o.ConnMaxLifetime,
		TLSConfig: o.TLSConfig, DisableIdentity: o.DisableIdentity, IdentitySuffix: o.IdentitySuffix,
		UnstableResp3: o.UnstableResp3,
	}
}

// primaryTracker remembers the data node the failover client's connections
// go to (the dial hook sees the address Sentinel gave), and logs each
// change once per process: the first primary at info, a failover at warn.
type primaryTracker struct {
	log      *zap.Logger
	sentinel bool
	mu       sync.Mutex
	addr     string
	since    time.Time
}

func (p *primaryTracker) get() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

func (p *primaryTracker) saw(addr string) {
	p.mu.Lock()
	prev := p.addr
	if prev == addr {
		p.mu.Unlock()
		return
	}
	p.addr, p.since = addr, time.Now()
	p.mu.Unlock()
	if prev == "" {
		p.log.Info("Redis primary (from Sentinel)", zap.String("redis_primary", addr))
	} else {
		p.log.Warn("Redis primary changed (Sentinel failover): following the new primary",
			zap.String("redis_primary", addr), zap.String("previous", prev))
	}
}

func (p *primaryTracker) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := next(ctx, network, addr)
		if err == nil && cn != nil && cn.RemoteAddr() != nil {
			p.saw(cn.RemoteAddr().String())
		}
		return cn, err
	}
}

func (p *primaryTracker) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (p *primaryTracker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// newRedis returns a plain client for opt (redisConfig.client without
// Sentinel) with a pool sized for concurrency.
func newRedis(opt *redis.Options, poolSize int) *redis.Client {
	return (&redisConfig{opt: opt}).client(poolSize).(*redis.Client)
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
