package sidekiq

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// TaskType is the asynq task type of every task the bridge enqueues. The payload of such
// a task is the raw Sidekiq job JSON, byte for byte as read from `queue:<name>`.
const TaskType = "sidekiq:mask_prediction"

// DefaultMaxRetries is what `"retry": true` (or no "retry" at all) means, as in Sidekiq,
// whose default `max_retries` is 25.
const DefaultMaxRetries = 25

// ErrPoison marks a job that can never succeed however often it is retried (not JSON,
// no jid, an args shape we do not understand...). Such a job belongs in Sidekiq's dead
// set, not in a retry loop. Errors from ParseJob and Job.Requests always wrap it, so
// callers test with errors.Is(err, ErrPoison) and show err.Error() as the reason.
var ErrPoison = errors.New("job can never succeed")

// ReplyPrefix is the only key space a job's "reply_to" may name. The sidecar shares
// Redis with the Rails app: a reply pushed to, and given an expiry on, any key a job
// names could expire Sidekiq's own queues ("reply_to": "queue:default"). The Rails kit's
// reply keys are ReplyPrefix + a random suffix.
const ReplyPrefix = "maskpredictor:reply:"

// maxReplyKeyLen bounds a reply_to key (the Rails kit's are 44 bytes).
const maxReplyKeyLen = 256

// ErrForeign marks a job on one of our queues whose class is not one the sidecar runs
// (it wraps ErrPoison: it can never succeed here). See Job.CheckClass.
var ErrForeign = fmt.Errorf("%w: not a maskpredictor job", ErrPoison)

// ForeignErrorClass is the error_class of the dead-set entry of a job ErrForeign refused.
const ForeignErrorClass = "MaskPredictor::ForeignJob"

// The job classes of the Rails kit.
const (
	// PredictionClass asks for predictions: args ["name"], ["name", id],
	// [{"mask_name", "mask_id"}], [{"mask_names": […]}] (Job.Requests).
	PredictionClass = "MaskPredictionJob"
	// LabelClass stores a label a person gave a name in the Rails app's admin: args
	// [mask_name, breakdown] or [mask_name, breakdown, labelled_by] (Job.Label).
	LabelClass = "MaskLabelJob"
)

// DefaultClasses are the job classes the sidecar runs when none are configured: the
// Rails kit's MaskPredictionJob and MaskLabelJob (plain Sidekiq, or ActiveJob through
// its wrapper).
var DefaultClasses = []string{PredictionClass, LabelClass}

// ErrorClass is the dead-set error_class for a job refused with err.
func ErrorClass(err error) string {
	if errors.Is(err, ErrForeign) {
		return ForeignErrorClass
	}
	return PoisonErrorClass
}

// The two class names ActiveJob's Sidekiq adapter writes: Rails' own adapter and Sidekiq
// 7.x use the first, Sidekiq 8 the second (the old name keeps working there).
const (
	ActiveJobWrapperClass       = "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper"
	ActiveJobWrapperClassNew    = "Sidekiq::ActiveJob::Wrapper"
	invalidPayloadClass         = "MaskPredictor::InvalidPayload"
	maxTaskIDJIDLen             = 64
	millisecondTimestampCutover = 1e11 // an integer below this is seconds, above it milliseconds
)

// Job is a parsed Sidekiq job payload.
type Job struct {
	Raw        []byte            // the exact bytes
	Class      string            // "MaskPredictionJob", "MaskLabelJob" or the ActiveJob wrapper class
	Wrapped    string            // ActiveJob job class, if any
	Queue      string            // the "queue" field (may be empty)
	JID        string            // Sidekiq's job id
	Args       []json.RawMessage // for ActiveJob: the job's own arguments (args[0].arguments), _aj_* markers stripped
	Retry      int               // max retries derived from "retry" (true or absent → 25, false → 0, n → n)
	Discard    bool              // "retry": false or "dead": false: out of retries, it leaves no dead-set entry
	RetryCount int               // "retry_count" as written (Sidekiq Web's Retry decrements it: -1 is possible); 0 when absent
	Failed     bool              // the payload has a "retry_count": it failed before (Sidekiq's `if msg["retry_count"]`)
	Redead     *int              // RedeadField: the retry_count it was parked in retry with (see Client.Fail)
	CreatedAt  time.Time         // zero when absent or unreadable
	EnqueuedAt time.Time         // zero when absent (scheduled jobs have none until they are pushed)
}

