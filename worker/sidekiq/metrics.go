package sidekiq

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// The execution metrics Sidekiq 7+ charts on its Metrics tab (lib/sidekiq/metrics/
// tracking.rb and shared.rb, v7.3.10), which a Ruby server writes at every heartbeat:
//
//   - per minute, the hash "j|<YYYYMMDD>|<H>:<M>" (UTC, hour and minute unpadded) with the
//     fields "<class>|p" (executions), "<class>|f" (failed ones) and "<class>|ms" (total
//     milliseconds of the successful ones), expiring after 8 h;
//   - per class and minute, a histogram of the successful executions' times: the string
//     "<class>-<DD>-<HH>:<M>" (UTC day and hour zero-padded, minute unpadded) holding 26
//     unsigned 16-bit counters (BITFIELD … OVERFLOW SAT INCRBY u16 #<bucket>), 8 h expiry.
//
// The class is the job's "wrapped" class for ActiveJob jobs, else its "class"
// (Job.RunsAs), as Sidekiq::Metrics::Middleware uses.
const metricsTTL = 8 * time.Hour

// histogramBuckets are shared.rb's BUCKET_INTERVALS (ms): an execution of ms
// milliseconds counts in the first bucket whose bound is above it; the last bucket takes
// the rest.
var histogramBuckets = [...]float64{
	20, 30, 45, 65, 100,
	150, 225, 335, 500, 750,
	1100, 1700, 2500, 3800, 5750,
	8500, 13000, 20000, 30000, 45000,
	65000, 100000, 150000, 225000, 335000,
	1e20,
}

// histogramBucket is the bucket of an execution of d.
func histogramBucket(d time.Duration) int {
	ms := float64(d.Milliseconds())
	for i, b := range histogramBuckets {
		if ms < b {
			return i
		}
	}
	return len(histogramBuckets) - 1
}

// Metrics accumulates the executions of one task (or any batch of them) for the
// Metrics tab; Client.RecordMetrics writes them in one round trip. Not safe for
// concurrent use.
type Metrics struct {
	classes map[string]*classMetrics
	order   []string
}

type classMetrics struct {
	processed, failed int64
	total             time.Duration
	buckets           [len(histogramBuckets)]int64
}

// NewMetrics returns an empty accumulator.
func NewMetrics() *Metrics { return &Metrics{classes: map[string]*classMetrics{}} }

// Add counts one execution of job that took d. Sidekiq charts the time of successful
// executions only (a failure counts as processed and failed). A nil job (a payload
// that could not be read) has no class and is not counted.
func (m *Metrics) Add(job *Job, d time.Duration, failed bool) {
	if job == nil {
		return
	}
	class := job.RunsAs()
	if class == "" {
		class = job.Class
	}
	cm := m.classes[class]
	if cm == nil {
		cm = &classMetrics{}
		m.classes[class] = cm
		m.order = append(m.order, class)
	}
	cm.processed++
	if failed {
		cm.failed++
		return
	}
	cm.total += max(d, 0)
	cm.buckets[histogramBucket(d)]++
}

// Empty reports whether nothing was added.
func (m *Metrics) Empty() bool { return m == nil || len(m.order) == 0 }

// MetricsKeys are the keys Sidekiq 7's Metrics::Query reads for class at minute t (UTC):
// the per-minute hash and the histogram.
func MetricsKeys(class string, t time.Time) (hash, histogram string) {
	t = t.UTC()
	hash = "j|" + t.Format("20060102") + "|" + strconv.Itoa(t.Hour()) + ":" + strconv.Itoa(t.Minute())
	histogram = class + "-" + t.Format("02-15") + ":" + strconv.Itoa(t.Minute())
	return hash, histogram
}

// RecordMetrics writes what m counted, as of now, in one pipeline (HINCRBY per class and
// field, BITFIELD per class, EXPIRE 8 h).
func (c *Client) RecordMetrics(ctx context.Context, m *Metrics) error {
	if m.Empty() {
		return nil
	}
	now := c.now()
	pipe := c.rdb.Pipeline()
	var hash string
	for _, class := range m.order {
		cm := m.classes[class]
		h, gram := MetricsKeys(class, now)
		hash = h
		if cm.processed > cm.failed {
			args := []any{"OVERFLOW", "SAT"}
			for i, n := range cm.buckets {
				if n > 0 {
					args = append(args, "INCRBY", "u16", "#"+strconv.Itoa(i), n)
				}
			}
			pipe.BitField(ctx, gram, args...)
			pipe.Expire(ctx, gram, metricsTTL)
			pipe.HIncrBy(ctx, hash, class+"|ms", cm.total.Milliseconds())
		}
		pipe.HIncrBy(ctx, hash, class+"|p", cm.processed)
		if cm.failed > 0 {
			pipe.HIncrBy(ctx, hash, class+"|f", cm.failed)
		}
	}
	pipe.Expire(ctx, hash, metricsTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("sidekiq metrics: %w", err)
	}
	return nil
}
