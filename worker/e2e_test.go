package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/maskpredictor/maskpredictor/internal/modeltest"
	"github.com/maskpredictor/maskpredictor/internal/redistest"
	"github.com/maskpredictor/maskpredictor/predictor"
	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

const callbackClass = "MaskPredictionCallbackJob"

// distinctNames returns n realistic names with distinct cache keys: the
// training names, then recombinations of their tokens.
func distinctNames(t testing.TB, n int) []string {
	t.Helper()
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		k := predictor.Normalize(s)
		if k != "" && !seen[k] && len(out) < n {
			seen[k] = true
			out = append(out, s)
		}
	}
	train := modeltest.TrainNames(t)
	for _, s := range train {
		add(s)
	}
	filters := []string{"N95", "KN95", "FFP2", "P100", "FFP3", "Surgical"}
	for i := 0; len(out) < n; i++ {
		a := predictor.Tokenize(train[i%len(train)])
		b := predictor.Tokenize(train[(i*7+3)%len(train)])
		add(fmt.Sprintf("%s %s-%d %s %s", a[0], b[len(b)-1], i, filters[i%len(filters)], a[len(a)-1]))
	}
	return out
}

type specJob struct {
	Form    string   `json:"form"`
	Name    string   `json:"name,omitempty"`
	Names   []string `json:"names,omitempty"`
	ID      any      `json:"id,omitempty"`
	Payload string   `json:"payload,omitempty"`
}

func writeJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "data.json")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// ruby runs one of testdata/e2e/*.rb with REDIS_URL set and returns stdout.
func ruby(t testing.TB, redisURL, script string, args ...string) []byte {
	t.Helper()
	bin := redistest.RequireRubySidekiq(t)
	path, _ := filepath.Abs(filepath.Join("testdata", "e2e", script))
	cmd := exec.Command(bin, append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ruby %s: %v\n%s", script, err, stderr.String())
	}
	return out
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitIdle waits until the worker has nothing left to do for queues: no due
// job of theirs in Sidekiq's retry or schedule set, none in queue:<name>, none
// in a bridge's in-flight list, no asynq task pending, running or waiting for
// asynq's retry (one atomic read), and then still no due or queued job (where
// a failed job goes back to). A job only moves on along that path, and it is
// read in that order, so a job on its way is seen somewhere. Once it returns,
// whatever the worker was going to do with the jobs it had, it has done:
// a test that asserts something did not happen (a second callback, another
// dead entry) asserts it after this, not after a sleep.
func waitIdle(t testing.TB, rdb *redis.Client, queues ...string) {
	t.Helper()
	ctx := context.Background()
	in := asynq.NewInspectorFromRedisClient(rdb) // on rdb: nothing to close
	served := map[string]bool{}
	for _, q := range queues {
		served[q] = true
	}
	sidekiqSide := func() string {
		now := strconv.FormatFloat(float64(time.Now().UnixNano())/1e9, 'f', 6, 64)
		for _, set := range []string{"retry", "schedule"} {
			for _, raw := range rdb.ZRangeByScore(ctx, set, &redis.ZRangeBy{Min: "-inf", Max: now}).Val() {
				var j struct{ Queue, JID string }
				if json.Unmarshal([]byte(raw), &j) == nil && served[j.Queue] {
					return fmt.Sprintf("%s due in %s", j.JID, set)
				}
			}
		}
		for _, q := range queues {
			if n := rdb.LLen(ctx, sidekiq.QueueKey(q)).Val(); n > 0 {
				return fmt.Sprintf("%d in %s", n, sidekiq.QueueKey(q))
			}
		}
		return ""
	}
	busy := func() string {
		if s := sidekiqSide(); s != "" {
			return s
		}
		for _, key := range rdb.Keys(ctx, "maskpredictor:bridge:inflight:*").Val() {
			if n := rdb.LLen(ctx, key).Val(); n > 0 {
				return fmt.Sprintf("%d in %s", n, key)
			}
		}
		for _, q := range queues {
			qi, err := in.GetQueueInfo(q)
			if errors.Is(err, asynq.ErrQueueNotFound) {
				continue
			}
			if err != nil {
				return err.Error()
			}
			if qi.Pending+qi.Active+qi.Scheduled+qi.Retry > 0 {
				return fmt.Sprintf("asynq queue %s: %d pending, %d active, %d scheduled, %d retry", q, qi.Pending, qi.Active, qi.Scheduled, qi.Retry)
			}
		}
		return sidekiqSide()
	}
	waitFor(t, 30*time.Second, "the worker to have nothing left to do", func() (bool, string) {
		s := busy()
		return s == "", s
	})
}

type readBack struct {
	Callbacks []struct {
		JID   string `json:"jid"`
		Class string `json:"class"`
		Queue string `json:"queue"`
		Arg   struct {
			JID        string          `json:"jid"`
			MaskID     json.RawMessage `json:"mask_id"`
			MaskName   string          `json:"mask_name"`
			Prediction json.RawMessage `json:"prediction"`
		} `json:"arg"`
	} `json:"callbacks"`
	Dead []struct {
		JID          string `json:"jid"`
		Class        string `json:"class"`
		ErrorClass   string `json:"error_class"`
		ErrorMessage string `json:"error_message"`
	} `json:"dead"`
	Cache struct {
		Found   int                        `json:"found"`
		Missing []string                   `json:"missing"`
		Entries map[string]json.RawMessage `json:"entries"`
	} `json:"cache"`
}

// TestEndToEndRubySidekiq: 1,000 jobs pushed by Ruby's Sidekiq client (plain,
// with retry options, ActiveJob-wrapped), recorded Sidekiq 6.4/7.3/8 payloads
// and poison payloads, worked by an in-process worker.Server; read back by
// Sidekiq's own API and the Ruby cache helper.
func TestEndToEndRubySidekiq(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	redistest.RequireRubySidekiq(t)
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{})
	rdb := rs.Client()
	crf := defaultCRF(t)

	// The jobs: 950 distinct names in seven forms, 40 respellings of earlier
	// names (same cache key: answered from the cache in their own spelling),
	// 10 batch jobs of 3 names.
	names := distinctNames(t, 950)
	forms := []string{"plain", "with_id", "hash", "retry_false", "activejob", "activejob8", "plain"}
	var spec []specJob
	for i, n := range names {
		spec = append(spec, specJob{Form: forms[i%len(forms)], Name: n, ID: i + 1})
	}
	for i := 0; i < 40; i++ {
		n := names[i*3]
		v := strings.ToUpper(n)
		if i%2 == 1 {
			v = strings.ReplaceAll(n, " ", "\u00a0 ")
		}
		spec = append(spec, specJob{Form: "hash", Name: v, ID: 10000 + i})
	}
	for i := 0; i < 10; i++ {
		spec = append(spec, specJob{Form: "batch", Names: []string{names[i], names[100+i], names[200+i]}})
	}
	if len(spec) != 1000 {
		t.Fatalf("%d jobs", len(spec))
	}
	// Poison: each kind must land in dead with a readable reason.
	poison := []struct {
		job  specJob
		want string
	}{
		{specJob{Form: "raw", Payload: `{"class":"UserMailerJob","args":["3M Aura"],"jid":"foreign0000000000000000001","queue":"mask_predictions","retry":true}`}, `class "UserMailerJob" is not run`},
		{specJob{Form: "raw", Payload: `{"class":"MaskPredictionJob","args":[{"mask_name":"3M Aura","reply_to":"queue:default"}],"jid":"poison0000000000000000007","queue":"mask_predictions"}`}, `"reply_to" "queue:default" is not under`},
		{specJob{Form: "raw", Payload: "this is not JSON"}, "not JSON"},
		{specJob{Form: "raw", Payload: `{"class":"MaskPredictionJob","args":[1,2,3],"jid":"poison0000000000000000002","queue":"mask_predictions"}`}, "args has 3 elements"},
		{specJob{Form: "plain", Name: " - , ( ) "}, "no tokens"},
		{specJob{Form: "plain", Name: strings.Repeat("long ", 300)}, "too long"},
		{specJob{Form: "raw", Payload: `{"class":"MaskPredictionJob","args":[{"foo":1}],"jid":"poison0000000000000000005","queue":"mask_predictions"}`}, "without \"mask_name\""},
		{specJob{Form: "batch", Names: []string{"3M 8210", "---"}}, "mask_names[1]"},
	}
	for _, p := range poison {
		spec = append(spec, p.job)
	}

	// Ruby pushes everything before the worker starts, so that the worker
	// meets a backlog and carries it in batch tasks; the recorded payloads
	// below arrive while it runs, mostly one task each.
	start := time.Now()
	var jids []*string
	if err := json.Unmarshal(ruby(t, rs.URL, "push.rb", writeJSON(t, spec)), &jids); err != nil {
		t.Fatal(err)
	}
	pushTime := time.Since(start)

	srv, err := New(Config{
		Redis:      rdb,
		AsynqRedis: rs.Client(),
		Handler: HandlerConfig{Predictor: CRFPredictor(crf), CallbackClass: callbackClass,
			// The recorded payloads' own classes, as an app configures WORKER_CLASSES.
			Classes: []string{"MaskPredictionJob", "MaskNamePredictJob", "MaskNamePredictionJob", sidekiq.LabelClass}},
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = srv.Shutdown(ctx)
		}
	}()

	// Recorded payloads of Sidekiq 6.4, 7.3 and 8, byte for byte.
	fixtures, _ := filepath.Glob("sidekiq/testdata/payloads/*.json")
	fixtureCallbacks := 0
	labelled := map[string]bool{} // normalized names the MaskLabelJob fixtures label
	for _, f := range fixtures {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		j, err := sidekiq.ParseJob(raw)
		if err != nil {
			continue
		}
		reqs, _, err := j.Requests()
		if err != nil {
			continue
		}
		if j.IsLabel() { // stored, no callback
			labelled[predictor.Normalize(reqs[0].MaskName)] = true
		} else {
			fixtureCallbacks += len(reqs)
		}
		if err := rdb.LPush(ctx, "queue:mask_predictions", raw).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if fixtureCallbacks < 10 || len(labelled) == 0 {
		t.Fatalf("only %d fixture requests and %d labelled names from %d files", fixtureCallbacks, len(labelled), len(fixtures))
	}

	wantCallbacks := 990 + 30 + fixtureCallbacks
	waitFor(t, 60*time.Second, "all jobs", func() (bool, string) {
		cb := rdb.LLen(ctx, "queue:default").Val()
		dead := rdb.ZCard(ctx, "dead").Val()
		q := rdb.LLen(ctx, "queue:mask_predictions").Val()
		nl := rdb.HLen(ctx, "maskpredictor:labels").Val()
		return cb >= int64(wantCallbacks) && dead >= int64(len(poison)) && q == 0 && nl == int64(len(labelled)),
			fmt.Sprintf("callbacks %d/%d, dead %d/%d, queue %d, labels %d/%d", cb, wantCallbacks, dead, len(poison), q, nl, len(labelled))
	})
	elapsed := time.Since(start)
	t.Logf("%d jobs + %d recorded payloads pushed by Ruby in %v, all done after %v", len(spec), len(fixtures), pushTime, elapsed)

	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	stopped = true

	// The backlog went through batch tasks (kept 24 h as completed tasks).
	insp := asynq.NewInspectorFromRedisClient(rs.Client())
	defer insp.Close()
	done, err := insp.ListCompletedTasks("mask_predictions", asynq.PageSize(100_000))
	if err != nil {
		t.Fatal(err)
	}
	batches, batched := 0, 0
	for _, ti := range done {
		if ti.Type == sidekiq.BatchTaskType {
			raws, err := sidekiq.DecodeBatch(ti.Payload)
			if err != nil {
				t.Fatal(err)
			}
			batches, batched = batches+1, batched+len(raws)
		}
	}
	t.Logf("%d completed asynq tasks, %d of them batches carrying %d jobs", len(done), batches, batched)
	if batched < len(spec)/2 {
		t.Errorf("only %d of %d pre-filled jobs went through batch tasks", batched, len(spec))
	}

	// Read everything back from Ruby: Sidekiq's API and the Ruby normalization.
	var lookup []string
	for _, s := range spec[:1000] {
		if s.Name != "" {
			lookup = append(lookup, s.Name)
		}
		lookup = append(lookup, s.Names...)
	}
	var rb readBack
	if err := json.Unmarshal(ruby(t, rs.URL, "read_back.rb", writeJSON(t, lookup)), &rb); err != nil {
		t.Fatal(err)
	}

	// 1. Ruby finds every cache entry by its own normalization.
	if len(rb.Cache.Missing) > 0 {
		t.Errorf("Ruby's MaskPredictor.cache_key misses %d entries, e.g. %q", len(rb.Cache.Missing), rb.Cache.Missing[:min(3, len(rb.Cache.Missing))])
	}
	// 2. Every entry is exactly what the predictor gives for the name that filled it.
	keys, err := rdb.Keys(ctx, "maskpredictor:prediction:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 950 {
		t.Errorf("%d cache entries, want ≥ 950", len(keys))
	}
	entryLabels := map[string][]string{}
	for _, k := range keys {
		raw := rdb.Get(ctx, k).Val()
		var got predictor.Prediction
		if err := got.UnmarshalJSON([]byte(raw)); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if norm := strings.TrimPrefix(k, "maskpredictor:prediction:"); labelled[norm] {
			// A MaskLabelJob fixture's name: its label answers.
			if got.Source != "label" {
				t.Errorf("%s: labelled name's entry %s", k, raw)
			}
			entryLabels[norm] = got.Labels
			continue
		}
		want, err := crf.Predict(got.MaskName)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		want.NormalizedName = predictor.Normalize(got.MaskName)
		if wantJSON := want.AppendJSON(nil); raw != string(wantJSON) {
			t.Errorf("%s:\n got %s\nwant %s", k, raw, wantJSON)
		}
		if k != "maskpredictor:prediction:"+want.NormalizedName {
			t.Errorf("entry for %q under key %q", got.MaskName, k)
		}
		entryLabels[want.NormalizedName] = got.Labels
	}
	for _, n := range names {
		if _, ok := entryLabels[predictor.Normalize(n)]; !ok {
			t.Errorf("no cache entry for %q", n)
		}
	}

	// 3. Every callback is there once, in Sidekiq's format, and carries the
	// caller's own name and tokens with the predictor's labels.
	if len(rb.Callbacks) != wantCallbacks {
		t.Errorf("Sidekiq::Queue(default) has %d jobs, want %d", len(rb.Callbacks), wantCallbacks)
	}
	byJID := map[string][]int{}
	for i, cb := range rb.Callbacks {
		byJID[cb.Arg.JID] = append(byJID[cb.Arg.JID], i)
		if cb.Class != callbackClass || cb.Queue != "default" || len(cb.JID) != 24 {
			t.Errorf("callback %d: class %q queue %q jid %q", i, cb.Class, cb.Queue, cb.JID)
		}
	}
	checked := 0
	for i, s := range spec[:1000] {
		if jids[i] == nil {
			t.Fatalf("job %d has no jid", i)
		}
		idx := byJID[*jids[i]]
		reqNames := s.Names
		if s.Name != "" {
			reqNames = []string{s.Name}
		}
		if len(idx) != len(reqNames) {
			t.Errorf("job %d (%s, %q): %d callbacks, want %d", i, s.Form, *jids[i], len(idx), len(reqNames))
			continue
		}
		// Sidekiq::Queue lists newest first; match a batch's callbacks by name.
		sort.Slice(idx, func(a, b int) bool {
			return indexOf(reqNames, rb.Callbacks[idx[a]].Arg.MaskName) < indexOf(reqNames, rb.Callbacks[idx[b]].Arg.MaskName)
		})
		for k, ci := range idx {
			cb := rb.Callbacks[ci].Arg
			var p predictor.Prediction
			if err := p.UnmarshalJSON(cb.Prediction); err != nil {
				t.Fatalf("callback of job %d: %v", i, err)
			}
			name := reqNames[k]
			if cb.MaskName != name || p.MaskName != name || !reflect.DeepEqual(p.Tokens, predictor.Tokenize(name)) {
				t.Errorf("job %d: callback for %q: mask_name %q, prediction %q %q", i, name, cb.MaskName, p.MaskName, p.Tokens)
				continue
			}
			own, _ := crf.Predict(name)
			if !reflect.DeepEqual(p.Labels, own.Labels) && !reflect.DeepEqual(p.Labels, entryLabels[predictor.Normalize(name)]) {
				t.Errorf("job %d: labels %v, predictor %v", i, p.Labels, own.Labels)
			}
			wantID := "null"
			switch s.Form {
			case "with_id", "hash", "activejob", "activejob8":
				wantID = fmt.Sprint(s.ID)
			}
			if string(cb.MaskID) != wantID {
				t.Errorf("job %d (%s): mask_id %s, want %s", i, s.Form, cb.MaskID, wantID)
			}
			checked++
		}
	}
	t.Logf("checked %d callbacks of %d jobs; %d cache entries", checked, 1000, len(keys))

	// 4. Poison jobs are in Sidekiq's dead set with a readable reason.
	if len(rb.Dead) != len(poison) {
		t.Errorf("%d dead entries, want %d: %+v", len(rb.Dead), len(poison), rb.Dead)
	}
	for _, p := range poison {
		found := false
		for _, d := range rb.Dead {
			if (d.ErrorClass == ErrorClassInvalid || d.ErrorClass == sidekiq.ForeignErrorClass) && strings.Contains(d.ErrorMessage, p.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no dead entry with reason containing %q", p.want)
		}
	}
	msgs := make([]string, len(rb.Dead))
	for i, d := range rb.Dead {
		msgs[i] = d.ErrorClass + ": " + d.ErrorMessage
	}
	sort.Strings(msgs)
	t.Logf("dead set as Sidekiq shows it:\n  %s", strings.Join(msgs, "\n  "))

	// A reply_to naming Sidekiq's own queue wrote nothing there: no expiry.
	if ttl := rdb.TTL(ctx, "queue:default").Val(); ttl != -1 {
		t.Errorf("queue:default has a TTL of %v", ttl)
	}

	// 5. Sidekiq's dashboard counts the work; the process left the Busy page.
	processed, _ := rdb.Get(ctx, "stat:processed").Int()
	if processed < 1000 {
		t.Errorf("stat:processed = %d", processed)
	}
	if n := rdb.SCard(ctx, "processes").Val(); n != 0 {
		t.Errorf("%d processes still registered after shutdown", n)
	}
	if st := srv.Handler().Stats(); st.CacheHits < 40 {
		t.Errorf("stats %+v: the 40 respellings should be cache hits", st)
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return len(list)
}

// TestEndToEndBadJobsEndAlone: jobs pushed by Ruby's Sidekiq client before the
// worker starts, so that they share batch tasks: one of each bad kind beside
// good "retry": false, "retry": 0 and default jobs. Every good job completes
// (its callback, exactly once), every bad one ends alone in the dead set with
// its own reason, and nothing is written to a key outside the sidecar's own.
func TestEndToEndBadJobsEndAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	redistest.RequireRubySidekiq(t)
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{})
	rdb := rs.Client()
	if err := rdb.Set(ctx, "maskpredictor:reply:str", "not a list", 0).Err(); err != nil {
		t.Fatal(err)
	}
	raw := func(jid, args, retry string) specJob {
		return specJob{Form: "raw", Payload: `{"class":"MaskPredictionJob","queue":"mask_predictions","jid":"` + jid +
			`","args":` + args + `,"retry":` + retry + `,"created_at":1796000000.5,"enqueued_at":1796000000.5}`}
	}
	names := distinctNames(t, 30)
	var spec []specJob
	good := 0
	for i, n := range names {
		switch i % 3 {
		case 0:
			spec = append(spec, specJob{Form: "retry_false", Name: n})
		case 1:
			spec = append(spec, specJob{Form: "batch", Names: []string{n}}) // "retry" => 0
		default:
			spec = append(spec, specJob{Form: "plain", Name: n})
		}
		good++
		if i%10 == 4 { // the bad ones, among the good
			k := i / 10
			bad := []specJob{
				raw(fmt.Sprintf("badtype%017d", k), `[{"mask_name":"3M Aura","reply_to":"maskpredictor:reply:str"}]`, "false"),
				raw(fmt.Sprintf("badzero%017d", k), `[{"mask_name":"Moldex 2200","reply_to":"maskpredictor:reply:str"}]`, "0"),
				{Form: "plain", Name: " - , "},
				raw(fmt.Sprintf("replyto%017d", k), `[{"mask_name":"3M Aura","reply_to":"queue:default"}]`, "true"),
				{Form: "raw", Payload: fmt.Sprintf(`{"class":"UserMailerJob","queue":"mask_predictions","jid":"foreign%017d","args":["x"],"retry":true}`, k)},
			}
			spec = append(spec, bad...)
		}
	}
	var jids []*string
	if err := json.Unmarshal(ruby(t, rs.URL, "push.rb", writeJSON(t, spec)), &jids); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{
		Redis:   rdb,
		Handler: HandlerConfig{Predictor: CRFPredictor(defaultCRF(t)), CallbackClass: callbackClass},
		Logger:  zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(ctx) }()
	nbad := len(spec) - good
	waitFor(t, 30*time.Second, "every job ended", func() (bool, string) {
		cb, dead := rdb.LLen(ctx, "queue:default").Val(), rdb.ZCard(ctx, "dead").Val()
		return cb >= int64(good) && dead >= int64(nbad), fmt.Sprintf("callbacks %d/%d, dead %d/%d", cb, good, dead, nbad)
	})
	waitIdle(t, rdb, sidekiq.DefaultQueue) // nothing more may come

	var rb readBack
	if err := json.Unmarshal(ruby(t, rs.URL, "read_back.rb", writeJSON(t, []string{})), &rb); err != nil {
		t.Fatal(err)
	}
	perJID := map[string]int{}
	for _, cb := range rb.Callbacks {
		perJID[cb.Arg.JID]++
	}
	deadBy := map[string]string{}
	for _, d := range rb.Dead {
		deadBy[d.JID] = d.ErrorClass + ": " + d.ErrorMessage
	}
	for i, s := range spec {
		var jid string
		if jids[i] != nil {
			jid = *jids[i]
		} else { // raw payloads: their own jid
			var p struct{ JID string }
			_ = json.Unmarshal([]byte(s.Payload), &p)
			jid = p.JID
		}
		isBad := s.Form == "raw" || s.Name == " - , "
		switch {
		case !isBad && (perJID[jid] != 1 || deadBy[jid] != ""):
			t.Errorf("good job %s (%s): %d callbacks, dead %q", jid, s.Form, perJID[jid], deadBy[jid])
		case isBad && (perJID[jid] != 0 || deadBy[jid] == ""):
			t.Errorf("bad job %s: %d callbacks, dead %q", jid, perJID[jid], deadBy[jid])
		}
	}
	reasons := map[string]string{"badtype": "holds a Redis string, not a list", "badzero": "holds a Redis string, not a list", "replyto": "is not under",
		"foreign": sidekiq.ForeignErrorClass + `: job can never succeed: not a maskpredictor job: class "UserMailerJob"`}
	for jid, why := range deadBy {
		for prefix, want := range reasons {
			if strings.HasPrefix(jid, prefix) && !strings.Contains(why, want) {
				t.Errorf("dead %s: %q, want %q", jid, why, want)
			}
		}
	}
	if len(rb.Dead) != nbad {
		t.Errorf("%d dead entries, want %d", len(rb.Dead), nbad)
	}
	if v, ttl := rdb.Get(ctx, "maskpredictor:reply:str").Val(), rdb.TTL(ctx, "maskpredictor:reply:str").Val(); v != "not a list" || ttl != -1 {
		t.Errorf("the wrong-type reply key was touched: %q ttl %v", v, ttl)
	}
	if ttl := rdb.TTL(ctx, "queue:default").Val(); ttl != -1 {
		t.Errorf("queue:default has a TTL of %v", ttl)
	}
	t.Logf("%d good jobs completed, %d bad ones dead alone: %v", good, nbad, deadBy)
}