// RunsAs is the class the job runs as: the ActiveJob job class for ActiveJob's wrapper
// (its "wrapped", else the serialized job_class), else "class".
func (j *Job) RunsAs() string {
	if j.Class == ActiveJobWrapperClass || j.Class == ActiveJobWrapperClassNew {
		return j.Wrapped
	}
	return j.Class
}

// CheckClass refuses a job that does not run as one of classes (an error wrapping
// ErrForeign). A Rails app may push jobs of other classes onto our queue by mistake (a
// queue name shared with a Ruby job, a callback class pointed at the wrong queue); they
// must never be predicted, and the dead-set entry says why, naming the class.
func (j *Job) CheckClass(classes []string) error {
	c := j.RunsAs()
	for _, ok := range classes {
		if c == ok {
			return nil
		}
	}
	what := fmt.Sprintf("class %q", j.Class)
	if c != j.Class {
		what = fmt.Sprintf("ActiveJob class %q (wrapped by %s)", c, j.Class)
	}
	return fmt.Errorf("%w: %s is not run by the maskpredictor sidecar, which runs only %s on its queues; "+
		"move the job to a queue a Ruby Sidekiq process serves (Retry here brings it back to this queue)",
		ErrForeign, what, strings.Join(classes, ", "))
}

// IsLabel reports whether the job is a MaskLabelJob (plain or through ActiveJob's
// wrapper): a label to store (Job.Label), not names to predict.
func (j *Job) IsLabel() bool { return j.RunsAs() == LabelClass }

// LabelArgs are the arguments of a MaskLabelJob, read for their shape only: whether the
// breakdown matches the name's tokens and uses known labels is the label store's
// business (labels.Validate).
type LabelArgs struct {
	MaskName string
	// Breakdown is the [{token: label}…] list, one raw JSON value per entry.
	Breakdown  []json.RawMessage
	LabelledBy string // "" when absent or null
}

// Label reads the arguments of a MaskLabelJob: [mask_name, breakdown] or
// [mask_name, breakdown, labelled_by], with mask_name a non-empty string, breakdown an
// array ([{token: label}…]) and labelled_by a string or null. A label job carries no
// reply_to. Every error wraps ErrPoison.
func (j *Job) Label() (LabelArgs, error) {
	const want = "expected [mask_name, breakdown] or [mask_name, breakdown, labelled_by]"
	if n := len(j.Args); n < 2 || n > 3 {
		return LabelArgs{}, poison("%s args has %d elements: %s", LabelClass, n, want)
	}
	var a LabelArgs
	if err := json.Unmarshal(j.Args[0], &a.MaskName); err != nil {
		return LabelArgs{}, poison("%s args[0] must be the mask name (a string), got %s", LabelClass, abbrev(j.Args[0]))
	}
	if strings.TrimSpace(a.MaskName) == "" {
		return LabelArgs{}, poison("%s args[0]: mask name is empty", LabelClass)
	}
	if err := json.Unmarshal(j.Args[1], &a.Breakdown); err != nil || a.Breakdown == nil {
		return LabelArgs{}, poison("%s args[1] must be the breakdown, an array of {token: label} objects, got %s", LabelClass, abbrev(j.Args[1]))
	}
	if len(j.Args) == 3 && !isNull(j.Args[2]) {
		if err := json.Unmarshal(j.Args[2], &a.LabelledBy); err != nil {
			return LabelArgs{}, poison("%s args[2] must be labelled_by (a string or null), got %s", LabelClass, abbrev(j.Args[2]))
		}
	}
	return a, nil
}

// Request is one mask name to predict, with the caller's id for it.
type Request struct {
	MaskName string
	MaskID   json.RawMessage // null when absent; echoed back verbatim
}

func poison(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrPoison, fmt.Sprintf(format, a...))
}

