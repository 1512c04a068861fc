package worker

import (
	"context"
	"crypto/sha1" //nolint:gosec // Redis names scripts by SHA-1
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The Redis gate.
//
// Every Redis client of a Server gets one gate (a go-redis hook). While
// Redis answers normally the gate costs one atomic load per call. When a
// call fails in a way that says Redis as a whole cannot serve us (it is
// unreachable, refuses our credentials or database, is out of memory,
// read-only, loading, …: see classify), the gate trips: from then on the
// client's callers wait, and only one call per backoff interval (50 ms,
// doubling with ±10 % jitter up to RedisMaxBackoff, 30 s by default) is let
// through as a probe. The others get the probe's error when it fails
// (without reaching Redis), or go on when it succeeds. The first success
// of a probe resets the gate. So an outage costs Redis at most about one
// attempt per interval per client, whatever the callers do: asynq's
// processor, which retries a failed dequeue at once, and go-redis, which
// opens a new connection for every command when AUTH fails, included.
//
// Faults that only some commands meet (OOM, READONLY, MISCONF: writes are
// refused; NOPERM: some commands are) hold back only the commands (scripts:
// by SHA) that met them, and only their success counts as recovery: reads
// that still work neither wait nor end the outage.
//
// Answers that concern one command (redis.Nil, WRONGTYPE, a script's own
// error, NOSCRIPT, which go-redis answers by sending the script) never
// trip the gate.
//
// The gate logs one line per change of state (degraded, with the reason;
// recovered, with how long it lasted), never one per attempt, and
// shutdown releases every waiting caller (stop).

// redisState is the health of one of the Server's Redis clients as its gate
// sees it (Server.RedisState reports it).
type redisState struct {
	// OK is false while the gate holds callers back.
	OK bool
	// Reason is a short generic description of the fault ("authentication
	// failed (WRONGPASS)", "out of memory (OOM)", "unreachable"); it never
	// contains addresses or credentials. Empty when OK.
	Reason string
	// Since is when the current fault began (zero when OK).
	Since time.Time
}

const (
	gateMinDelay = 50 * time.Millisecond
	// DefaultRedisMaxBackoff is the default Config.RedisMaxBackoff.
	DefaultRedisMaxBackoff = 30 * time.Second
	// gateStopWait bounds a wait once the gate is stopped (shutdown), so
	// that shutdown's own calls end quickly while callers that loop on
	// errors still cannot spin.
	gateStopWait = 50 * time.Millisecond
)

// fault is the classification of one call's outcome.
type fault int

const (
	faultNone         fault = iota // a normal answer (success or a per-command error)
	faultInconclusive              // tells nothing about Redis (the caller gave up, the pool was busy, …)
	faultNoScript                  // NOSCRIPT: go-redis sends the script next; let that be the probe
	faultDown                      // Redis cannot serve any command
	faultPartial                   // Redis refuses some commands (writes, or by ACL)
)

// gateErr is what a call the gate held back gets (its command never
// reached Redis): the last fault's error, with the reason. errors.Is/As see
// the fault's error, so callers treat it as they would the real answer.
type gateErr struct {
	reason string
	err    error
}

func (e *gateErr) Error() string {
	return fmt.Sprintf("%v [not sent: Redis degraded (%s), backing off]", e.err, e.reason)
}

func (e *gateErr) Unwrap() error { return e.err }

type gateCtxKey struct{}

// callKind is what a gated call is: one command, a pipeline (MULTI/EXEC
// included) or a dial. Inside hooks a single command's error is the value
// the call returns (go-redis sets cmd.Err() after the hooks); a pipeline's
// commands carry their own errors.
type callKind int

const (
	kindCmd callKind = iota
	kindPipeline
	kindDial
)

// gate is the state shared by all callers of one client.
type gate struct {
	name string
	log  *zap.Logger
	max  time.Duration

	failingFlag atomic.Bool // the fast path reads only this

	mu        sync.Mutex
	failing   bool
	partial   bool            // every fault of this episode refuses only some commands
	held      map[string]bool // partial: identities (command names, script SHAs) that met the fault
	reason    string
	lastErr   error
	since     time.Time
	failures  int // failed probes (and the trip) of this episode
	attempts  int // failed probes and trips ever (waiters compare it)
	delay     time.Duration
	nextProbe time.Time
	probing   bool
	changed   chan struct{} // closed and replaced whenever a probe ends or the state changes
	stopped   bool
	stop      chan struct{}

	// go-redis' pool, after PoolSize failed dials, answers every call with
	// the last dial error (without dialing) until its background dialer
	// gets through. A probe answered that way reached nothing: the gate
	// then lets the next dial probe at once (wantDial).
	dials       atomic.Uint64 // dials begun through this gate's hook
	lastDialErr error         // the last error a dial returned
	wantDial    bool

	// After a recovery: if the fault comes back soon, the backoff goes on
	// from where it was instead of starting over (a flapping fault must not
	// become a storm of short intervals).
	recoveredAt  time.Time
	lastFailures int
	lastDelay    time.Duration
}

func newGate(name string, log *zap.Logger, max time.Duration) *gate {
	return &gate{
		name: name, log: log, max: max,
		changed: make(chan struct{}), stop: make(chan struct{}),
	}
}

// failingNow reports whether the gate holds callers back.
func (g *gate) failingNow() bool { return g.failingFlag.Load() }

// state reports the gate's state.
func (g *gate) state() redisState {
	if !g.failingFlag.Load() {
		return redisState{OK: true}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.failing {
		return redisState{OK: true}
	}
	return redisState{Reason: g.reason, Since: g.since}
}

// shutdown releases every waiting caller; from now on a held-back call
// waits at most gateStopWait. Safe to call more than once.
func (g *gate) shutdown() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.stopped {
		g.stopped = true
		close(g.stop)
	}
}

// backoffLocked returns the interval after n failures, with jitter.
func (g *gate) backoffLocked(n int) time.Duration {
	d := gateMinDelay << min(max(n-1, 0), 20)
	if d > g.max || d <= 0 {
		d = g.max
	}
	g.delay = d
	return jitter(d, g.max)
}

// jitter spreads d by ±10 %, capped at ceiling.
func jitter(d, ceiling time.Duration) time.Duration {
	j := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return min(d+j, ceiling)
}

func (g *gate) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// call runs one Redis call (a command, a pipeline or a dial) through the
// gate. cmds are the commands (nil for a dial); do performs the call.
func (g *gate) call(ctx context.Context, cmds []redis.Cmder, kind callKind, do func(context.Context) error) error {
	if ctx.Value(gateCtxKey{}) == g {
		// A call made inside a probe (go-redis dialing and authenticating
		// the probe's connection): the probe itself is accounted for.
		return do(ctx)
	}
	if !g.failingFlag.Load() {
		err := do(ctx)
		if err != nil {
			g.observe(ctx, cmds, kind, err)
		}
		return err
	}
	return g.slow(ctx, cmds, kind, do)
}

// observe trips the gate if err, the outcome of a call made while it was
// open, shows a fault.
func (g *gate) observe(ctx context.Context, cmds []redis.Cmder, kind callKind, err error) {
	if f, reason, ferr := classify(ctx, cmds, kind, err); f == faultDown || f == faultPartial {
		g.trip(f, reason, ferr, cmds, kind, err)
	}
}

// slow is call while the gate is failing.
func (g *gate) slow(ctx context.Context, cmds []redis.Cmder, kind callKind, do func(context.Context) error) error {
	var ids []string
	idsOf := func() []string {
		if ids == nil {
			ids = identities(cmds, kind)
		}
		return ids
	}
	waited := false
	seen := -1 // g.attempts when this call began to wait
	for {
		g.mu.Lock()
		if !g.failing {
			g.mu.Unlock()
			return g.call(ctx, cmds, kind, do)
		}
		if g.partial && !g.heldLocked(idsOf()) {
			// Not among the refused commands: it goes through, and joins
			// them if it is refused too.
			g.mu.Unlock()
			err := do(ctx)
			if err != nil {
				g.observe(ctx, cmds, kind, err)
			}
			return err
		}
		if seen >= 0 && g.attempts != seen {
			// A probe failed while this call waited: it gets that answer
			// without being sent.
			err := g.heldErrLocked()
			g.mu.Unlock()
			return setErr(cmds, err)
		}
		now := time.Now()
		due := !now.Before(g.nextProbe) || (kind == kindDial && g.wantDial)
		if !g.probing && due && !g.stopped {
			g.probing = true
			dials := g.dials.Load()
			g.mu.Unlock()
			err := do(context.WithValue(ctx, gateCtxKey{}, g))
			g.probed(ctx, cmds, kind, err, dials)
			return err
		}
		if g.stopped && waited {
			// Shutting down: no more probes (a hanging one costs a dial
			// timeout); the call answers at once, or after gateStopWait for
			// callers that loop on errors.
			err := g.heldErrLocked()
			g.mu.Unlock()
			return setErr(cmds, err)
		}
		if seen < 0 {
			seen = g.attempts
		}
		wait := g.nextProbe.Sub(now)
		if g.probing || wait <= 0 {
			wait = g.max // until the running probe ends
		}
		stop := g.stop
		if g.stopped {
			wait = min(wait, gateStopWait)
			stop = nil // closed already: wait the short while instead
		}
		changed := g.changed
		reason := g.reason
		g.mu.Unlock()
		waited = true
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return setErr(cmds, &gateErr{reason: reason, err: fmt.Errorf("waiting out a Redis outage (%s): %w", reason, ctx.Err())})
		case <-changed: // a probe ended, or the state changed: look again
		case <-stop: // shutdown: answer now (next round)
			seen = -2
		case <-t.C:
		}
		t.Stop()
	}
}

