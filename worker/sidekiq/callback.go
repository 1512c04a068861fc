package sidekiq

import (
	"bytes"
	"time"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// Callback is one callback job: the Sidekiq job the worker pushes, per
// name, for Rails to receive a prediction (worker.HandlerConfig.CallbackClass).
type Callback struct {
	Queue, Class string
	JID          string    // the callback job's own jid
	At           time.Time // its created_at and enqueued_at
	Source       string    // the jid of the job it answers
	MaskID       []byte    // the request's mask_id, echoed verbatim (JSON; empty is null)
	MaskName     string
	Prediction   []byte // the prediction's JSON
}

// AppendCallbackJob appends c's payload: a Sidekiq job whose single argument
// is {"jid": <source jid>, "mask_id": …, "mask_name": …, "prediction": {…}},
// in the shape Client.Push writes (Sidekiq 7 key order, float-second
// timestamps, so any Sidekiq ≥ 6 runs it).
//
// It exists beside Push because the worker must queue callbacks in the same
// atomic write (a Lua script) as its cache entries and done marker: that is
// what makes a callback exactly-once under redelivery (Push runs its own
// MULTI, so a crash between the two would push it twice), and it saves a
// round trip per job. It appends to b, so that a batch's callbacks share one
// buffer, with no reflection: it runs once per name in the hot path.
func AppendCallbackJob(b []byte, c Callback) []byte {
	b = append(b, `{"retry":true,"queue":`...)
	b = predictor.AppendJSONString(b, c.Queue)
	b = append(b, `,"class":`...)
	b = predictor.AppendJSONString(b, c.Class)
	b = append(b, `,"args":[{"jid":`...)
	b = predictor.AppendJSONString(b, c.Source)
	b = append(b, `,"mask_id":`...)
	if len(bytes.TrimSpace(c.MaskID)) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, c.MaskID...)
	}
	b = append(b, `,"mask_name":`...)
	b = predictor.AppendJSONString(b, c.MaskName)
	b = append(b, `,"prediction":`...)
	b = append(b, c.Prediction...)
	b = append(b, `}],"jid":`...)
	b = predictor.AppendJSONString(b, c.JID)
	ts := floatSeconds(c.At)
	b = append(b, `,"created_at":`...)
	b = append(b, ts...)
	b = append(b, `,"enqueued_at":`...)
	b = append(b, ts...)
	return append(b, '}')
}
