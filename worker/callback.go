package worker

import (
	"bytes"
	"strconv"
	"time"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// appendCallbackJob appends a Sidekiq job whose single argument is
// {"jid": <source jid>, "mask_id": …, "mask_name": …, "prediction": {…}},
// in the payload shape of sidekiq.Client.Push (Sidekiq 7 key order, float
// second timestamps, so any Sidekiq ≥ 6 runs it).
//
// The handler builds callbacks itself instead of calling Client.Push
// because it must queue them in the same atomic write as the cache entries and the
// write-back marker: that makes a callback exactly-once under redelivery
// (Push runs its own MULTI, so a crash between the two pushed it twice) and
// saves a round trip per job. worker/sidekiq has no pipelined push yet; a
// test checks that both produce the same shape.
func appendCallbackJob(b []byte, queue, class, jid string, now time.Time, source string, maskID []byte, name string, prediction []byte) []byte {
	b = append(b, `{"retry":true,"queue":`...)
	b = predictor.AppendJSONString(b, queue)
	b = append(b, `,"class":`...)
	b = predictor.AppendJSONString(b, class)
	b = append(b, `,"args":[{"jid":`...)
	b = predictor.AppendJSONString(b, source)
	b = append(b, `,"mask_id":`...)
	if len(bytes.TrimSpace(maskID)) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, maskID...)
	}
	b = append(b, `,"mask_name":`...)
	b = predictor.AppendJSONString(b, name)
	b = append(b, `,"prediction":`...)
	b = append(b, prediction...)
	b = append(b, `}],"jid":`...)
	b = predictor.AppendJSONString(b, jid)
	ts := floatSeconds(now)
	b = append(b, `,"created_at":`...)
	b = append(b, ts...)
	b = append(b, `,"enqueued_at":`...)
	b = append(b, ts...)
	return append(b, '}')
}

// floatSeconds is a Sidekiq < 8 timestamp: epoch seconds with a fraction.
func floatSeconds(t time.Time) []byte {
	b := strconv.AppendFloat(nil, float64(t.UnixNano())/1e9, 'f', -1, 64)
	if !bytes.ContainsRune(b, '.') {
		b = append(b, '.', '0')
	}
	return b
}
