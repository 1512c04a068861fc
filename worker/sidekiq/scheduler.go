package sidekiq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// SchedulerConfig configures a Scheduler; WithDefaults fills in unset fields.
type SchedulerConfig struct {
	// Redis is the Redis Rails' Sidekiq uses. Required.
	Redis redis.UniversalClient

	// Queues whose due jobs are moved. Entries of other queues are left alone: they are
	// the business of Rails' own Sidekiq processes. Default: DefaultQueue.
	Queues []QueueWeight

	// Interval is the average time between polls; each wait is randomized by ±50 % so
	// that several processes do not poll in lockstep. Default: 5 s (Sidekiq's
	// average_scheduled_poll_interval).
	Interval time.Duration

	// BatchSize is the number of due entries read and moved per round trip. Default: 100.
	BatchSize int

	// MaxScan bounds the due entries looked at per set and poll, so that a large backlog
	// of other queues' due jobs (no Ruby Sidekiq running) cannot make a poll unbounded.
	// Default: 10,000.
	MaxScan int

	// RedisFault, when set, reports whether an error is a Redis-wide fault that something
	// else already logs (worker.Server's gate): poll failures and recoveries caused by it
	// are then logged at debug level only.
	RedisFault func(error) bool

	// Logger receives poll failures. Default: zap.NewNop().
	Logger *zap.Logger
}

// WithDefaults returns a copy of c with every unset field given its default.
func (c SchedulerConfig) WithDefaults() SchedulerConfig {
	if len(c.Queues) == 0 {
		c.Queues = []QueueWeight{{Name: DefaultQueue, Weight: 1}}
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.MaxScan == 0 {
		c.MaxScan = 10_000
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c SchedulerConfig) validate() error {
	switch {
	case c.Redis == nil:
		return errors.New("sidekiq scheduler: Redis is required: pass the go-redis client of the Redis Rails' Sidekiq uses")
	case c.Interval <= 0:
		return errors.New("sidekiq scheduler: Interval must be positive (0 means 5 s)")
	case c.BatchSize < 1 || c.MaxScan < c.BatchSize:
		return fmt.Errorf("sidekiq scheduler: need 1 ≤ BatchSize (%d) ≤ MaxScan (%d)", c.BatchSize, c.MaxScan)
	}
	for _, q := range c.Queues {
		if err := validateQueueName(q.Name); err != nil {
			return fmt.Errorf("sidekiq scheduler: Queues: %w", err)
		}
	}
	return nil
}

// Scheduler moves due jobs of our queues from Sidekiq's `schedule` (perform_in /
// perform_at) and `retry` ZSETs to their queue, which otherwise only a Ruby Sidekiq
// server's poller does (reference §1.3): without it a perform_in job for the sidecar
// would never arrive when no Ruby Sidekiq server runs.
//
// It stays correct next to Ruby Sidekiq servers doing the same: each entry is moved by a
// Lua script that pushes it only if its own ZREM succeeded, and ZREM succeeds for exactly
// one of the competitors (Sidekiq's Scheduled::Enq also claims by ZREM before pushing).
// The claim and the push are in the same script, so a crash cannot lose the job between
// them, which Sidekiq's own two-step ZREM-then-push can.
type Scheduler struct {
	cfg  SchedulerConfig
	log  *zap.Logger
	rdb  redis.UniversalClient
	ours map[string]bool

	mu    sync.Mutex
	state int
	stop  chan struct{}
	wg    sync.WaitGroup
}

// NewScheduler validates cfg (after WithDefaults) and returns a Scheduler ready to Start.
func NewScheduler(cfg SchedulerConfig) (*Scheduler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ours := map[string]bool{}
	for _, q := range cfg.Queues {
		ours[q.Name] = true
	}
	return &Scheduler{
		cfg:  cfg,
		log:  cfg.Logger.With(zap.String("component", "sidekiq-scheduler")),
		rdb:  cfg.Redis,
		ours: ours,
		stop: make(chan struct{}),
	}, nil
}

// Start polls at once and then about every Interval until Shutdown. Failures are logged
// and the next poll tries again. The first poll is bounded by ctx, Interval and 2 s, so an
// unreachable Redis does not hold Start up.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != 0 {
		return errors.New("sidekiq scheduler: Start called twice")
	}
	s.state = 1
	pctx, cancel := context.WithTimeout(ctx, min(s.cfg.Interval, startCallTimeout))
	defer cancel()
	if _, err := s.Poll(pctx); err != nil {
		s.log.Log(faultLevel(s.cfg.RedisFault, err), "sidekiq scheduler: poll failed; retrying", zap.Error(err))
	}
	s.wg.Add(1)
	go s.loop()
	return nil
}

