package sidekiq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedeadField is the member Client.Fail writes into the retry entry of a job that came
// back from the dead set and could still never succeed (see Fail): the retry_count it was
// parked with. When the entry comes back from retry unchanged (the scheduler, ours or
// Ruby's, keeps retry_count) and fails the same way, it goes back to the dead set, without
// the member. Sidekiq keeps members it does not know, and Sidekiq Web does not show it.
const RedeadField = "maskpredictor_redead"

// DefaultMarkerTTL is how long a delivery's marker (MarkerKey) is kept by default: a day,
// longer than any way a delivery can come back (see the worker's DoneTTL).
const DefaultMarkerTTL = 24 * time.Hour

// ErrNoRaw is returned by Client.Fail for a Failure without a payload.
var ErrNoRaw = errors.New("sidekiq fail: a failure needs its job's payload (Raw)")

// Failure is one failed execution of a job, for Client.Fail.
type Failure struct {
	// Raw is the exact delivery. Required.
	Raw []byte
	// Job is Raw parsed; nil when ParseJob refused it (it is then poison).
	Job *Job
	// Queue is the queue the delivery was read from; it is written as "queue" when the
	// payload has none, so that Sidekiq Web's Retry has a queue to push it to.
	Queue string
	// ErrorClass and ErrorMessage are what Sidekiq Web shows ("<class>: <message>").
	ErrorClass, ErrorMessage string
	// Poison says the job can never succeed: it goes to the dead set at once, with no
	// retries, unless it failed before (it has a retry_count: it came back from the dead
	// set through Sidekiq Web's Retry, or from retry). Such a job waits once in retry first,
	// with Sidekiq's delay, as a Ruby server's failing job would, and goes back to the dead
	// set when it comes back from there and fails the same way (RedeadField). So Sidekiq
	// 6's DeadSet#retry_all, which retries until the dead set is empty, ends: the set is
	// empty until the delay is over.
	Poison bool
	// Marker, when set, is the delivery's MarkerKey: the failure is recorded only if the
	// marker was not set yet (and the marker is set with it, atomically), so a delivery that
	// runs twice (a crash recovery, a lease that expired while it ran) gets one retry or
	// dead entry, and none once its write-back is done.
	Marker string
}

// Fate is where Client.Fail put a failed job.
type Fate uint8

const (
	// FateNone: the delivery had ended already (its marker was set): nothing was written.
	FateNone Fate = iota
	// FateRetry: in Sidekiq's retry set, due at FailResult.At.
	FateRetry
	// FateDead: in Sidekiq's dead set.
	FateDead
	// FateDiscarded: out of retries with "retry": false or "dead": false: nowhere, as in
	// Sidekiq.
	FateDiscarded
)

func (f Fate) String() string {
	switch f {
	case FateRetry:
		return "retry"
	case FateDead:
		return "dead"
	case FateDiscarded:
		return "discarded"
	}
	return "none"
}

// FailResult is what Client.Fail did with one failure.
type FailResult struct {
	Fate       Fate
	RetryCount int       // the retry_count written (Sidekiq's count of failures before this one)
	At         time.Time // FateRetry: when the entry is due
	Parked     bool      // FateRetry of a poison job back from the dead set (see Failure.Poison)
}

// FailOptions tune Client.Fail.
type FailOptions struct {
	// Delay is the wait before the retry of a job whose retry_count is now count.
	// Default: Backoff (Sidekiq's count⁴ + 15 + rand(10)·(count+1) seconds). A job's own
	// sidekiq_retry_in lives in Ruby and is not available here.
	Delay func(count int) time.Duration
	// MarkerTTL is the expiry of the markers set. Default: DefaultMarkerTTL.
	MarkerTTL time.Duration
	// CountProcessed also counts each recorded failure in stat:processed, for jobs no
	// worker ran (the bridge's poison): Sidekiq counts every failed execution as processed
	// and failed. Jobs a worker ran are counted as processed by the Busy-page tracker.
	CountProcessed bool
}