// ParseJob parses a Sidekiq job payload. It accepts what Sidekiq 6, 7 (float-second
// timestamps) and 8 (integer-millisecond timestamps) write, and ActiveJob's wrapper under
// both class names, for which Args are the ActiveJob job's own arguments.
//
// ParseJob checks only what every job needs (a JSON object with a string "class", a
// string "jid" and an "args" array); whether the args are a shape we can predict is
// Requests' business. Metadata we merely report (timestamps, retry_count) is read
// leniently: an unreadable value is left zero rather than killing an otherwise good job.
// Every error wraps ErrPoison.
func ParseJob(raw []byte) (*Job, error) {
	fields, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	j := &Job{Raw: raw}
	if j.Class, err = stringField(fields, "class", true); err != nil {
		return nil, err
	}
	if j.Class == invalidPayloadClass {
		return nil, poison("this dead-set entry wraps a payload that was not a JSON job object; it cannot be retried, fix the producer")
	}
	if j.JID, err = stringField(fields, "jid", true); err != nil {
		return nil, err
	}
	if j.Queue, err = stringField(fields, "queue", false); err != nil {
		return nil, err
	}
	if j.Wrapped, err = stringField(fields, "wrapped", false); err != nil {
		return nil, err
	}
	rawArgs, ok := fields["args"]
	if !ok {
		return nil, poison(`no "args"`)
	}
	var args []json.RawMessage
	if err := json.Unmarshal(rawArgs, &args); err != nil || args == nil {
		return nil, poison(`"args" must be a JSON array, got %s`, abbrev(rawArgs))
	}
	if j.Class == ActiveJobWrapperClass || j.Class == ActiveJobWrapperClassNew {
		if args, err = activeJobArguments(j, args); err != nil {
			return nil, err
		}
	}
	j.Args = args
	j.Retry = retryLimit(fields["retry"])
	j.Discard = discards(fields["retry"], fields["dead"])
	if v, ok := fields["retry_count"]; ok && !isNull(v) {
		j.Failed = true
		j.RetryCount = intField(v)
	}
	if v, ok := fields[RedeadField]; ok && !isNull(v) {
		n := intField(v)
		j.Redead = &n
	}
	j.CreatedAt = timestampField(fields["created_at"])
	j.EnqueuedAt = timestampField(fields["enqueued_at"])
	return j, nil
}

// decodeObject decodes a JSON object into its top-level members, keeping their raw
// values. Keys are matched exactly (encoding/json's struct decoding would also accept
// "JID" for "jid", which Sidekiq does not).
func decodeObject(raw []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(raw) {
		return nil, poison("payload is not JSON: %s", abbrev(raw))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, poison("payload is not a JSON object: %s", abbrev(raw))
	}
	return fields, nil
}

