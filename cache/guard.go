package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Reason says why a Guard refuses a write ("" when it allows it).
type Reason string

// Reasons a Guard refuses a cache write; also the label values of the
// skipped-write metrics.
const (
	ReasonNone Reason = ""
	// ReasonPressure: Redis' used_memory is at or above the configured share
	// of maxmemory (INFO memory, read at most once per CheckInterval).
	ReasonPressure Reason = "pressure"
	// ReasonOOM: a write was answered with an OOM error reply less than
	// OOMBackoff ago.
	ReasonOOM Reason = "oom"
	// ReasonBudget: the write budget (bytes per window) is spent.
	ReasonBudget Reason = "budget"
)

// Defaults of GuardConfig.
const (
	DefaultPressureRatio = 0.9
	DefaultCheckInterval = time.Second
	DefaultOOMBackoff    = 30 * time.Second
	DefaultBudgetWindow  = 24 * time.Hour
)

// GuardConfig configures a Guard. The zero value checks memory pressure
// with the defaults and has no byte budget.
type GuardConfig struct {
	// PressureRatio: no writes while used_memory ≥ PressureRatio × maxmemory
	// (only when Redis has a maxmemory). Default 0.9; a negative value turns
	// the check off.
	PressureRatio float64
	// CheckInterval: INFO memory is read at most this often (the answer is
	// cached in between). Default 1 s.
	CheckInterval time.Duration
	// OOMBackoff: after an OOM error reply (ObserveError), no writes for this
	// long. Default 30 s.
	OOMBackoff time.Duration
	// BudgetBytes, when positive, is a token bucket on the bytes written
	// (EntryCost): at most BudgetBytes at once, refilled at BudgetBytes per
	// BudgetWindow. 0: no budget.
	BudgetBytes int64
	// BudgetWindow is the bucket's refill period. Default 24 h.
	BudgetWindow time.Duration
	// Logger gets one line when writes stop or resume because of memory
	// pressure or an OOM reply, and INFO failures (at most once a minute).
	// Default: no-op.
	Logger *zap.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

func (c GuardConfig) withDefaults() GuardConfig {
	if c.PressureRatio == 0 {
		c.PressureRatio = DefaultPressureRatio
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.OOMBackoff <= 0 {
		c.OOMBackoff = DefaultOOMBackoff
	}
	if c.BudgetWindow <= 0 {
		c.BudgetWindow = DefaultBudgetWindow
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Guard decides whether cache entries may be written to a Redis that is
// shared with other applications (Rails' Sidekiq): not while Redis reports
// memory pressure (used_memory near maxmemory), not for a while after an
// OOM error reply, and not beyond a byte budget. Reads are never affected.
// A refused write is simply not made: the caller answers without caching.
//
// Typical use, before writing entries:
//
//	if ok, why := g.Allow(ctx, cache.EntriesCost(c, entries)); !ok {
//		skipped.WithLabelValues(string(why)).Inc()
//		return
//	}
//	err := c.PutMany(ctx, entries)
//	g.ObserveError(err)
//
// A Guard is safe for concurrent use; one per process lets every writer
// share the INFO reads and the budget.
type Guard struct {
	rdb redis.UniversalClient
	cfg GuardConfig
	log *zap.Logger

	// memory state, refreshed by one caller at a time
	checking   atomic.Bool
	checkedAt  atomic.Int64 // unix nanos of the last INFO attempt
	pressure   atomic.Bool
	usedMemory atomic.Int64
	maxMemory  atomic.Int64
	oomUntil   atomic.Int64 // unix nanos
	infoLogged atomic.Int64 // unix nanos of the last INFO failure logged

	mu     sync.Mutex // the budget
	tokens float64
	filled time.Time
}

// NewGuard returns a guard over rdb (which the caller owns and closes).
func NewGuard(rdb redis.UniversalClient, cfg GuardConfig) (*Guard, error) {
	if rdb == nil {
		return nil, errors.New("cache guard: nil redis client")
	}
	if cfg.BudgetBytes < 0 {
		return nil, fmt.Errorf("cache guard: negative budget %d", cfg.BudgetBytes)
	}
	if cfg.PressureRatio > 1 {
		return nil, fmt.Errorf("cache guard: pressure ratio %v is above 1", cfg.PressureRatio)
	}
	cfg = cfg.withDefaults()
	g := &Guard{rdb: rdb, cfg: cfg, log: cfg.Logger, tokens: float64(cfg.BudgetBytes), filled: cfg.Now()}
	return g, nil
}

// Config returns the effective configuration.
func (g *Guard) Config() GuardConfig { return g.cfg }

// Writable reports whether Redis may take writes now: false with
// ReasonOOM within OOMBackoff of an OOM reply, false with ReasonPressure
// while used_memory ≥ PressureRatio × maxmemory. It reads INFO memory
// (bounded by ctx) at most once per CheckInterval, by one caller at a time;
// the others use the last answer. An INFO that fails leaves the last
// answer in place (a Redis that refuses INFO is never under pressure).
func (g *Guard) Writable(ctx context.Context) (bool, Reason) {
	now := g.cfg.Now()
	if now.UnixNano() < g.oomUntil.Load() {
		return false, ReasonOOM
	}
	if g.cfg.PressureRatio < 0 {
		return true, ReasonNone
	}
	if now.UnixNano()-g.checkedAt.Load() >= int64(g.cfg.CheckInterval) && g.checking.CompareAndSwap(false, true) {
		g.refresh(ctx, now)
		g.checking.Store(false)
	}
	if g.pressure.Load() {
		return false, ReasonPressure
	}
	return true, ReasonNone
}

// refresh reads INFO memory.
func (g *Guard) refresh(ctx context.Context, now time.Time) {
	g.checkedAt.Store(now.UnixNano())
	info, err := g.rdb.Info(ctx, "memory").Result()
	if err != nil {
		last := g.infoLogged.Load()
		if now.UnixNano()-last >= int64(time.Minute) && g.infoLogged.CompareAndSwap(last, now.UnixNano()) {
			g.log.Warn("cache guard: reading INFO memory failed; keeping the last memory state", zap.Error(err))
		}
		return
	}
	used, maxMem, ok := parseMemoryInfo(info)
	if !ok {
		return
	}
	g.usedMemory.Store(used)
	g.maxMemory.Store(maxMem)
	under := maxMem > 0 && float64(used) >= g.cfg.PressureRatio*float64(maxMem)
	if was := g.pressure.Swap(under); was != under {
		if under {
			g.log.Warn("Redis memory pressure: cache writes paused",
				zap.Int64("used_memory", used), zap.Int64("maxmemory", maxMem), zap.Float64("ratio", g.cfg.PressureRatio))
		} else {
			g.log.Info("Redis memory pressure over: cache writes resume",
				zap.Int64("used_memory", used), zap.Int64("maxmemory", maxMem))
		}
	}
}

// parseMemoryInfo reads used_memory and maxmemory from INFO memory.
func parseMemoryInfo(info string) (used, maxMem int64, ok bool) {
	var haveUsed, haveMax bool
	for _, line := range strings.Split(info, "\n") {
		k, v, found := strings.Cut(strings.TrimSpace(line), ":")
		if !found {
			continue
		}
		switch k {
		case "used_memory":
			n, err := strconv.ParseInt(v, 10, 64)
			used, haveUsed = n, err == nil
		case "maxmemory":
			n, err := strconv.ParseInt(v, 10, 64)
			maxMem, haveMax = n, err == nil
		}
	}
	return used, maxMem, haveUsed && haveMax
}

// Reserve takes n bytes from the budget; false (nothing taken) when fewer
// are left. Always true without a budget.
func (g *Guard) Reserve(n int64) bool {
	if g.cfg.BudgetBytes <= 0 {
		return true
	}
	if n > g.cfg.BudgetBytes {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	if d := now.Sub(g.filled); d > 0 {
		g.tokens += float64(g.cfg.BudgetBytes) * d.Seconds() / g.cfg.BudgetWindow.Seconds()
		g.tokens = min(g.tokens, float64(g.cfg.BudgetBytes))
	}
	g.filled = now
	if g.tokens < float64(n) {
		return false
	}
	g.tokens -= float64(n)
	return true
}

// Allow is Writable, then Reserve(n): whether a write of n bytes (EntryCost)
// may be made now, and if not why.
func (g *Guard) Allow(ctx context.Context, n int64) (bool, Reason) {
	if ok, why := g.Writable(ctx); !ok {
		return false, why
	}
	if !g.Reserve(n) {
		return false, ReasonBudget
	}
	return true, ReasonNone
}

// ObserveError reports the result of a write. An OOM error reply ("OOM
// command not allowed when used memory > 'maxmemory'", also inside a
// pipeline or script error) stops writes for OOMBackoff; it returns true
// then. Any other error, or nil, is ignored.
func (g *Guard) ObserveError(err error) bool {
	if !IsOOM(err) {
		return false
	}
	now := g.cfg.Now()
	until := now.Add(g.cfg.OOMBackoff).UnixNano()
	if prev := g.oomUntil.Swap(until); prev < now.UnixNano() {
		g.log.Warn("Redis answered OOM: cache writes paused",
			zap.Duration("for", g.cfg.OOMBackoff), zap.Error(err))
	}
	return true
}

// IsOOM reports whether err is (or wraps) Redis' OOM error reply.
func IsOOM(err error) bool {
	if err == nil {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return strings.HasPrefix(rerr.Error(), "OOM ")
	}
	return false
}

// GuardState is what a Guard last saw, for status pages.
type GuardState struct {
	UsedMemory, MaxMemory int64 // from the last INFO memory (0: not read yet)
	Pressure              bool
	OOMUntil              time.Time // zero when no OOM reply was seen
	BudgetLeft            int64     // bytes; -1 without a budget
}

// State returns what the guard last saw.
func (g *Guard) State() GuardState {
	st := GuardState{
		UsedMemory: g.usedMemory.Load(), MaxMemory: g.maxMemory.Load(),
		Pressure: g.pressure.Load(), BudgetLeft: -1,
	}
	if u := g.oomUntil.Load(); u != 0 {
		st.OOMUntil = time.Unix(0, u)
	}
	if g.cfg.BudgetBytes > 0 {
		g.mu.Lock()
		st.BudgetLeft = int64(g.tokens)
		g.mu.Unlock()
	}
	return st
}

// entryOverhead is what Redis spends on a string key with an expiry beyond
// its key and value bytes: the dict entries (keys and expires), the value
// object, the sds headers, the hash tables' slots. Measured with Redis 7
// (TestEntryCostBoundsRedisMemory): 500 entries with a 200-byte value grow
// used_memory by 496 bytes each, 231 beyond the key and value bytes and
// their 25 % rounding allowance; 224 leaves a margin.
const entryOverhead = 224

// EntryCost is an upper estimate of the memory Redis uses for one string
// entry with a key of keyLen bytes and a value of valLen bytes: the bytes
// themselves, allocator rounding (jemalloc size classes are at most 25 %
// above a request) and the per-key overhead.
func EntryCost(keyLen, valLen int) int64 {
	n := int64(keyLen + valLen)
	return n + n/4 + entryOverhead
}

// Cost is EntryCost of the entry of normalized whose value is val.
func (c *Cache) Cost(normalized string, val []byte) int64 {
	return EntryCost(len(c.cfg.Prefix)+len(normalized), len(val))
}