// failScript records failures the way Sidekiq's JobRetry does, each at most once per
// delivery marker, and counts them in stat:failed.
//
// KEYS: 1 retry, 2 dead, 3 stat:failed, 4 stat:failed:<day>, 5 stat:processed,
// 6 stat:processed:<day>, then per failure its marker (or "" when unguarded; KEYS may
// hold any string).
// ARGV: 1 marker TTL ms, 2 dead trim score (now - dead timeout), 3 dead max, 4 stats TTL
// s, 5 count processed (0/1), then per failure: target ("retry", "dead", "none"), score,
// entry.
// Returns one integer per failure: 1 recorded, 0 its marker was set already.
var failScript = redis.NewScript(`
local markerTTL = tonumber(ARGV[1])
local out, n, dead = {}, 0, false
local k, a = 7, 6
while a <= #ARGV do
  local target, score, entry = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local marker = KEYS[k]
  local ok = true
  if marker ~= "" then
    ok = redis.call("SET", marker, "f", "NX", "PX", markerTTL)
  end
  if ok then
    if target == "retry" then
      redis.call("ZADD", KEYS[1], score, entry)
    elseif target == "dead" then
      redis.call("ZADD", KEYS[2], score, entry)
      dead = true
    end
    n = n + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  k, a = k + 1, a + 3
end
if dead then
  redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", ARGV[2])
  redis.call("ZREMRANGEBYRANK", KEYS[2], 0, -(tonumber(ARGV[3]) + 1))
end
if n > 0 then
  local ttl = tonumber(ARGV[4])
  redis.call("INCRBY", KEYS[3], n)
  redis.call("INCRBY", KEYS[4], n)
  redis.call("EXPIRE", KEYS[4], ttl)
  if ARGV[5] == "1" then
    redis.call("INCRBY", KEYS[5], n)
    redis.call("INCRBY", KEYS[6], n)
    redis.call("EXPIRE", KEYS[6], ttl)
  end
end
return out
`)

// Fail records failed executions the way a Ruby Sidekiq server's JobRetry does, in one
// round trip, and counts them in stat:failed (and the day's key), as Sidekiq counts
// them:
//
//   - the job's count becomes retry_count + 1 if it has one, else 0 (with failed_at; later
//     failures set retried_at); error_class and error_message are set (the message cut to
//     10,000 characters, made valid UTF-8);
//   - a transient failure whose count is below the job's retry limit (Job.Retry) goes to
//     the retry set, due after Delay(count); at or above it, the job is out of retries:
//     dead set (trimmed as Sidekiq trims it), or nowhere with "retry": false or
//     "dead": false;
//   - a poison failure goes to the dead set at once, except as Failure.Poison says.
//
// The payload keeps its own bytes and member order, with the fields set as Ruby would
// set them (timestamps in the payload's own style). A failure whose marker was already
// set is left out (FateNone) and not counted. Fail is safe to run again after an error
// whose effect is unknown when every failure has a marker.
func (c *Client) Fail(ctx context.Context, fs []Failure, o FailOptions) ([]FailResult, error) {
	if len(fs) == 0 {
		return nil, nil
	}
	if o.Delay == nil {
		o.Delay = Backoff
	}
	if o.MarkerTTL <= 0 {
		o.MarkerTTL = DefaultMarkerTTL
	}
	now := c.now()
	day := now.UTC().Format("2006-01-02")
	keys := make([]string, 0, 6+len(fs))
	keys = append(keys, keyRetry, keyDead, statFailedKey, statFailedKey+":"+day, statProcessedKey, statProcessedKey+":"+day)
	counted := "0"
	if o.CountProcessed {
		counted = "1"
	}
	args := make([]any, 0, 5+3*len(fs))
	args = append(args, o.MarkerTTL.Milliseconds(), scoreString(now.Add(-DeadTimeout)), DeadMaxJobs,
		int64(statsTTL/time.Second), counted)
	res := make([]FailResult, len(fs))
	for i, f := range fs {
		if len(f.Raw) == 0 {
			return nil, ErrNoRaw
		}
		p, err := c.plan(f, now, o.Delay)
		if err != nil {
			return nil, err
		}
		res[i] = p.res
		keys = append(keys, f.Marker)
		args = append(args, p.target, p.score, p.entry)
	}
	v, err := failScript.Run(ctx, c.rdb, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("sidekiq: recording %d failed jobs: %w", len(fs), err)
	}
	if len(v) != len(fs) {
		return nil, fmt.Errorf("sidekiq: recording failed jobs: script answered %d results for %d jobs", len(v), len(fs))
	}
	for i, x := range v {
		if n, _ := x.(int64); n == 0 {
			res[i] = FailResult{Fate: FateNone}
		}
	}
	return res, nil
}

type failPlan struct {
	target string // retry, dead, none
	score  string
	entry  []byte
	res    FailResult
}