func stringField(fields map[string]json.RawMessage, key string, required bool) (string, error) {
	v, ok := fields[key]
	if !ok || isNull(v) {
		if required {
			return "", poison("no %q", key)
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", poison("%q must be a string, got %s", key, abbrev(v))
	}
	if required && s == "" {
		return "", poison("%q is empty", key)
	}
	return s, nil
}

// activeJobArguments unwraps ActiveJob's `job.serialize` hash in args[0].
func activeJobArguments(j *Job, args []json.RawMessage) ([]json.RawMessage, error) {
	if len(args) != 1 {
		return nil, poison("ActiveJob wrapper needs exactly one argument (the serialized job), got %d", len(args))
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(args[0], &data); err != nil || data == nil {
		return nil, poison("ActiveJob wrapper: args[0] must be the serialized job object, got %s", abbrev(args[0]))
	}
	if j.Wrapped == "" {
		if jc, ok := data["job_class"]; ok {
			_ = json.Unmarshal(jc, &j.Wrapped) // best effort: only informative
		}
	}
	rawArgs, ok := data["arguments"]
	if !ok {
		return nil, poison(`ActiveJob wrapper: the serialized job has no "arguments"`)
	}
	var inner []json.RawMessage
	if err := json.Unmarshal(rawArgs, &inner); err != nil || inner == nil {
		return nil, poison(`ActiveJob wrapper: "arguments" must be an array, got %s`, abbrev(rawArgs))
	}
	for i, a := range inner {
		v, err := decodeValue(a)
		if err != nil {
			return nil, poison("ActiveJob argument %d: %v", i, err)
		}
		out, err := marshalNoEscape(stripActiveJobMarkers(v))
		if err != nil {
			return nil, poison("ActiveJob argument %d: %v", i, err)
		}
		inner[i] = out
	}
	return inner, nil
}

// stripActiveJobMarkers undoes what ActiveJob's argument serializer adds, the way
// Sidekiq's Web UI does (api.rb deserialize_argument): keys starting with "_aj_" are
// dropped at every level ("_aj_symbol_keys", "_aj_ruby2_keywords",
// "_aj_hash_with_indifferent_access"), a GlobalID becomes its "gid://" string and a
// serialized Symbol becomes its name.
func stripActiveJobMarkers(v any) any {
	switch t := v.(type) {
	case []any:
		for i := range t {
			t[i] = stripActiveJobMarkers(t[i])
		}
		return t
	case map[string]any:
		if gid, ok := t["_aj_globalid"]; ok && len(t) == 1 {
			return gid
		}
		if ser, ok := t["_aj_serialized"].(string); ok && ser == "ActiveJob::Serializers::SymbolSerializer" {
			if val, ok := t["value"]; ok {
				return val
			}
		}
		for k, val := range t {
			if strings.HasPrefix(k, "_aj_") {
				delete(t, k)
				continue
			}
			t[k] = stripActiveJobMarkers(val)
		}
		return t
	default:
		return v
	}
}

// decodeValue decodes JSON keeping numbers as json.Number, so ids like 12345678901234567890
// survive the round trip unchanged.
func decodeValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// marshalNoEscape encodes like Ruby's JSON.generate: no HTML escaping of <, > and &.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// retryLimit maps Sidekiq's "retry" option to a max retry count the way Sidekiq's
// retry handler does (job_retry.rb retry_attempts_from): an Integer is the limit, false
// means none, anything else (true, absent, a Float, a String) means max_retries (25).
// JSON has no Integer type; a number written without a fraction or exponent is what
// Ruby's JSON parser reads as an Integer, so "retry": 3.0 or 1e308 is a Float, and 25.
// A huge Integer (a Bignum in Ruby) is capped at MaxInt32: retries without end.
func retryLimit(v json.RawMessage) int {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0, isNull(v), string(v) == "true":
		return DefaultMaxRetries
	case string(v) == "false":
		return 0
	}
	if bytes.ContainsAny(v, ".eE") {
		return DefaultMaxRetries // a Float in Ruby: not an Integer
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return DefaultMaxRetries // e.g. a string: truthy in Ruby, not an Integer
	}
	switch {
	case f < 0:
		return 0
	case f > math.MaxInt32:
		return math.MaxInt32
	}
	return int(f)
}

// discards reports whether a job that runs out of retries leaves no dead-set entry, as
// in Sidekiq: "retry": false (never retried, never in the dead set) or "dead": false.
func discards(retry, dead json.RawMessage) bool {
	return string(bytes.TrimSpace(retry)) == "false" || string(bytes.TrimSpace(dead)) == "false"
}

// RetryPolicy reads a payload's retry setting: the most retries it allows (Job.Retry)
// and whether a job out of retries leaves no trace in the dead set. It is
// the one reader of "retry" and "dead"; a payload that is not a JSON object gets the
// defaults (25 retries, dead set), which is what its dead-set entry needs.
func RetryPolicy(raw []byte) (limit int, discard bool) {
	fields, err := decodeObject(raw)
	if err != nil {
		return DefaultMaxRetries, false
	}
	return retryLimit(fields["retry"]), discards(fields["retry"], fields["dead"])
}

// intField reads an integer member (retry_count); anything else is 0.
func intField(v json.RawMessage) int {
	var n json.Number
	if len(v) == 0 || json.Unmarshal(v, &n) != nil {
		return 0
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0
	}
	return int(f)
}

// timestampField reads a Sidekiq job timestamp. Sidekiq before 8 writes Float epoch
// seconds, Sidekiq 8 Integer epoch milliseconds, and its readers tell them apart by type
// (api.rb @v8.1.7); JSON has no such type, so a number written with a fraction or
// exponent is seconds and an integer is milliseconds. An integer below 1e11 is still read
// as seconds: as milliseconds it would be a date in 1973, as seconds it is what a writer
// that dropped the fraction of a whole-second float produced.
func timestampField(v json.RawMessage) time.Time {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] == '"' || isNull(v) {
		return time.Time{}
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f > 1e15 {
		return time.Time{}
	}
	if !bytes.ContainsAny(v, ".eE") && f >= millisecondTimestampCutover {
		return time.UnixMilli(int64(f)).UTC()
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC()
}

// usesMillis tells whether a payload is in Sidekiq 8's format (integer-millisecond
// created_at), so that timestamps we add to it (enqueued_at, failed_at) match its style.
func usesMillis(createdAt json.RawMessage) bool {
	v := bytes.TrimSpace(createdAt)
	if len(v) == 0 || v[0] < '0' || v[0] > '9' || bytes.ContainsAny(v, ".eE") {
		return false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return err == nil && f >= millisecondTimestampCutover
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// abbrev shortens a value for an error message, so that a 1 MB poison payload does not
// become a 1 MB error_message.
func abbrev(b []byte) string {
	const max = 80
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(b))
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// TaskID is the asynq task id of this delivery: the jid plus a hash of the exact bytes.
//
// Why not the jid alone: Sidekiq Web's "Retry" (and Client.push with an explicit jid)
// re-pushes the same jid with different bytes (retry_count, enqueued_at, error fields
// change), and with TaskID = jid that legitimate new delivery would hit the old task's
// ErrTaskIDConflict and silently vanish. Why it is still idempotent: crash recovery moves
// the very same bytes back into the queue (LMOVE never rewrites an element), so a
// re-delivery of one delivery always yields the same TaskID, and asynq refuses the second
// Enqueue with ErrTaskIDConflict for as long as the first task's hash exists, which the
// bridge's Retention (24 h) keeps far beyond the recovery window (the alive TTL, 30 s).
func (j *Job) TaskID() string {
	return DeliveryID(j.JID, j.Raw)
}

// MarkerKey is the key that records, once per delivery, that the delivery has ended: its
// write-back is done (the worker's write-back script sets it) or its failure is recorded
// in Sidekiq's retry or dead set (Client.Fail sets it). Whoever sets it first owns the
// delivery's outcome; a second run of the same delivery (a crash recovery, asynq
// re-running a task whose lease expired, a regrouped batch) then writes neither a second
// callback nor a second retry entry.
func MarkerKey(jid string, raw []byte) string { return markerPrefix + DeliveryID(jid, raw) }

const markerPrefix = "maskpredictor:done:"

// DeliveryID computes Job.TaskID for a jid and the raw bytes of its delivery.
func DeliveryID(jid string, raw []byte) string {
	sum := sha256.Sum256(raw)
	if len(jid) > maxTaskIDJIDLen {
		jid = jid[:maxTaskIDJIDLen]
	}
	return jid + "-" + hex.EncodeToString(sum[:8])
}

// checkReplyKey confines reply_to to ReplyPrefix (see there). Its errors wrap ErrPoison;
// nothing is ever written to a refused key.
func checkReplyKey(key string) error {
	switch {
	case !strings.HasPrefix(key, ReplyPrefix) || len(key) == len(ReplyPrefix):
		return poison(`"reply_to" %s is not under %q: the sidecar writes replies only to keys of its own (the Rails kit's MaskPredictor.predict_now uses %s<random>); nothing was written to it`,
			abbrev([]byte(key)), ReplyPrefix, ReplyPrefix)
	case len(key) > maxReplyKeyLen:
		return poison(`"reply_to" is %d bytes, over the limit of %d`, len(key), maxReplyKeyLen)
	}
	return nil
}

// Requests interprets Args: ["name"], ["name", id], [{"mask_name","mask_id"}],
// [{"mask_names": [...]}]; optional "reply_to" in the hash form. For a MaskLabelJob
// (IsLabel) it is the one name the label is for, with no id and no reply_to, after
// Label has checked the args' shape: every check that reads the names (the worker's
// limits, the log line) then sees label jobs as well.
//
// In ["name", id] the id may be any JSON value; it is echoed back verbatim. Unknown keys
// in the hash form (request_id, v, ...) are ignored, so Rails can add its own bookkeeping.
// Whether a name has any tokens is the predictor's business, not checked here; an empty
// name is rejected. Every error wraps ErrPoison.
func (j *Job) Requests() (reqs []Request, replyTo string, err error) {
	null := json.RawMessage("null")
	if j.IsLabel() {
		a, err := j.Label()
		if err != nil {
			return nil, "", err
		}
		return []Request{{MaskName: a.MaskName, MaskID: null}}, "", nil
	}
	switch len(j.Args) {
	case 0:
		return nil, "", poison("args is empty: expected [name], [name, id], [{mask_name, mask_id}] or [{mask_names}]")
	case 1, 2:
	default:
		return nil, "", poison("args has %d elements: expected [name], [name, id], [{mask_name, mask_id}] or [{mask_names}]", len(j.Args))
	}
	first := bytes.TrimSpace(j.Args[0])
	if len(first) > 0 && first[0] == '"' {
		var name string
		if err := json.Unmarshal(first, &name); err != nil {
			return nil, "", poison("args[0]: %v", err)
		}
		if name == "" {
			return nil, "", poison("args[0]: mask name is empty")
		}
		id := null
		if len(j.Args) == 2 {
			id = json.RawMessage(bytes.TrimSpace(j.Args[1]))
		}
		return []Request{{MaskName: name, MaskID: id}}, "", nil
	}
	if len(first) == 0 || first[0] != '{' {
		return nil, "", poison("args[0] must be a mask name (string) or a hash with mask_name or mask_names, got %s", abbrev(first))
	}
	if len(j.Args) != 1 {
		return nil, "", poison("the hash form takes exactly one argument, got %d", len(j.Args))
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(first, &h); err != nil {
		return nil, "", poison("args[0]: %v", err)
	}
	if rt, ok := h["reply_to"]; ok && !isNull(rt) {
		if err := json.Unmarshal(rt, &replyTo); err != nil {
			return nil, "", poison(`"reply_to" must be a string (a Redis key), got %s`, abbrev(rt))
		}
		if err := checkReplyKey(replyTo); err != nil {
			return nil, "", err
		}
	}
	rawName, hasName := h["mask_name"]
	rawNames, hasNames := h["mask_names"]
	switch {
	case hasName && hasNames:
		return nil, "", poison(`args[0] has both "mask_name" and "mask_names"; send one of them`)
	case hasName:
		var name string
		if err := json.Unmarshal(rawName, &name); err != nil {
			return nil, "", poison(`"mask_name" must be a string, got %s`, abbrev(rawName))
		}
		if name == "" {
			return nil, "", poison(`"mask_name" is empty`)
		}
		id := null
		if v, ok := h["mask_id"]; ok {
			id = json.RawMessage(bytes.TrimSpace(v))
		}
		return []Request{{MaskName: name, MaskID: id}}, replyTo, nil
	case hasNames:
		var names []json.RawMessage
		if err := json.Unmarshal(rawNames, &names); err != nil || names == nil {
			return nil, "", poison(`"mask_names" must be an array of strings, got %s`, abbrev(rawNames))
		}
		if len(names) == 0 {
			return nil, "", poison(`"mask_names" is empty`)
		}
		reqs = make([]Request, len(names))
		for i, rn := range names {
			var name string
			if err := json.Unmarshal(rn, &name); err != nil {
				return nil, "", poison(`"mask_names"[%d] must be a string, got %s`, i, abbrev(rn))
			}
			if name == "" {
				return nil, "", poison(`"mask_names"[%d] is empty`, i)
			}
			reqs[i] = Request{MaskName: name, MaskID: null}
		}
		return reqs, replyTo, nil
	default:
		return nil, "", poison(`args[0] is a hash without "mask_name" or "mask_names"`)
	}
}
