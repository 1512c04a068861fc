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
// after the kill. The sidecar can tell sooner and still be sure: asynq's
// heartbeat, every 5 s, extends the lease of every task its process runs and
// lists those tasks in the process's workers hash, which expires 10 s after
// the last beat. A task whose lease no beat has extended for OrphanAfter
// (two missed beats and a margin) and that no live process lists is an
// orphan; it goes back to the front of its queue's pending list, as asynq's
// own Requeue does at shutdown, and the next free worker of any process runs
// it. Running it twice is safe (the write-back is exactly-once), so the
// checks only need to keep that rare.

const (
	// asynqHeartbeat is asynq v0.26's heartbeat interval (not configurable):
	// leases are extended and workers hashes rewritten this often.
	asynqHeartbeat = 5 * time.Second
	// asynqLease is asynq v0.26's lease (rdb.LeaseDuration).
	asynqLease = 30 * time.Second
)

// orphanScript requeues one queue's orphaned tasks. KEYS[1] the queue's
// lease set, KEYS[2] its active list, KEYS[3] its pending list, KEYS[4]
// asynq's set of workers hashes (asynq:workers, scored by expiry). ARGV[1]
// now and ARGV[2] the newest stale lease expiry (unix seconds), ARGV[3] the
// queue's task key prefix, ARGV[4] the most tasks looked at. It returns the
// number requeued. The workers hashes are read by the names asynq:workers
// lists, so this script is for a single Redis (not Cluster), as is asynq.
var orphanScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
if #ids == 0 then
  return 0
end
local live = redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[1], '+inf')
local n = 0
for _, id in ipairs(ids) do
  local owned = false
  for _, w in ipairs(live) do
    if redis.call('HEXISTS', w, id) == 1 then
      owned = true
      break
    end
  end
  if not owned and redis.call('LREM', KEYS[2], 0, id) > 0 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('RPUSH', KEYS[3], id)
    redis.call('HSET', ARGV[3] .. id, 'state', 'pending')
    n = n + 1
  end
end
return n
`)

// orphanBatch bounds one script call's work (the script blocks Redis while
// it runs): a dead process leaves at most its MaxPending + concurrency tasks.
const orphanBatch = 500

// requeueOrphans requeues the tasks of queue q whose lease ends at or
// before stale and whose process is not alive at now, and returns how many.
// A lease no beat extended for d ends before now + asynqLease - d.
func requeueOrphans(ctx context.Context, rdb redis.Scripter, q string, now, stale time.Time) (int, error) {
	prefix := asynqQueueKeyPrefix(q)
	n, err := orphanScript.Run(ctx, rdb,
		[]string{prefix + "lease", prefix + "active", prefix + "pending", "asynq:workers"},
		strconv.FormatInt(now.Unix(), 10), strconv.FormatInt(stale.Unix(), 10), prefix+"t:", orphanBatch).Int()
	if err != nil {
		return 0, fmt.Errorf("requeueing orphaned tasks of %s: %w", q, err)
	}
	return n, nil
}

// orphanLoop looks for orphaned tasks every OrphanInterval until Shutdown.
// After this process could not reach Redis it waits two asynq heartbeats
// before requeueing anything: the other processes were probably cut off too,
// and their beats must land again (their leases extended, their workers
// hashes rewritten) before their tasks can be told from a dead one's.
func (s *Server) orphanLoop() {
	defer s.rescWG.Done()
	t := time.NewTicker(s.cfg.OrphanInterval)
	defer t.Stop()
	healthySince := time.Now()
	for {
		select {
		case <-s.stopResc:
			return
		case <-t.C:
		}
		if s.asynqGate.failingNow() {
			healthySince = time.Time{}
			continue
		}
		if healthySince.IsZero() {
			healthySince = time.Now()
		}
		if time.Since(healthySince) < 2*asynqHeartbeat {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		now := time.Now()
		for _, q := range s.cfg.Queues {
			n, err := requeueOrphans(ctx, s.cfg.AsynqRedis, q.Name, now, now.Add(asynqLease-s.cfg.OrphanAfter))
			if err != nil {
				healthySince = time.Time{}
				s.log.Debug("orphan check failed", zap.Error(err))
				break
			}
			if n > 0 {
				s.log.Warn("requeued jobs of a worker that died", zap.String("queue", q.Name), zap.Int("tasks", n))
			}
		}
		cancel()
	}
}
