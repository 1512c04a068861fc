package sidekiq

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Sidekiq's own limits for the dead set (config.rb: dead_max_jobs, dead_timeout_in_seconds)
// and for the daily stat keys (launcher.rb STATS_TTL).
const (
	DeadMaxJobs      = 10_000
	DeadTimeout      = 180 * 24 * time.Hour
	statsTTL         = 5 * 365 * 24 * time.Hour
	maxErrorMessage  = 10_000 // job_retry.rb cuts error_message here
	maxBackoffCount  = 200    // count⁴ must stay inside time.Duration
	jidBytes         = 12     // SecureRandom.hex(12): 24 hex chars
	keyQueues        = "queues"
	keyDead          = "dead"
	keySchedule      = "schedule"
	keyRetry         = "retry"
	keyProcesses     = "processes"
	queueKeyPrefix   = "queue:"
	statProcessedKey = "stat:processed"
	statFailedKey    = "stat:failed"
)

// QueueKey is the Redis list Sidekiq keeps a queue's jobs in.
func QueueKey(queue string) string { return queueKeyPrefix + queue }

// Client writes Sidekiq's Redis format: jobs a Ruby Sidekiq runs (callbacks to Rails),
// dead-set entries Sidekiq's Web UI shows and can retry, and the stat counters its
// dashboard graphs. It is safe for concurrent use.
type Client struct {
	rdb redis.UniversalClient
	now func() time.Time
}

// NewClient returns a Client writing to the Redis Rails' Sidekiq uses.
func NewClient(rdb redis.UniversalClient) *Client {
	return &Client{rdb: rdb, now: time.Now}
}

// PushOption changes a job pushed with Client.Push.
type PushOption func(*pushOptions)

type pushOptions struct {
	jid    string
	retry  []byte
	at     time.Time
	extras []field
}

// WithJID sets the jid instead of a random one. Derive it from the source job when the
// push must be idempotent under redelivery: Sidekiq itself does not deduplicate, but the
// Rails handler can, and Sidekiq Web shows both copies under one jid.
func WithJID(jid string) PushOption { return func(o *pushOptions) { o.jid = jid } }

// WithRetry sets "retry": n, Sidekiq's max retry count for the job (0: straight to dead).
func WithRetry(n int) PushOption {
	return func(o *pushOptions) { o.retry = strconv.AppendInt(nil, int64(max(n, 0)), 10) }
}

// WithoutRetry sets "retry": false: a failing job is neither retried nor kept in dead.
func WithoutRetry() PushOption { return func(o *pushOptions) { o.retry = []byte("false") } }

// WithAt schedules the job instead of enqueueing it, as Sidekiq's perform_at does: it goes
// to the schedule ZSET and a Sidekiq poller (or this package's Scheduler) moves it to its
// queue when due. A time not in the future enqueues at once.
func WithAt(t time.Time) PushOption { return func(o *pushOptions) { o.at = t } }

// WithField adds a top-level field to the payload ("tags", "backtrace", "display_class"...).
// It cannot override class, args, jid, queue, retry, created_at or enqueued_at. A value
// that cannot be JSON-encoded makes Push fail.
func WithField(key string, value any) PushOption {
	return func(o *pushOptions) {
		b, err := marshalNoEscape(value)
		if err != nil {
			b = nil // reported by Push
		}
		o.extras = append(o.extras, field{key: key, val: b})
	}
}

var reservedPushFields = map[string]bool{
	"class": true, "args": true, "jid": true, "queue": true, "retry": true,
	"created_at": true, "enqueued_at": true, "at": true,
}

