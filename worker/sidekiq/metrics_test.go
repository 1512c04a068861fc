package sidekiq

import (
	"strconv"
	"testing"
	"time"
)

// TestMetricsKeys pins the keys and fields of Sidekiq 7.3.10's execution metrics
// (metrics/tracking.rb, metrics/shared.rb), as a Ruby server wrote them in the
// reference capture (j|20261129|7:13, MaskNamePredictJob-29-07:13): UTC, hour and
// minute unpadded in the hash key, day and hour padded in the histogram's; the
// ActiveJob job's wrapped class; time and histogram for successful executions only.
func TestMetricsKeys(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	c := NewClient(rdb)
	now := time.Date(2026, 11, 29, 8, 13, 59, 0, time.FixedZone("CET", 3600)) // 07:13 UTC
	c.now = func() time.Time { return now }
	if h, g := MetricsKeys("MaskNamePredictJob", now); h != "j|20261129|7:13" || g != "MaskNamePredictJob-29-07:13" {
		t.Errorf("keys %q %q", h, g)
	}
	plain, err := ParseJob(readFixture(t, "sidekiq73_plain.json"))
	if err != nil {
		t.Fatal(err)
	}
	aj, err := ParseJob(readFixture(t, "sidekiq73_activejob.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	m.Add(plain, 5*time.Millisecond, false)   // bucket 0 (< 20 ms)
	m.Add(plain, 280*time.Millisecond, false) // bucket 7 (< 335 ms)
	m.Add(plain, 9*time.Second, true)         // failed: counted, not timed
	m.Add(aj, 20*time.Millisecond, false)     // bucket 1 (20 is not < 20)
	m.Add(nil, time.Millisecond, false)       // unreadable: no class
	if err := c.RecordMetrics(ctx, m); err != nil {
		t.Fatal(err)
	}
	got := rdb.HGetAll(ctx, "j|20261129|7:13").Val()
	want := map[string]string{plain.Class + "|p": "3", plain.Class + "|f": "1", plain.Class + "|ms": "285",
		aj.Wrapped + "|p": "1", aj.Wrapped + "|ms": "20"}
	if len(got) != len(want) {
		t.Errorf("hash %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (hash %v)", k, got[k], v, got)
		}
	}
	for key, buckets := range map[string]map[int]int64{
		plain.Class + "-29-07:13": {0: 1, 7: 1},
		aj.Wrapped + "-29-07:13":  {1: 1},
	} {
		args := []any{}
		for i := range 26 {
			args = append(args, "GET", "u16", "#"+strconv.Itoa(i))
		}
		vals, err := rdb.BitField(ctx, key, args...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if v != buckets[i] {
				t.Errorf("%s bucket %d = %d, want %d", key, i, v, buckets[i])
			}
		}
		if ttl := rdb.TTL(ctx, key).Val(); ttl <= 7*time.Hour || ttl > 8*time.Hour {
			t.Errorf("%s TTL %v, want 8 h", key, ttl)
		}
	}
	if ttl := rdb.TTL(ctx, "j|20261129|7:13").Val(); ttl <= 7*time.Hour || ttl > 8*time.Hour {
		t.Errorf("hash TTL %v, want 8 h", ttl)
	}
}