func (g *gate) heldLocked(ids []string) bool {
	for _, id := range ids {
		if g.held[id] {
			return true
		}
	}
	return false
}

func (g *gate) heldErrLocked() error {
	return &gateErr{reason: g.reason, err: g.lastErr}
}

// setErr gives held-back commands err (go-redis callers read cmd.Err()).
func setErr(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		c.SetErr(err)
	}
	return err
}

// trip records a fault seen outside a probe.
func (g *gate) trip(f fault, reason string, err error, cmds []redis.Cmder, kind callKind, callErr error) {
	g.mu.Lock()
	now := time.Now()
	if g.failing {
		changed := false
		if f == faultDown && g.partial {
			g.partial, g.held = false, nil
			changed = true
		} else if f == faultPartial && g.partial {
			g.addHeldLocked(cmds, kind, callErr)
		}
		if changed || reason != g.reason {
			g.reason, g.lastErr = reason, err
			g.log.Warn("Redis still degraded; the reason changed", zap.String("client", g.name), zap.String("reason", reason), zap.Error(err))
		}
		g.mu.Unlock()
		return
	}
	g.failing = true
	g.failingFlag.Store(true)
	g.partial = f == faultPartial
	g.held = nil
	if g.partial {
		g.addHeldLocked(cmds, kind, callErr)
	}
	g.reason, g.lastErr, g.since = reason, err, now
	g.failures = 1
	if !g.recoveredAt.IsZero() && now.Sub(g.recoveredAt) < 2*g.lastDelay+time.Second {
		g.failures = g.lastFailures + 1 // flapping: go on with the backoff
	}
	d := g.backoffLocked(g.failures)
	g.nextProbe = now.Add(d)
	g.attempts++
	g.broadcastLocked()
	g.log.Warn("Redis degraded; backing off (one attempt per interval until it answers again)",
		zap.String("client", g.name), zap.String("reason", reason), zap.Error(err),
		zap.Duration("first_retry_in", d), zap.Duration("max_backoff", g.max))
	g.mu.Unlock()
}

