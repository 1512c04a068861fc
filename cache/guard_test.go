package cache_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/cache"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/internal/testclock"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// infoCounter counts the INFO commands a client sends.
type infoCounter struct{ n atomic.Int64 }

func (h *infoCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *infoCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "info") {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *infoCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no used_memory in INFO")
	return 0
}

func TestNewGuardValidates(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	cases := []struct {
		name string
		rdb  redis.UniversalClient
		cfg  cache.GuardConfig
		ok   bool
	}{
		{"zero config", rdb, cache.GuardConfig{}, true},
		{"nil client", nil, cache.GuardConfig{}, false},
		{"negative budget", rdb, cache.GuardConfig{BudgetBytes: -1}, false},
		{"ratio above 1", rdb, cache.GuardConfig{PressureRatio: 1.5}, false},
		{"pressure off", rdb, cache.GuardConfig{PressureRatio: -1}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := cache.NewGuard(c.rdb, c.cfg)
			if (err == nil) != c.ok {
				t.Fatalf("err %v, want ok=%v", err, c.ok)
			}
			if g != nil && g.Config().PressureRatio == 0 {
				t.Error("defaults not applied")
			}
		})
	}
}

func TestGuardBudget(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never asked: pressure off
	defer rdb.Close()
	clk := testclock.New()
	g, err := cache.NewGuard(rdb, cache.GuardConfig{PressureRatio: -1, BudgetBytes: 1000, BudgetWindow: 100 * time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		n       int64
		want    bool
	}{
		{0, 600, true},                // 400 left
		{0, 500, false},               // not enough: nothing taken
		{0, 400, true},                // 0 left
		{0, 1, false},                 // spent
		{10 * time.Second, 100, true}, // 10 % of the window refills 100
		{0, 1, false},
		{time.Hour, 1001, false}, // larger than the bucket: never
		{0, 1000, true},          // refilled to the cap, not beyond
		{0, 1, false},
	}
	for i, s := range steps {
		clk.Add(s.advance)
		if got := g.Reserve(s.n); got != s.want {
			t.Fatalf("step %d: Reserve(%d) = %v, want %v (state %+v)", i, s.n, got, s.want, g.State())
		}
	}
	ok, why := g.Allow(context.Background(), 1)
	if ok || why != cache.ReasonBudget {
		t.Errorf("Allow with the budget spent: %v %q", ok, why)
	}
	// No budget: always.
	free, _ := cache.NewGuard(rdb, cache.GuardConfig{PressureRatio: -1})
	if !free.Reserve(1 << 40) {
		t.Error("no budget refused a write")
	}
	if st := free.State(); st.BudgetLeft != -1 {
		t.Errorf("no budget: BudgetLeft %d", st.BudgetLeft)
	}
}

// fill writes distinct ~8 KiB values until used_memory reaches target or a
// write is refused; it returns the last error.
func fill(t *testing.T, rdb *redis.Client, prefix string, target int64) error {
	t.Helper()
	ctx := context.Background()
	val := strings.Repeat("x", 8000)
	for i := 0; ; i++ {
		if i%64 == 0 && usedMemory(t, rdb) >= target {
			return nil
		}
		if err := rdb.Set(ctx, fmt.Sprintf("%s%d", prefix, i), val, 0).Err(); err != nil {
			return err
		}
		if i > 100_000 {
			t.Fatal("fill: no end")
		}
	}
}

func TestGuardMemoryPressure(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Private: true})
	rdb := srv.Client()
	ctx := context.Background()
	counter := &infoCounter{}
	grdb := srv.Client() // the guard's own client: only its INFOs are counted
	grdb.AddHook(counter)
	base := usedMemory(t, rdb)
	maxMem := base + 4<<20
	if err := rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(maxMem, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	clk := testclock.New()
	g, err := cache.NewGuard(grdb, cache.GuardConfig{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := g.Writable(ctx); !ok {
		t.Fatalf("empty Redis: not writable (%q)", why)
	}
	if st := g.State(); st.MaxMemory != maxMem || st.UsedMemory <= 0 || st.Pressure {
		t.Errorf("state %+v", st)
	}
	// 91 % of maxmemory: the guard sees it at its next INFO, not before.
	if err := fill(t, rdb, "filler:", maxMem*91/100); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if ok, _ := g.Writable(ctx); !ok {
			t.Fatal("INFO read again within the check interval")
		}
	}
	if n := counter.n.Load(); n != 1 {
		t.Errorf("%d INFO commands within one interval, want 1", n)
	}
	clk.Add(time.Second)
	if ok, why := g.Writable(ctx); ok || why != cache.ReasonPressure {
		t.Errorf("at 91%% of maxmemory: %v %q", ok, why)
	}
	if ok, why := g.Allow(ctx, 10); ok || why != cache.ReasonPressure {
		t.Errorf("Allow at 91%%: %v %q", ok, why)
	}
	if !g.State().Pressure {
		t.Error("state: no pressure")
	}
	// Reads are not the guard's business: still served.
	if err := rdb.Get(ctx, "filler:0").Err(); err != nil {
		t.Errorf("read under pressure: %v", err)
	}
	// Memory freed: writable again at the next check.
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	if ok, why := g.Writable(ctx); !ok {
		t.Errorf("after FLUSHDB: %q", why)
	}
	// No maxmemory: never under pressure.
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	if ok, why := g.Writable(ctx); !ok {
		t.Errorf("maxmemory 0: %q", why)
	}
	if n := counter.n.Load(); n != 4 {
		t.Errorf("%d INFO commands for 4 intervals", n)
	}
}

func TestGuardOOMReply(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Private: true})
	rdb := srv.Client()
	ctx := context.Background()
	base := usedMemory(t, rdb)
	if err := rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base+2<<20, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	err := fill(t, rdb, "filler:", 1<<62) // until Redis refuses
	if !cache.IsOOM(err) {
		t.Fatalf("fill ended with %v, want an OOM reply", err)
	}
	// Keep it refusing every write: maxmemory below what is used.
	if err := rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base+1<<20, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	// The cache's own writes see the same reply, alone or pipelined.
	c, err := cache.New(rdb, cache.Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p := &predictor.Prediction{MaskName: "x", Tokens: []string{"x"}, Labels: []string{"misc"}, ModelVersion: "v"}
	one := c.PutMany(ctx, []cache.Entry{{Normalized: "x", Prediction: p}})
	two := c.PutMany(ctx, []cache.Entry{{Normalized: "x", Prediction: p}, {Normalized: "y", Prediction: p}})
	for _, err := range []error{one, two} {
		if !cache.IsOOM(err) {
			t.Errorf("cache write on a full Redis: %v, want OOM", err)
		}
	}
	clk := testclock.New()
	g, err := cache.NewGuard(rdb, cache.GuardConfig{PressureRatio: -1, OOMBackoff: 10 * time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := g.Writable(ctx); !ok {
		t.Fatal("pressure check off: writable before any OOM")
	}
	cases := []struct {
		err error
		oom bool
	}{
		{nil, false},
		{context.DeadlineExceeded, false},
		{&net.OpError{Op: "dial", Err: fmt.Errorf("refused")}, false},
		{redis.ErrClosed, false},
		{two, true},
		{fmt.Errorf("wrapped: %w", one), true},
	}
	for _, cs := range cases {
		if got := cache.IsOOM(cs.err); got != cs.oom {
			t.Errorf("IsOOM(%v) = %v", cs.err, got)
		}
	}
	if g.ObserveError(context.DeadlineExceeded) {
		t.Error("a timeout counted as OOM")
	}
	if ok, _ := g.Writable(ctx); !ok {
		t.Error("a timeout paused writes")
	}
	if !g.ObserveError(one) {
		t.Fatal("OOM reply not recognised")
	}
	if ok, why := g.Writable(ctx); ok || why != cache.ReasonOOM {
		t.Errorf("after OOM: %v %q", ok, why)
	}
	clk.Add(9 * time.Second)
	if ok, _ := g.Writable(ctx); ok {
		t.Error("writable before the OOM backoff ended")
	}
	clk.Add(2 * time.Second)
	if ok, why := g.Writable(ctx); !ok {
		t.Errorf("still paused after the backoff: %q", why)
	}
	if g.State().OOMUntil.IsZero() {
		t.Error("state lacks the OOM time")
	}
}

func TestEntryCostBoundsRedisMemory(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Private: true})
	rdb := srv.Client()
	ctx := context.Background()
	c, err := cache.New(rdb, cache.Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, valLen := range []int{200, 1000, 7000} {
		t.Run(strconv.Itoa(valLen), func(t *testing.T) {
			if err := rdb.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			before := usedMemory(t, rdb)
			const n = 500
			var cost int64
			val := []byte(strings.Repeat("v", valLen))
			pipe := rdb.Pipeline()
			for i := 0; i < n; i++ {
				norm := fmt.Sprintf("name number %d %s", i, strings.Repeat("n", valLen/10))
				cost += c.Cost(norm, val)
				pipe.Set(ctx, c.Key(norm), val, time.Hour)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
			grew := usedMemory(t, rdb) - before
			t.Logf("%d entries of %d B: used_memory +%d B, estimated %d B (%.0f%%)", n, valLen, grew, cost, 100*float64(grew)/float64(cost))
			if grew > cost {
				t.Errorf("Redis grew by %d B, more than the estimate %d B", grew, cost)
			}
			if grew < cost/3 {
				t.Errorf("estimate %d B is far above the %d B used: the budget would be wasted", cost, grew)
			}
		})
	}
}
