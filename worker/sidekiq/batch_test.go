package sidekiq

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestBatchRoundTrip(t *testing.T) {
	for _, raws := range [][][]byte{
		{[]byte(`{"jid":"a"}`)},
		{[]byte(`{"jid":"a"}`), []byte("{\n \"jid\": \"b\"\n}\n"), []byte(``), []byte(`12:x`)},
		{bytes.Repeat([]byte("é"), 70_000)},
	} {
		p := EncodeBatch(raws)
		got, err := DecodeBatch(p)
		if err != nil {
			t.Fatalf("DecodeBatch(EncodeBatch(%q)): %v", raws, err)
		}
		if !slices.EqualFunc(got, raws, bytes.Equal) {
			t.Errorf("round trip of %q gave %q", raws, got)
		}
	}
	if got := string(EncodeBatch([][]byte{[]byte(`{"a":1}`), []byte(`[]`)})); got != "mpbatch1\n7:{\"a\":1}\n2:[]\n" {
		t.Errorf("encoding changed: %q (old tasks in Redis must still decode)", got)
	}
}

func TestDecodeBatchRefusesMalformed(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `missing "mpbatch1" header`},
		{`{"jid":"a"}`, `missing "mpbatch1" header`},
		{"mpbatch1\n", "no jobs"},
		{"mpbatch1\nx:{}\n", `job 0: bad length "x"`},
		{"mpbatch1\n:{}\n", "job 0: no length prefix"},
		{"mpbatch1\n2{}\n", "job 0: no length prefix"},
		{"mpbatch1\n-1:{}\n", `job 0: bad length "-1"`},
		{"mpbatch1\n02:{}\n", `job 0: bad length "02"`},
		{"mpbatch1\n3:{}\n", "job 0: 3 bytes announced, 3 left"},
		{"mpbatch1\n2:{}", "job 0: 2 bytes announced, 2 left"},
		{"mpbatch1\n2:{}x", "job 0: 2 bytes announced"},
		{"mpbatch1\n2:{}\n99999999999:", "job 1: no length prefix"},
		{"mpbatch1\n2:{}\n9999999999:", "job 1: 9999999999 bytes announced, 0 left"},
	} {
		_, err := DecodeBatch([]byte(tc.in))
		if !errors.Is(err, ErrBatchFormat) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeBatch(%q) = %v, want ErrBatchFormat with %q", tc.in, err, tc.want)
		}
	}
}

// FuzzDecodeBatch: no input panics; whatever decodes re-encodes to the same bytes
// (there is one encoding per batch, so a task's payload identifies its jobs).
func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte("mpbatch1\n7:{\"a\":1}\n2:[]\n"))
	f.Add([]byte("mpbatch1\n0:\n"))
	f.Add([]byte("mpbatch1\n3:{}\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		raws, err := DecodeBatch(p)
		if err != nil {
			if !errors.Is(err, ErrBatchFormat) {
				t.Fatalf("error %v does not wrap ErrBatchFormat", err)
			}
			return
		}
		if again := EncodeBatch(raws); !bytes.Equal(again, p) {
			t.Fatalf("decoded %q, which encodes to %q", p, again)
		}
	})
}

// With JobsPerTask > 1 the bridge groups what one move took out of the queue: every job
// is in exactly one task, with its exact bytes, in order; poison payloads go to the dead
// set and do not break their group; a single leftover job is a plain TaskType task.
func TestBridgeBatchesJobs(t *testing.T) {
	rdb := newTestRedis(t)
	ctx := testCtx(t)
	var payloads []string
	const n = 23
	for i := range n {
		payloads = append(payloads, fmt.Sprintf(`{"class":"MaskPredictionJob","queue":"mask_predictions","args":["mask %d",%d],"jid":"%024x","retry":%d,"created_at":1.5e9,"enqueued_at":1.5e9}`, i, i, i, i%3))
	}
	withPoison := slices.Clone(payloads)
	withPoison = slices.Insert(withPoison, 7, `{"class":"MaskPredictionJob","args":[],"jid":"poison"}`)
	withPoison = slices.Insert(withPoison, 12, payloads[10]) // the same delivery twice: dropped
	pushRaw(t, rdb, testQueue, withPoison...)
	cfg := testBridgeConfig(t, rdb)
	cfg.JobsPerTask = 5
	cfg.BatchSize = 50
	cfg.MaxPending = 1000
	b := startBridge(t, cfg)
	waitFor(t, 10*time.Second, "all jobs transferred", func() bool { return b.Stats().Transferred == n })

	if st := b.Stats(); st.Tasks != 5 || st.Poison != 1 || st.Duplicates != 1 {
		t.Errorf("stats %+v, want 23 jobs in 5 tasks (5+5+5+5+3), 1 poison, 1 duplicate", st)
	}
	// asynq LPUSHes pending ids: reversed, the list is the transfer order.
	ids, _ := rdb.LRange(ctx, asynqPendingKey(testQueue), 0, -1).Result()
	slices.Reverse(ids)
	in := asynq.NewInspectorFromRedisClient(rdb)
	var got []string
	for _, id := range ids {
		ti, err := in.GetTaskInfo(testQueue, id)
		if err != nil {
			t.Fatal(err)
		}
		if ti.Retention != 10*time.Minute {
			t.Errorf("task %s retention %s", id, ti.Retention)
		}
		switch ti.Type {
		case TaskType:
			got = append(got, string(ti.Payload))
		case BatchTaskType:
			raws, err := DecodeBatch(ti.Payload)
			if err != nil {
				t.Fatal(err)
			}
			jobs := make([]*Job, len(raws))
			for i, r := range raws {
				got = append(got, string(r))
				jobs[i], _ = ParseJob(r)
			}
			if id != BatchTaskID(jobs) || ti.MaxRetry != DefaultMaxRetries {
				t.Errorf("batch task id %s max retry %d, want %s and %d", id, ti.MaxRetry, BatchTaskID(jobs), DefaultMaxRetries)
			}
		default:
			t.Errorf("task type %q", ti.Type)
		}
	}
	if !slices.Equal(got, payloads) {
		t.Errorf("tasks carry\n%q\nwant, in order,\n%q", got, payloads)
	}
	if n, _ := rdb.ZCard(ctx, "dead").Result(); n != 1 {
		t.Errorf("dead set has %d entries, want the poison job", n)
	}
	if n := llen(rdb, b.keyInflight(b.Identity(), testQueue)); n != 0 {
		t.Errorf("%d jobs left in flight", n)
	}
}