func (g *gate) addHeldLocked(cmds []redis.Cmder, kind callKind, callErr error) {
	if g.held == nil {
		g.held = map[string]bool{}
	}
	for _, c := range cmds {
		err := callErr
		if kind == kindPipeline {
			err = c.Err()
		}
		if f, _, _ := classifyOne(context.Background(), err); f == faultPartial || f == faultDown {
			g.held[identity(c)] = true
		}
	}
}

// probed records the outcome of a probe.
func (g *gate) probed(ctx context.Context, cmds []redis.Cmder, kind callKind, err error, dialsBefore uint64) {
	f, reason, ferr := classify(ctx, cmds, kind, err)
	if f == faultNone && (kind == kindDial || connInit(cmds)) {
		// A connection is no proof that Redis serves us (AUTH comes next),
		// and go-redis ignores the errors of the commands that set one up
		// (HELLO where unsupported, CLIENT SETINFO before Redis 7.2), so
		// neither is their "success": let the next command be the probe.
		f = faultNoScript
	}
	g.mu.Lock()
	g.probing = false
	now := time.Now()
	if kind == kindDial {
		g.wantDial = false
	} else if err != nil && g.lastDialErr != nil && g.dials.Load() == dialsBefore && errors.Is(err, g.lastDialErr) {
		// The pool's cached dial error: nothing reached Redis. Its
		// background dialer may probe at once; the next command probe
		// waits the interval.
		f = faultInconclusive
		g.wantDial = true
	}
	switch f {
	case faultNone:
		took := now.Sub(g.since)
		g.log.Info("Redis recovered", zap.String("client", g.name), zap.String("reason_was", g.reason),
			zap.Duration("degraded_for", took), zap.Int("failed_attempts", g.failures))
		g.recoveredAt, g.lastFailures, g.lastDelay = now, g.failures, g.delay
		g.failing, g.partial, g.held = false, false, nil
		g.failingFlag.Store(false)
		g.reason, g.lastErr, g.failures = "", nil, 0
	case faultNoScript:
		// Nothing learnt, nothing sent that failed: the next call may probe at once.
	case faultInconclusive:
		g.nextProbe = now.Add(jitter(g.delay, g.max))
	case faultDown, faultPartial:
		g.failures++
		g.attempts++
		if f == faultDown && g.partial {
			g.partial, g.held = false, nil
		} else if f == faultPartial && g.partial {
			g.addHeldLocked(cmds, kind, err)
		}
		if reason != g.reason {
			g.log.Warn("Redis still degraded; the reason changed", zap.String("client", g.name), zap.String("reason", reason), zap.Error(ferr))
		}
		g.reason, g.lastErr = reason, ferr
		g.nextProbe = now.Add(g.backoffLocked(g.failures))
	}
	g.broadcastLocked()
	g.mu.Unlock()
}

