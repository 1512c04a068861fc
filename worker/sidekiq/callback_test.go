package sidekiq

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// The callback the worker writes has the shape Client.Push writes.
func TestCallbackJobShapeMatchesClientPush(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client()
	pred := []byte(`{"mask_name":"x"}`)
	if _, err := NewClient(rdb).Push(ctx, "default", "CB", []any{map[string]any{"jid": "j", "mask_id": 1, "mask_name": "x", "prediction": json.RawMessage(pred)}}); err != nil {
		t.Fatal(err)
	}
	theirs := rdb.LPop(ctx, "queue:default").Val()
	ours := string(AppendCallbackJob(nil, Callback{Queue: "default", Class: "CB", JID: "0123456789abcdef01234567", At: time.Now(),
		Source: "j", MaskID: []byte("1"), MaskName: "x", Prediction: pred}))
	order := []string{"retry", "queue", "class", "args", "jid", "created_at", "enqueued_at"}
	for _, payload := range []string{ours, theirs} {
		last := -1
		for _, k := range order {
			i := strings.Index(payload, `"`+k+`":`)
			if i <= last {
				t.Errorf("key %q out of Sidekiq's order in %s", k, payload)
			}
			last = i
		}
	}
	var o, p map[string]any
	if err := json.Unmarshal([]byte(ours), &o); err != nil {
		t.Fatalf("%s: %v", ours, err)
	}
	_ = json.Unmarshal([]byte(theirs), &p)
	if !reflect.DeepEqual(o["args"], p["args"]) || o["retry"] != p["retry"] || o["queue"] != p["queue"] || o["class"] != p["class"] {
		t.Errorf("ours %s\nPush %s", ours, theirs)
	}
	if _, ok := o["created_at"].(float64); !ok {
		t.Errorf("created_at %v", o["created_at"])
	}
}