// A batch handed over again in the same grouping (a crash after the enqueue, before the
// in-flight list was trimmed) is an asynq TaskID conflict: no second task.
func TestBridgeBatchRedeliveryIsNoOp(t *testing.T) {
	rdb := newTestRedis(t)
	pushRaw(t, rdb, testQueue, plainJobs("j", 4)...)
	cfg := testBridgeConfig(t, rdb)
	cfg.JobsPerTask = 10
	b := startBridge(t, cfg, func(b *Bridge) {
		b.crashAt = func(step string) bool { return step == "enqueued" }
	})
	waitFor(t, 10*time.Second, "the crash after the enqueue", func() bool { return b.killed.Load() })
	b.kill()
	if n := len(allTasks(t, rdb, testQueue)); n != 1 {
		t.Fatalf("%d tasks after the first transfer, want 1 batch", n)
	}
	// The same identity restarts and finds its in-flight list as it left it.
	cfg2 := cfg
	cfg2.Identity = b.Identity()
	b2 := startBridge(t, cfg2)
	waitFor(t, 10*time.Second, "the in-flight list handed over again", func() bool {
		return llen(rdb, b2.keyInflight(b2.Identity(), testQueue)) == 0
	})
	if st := b2.Stats(); st.Duplicates != 4 || st.Transferred != 0 {
		t.Errorf("second bridge: %+v, want the 4 jobs recognised as already transferred", st)
	}
	if n := len(allTasks(t, rdb, testQueue)); n != 1 {
		t.Errorf("%d tasks after the redelivery, want still 1", n)
	}
}

// With batches, MaxPending still counts tasks and a move fills them: with 2
// task slots of 5 jobs, 10 jobs leave the queue in 2 tasks and the backlog
// stays in queue:<name>. TaskTimeout is per job: a batch of 5 gets 5 of them.
func TestBridgeBatchBackpressureAndTimeout(t *testing.T) {
	rdb := newTestRedis(t)
	pushRaw(t, rdb, testQueue, plainJobs("bp", 40)...)
	cfg := testBridgeConfig(t, rdb)
	cfg.MaxPending = 2
	cfg.JobsPerTask = 5
	var reads *atomic.Int64
	cfg.TaskTimeout = time.Second
	cfg.AsynqRedis, reads = pendingReads(t, rdb, testQueue)
	b := startBridge(t, cfg)
	waitFor(t, 5*time.Second, "2 tasks pending", func() bool { return llen(rdb, asynqPendingKey(testQueue)) == 2 })
	waitRounds(t, reads) // the bridge looked again, and moved nothing more
	if p, q := llen(rdb, asynqPendingKey(testQueue)), llen(rdb, QueueKey(testQueue)); p != 2 || q != 30 {
		t.Fatalf("pending tasks=%d queue=%d, want 2 full batches out and 30 jobs left in %s", p, q, QueueKey(testQueue))
	}
	if st := b.Stats(); st.Tasks != 2 || st.Transferred != 10 {
		t.Errorf("stats %+v, want 10 jobs in 2 tasks", st)
	}
	for _, ti := range allTasks(t, rdb, testQueue) {
		if ti.Type != BatchTaskType || ti.Timeout != 5*time.Second {
			t.Errorf("task %s: type %s timeout %v, want a batch with 5 × 1 s", ti.ID, ti.Type, ti.Timeout)
		}
	}
}

// plainJobs are n minimal valid payloads with jids prefix0, prefix1, ….
func plainJobs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"class":"MaskPredictionJob","args":["mask %d"],"jid":"%s%d"}`, i, prefix, i)
	}
	return out
}