// waitRecovered returns when the gate is healthy, ctx ends, the gate is
// stopped, or d has passed; it reports whether the gate is healthy. It
// sends nothing to Redis.
func (g *gate) waitRecovered(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		g.mu.Lock()
		if !g.failing {
			g.mu.Unlock()
			return true
		}
		changed, stop := g.changed, g.stop
		g.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		case <-t.C:
			return false
		}
	}
}

// downNow reports whether the gate holds back every command (not only
// those a partial fault refused).
func (g *gate) downNow() bool {
	if !g.failingFlag.Load() {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failing && !g.partial
}

// connInit reports whether a call is one go-redis makes to set a new
// connection up: HELLO, AUTH, SELECT, CLIENT SETNAME/SETINFO, READONLY.
func connInit(cmds []redis.Cmder) bool {
	if len(cmds) == 0 {
		return false
	}
	for _, c := range cmds {
		args := c.Args()
		if len(args) == 0 {
			return false
		}
		switch name, _ := args[0].(string); strings.ToLower(name) {
		case "hello", "auth", "select", "client", "readonly":
		default:
			return false
		}
	}
	return true
}

// identities of a call, for partial faults: command names, scripts by SHA.
func identities(cmds []redis.Cmder, kind callKind) []string {
	if kind == kindDial {
		return []string{"(dial)"}
	}
	ids := make([]string, 0, len(cmds))
	for _, c := range cmds {
		ids = append(ids, identity(c))
	}
	return ids
}

func identity(c redis.Cmder) string {
	args := c.Args()
	if len(args) == 0 {
		return ""
	}
	name := strings.ToLower(fmt.Sprint(args[0]))
	if len(args) > 1 {
		switch name {
		case "evalsha", "evalsha_ro":
			return "script:" + strings.ToLower(fmt.Sprint(args[1]))
		case "eval", "eval_ro":
			sum := sha1.Sum([]byte(fmt.Sprint(args[1]))) //nolint:gosec // Redis' script id
			return "script:" + hex.EncodeToString(sum[:])
		case "fcall", "fcall_ro":
			return "function:" + fmt.Sprint(args[1])
		}
	}
	return name
}

// classify sorts a call's outcome: err is what the call returned, cmds its
// commands (nil for a dial). For a fault it returns a generic reason and
// the error that showed it.
func classify(ctx context.Context, cmds []redis.Cmder, kind callKind, err error) (fault, string, error) {
	if err == nil {
		return faultNone, "", nil
	}
	best, reason, ferr := classifyOne(ctx, err)
	if kind != kindPipeline {
		return best, reason, ferr
	}
	for _, c := range cmds {
		if f, r, e := classifyOne(ctx, c.Err()); f > best {
			best, reason, ferr = f, r, e
		}
	}
	return best, reason, ferr
}

// classifyOne sorts one error (see gate).
func classifyOne(ctx context.Context, err error) (fault, string, error) {
	if err == nil || errors.Is(err, redis.Nil) {
		return faultNone, "", nil
	}
	var held *gateErr
	if errors.As(err, &held) {
		return faultInconclusive, "", nil // another gate's answer, not Redis'
	}
	// An error that says itself what is wrong (cmd's Sentinel lookup: no
	// such master name, the sentinels' password refused) keeps its reason.
	var why interface{ RedisFaultReason() string }
	if errors.As(err, &why) {
		return faultDown, why.RedisFaultReason(), err
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		word, _, _ := strings.Cut(msg, " ")
		switch word {
		case "WRONGPASS", "NOAUTH":
			return faultDown, "authentication failed (" + word + ")", err
		case "LOADING":
			return faultDown, "Redis is loading its data (LOADING)", err
		case "MASTERDOWN":
			return faultDown, "replica without a master (MASTERDOWN)", err
		case "BUSY":
			return faultDown, "Redis busy running a script (BUSY)", err
		case "CLUSTERDOWN":
			return faultDown, "cluster down (CLUSTERDOWN)", err
		case "OOM":
			return faultPartial, "out of memory (OOM)", err
		case "READONLY":
			return faultPartial, "read-only replica (READONLY)", err
		case "MISCONF":
			return faultPartial, "persistence failing, writes refused (MISCONF)", err
		case "NOREPLICAS":
			return faultPartial, "not enough replicas to write (NOREPLICAS)", err
		case "NOPERM":
			return faultPartial, "command not permitted to this user (NOPERM)", err
		case "NOSCRIPT":
			return faultNoScript, "", nil
		case "ERR":
			switch {
			case strings.HasPrefix(msg, "ERR invalid password"),
				strings.HasPrefix(msg, "ERR AUTH"),
				strings.HasPrefix(msg, "ERR Client sent AUTH"),
				strings.HasPrefix(msg, "ERR invalid username-password"):
				return faultDown, "authentication failed", err
			case strings.HasPrefix(msg, "ERR DB index is out of range"),
				strings.HasPrefix(msg, "ERR invalid DB index"),
				strings.HasPrefix(msg, "ERR SELECT is not allowed"):
				return faultDown, "database index refused (check the /N in the Redis URL)", err
			case strings.HasPrefix(msg, "ERR max number of clients reached"):
				return faultDown, "too many clients", err
			}
		}
		return faultNone, "", nil // an answer about this command only
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if ctx.Err() != nil {
			return faultInconclusive, "", nil // the caller gave up
		}
		return faultDown, "unreachable (timeout)", err
	case errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, net.ErrClosed):
		// Our own client closing, or a busy pool: nothing about Redis.
		return faultInconclusive, "", nil
	}
	if isTLSError(err) {
		return faultDown, "TLS handshake failed", err
	}
	return faultDown, "unreachable", err
}

