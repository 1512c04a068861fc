package worker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Orphaned tasks: the tasks of a worker process that died.
//
// asynq finds them by their lease alone: the lease runs out 30 s after its
// last extension, and asynq's recoverer, once a minute, takes leases that ran
// out at least 30 s before. A SIGKILLed worker's jobs so ran again 54–61 s
// after the kill. The sidecar can tell sooner: asynq's heartbeat, every 5 s,
// extends the lease of every task its process runs (a new score each time)
// and lists those tasks in the process's workers hash, which Redis expires
// 10 s after the last beat. A task is an orphan when this process has seen
// its lease score unchanged for OrphanAfter (two missed beats and a margin),
// timed by this process's own clock, and no workers hash lists it; it goes
// back to the front of its queue's pending list, as asynq's own Requeue does
// at shutdown, and the next free worker of any process runs it.
//
// Neither test compares another host's clock with ours (asynq stamps lease
// and expiry scores with each client's clock): the lease score is only
// compared with itself, and the workers hash expires by Redis' own TTL. A
// task runs twice only if its process is cut off from Redis (or stopped)
// for OrphanAfter while still alive; the write-back is exactly-once, so even
// then no callback or reply is doubled.

const (
	// asynqHeartbeat is asynq v0.26's heartbeat interval (not configurable):
	// leases are extended and workers hashes rewritten this often.
	asynqHeartbeat = 5 * time.Second
	// asynqLease is asynq v0.26's lease (rdb.LeaseDuration).
	asynqLease = 30 * time.Second
	// orphanScan bounds the leases one look reads, oldest (smallest
	// score) first: every active task of every process has one, so this is
	// above any realistic total concurrency.
	orphanScan = 2000
	// orphanLiveWindow: workers hashes whose expiry score is within this of
	// our clock are asked; an expired hash answers 0 whatever its score, so
	// the window only has to cover clock skew between hosts.
	orphanLiveWindow = 10 * time.Minute
)

// leasesScript lists a queue's leases with whether a workers hash lists the
// task. KEYS[1] the queue's lease set, KEYS[2] asynq's set of workers hashes
// (asynq:workers). ARGV[1] the smallest expiry score of a hash worth asking,
// ARGV[2] the most leases read. Returns id, score, listed (0/1) triples. The
// workers hashes are read by the names asynq:workers lists, so this script
// is for a single Redis (not Cluster), as is asynq.
var leasesScript = redis.NewScript(`
local live = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
local all = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #all, 2 do
  local listed = 0
  for _, w in ipairs(live) do
    if redis.call('HEXISTS', w, all[i]) == 1 then
      listed = 1
      break
    end
  end
  out[#out + 1] = all[i]
  out[#out + 1] = all[i + 1]
  out[#out + 1] = listed
end
return out
`)

// requeueScript requeues one orphan if it still is one: its lease score is
// the one seen, no workers hash lists it, and it is active. KEYS[1] lease
// set, KEYS[2] active list, KEYS[3] pending list, KEYS[4] asynq:workers,
// KEYS[5] the task's hash. ARGV[1] the task id, ARGV[2] the score seen,
// ARGV[3] as leasesScript's ARGV[1]. Returns 1 when requeued.
var requeueScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) then
  return 0
end
for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[3], '+inf')) do
  if redis.call('HEXISTS', w, ARGV[1]) == 1 then
    return 0
  end
end
if redis.call('LREM', KEYS[2], 0, ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[5], 'state', 'pending')
return 1
`)

// leaseSeen is a lease score and when this process first saw it.
type leaseSeen struct {
	score string
	since time.Time
}

// orphanWatch follows the leases of one queue between looks.
type orphanWatch struct {
	queue string
	seen  map[string]leaseSeen
}

// look reads the queue's leases at now and requeues the tasks whose score
// has not changed for after and that no live process lists. It returns how
// many it requeued. With requeue false it only watches (after an outage).
func (o *orphanWatch) look(ctx context.Context, rdb redis.Scripter, now time.Time, after time.Duration, requeue bool) (int, error) {
	prefix := asynqQueueKeyPrefix(o.queue)
	liveMin := strconv.FormatInt(now.Add(-orphanLiveWindow).Unix(), 10)
	res, err := leasesScript.Run(ctx, rdb, []string{prefix + "lease", "asynq:workers"}, liveMin, orphanScan).Slice()
	if err != nil {
		o.seen = nil
		return 0, fmt.Errorf("reading the leases of %s: %w", o.queue, err)
	}
	seen := make(map[string]leaseSeen, len(res)/3)
	n := 0
	for i := 0; i+2 < len(res); i += 3 {
		id, _ := res[i].(string)
		score, _ := res[i+1].(string)
		listed, _ := res[i+2].(int64)
		cur := leaseSeen{score: score, since: now}
		if prev, ok := o.seen[id]; ok && prev.score == score {
			cur = prev
		}
		seen[id] = cur
		if !requeue || listed == 1 || now.Sub(cur.since) < after {
			continue
		}
		ok, err := requeueScript.Run(ctx, rdb,
			[]string{prefix + "lease", prefix + "active", prefix + "pending", "asynq:workers", asynqTaskKey(o.queue, id)},
			id, score, liveMin).Int()
		if err != nil {
			o.seen = nil
			return n, fmt.Errorf("requeueing orphaned task %s of %s: %w", id, o.queue, err)
		}
		if ok == 1 {
			delete(seen, id)
			n++
		}
	}
	o.seen = seen
	return n, nil
}

// orphanLoop looks for orphaned tasks every OrphanInterval until Shutdown.
// After this process could not reach Redis it only watches for two asynq
// heartbeats plus as long as the outage lasted (at most RedisMaxBackoff): the
// other processes were probably cut off too, and each comes back on its own
// backoff, whose interval has grown about as long as the outage, before its
// beats can extend its leases again.
func (s *Server) orphanLoop() {
	defer s.rescWG.Done()
	t := time.NewTicker(s.cfg.OrphanInterval)
	defer t.Stop()
	watches := make([]*orphanWatch, len(s.cfg.Queues))
	for i, q := range s.cfg.Queues {
		watches[i] = &orphanWatch{queue: q.Name}
	}
	var failingSince, healthySince time.Time
	var grace time.Duration // none at start: nobody was cut off
	failed := func() {
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		healthySince = time.Time{}
	}
	for {
		select {
		case <-s.stopResc:
			return
		case <-t.C:
		}
		if s.asynqGate.failingNow() {
			failed()
			continue
		}
		if healthySince.IsZero() {
			healthySince = time.Now()
			if !failingSince.IsZero() {
				grace = 2*asynqHeartbeat + min(healthySince.Sub(failingSince), s.cfg.RedisMaxBackoff)
				failingSince = time.Time{}
			}
		}
		requeue := time.Since(healthySince) >= grace
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, w := range watches {
			n, err := w.look(ctx, s.cfg.AsynqRedis, time.Now(), s.cfg.OrphanAfter, requeue)
			if err != nil {
				failed()
				s.log.Debug("orphan check failed", zap.Error(err))
				break
			}
			if n > 0 {
				s.log.Warn("requeued jobs of a worker that died", zap.String("queue", w.queue), zap.Int("tasks", n))
			}
		}
		cancel()
	}
}
