package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"
)

// QueueStat is one Sidekiq ingress queue as Sidekiq::Queue sees it.
type QueueStat struct {
	Name    string
	Depth   int64         // LLEN queue:<name>
	Latency time.Duration // age of the oldest waiting job (0 when empty)
}

// DeadSetKey is Sidekiq's dead set.
const DeadSetKey = "dead"

// ReadQueues reads, in one round trip, each queue's depth and the
// enqueued_at of its oldest job (Sidekiq::Queue#latency: the job at the pop
// end), and the size of Sidekiq's dead set.
func ReadQueues(ctx context.Context, rdb redis.UniversalClient, queues []string) ([]QueueStat, int64, error) {
	pipe := rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(queues))
	oldest := make([]*redis.StringCmd, len(queues))
	for i, q := range queues {
		lens[i] = pipe.LLen(ctx, "queue:"+q)
		oldest[i] = pipe.LIndex(ctx, "queue:"+q, -1)
	}
	dead := pipe.ZCard(ctx, DeadSetKey)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("reading Sidekiq queues: %w", err)
	}
	now := time.Now()
	out := make([]QueueStat, len(queues))
	for i, q := range queues {
		out[i] = QueueStat{Name: q, Depth: lens[i].Val()}
		if raw, err := oldest[i].Bytes(); err == nil {
			if t, ok := enqueuedAt(raw); ok && now.After(t) {
				out[i].Latency = now.Sub(t)
			}
		}
	}
	return out, dead.Val(), nil
}

// enqueuedAt reads a job's enqueued_at: float seconds before Sidekiq 8,
// integer milliseconds from 8 on.
func enqueuedAt(raw []byte) (time.Time, bool) {
	var j struct {
		EnqueuedAt *float64 `json:"enqueued_at"`
		CreatedAt  *float64 `json:"created_at"`
	}
	if json.Unmarshal(raw, &j) != nil {
		return time.Time{}, false
	}
	v := j.EnqueuedAt
	if v == nil {
		v = j.CreatedAt
	}
	if v == nil || *v <= 0 || math.IsInf(*v, 0) {
		return time.Time{}, false
	}
	secs := *v
	if secs > 1e11 { // milliseconds (1e11 s is the year 5138)
		secs /= 1000
	}
	whole, frac := math.Modf(secs)
	return time.Unix(int64(whole), int64(frac*1e9)), true
}