func isTLSError(err error) bool {
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	var cv *tls.CertificateVerificationError
	if errors.As(err, &rh) || errors.As(err, &ae) || errors.As(err, &cv) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "tls: ") || strings.Contains(msg, "TLS handshake")
}

// isConnError reports whether err means Redis could not be reached (as
// opposed to an answer from Redis, or the caller giving up). The handler
// retries these within a job.
func isConnError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		// An error reply; but LOADING (Redis restarting) is an outage too.
		msg := rerr.Error()
		return len(msg) >= 7 && msg[:7] == "LOADING"
	}
	return true
}

// idlePoll makes asynq's polling adaptive. asynq has no blocking fetch: an
// idle processor runs its dequeue script every TaskCheckInterval (2 ms,
// about 1,000 Redis commands/s). After consecutive empty rounds (every
// queue empty) idlePoll holds the empty answer a little longer, doubling
// from the base interval up to max, and lets go at once when this
// process's bridge hands asynq a task (wake), or on shutdown. Any task
// found resets it. Tasks nobody here announces (other processes', retries
// asynq's forwarder moves) wait at most max.
type idlePoll struct {
	base, max time.Duration
	queues    int

	mu       sync.Mutex
	empty    int    // consecutive empty dequeues
	roundGen uint64 // gen at the start of the current round

	gen    atomic.Uint64
	wakeCh chan struct{}
	stop   chan struct{}
	once   sync.Once
}