func (s *Scheduler) loop() {
	defer s.wg.Done()
	failing := false
	var lvl zapcore.Level
	for {
		wait := s.cfg.Interval/2 + time.Duration(rand.Int64N(int64(s.cfg.Interval)+1))
		t := time.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.Interval)
		_, err := s.Poll(ctx)
		cancel()
		switch {
		case err != nil && !failing:
			lvl = faultLevel(s.cfg.RedisFault, err)
			s.log.Log(lvl, "sidekiq scheduler: poll failed; retrying", zap.Error(err))
			failing = true
		case err == nil && failing:
			s.log.Log(min(lvl, zapcore.InfoLevel), "sidekiq scheduler: polling again")
			failing = false
		}
	}
}

// Shutdown stops polling. A poll in progress finishes first (each move is atomic, so
// stopping between moves is safe).
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.state != 1 {
		s.mu.Unlock()
		return errors.New("sidekiq scheduler: Shutdown without a running Start")
	}
	s.state = 2
	close(s.stop)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sidekiq scheduler shutdown: %w", ctx.Err())
	}
}

var enqueueDueScript = redis.NewScript(`
-- KEYS[1] schedule or retry, KEYS[2] "queues", KEYS[2+i] queue:<name> of job i.
-- ARGV[1] now (score); then per job i: the entry, the job to push, its queue name.
-- An entry is pushed only if it is still due and our ZREM removed it: whoever removes an
-- entry owns it, so a Ruby Sidekiq poller running at the same time never pushes it too.
local now = tonumber(ARGV[1])
local moved = 0
for i = 0, (#ARGV - 1) / 3 - 1 do
  local entry, job, queue = ARGV[2 + 3 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i]
  local score = redis.call("ZSCORE", KEYS[1], entry)
  if score and tonumber(score) <= now and redis.call("ZREM", KEYS[1], entry) == 1 then
    redis.call("SADD", KEYS[2], queue)
    redis.call("LPUSH", KEYS[3 + i], job)
    moved = moved + 1
  end
end
return moved
`)

// Poll moves every due entry of our queues from schedule and retry to its queue once,
// setting enqueued_at as Sidekiq's re-push does (in the payload's own timestamp style),
// and returns how many it moved.
func (s *Scheduler) Poll(ctx context.Context) (int, error) {
	total := 0
	for _, set := range []string{keySchedule, keyRetry} {
		n, err := s.pollSet(ctx, set)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Scheduler) pollSet(ctx context.Context, set string) (int, error) {
	now := time.Now()
	nowScore := scoreString(now)
	moved, offset, scanned := 0, 0, 0
	for scanned < s.cfg.MaxScan {
		entries, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: set, Start: "-inf", Stop: nowScore, ByScore: true,
			Offset: int64(offset), Count: int64(s.cfg.BatchSize),
		}).Result()
		if err != nil {
			return moved, fmt.Errorf("sidekiq scheduler: read %s: %w", set, err)
		}
		scanned += len(entries)
		keys := []string{set, keyQueues}
		args := []any{nowScore}
		skipped := 0
		for _, entry := range entries {
			q, job, ok := s.rewrite(entry, now)
			if !ok {
				skipped++
				continue
			}
			keys = append(keys, QueueKey(q))
			args = append(args, entry, job, q)
		}
		if len(keys) > 2 {
			n, err := enqueueDueScript.Run(ctx, s.rdb, keys, args...).Int()
			moved += n
			if err != nil {
				return moved, fmt.Errorf("sidekiq scheduler: move due %s entries: %w", set, err)
			}
		}
		// Our entries left the set (moved by us, taken by another poller, or rescheduled to
		// a time not yet due); the skipped ones are still in front of the next page.
		offset += skipped
		if len(entries) < s.cfg.BatchSize {
			break
		}
	}
	return moved, nil
}

// rewrite returns the queue of a due entry and the job to push for it, or false when the
// entry is not for one of our queues (or not a job we could tell the queue of: that one
// is left to Sidekiq, which dead-letters it).
func (s *Scheduler) rewrite(entry string, now time.Time) (string, string, bool) {
	fields, err := decodeObject([]byte(entry))
	if err != nil {
		return "", "", false
	}
	var q string
	if json.Unmarshal(fields["queue"], &q) != nil || !s.ours[q] {
		return "", "", false
	}
	job, err := setFields([]byte(entry), field{"enqueued_at", jobTimestamp(now, usesMillis(fields["created_at"]))})
	if err != nil {
		return "", "", false
	}
	return q, string(job), true
}