// Push enqueues a Sidekiq job the way Sidekiq::Client.push does (SADD queues + LPUSH),
// returns the jid; Sidekiq 7-style payload (float seconds) so any Sidekiq ≥ 6 runs it.
//
// The payload is {"retry","queue","class","args","jid","created_at","enqueued_at"} in
// Sidekiq 7's key order, "retry" true unless an option says otherwise. The two commands
// run in one MULTI, so a job is never in its list without its queue being listed.
func (c *Client) Push(ctx context.Context, queue, class string, args []any, opts ...PushOption) (string, error) {
	if queue == "" {
		return "", errors.New("sidekiq push: queue is empty")
	}
	if class == "" {
		return "", errors.New("sidekiq push: class is empty")
	}
	o := pushOptions{retry: []byte("true")}
	for _, opt := range opts {
		opt(&o)
	}
	if o.jid == "" {
		o.jid = NewJID()
	}
	if args == nil {
		args = []any{}
	}
	argsJSON, err := marshalNoEscape(args)
	if err != nil {
		return "", fmt.Errorf("sidekiq push: args are not JSON-encodable: %w", err)
	}
	now := c.now()
	var buf bytes.Buffer
	buf.WriteString(`{"retry":`)
	buf.Write(o.retry)
	writeMember(&buf, "queue", mustJSON(queue))
	writeMember(&buf, "class", mustJSON(class))
	writeMember(&buf, "args", argsJSON)
	for _, f := range o.extras {
		if f.val == nil {
			return "", fmt.Errorf("sidekiq push: field %q is not JSON-encodable", f.key)
		}
		if reservedPushFields[f.key] {
			return "", fmt.Errorf("sidekiq push: field %q cannot be set with WithField", f.key)
		}
		writeMember(&buf, f.key, f.val)
	}
	writeMember(&buf, "jid", mustJSON(o.jid))
	writeMember(&buf, "created_at", floatSeconds(now))
	scheduled := !o.at.IsZero() && o.at.After(now)
	if !scheduled {
		writeMember(&buf, "enqueued_at", floatSeconds(now))
	}
	buf.WriteByte('}')
	payload := buf.String()

	pipe := c.rdb.TxPipeline()
	if scheduled {
		// client.rb atomic_push: scheduled jobs carry no enqueued_at and the score is "at".
		pipe.ZAdd(ctx, keySchedule, redis.Z{Score: float64(o.at.UnixNano()) / 1e9, Member: payload})
	} else {
		pipe.SAdd(ctx, keyQueues, queue)
		pipe.LPush(ctx, QueueKey(queue), payload)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return "", fmt.Errorf("sidekiq push to %s: %w", queue, err)
	}
	return o.jid, nil
}

func writeMember(buf *bytes.Buffer, key string, val []byte) {
	buf.WriteByte(',')
	buf.Write(mustJSON(key))
	buf.WriteByte(':')
	buf.Write(val)
}

func mustJSON(s string) []byte {
	b, _ := marshalNoEscape(s) // a string always encodes
	return b
}