// plan decides a failure's fate and builds its entry (see Fail).
func (c *Client) plan(f Failure, now time.Time, delay func(int) time.Duration) (failPlan, error) {
	j := f.Job
	if j == nil {
		if pj, err := ParseJob(f.Raw); err == nil {
			j = pj
		}
	}
	nowScore := scoreString(now)
	if j == nil { // not a job we can read: dead, as it is (or wrapped, when not an object)
		entry, err := c.failedEntry(f.Raw, f.ErrorClass, f.ErrorMessage, entryOptions{queue: f.Queue}, now)
		if err != nil {
			return failPlan{}, err
		}
		return failPlan{target: "dead", score: nowScore, entry: entry, res: FailResult{Fate: FateDead}}, nil
	}
	count := 0
	if j.Failed {
		count = j.RetryCount + 1
	}
	eo := entryOptions{queue: f.Queue, retryCount: &count, removeRedead: true}
	retry := func(parked bool) (failPlan, error) {
		at := now.Add(delay(count))
		if parked {
			eo.redead, eo.removeRedead = &count, false
		}
		entry, err := c.failedEntry(f.Raw, f.ErrorClass, f.ErrorMessage, eo, now)
		if err != nil {
			return failPlan{}, err
		}
		return failPlan{target: "retry", score: scoreString(at), entry: entry,
			res: FailResult{Fate: FateRetry, RetryCount: count, At: at, Parked: parked}}, nil
	}
	dead := func() (failPlan, error) {
		entry, err := c.failedEntry(f.Raw, f.ErrorClass, f.ErrorMessage, eo, now)
		if err != nil {
			return failPlan{}, err
		}
		return failPlan{target: "dead", score: nowScore, entry: entry, res: FailResult{Fate: FateDead, RetryCount: count}}, nil
	}
	switch {
	case f.Poison:
		// A job that failed before and was not parked with this very count: it came back
		// from the dead set (or was retried by hand): wait once, as Ruby's job would.
		if j.Failed && (j.Redead == nil || *j.Redead != j.RetryCount) {
			return retry(true)
		}
		return dead()
	case count < j.Retry:
		return retry(false)
	case j.Discard:
		// As in Sidekiq: "retry": false never reaches JobRetry, "dead": false skips the
		// morgue. Nothing is written but the marker and the count.
		return failPlan{target: "none", score: nowScore, entry: nil, res: FailResult{Fate: FateDiscarded, RetryCount: count}}, nil
	default:
		return dead()
	}
}

// entryOptions say which fields failedEntry sets besides the error fields.
type entryOptions struct {
	queue        string
	retryCount   *int // nil: count as Sidekiq does (0 on the first failure, else +1)
	redead       *int // set RedeadField to this
	removeRedead bool // drop RedeadField
}

// failedEntry is raw with Sidekiq's failure fields set (job_retry.rb process_retry):
// error_message, error_class, failed_at on the first failure (no retry_count yet), else
// retried_at, retry_count, a queue when it has none, a jid when it has none (Sidekiq Web
// addresses entries by score and jid). A payload that is not a JSON object is wrapped
// (wrapInvalid).
func (c *Client) failedEntry(raw []byte, errClass, errMsg string, o entryOptions, now time.Time) ([]byte, error) {
	if errClass == "" {
		errClass = "StandardError"
	}
	errMsg = cleanErrorMessage(errMsg)
	fields, err := decodeObject(raw)
	if err != nil {
		return c.wrapInvalid(raw, errClass, errMsg, deadOptions{queue: o.queue}, now)
	}
	millis := usesMillis(fields["created_at"])
	set := []field{
		{"error_message", mustJSON(errMsg)},
		{"error_class", mustJSON(errClass)},
	}
	rc, failed := fields["retry_count"]
	failed = failed && !isNull(rc)
	count := 0
	if failed {
		count = intField(rc) + 1
	}
	if o.retryCount != nil {
		count = *o.retryCount
	}
	if failed {
		set = append(set, field{"retried_at", jobTimestamp(now, millis)})
	} else {
		set = append(set, field{"failed_at", jobTimestamp(now, millis)})
	}
	set = append(set, field{"retry_count", strconv.AppendInt(nil, int64(count), 10)})
	var queue string
	if v, ok := fields["queue"]; (!ok || unmarshalString(v, &queue) != nil || queue == "") && o.queue != "" {
		set = append(set, field{"queue", mustJSON(o.queue)})
	}
	var jid string
	if v, ok := fields["jid"]; !ok || unmarshalString(v, &jid) != nil || jid == "" {
		set = append(set, field{"jid", mustJSON(NewJID())})
	}
	if o.redead != nil {
		set = append(set, field{RedeadField, strconv.AppendInt(nil, int64(*o.redead), 10)})
	}
	out, err := setFields(raw, set...)
	if err == nil && o.removeRedead {
		if _, ok := fields[RedeadField]; ok {
			out, err = removeFields(out, RedeadField)
		}
	}
	if err != nil { // cannot happen for a payload decodeObject accepted; keep it anyway
		return c.wrapInvalid(raw, errClass, errMsg, deadOptions{queue: o.queue}, now)
	}
	return out, nil
}