func newIdlePoll(base, max time.Duration, queues int) *idlePoll {
	return &idlePoll{base: base, max: max, queues: max1(queues), wakeCh: make(chan struct{}, 1), stop: make(chan struct{})}
}

func max1(n int) int { return max(n, 1) }

// wake tells a sleeping dequeue that a task was enqueued.
func (p *idlePoll) wake() {
	p.gen.Add(1)
	select {
	case p.wakeCh <- struct{}{}:
	default:
	}
}

// shutdown ends every sleep, now and later.
func (p *idlePoll) shutdown() { p.once.Do(func() { close(p.stop) }) }

// isDequeue recognises asynq v0.26's dequeue script call (rdb.Dequeue:
// KEYS pending, paused, active, lease of one queue). A test pins it.
func isDequeue(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 7 {
		return false
	}
	if name, _ := args[0].(string); name != "evalsha" && name != "eval" {
		return false
	}
	if n, ok := args[2].(int); !ok || n != 4 {
		return false
	}
	k0, _ := args[3].(string)
	k1, _ := args[4].(string)
	return strings.HasPrefix(k0, "asynq:{") && strings.HasSuffix(k0, "}:pending") && strings.HasSuffix(k1, "}:paused")
}

// around runs one dequeue call.
func (p *idlePoll) around(do func() error) error {
	p.mu.Lock()
	if p.empty%p.queues == 0 { // a new round
		select {
		case <-p.wakeCh: // an old signal; gen tells what is new
		default:
		}
		p.roundGen = p.gen.Load()
	}
	p.mu.Unlock()
	err := do()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err // a failure: the gate paces those
	}
	p.mu.Lock()
	if err == nil {
		p.empty = 0
		p.mu.Unlock()
		return nil
	}
	p.empty++
	rounds := 0
	if p.empty%p.queues == 0 {
		rounds = p.empty / p.queues
	}
	gen := p.roundGen
	p.mu.Unlock()
	if rounds < 2 || p.gen.Load() != gen {
		return err
	}
	d := min(p.max, p.base<<min(rounds-1, 20))
	if d <= 0 {
		d = p.max
	}
	t := time.NewTimer(d)
	select {
	case <-p.wakeCh:
	case <-p.stop:
	case <-t.C:
	}
	t.Stop()
	return err
}

// redisHook is the go-redis hook a Server adds to each of its clients: the
// gate, and on asynq's client the adaptive poll.
type redisHook struct {
	g    *gate
	idle *idlePoll // nil but on asynq's client
}

func (h *redisHook) DialHook(next redis.DialHook) redis.DialHook {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		h.g.dials.Add(1)
		c, err := next(ctx, network, addr)
		if err != nil {
			h.g.mu.Lock()
			h.g.lastDialErr = err
			h.g.mu.Unlock()
		}
		return c, err
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		g := h.g
		if !g.failingFlag.Load() {
			c, err := dial(ctx, network, addr)
			if err != nil {
				g.observe(ctx, nil, kindDial, err)
			}
			return c, err
		}
		var c net.Conn
		err := g.call(ctx, nil, kindDial, func(ctx context.Context) error {
			var err error
			c, err = dial(ctx, network, addr)
			return err
		})
		if err != nil {
			// go-redis caches what a dial returns, a held-back dial's answer too.
			g.mu.Lock()
			g.lastDialErr = err
			g.mu.Unlock()
		}
		return c, err
	}
}

func (h *redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	process := func(ctx context.Context, cmd redis.Cmder) error {
		g := h.g
		if !g.failingFlag.Load() { // the fast path: no allocation
			err := next(ctx, cmd)
			if err != nil && err != redis.Nil {
				g.observe(ctx, []redis.Cmder{cmd}, kindCmd, err)
			}
			return err
		}
		return g.call(ctx, []redis.Cmder{cmd}, kindCmd, func(ctx context.Context) error { return next(ctx, cmd) })
	}
	if h.idle == nil {
		return process
	}
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isDequeue(cmd) {
			return h.idle.around(func() error { return process(ctx, cmd) })
		}
		return process(ctx, cmd)
	}
}

func (h *redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		g := h.g
		if !g.failingFlag.Load() {
			err := next(ctx, cmds)
			if err != nil {
				g.observe(ctx, cmds, kindPipeline, err)
			}
			return err
		}
		return g.call(ctx, cmds, kindPipeline, func(ctx context.Context) error { return next(ctx, cmds) })
	}
}