// NewJID returns a random jid in Sidekiq's format (SecureRandom.hex(12)).
func NewJID() string {
	var b [jidBytes]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// WithQueue names the queue the job was read from. It is written as "queue" when the
// payload has none (or is not a JSON object at all), so that Sidekiq Web's "Retry" has a
// queue to push the entry back to.
func WithQueue(queue string) DeadOption { return func(o *deadOptions) { o.queue = queue } }

// DeadOption changes an entry written by Client.Dead.
type DeadOption func(*deadOptions)

type deadOptions struct {
	retryCount *int
	queue      string
}

// WithRetryCount writes this retry_count instead of Sidekiq's count (0 on the first
// failure, else the job's retry_count + 1); Sidekiq Web shows it, and its "Retry" button
// decrements it.
func WithRetryCount(n int) DeadOption {
	return func(o *deadOptions) { n = max(n, 0); o.retryCount = &n }
}

// Dead ends a job that can never succeed (poison) as a Ruby Sidekiq server ends a failing
// job, for a job no worker ran (the bridge refuses it straight from the queue): Fail with
// Failure.Poison, guarded by the delivery's MarkerKey (a delivery recovered after a crash
// is not stored twice), counted in stat:processed and stat:failed, and in the Metrics
// tab's per-minute execution counts of its class (processed and failed).
//
// The entry keeps the job's own bytes and field order, with error_message (cut to 10,000
// characters, made valid UTF-8), error_class, failed_at (first failure) or retried_at,
// retry_count; trimmed as Sidekiq trims the dead set. A job without a jid gets one: Sidekiq
// Web addresses entries by score and jid. A payload that is not a JSON object at all is
// wrapped in a job of class MaskPredictor::InvalidPayload whose single argument is the
// payload text, so that it is shown rather than lost; ParseJob refuses that wrapper, so a
// "Retry" of it comes straight back here with a reason. A job that failed before (it has a
// retry_count: Sidekiq Web's Retry on the dead set brought it back) first waits once in the
// retry set, as Failure.Poison says, so that Sidekiq 6's DeadSet#retry_all ends.
// Timestamps follow the payload's style (integer milliseconds for Sidekiq 8 payloads,
// float seconds otherwise).
func (c *Client) Dead(ctx context.Context, raw []byte, errClass, errMsg string, opts ...DeadOption) error {
	var o deadOptions
	for _, opt := range opts {
		opt(&o)
	}
	job, _ := ParseJob(raw)
	jid := ""
	if job != nil {
		jid = job.JID
	}
	f := Failure{Raw: raw, Job: job, Queue: o.queue, ErrorClass: errClass, ErrorMessage: errMsg, Poison: true,
		Marker: MarkerKey(jid, raw)}
	if o.retryCount != nil {
		// An explicit count: written as is, straight to the dead set.
		now := c.now()
		entry, err := c.failedEntry(raw, errClass, errMsg, entryOptions{queue: o.queue, retryCount: o.retryCount, removeRedead: true}, now)
		if err != nil {
			return err
		}
		return c.writeDead(ctx, f.Marker, entry, now)
	}
	res, err := c.Fail(ctx, []Failure{f}, FailOptions{CountProcessed: true})
	if err != nil {
		return fmt.Errorf("sidekiq dead set: %w", err)
	}
	if job != nil && res[0].Fate != FateNone {
		m := NewMetrics()
		m.Add(job, 0, true)
		// Best effort: the job has ended; its chart is not worth failing for.
		_ = c.RecordMetrics(ctx, m)
	}
	return nil
}

// writeDead stores one finished dead-set entry through failScript.
func (c *Client) writeDead(ctx context.Context, marker string, entry []byte, now time.Time) error {
	day := now.UTC().Format("2006-01-02")
	keys := []string{keyRetry, keyDead, statFailedKey, statFailedKey + ":" + day, statProcessedKey, statProcessedKey + ":" + day, marker}
	args := []any{DefaultMarkerTTL.Milliseconds(), scoreString(now.Add(-DeadTimeout)), DeadMaxJobs,
		int64(statsTTL / time.Second), "1", "dead", scoreString(now), entry}
	if err := failScript.Run(ctx, c.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("sidekiq dead set: %w", err)
	}
	return nil
}

// cleanErrorMessage makes an error message valid UTF-8 and cuts it where job_retry.rb
// cuts it.
func cleanErrorMessage(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if utf8.RuneCountInString(msg) > maxErrorMessage {
		msg = string([]rune(msg)[:maxErrorMessage])
	}
	return msg
}

func unmarshalString(v json.RawMessage, s *string) error { return json.Unmarshal(v, s) }

func (c *Client) wrapInvalid(raw []byte, errClass, errMsg string, o deadOptions, now time.Time) ([]byte, error) {
	entry := struct {
		Retry        bool     `json:"retry"`
		Queue        string   `json:"queue"`
		Class        string   `json:"class"`
		Args         []string `json:"args"`
		JID          string   `json:"jid"`
		CreatedAt    rawJSON  `json:"created_at"`
		EnqueuedAt   rawJSON  `json:"enqueued_at"`
		ErrorMessage string   `json:"error_message"`
		ErrorClass   string   `json:"error_class"`
		FailedAt     rawJSON  `json:"failed_at"`
		RetryCount   int      `json:"retry_count"`
		RawBase64    []byte   `json:"raw_payload_base64,omitempty"`
	}{
		Retry:        false,
		Queue:        o.queue,
		Class:        invalidPayloadClass,
		Args:         []string{strings.ToValidUTF8(string(raw), "\uFFFD")},
		JID:          NewJID(),
		CreatedAt:    floatSeconds(now),
		EnqueuedAt:   floatSeconds(now),
		ErrorMessage: errMsg,
		ErrorClass:   errClass,
		FailedAt:     floatSeconds(now),
	}
	if o.retryCount != nil {
		entry.RetryCount = *o.retryCount
	}
	if !utf8.Valid(raw) {
		entry.RawBase64 = raw // the args text had to replace invalid bytes; keep the originals
	}
	out, err := marshalNoEscape(entry)
	if err != nil {
		return nil, fmt.Errorf("sidekiq dead set: encode wrapper: %w", err)
	}
	return out, nil
}

// rawJSON is pre-encoded JSON embedded as is.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// IncrStats adds to stat:processed and stat:failed and to their daily keys
// stat:processed:YYYY-MM-DD / stat:failed:YYYY-MM-DD (UTC date, 5-year expiry), which is
// what Sidekiq's dashboard counts and graphs. Sidekiq counts every execution as processed
// and every failing one also as failed. Zero counts are skipped.
func (c *Client) IncrStats(ctx context.Context, processed, failed int) error {
	if processed == 0 && failed == 0 {
		return nil
	}
	pipe := c.rdb.TxPipeline()
	addStats(ctx, pipe, c.now(), processed, failed)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("sidekiq stats: %w", err)
	}
	return nil
}

// Backoff is Sidekiq's delay (7.x job_retry.rb) before retry number retryCount+1, where
// retryCount counts the failures so far minus one (0 after the first failure, the same
// n asynq passes to RetryDelayFunc): count⁴ + 15 + rand(10)·(count+1) seconds.
func Backoff(retryCount int) time.Duration {
	n := min(max(retryCount, 0), maxBackoffCount)
	secs := n*n*n*n + 15 + rand.IntN(10)*(n+1)
	return time.Duration(secs) * time.Second
}

// RetryDelay adapts Backoff to asynq.Config.RetryDelayFunc.
func RetryDelay(n int, _ error, _ *asynq.Task) time.Duration { return Backoff(n) }

// ReplyError answers a job that ends without predictions (dead set, or discarded by its
// retry setting) on its reply_to list, when it has one: one JSON object per name,
// {"mask_name", "jid", "error"}, so a caller waiting for as many replies as it sent names
// learns at once why, instead of waiting out its timeout. Jobs without a reply_to (or
// whose reply_to was refused) need nothing; it reports whether it wrote. ttl is the
// list's expiry, as for the predictions the worker replies.
func (c *Client) ReplyError(ctx context.Context, job *Job, reason string, ttl time.Duration) (bool, error) {
	if job == nil {
		return false, nil
	}
	reqs, replyTo, err := job.Requests()
	if err != nil || replyTo == "" {
		return false, nil
	}
	vals := make([]any, len(reqs))
	for i, r := range reqs {
		v, err := marshalNoEscape(map[string]string{"mask_name": r.MaskName, "jid": job.JID, "error": reason})
		if err != nil {
			return false, fmt.Errorf("encoding the error reply: %w", err)
		}
		vals[i] = v
	}
	pipe := c.rdb.TxPipeline()
	pipe.RPush(ctx, replyTo, vals...)
	pipe.PExpire(ctx, replyTo, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("replying the error to %s: %w", replyTo, err)
	}
	return true, nil
}
