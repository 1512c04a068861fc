package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// Bounds of one review computation: the cache is the Rails app's Redis, and
// a page view must not walk all of it.
const (
	DefaultReviewMaxKeys = 5000
	DefaultReviewBudget  = time.Second
	// reviewBatch is the number of keys per MGET / fields per HMGET.
	reviewBatch = 500
)

var (
	errNoModel  = errors.New("no model is loaded: the rule fallback answers, and its predictions have no confidences to review")
	errNoLabels = errors.New(errNoStore)
)

// currentCRF is the model serving now (nil on the rule fallback).
func (h *Handler) currentCRF() *predictor.CRF {
	if h.cfg.CRF == nil {
		return nil
	}
	return h.cfg.CRF()
}

// reviewResult is one computation of the review queue.
type reviewResult struct {
	crf *predictor.CRF
	// items are the ranked names, re-predicted by crf.
	items []predictor.Scored
	// candidates is how many unlabelled names were ranked.
	candidates int
	// partial is true when the cache walk stopped at its key or time bound.
	partial bool
}

// reviewStat remembers the last queue length, for the overview and /metrics.
type reviewStat struct {
	mu sync.Mutex
	n  int
	at time.Time
}

func (s *reviewStat) set(n int, at time.Time) {
	s.mu.Lock()
	s.n, s.at = n, at
	s.mu.Unlock()
}

func (s *reviewStat) get() (n int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.at
}

// reviewQueue collects the names worth labelling and ranks them: cache
// entries of the serving model (a bounded SCAN) and the recent HTTP
// predictions, less the names that have a label, each predicted again by
// the serving model (so confidences are current even for entries written
// before a reload of the same version, and the page's tokens are the
// tokenizer's), ranked by predictor.Review.
func (h *Handler) reviewQueue(ctx context.Context, limit int) (reviewResult, error) {
	crf := h.currentCRF()
	if crf == nil {
		return reviewResult{}, errNoModel
	}
	if h.cfg.Labels == nil || h.cfg.Redis == nil {
		return reviewResult{}, errNoLabels
	}
	version := crf.Version()
	names, partial, err := h.scanReviewCandidates(ctx, version)
	if err != nil {
		return reviewResult{}, err
	}
	if h.cfg.Recent != nil {
		for _, s := range h.cfg.Recent.Lowest(math.MaxInt) {
			if s.ModelVersion != version {
				continue
			}
			norm := s.Normalized
			if norm == "" {
				norm = predictor.Normalize(s.MaskName)
			}
			if norm != "" {
				names[norm] = s.MaskName // the recent spelling wins
			}
		}
	}
	norms := make([]string, 0, len(names))
	for n := range names {
		norms = append(norms, n)
	}
	sort.Strings(norms)
	unlabelled := norms[:0]
	for start := 0; start < len(norms); start += reviewBatch {
		chunk := norms[start:min(start+reviewBatch, len(norms))]
		has, err := h.cfg.Labels.Normalized(ctx, chunk)
		if err != nil {
			return reviewResult{}, err
		}
		for i, n := range chunk {
			if !has[i] {
				unlabelled = append(unlabelled, n)
			}
		}
	}
	preds := make([]*predictor.Prediction, 0, len(unlabelled))
	for _, n := range unlabelled {
		p, err := crf.Predict(names[n])
		if err != nil { // a cache entry this model's limits refuse: nothing to label here
			continue
		}
		p.NormalizedName = n
		preds = append(preds, p)
	}
	res := reviewResult{crf: crf, candidates: len(preds), partial: partial}
	res.items = predictor.Review(crf, preds, limit)
	h.queue.set(res.candidates, time.Now())
	if m := h.cfg.Metrics; m != nil {
		m.ObserveReviewQueue(res.candidates)
	}
	return res, nil
}

// scanReviewCandidates walks the prediction cache (SCAN, at most
// ReviewMaxKeys keys and ReviewBudget of time) and returns the names of
// the entries the serving model wrote: normalized name → mask name. Label
// entries, rule-fallback entries and other versions are left out.
func (h *Handler) scanReviewCandidates(ctx context.Context, version string) (map[string]string, bool, error) {
	deadline := time.Now().Add(h.cfg.ReviewBudget)
	var keys []string
	var cursor uint64
	partial := false
	for {
		page, next, err := h.cfg.Redis.Scan(ctx, cursor, h.cfg.CachePrefix+"*", scanPageSize).Result()
		if err != nil {
			return nil, false, fmt.Errorf("scanning the cache: %w", err)
		}
		keys = append(keys, page...)
		cursor = next
		if cursor == 0 {
			break
		}
		if len(keys) >= h.cfg.ReviewMaxKeys || time.Now().After(deadline) {
			partial = true
			break
		}
	}
	if len(keys) > h.cfg.ReviewMaxKeys {
		keys, partial = keys[:h.cfg.ReviewMaxKeys], true
	}
	names := make(map[string]string, len(keys))
	for start := 0; start < len(keys); start += reviewBatch {
		chunk := keys[start:min(start+reviewBatch, len(keys))]
		vals, err := h.cfg.Redis.MGet(ctx, chunk...).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, false, fmt.Errorf("reading cache entries: %w", err)
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			var p predictor.Prediction
			if p.UnmarshalJSON([]byte(s)) != nil || p.Fallback || p.Source != "" || p.ModelVersion != version {
				continue
			}
			if norm := strings.TrimPrefix(chunk[i], h.cfg.CachePrefix); norm != "" {
				names[norm] = p.MaskName
			}
		}
	}
	return names, partial, nil
}

// LabelsCountedMax is the largest store whose labels a scrape or the
// overview decodes to count them by source (HGETALL: about 300 bytes a
// label); beyond it only the total (HLEN) is reported.
const LabelsCountedMax = 5000

// LabelStats reads the label store and the last retrain for /metrics and the
// overview: HLEN always, the labels by source only while there are at most
// LabelsCountedMax, and the retrain record (one GET).
func LabelStats(st *labels.Store, rdb redis.UniversalClient) httpapi.LabelStatsFunc {
	return func(ctx context.Context) (httpapi.LabelStats, error) {
		var out httpapi.LabelStats
		n, err := st.Len(ctx)
		if err != nil {
			return out, err
		}
		out.Stored = n
		if n <= LabelsCountedMax {
			all, bad, err := st.All(ctx)
			if err != nil {
				return out, err
			}
			out.BySource = labels.BySource(all)
			if bad > 0 {
				out.BySource["undecodable"] += bad
			}
		}
		r, ok, err := labels.LastRetrain(ctx, rdb)
		if err != nil {
			return out, err
		}
		if ok {
			out.Retrain = &r
		}
		return out, nil
	}
}

// The review page.

type reviewPage struct {
	Generated    time.Time
	ReadOnly     bool
	Error        string
	ModelVersion string
	Candidates   int
	Partial      bool
	Limit        int
	User         string
	Labels       []string
	Items        []reviewPageItem
}

type reviewPageItem struct {
	Index      int
	MaskName   string
	Score      float64
	Confidence float64
	Tokens     []reviewPageToken
}

type reviewPageToken struct {
	Index      int
	Token      string
	Label      string
	Confidence float64
}

func (h *Handler) serveReview(w http.ResponseWriter, r *http.Request, who string) {
	limit := DefaultReviewLimit
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n >= 1 {
		limit = min(n, MaxReviewLimit)
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	pg := reviewPage{Generated: time.Now(), ReadOnly: h.cfg.ReadOnly, Limit: limit, User: who, Labels: predictor.ComponentLabels}
	code := http.StatusOK
	q, err := h.reviewQueue(ctx, limit)
	switch {
	case errors.Is(err, errNoModel), errors.Is(err, errNoLabels):
		pg.Error, code = err.Error(), http.StatusServiceUnavailable
	case err != nil:
		h.log.Warn("admin: computing the review queue", zap.Error(err))
		pg.Error, code = "computing the review queue: Redis unavailable", http.StatusServiceUnavailable
	default:
		pg.ModelVersion, pg.Candidates, pg.Partial = q.crf.Version(), q.candidates, q.partial
		for i, s := range q.items {
			p := s.Prediction
			it := reviewPageItem{Index: i, MaskName: p.MaskName, Score: s.Score, Confidence: p.Confidence}
			for t, tok := range p.Tokens {
				it.Tokens = append(it.Tokens, reviewPageToken{Index: t, Token: tok, Label: p.Labels[t], Confidence: p.TokenConfidences[t]})
			}
			pg.Items = append(pg.Items, it)
		}
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	if h.cfg.ReadOnly || pg.Error != "" { // no script at all
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	} else {
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src '"+reviewScriptHash+"'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	}
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	if err := h.review.t.Execute(w, pg); err != nil {
		h.log.Warn("admin: rendering the review page", zap.Error(err))
	}
}

type reviewRenderer struct{ t *template.Template }

func newReviewRenderer() (*reviewRenderer, error) {
	t, err := template.New("review").Funcs(template.FuncMap{
		"conf": func(f float64) string { return fmt.Sprintf("%.2f", f) },
		"ts":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"inc":  func(i int) int { return i + 1 },
	}).Parse(reviewHTML)
	if err != nil {
		return nil, fmt.Errorf("admin: parsing the review template: %w", err)
	}
	return &reviewRenderer{t: t}, nil
}

// reviewScriptHash allows exactly reviewJS under the page's CSP (no
// nonce to generate and no inline script other than this one can run).
var reviewScriptHash = func() string {
	sum := sha256.Sum256([]byte(reviewJS))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}()

// reviewJS re-decodes on a change, saves and skips. Requests go to
// location.origin: relative URLs would carry credentials typed into the
// address bar (http://user:pass@host/…), which fetch refuses.
const reviewJS = `
(function () {
  "use strict";
  var api = location.origin + "/admin/api/";
  function send(method, path, body) {
    return fetch(api + path, {method: method, credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
      .then(function (r) {
        return r.json().then(function (j) {
          if (!r.ok) { throw new Error(j.error || ("HTTP " + r.status)); }
          return j;
        });
      });
  }
  function selects(item) { return Array.prototype.slice.call(item.querySelectorAll("select")); }
  function status(item, text, cls) {
    var s = item.querySelector(".status");
    s.textContent = text;
    s.className = "status " + (cls || "");
  }
  function visible() { return Array.prototype.slice.call(document.querySelectorAll(".item:not([hidden])")); }
  function focusNext(item) {
    var all = visible(), i = all.indexOf(item), next = all[i + 1] || all[i - 1];
    if (next && next !== item) { next.focus(); }
    remaining();
  }
  function remaining() {
    var n = document.querySelectorAll(".item:not([hidden]):not(.saved)").length;
    var r = document.getElementById("remaining");
    if (r) { r.textContent = String(n); }
  }
  function redecode(item, changed) {
    changed.dataset.fixed = "1";
    changed.classList.add("fixed");
    changed.classList.remove("redecoded");
    item.classList.remove("saved");
    var fixed = {};
    selects(item).forEach(function (s) { if (s.dataset.fixed) { fixed[s.dataset.pos] = s.value; } });
    var seq = item.seq = (item.seq || 0) + 1;
    status(item, "re-decoding…");
    send("POST", "redecode", {mask_name: item.dataset.name, fixed: fixed}).then(function (j) {
      if (seq !== item.seq) { return; }
      var p = j.prediction, n = 0;
      selects(item).forEach(function (s, i) {
        var conf = item.querySelector("#conf-" + item.dataset.index + "-" + i);
        if (conf) { conf.textContent = p.token_confidences[i].toFixed(2); }
        if (s.dataset.fixed) { return; }
        var e = p.breakdown[i], lab = e[Object.keys(e)[0]];
        if (s.value !== lab) { s.value = lab; s.classList.add("redecoded"); n++; }
      });
      status(item, n ? "re-decoded: " + n + " other label" + (n > 1 ? "s" : "") + " changed" : "re-decoded: no other label changed", "ok");
      remaining();
    }).catch(function (e) { status(item, e.message, "bad"); });
  }
  function save(item) {
    if (item.saving) { return; }
    item.saving = true;
    var bd = selects(item).map(function (s) { var o = {}; o[s.dataset.token] = s.value; return o; });
    status(item, "saving…");
    send("PUT", "labels", {mask_name: item.dataset.name, breakdown: bd, source: "dashboard"}).then(function (j) {
      item.classList.add("saved");
      var ul = item.querySelector(".warnings");
      ul.textContent = "";
      (j.warnings || []).forEach(function (w) {
        var li = document.createElement("li");
        li.textContent = w;
        ul.appendChild(li);
      });
      var nw = (j.warnings || []).length;
      status(item, nw ? "saved, with " + nw + " warning" + (nw > 1 ? "s" : "") + " (change and save again to correct)" : "saved", nw ? "warn" : "ok");
      if (nw) { remaining(); } else { focusNext(item); }
    }).catch(function (e) { status(item, e.message, "bad"); })
      .then(function () { item.saving = false; });
  }
  function skip(item) {
    focusNext(item);
    item.hidden = true;
    remaining();
  }
  document.addEventListener("change", function (e) {
    var item = e.target.closest(".item");
    if (item && e.target.tagName === "SELECT") { redecode(item, e.target); }
  });
  document.addEventListener("click", function (e) {
    var item = e.target.closest(".item");
    if (!item || e.target.tagName !== "BUTTON") { return; }
    if (e.target.classList.contains("save")) { save(item); }
    if (e.target.classList.contains("skip")) { skip(item); }
  });
  document.addEventListener("keydown", function (e) {
    var item = e.target.closest && e.target.closest(".item");
    if (!item || e.altKey || e.ctrlKey || e.metaKey) { return; }
    var tag = e.target.tagName;
    if (e.key === "Enter" && tag !== "BUTTON") { e.preventDefault(); save(item); return; }
    if (tag === "SELECT") { return; }
    var all = visible(), i = all.indexOf(item);
    switch (e.key) {
    case "s": e.preventDefault(); save(item); break;
    case "k": e.preventDefault(); skip(item); break;
    case "j": e.preventDefault(); if (all[i + 1]) { all[i + 1].focus(); } break;
    case "p": e.preventDefault(); if (all[i - 1]) { all[i - 1].focus(); } break;
    }
  });
  remaining();
  var first = document.querySelector(".item");
  if (first) { first.focus(); }
})();
`

const reviewHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Review · maskpredictor admin</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 64em; padding: 0 1em; color: #1d2430; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #d6dbe3; padding-bottom: .2em; }
code, kbd { font-size: .9em; background: #f2f4f7; padding: 0 .25em; border-radius: 3px; }
kbd { border: 1px solid #cbd2dc; }
nav a { margin-right: 1em; }
.muted { color: #6b7280; }
.bad { color: #a4161a; font-weight: 600; }
.ok { color: #17663a; }
.warn { color: #8a5a00; }
.note { background: #fff7e0; border: 1px solid #f0d58c; padding: .6em .8em; border-radius: 4px; }
.item { border: 1px solid #d6dbe3; border-radius: 6px; padding: .6em .9em; margin: .8em 0; }
.item:focus-within, .item:focus { outline: 3px solid #4c7bd9; outline-offset: 1px; }
.item.saved { background: #f1faf4; border-color: #9ccfae; }
.item h3 { font-size: 1.05em; margin: 0 0 .5em; font-weight: 600; }
.item h3 .muted { font-weight: 400; font-size: .9em; margin-left: .6em; }
.tokens { display: flex; flex-wrap: wrap; gap: .5em .9em; }
.tok { display: inline-flex; flex-direction: column; align-items: flex-start; min-width: 6.5em; }
.tok .word { font-weight: 600; font-family: ui-monospace, monospace; }
.tok select { font: inherit; padding: .1em; margin: .15em 0; }
.tok select.fixed { outline: 2px solid #4c7bd9; }
.tok select.redecoded { background: #fff3c4; }
.tok .conf { font-size: .8em; color: #6b7280; font-variant-numeric: tabular-nums; }
.lab { font-family: ui-monospace, monospace; }
.actions { margin-top: .6em; display: flex; gap: .6em; align-items: center; }
.actions button { font: inherit; padding: .2em .9em; }
.warnings { margin: .4em 0 0; color: #8a5a00; font-size: .9em; }
.warnings:empty { display: none; }
dl.keys { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dl.keys dt { text-align: right; }
dl.keys dd { margin: 0; }
</style>
</head>
<body>
<h1>maskpredictor · review</h1>
<nav><a href="/admin/">Overview</a><a href="/admin/review">Review</a></nav>
<p class="muted">Generated {{ts .Generated}}{{if .User}} for <code>{{.User}}</code>{{end}}{{if .ModelVersion}} · model <code id="model-version">{{.ModelVersion}}</code>{{end}}</p>
{{if .Error}}<p class="bad" id="error">{{.Error}}</p>
{{else}}
{{if .ReadOnly}}<p class="note" id="read-only">The dashboard is read-only (<code>ADMIN_READ_ONLY=true</code>): the names below cannot be labelled here.</p>{{end}}
<p>The {{len .Items}} names the model is least sure of, most worth a label first, out of <strong id="candidates">{{.Candidates}}</strong> unlabelled candidates{{if .Partial}} (a partial walk of the cache){{end}}: cache entries of the serving model and recent HTTP predictions. A saved label answers for its name at once (the cache entry is rewritten) and trains the next model.{{if not .ReadOnly}} <span class="muted">Left on this page: <strong id="remaining">{{len .Items}}</strong>.</span>{{end}}</p>
{{if not .ReadOnly}}
<details id="help"><summary>Keyboard: <kbd>Enter</kbd> or <kbd>s</kbd> saves the focused name, <kbd>k</kbd> skips it, <kbd>j</kbd>/<kbd>p</kbd> move between names</summary>
<dl class="keys">
<dt><kbd>Tab</kbd></dt><dd>moves through a name's labels, then Save and Skip, then the next name</dd>
<dt><kbd>Enter</kbd></dt><dd>saves the focused name (on a label or on the name; on Skip it skips)</dd>
<dt><kbd>s</kbd> / <kbd>k</kbd></dt><dd>save / skip the focused name (when the name or a button has focus; on a label, letters pick a label by its first letter: <kbd>b</kbd> brand, <kbd>m</kbd> model, …)</dd>
<dt><kbd>j</kbd> / <kbd>p</kbd></dt><dd>next / previous name</dd>
<dt><kbd>↑</kbd> <kbd>↓</kbd></dt><dd>change the focused label; the other labels of the name are re-decoded with the ones you changed fixed</dd>
</dl>
</details>
{{end}}
<div id="queue">
{{range .Items}}{{$item := .}}<section class="item" id="item-{{.Index}}" data-index="{{.Index}}" data-name="{{.MaskName}}" tabindex="0" aria-labelledby="name-{{.Index}}">
<h3 id="name-{{.Index}}">{{inc .Index}}. <span class="name">{{.MaskName}}</span><span class="muted">confidence {{conf .Confidence}} · score {{conf .Score}}</span></h3>
<div class="tokens">
{{range .Tokens}}{{$label := .Label}}<label class="tok"><span class="word">{{.Token}}</span>{{if $.ReadOnly}}<span class="lab">{{.Label}}</span>{{else}}<select id="sel-{{$item.Index}}-{{.Index}}" data-pos="{{.Index}}" data-token="{{.Token}}" data-predicted="{{.Label}}" aria-label="label of {{.Token}}">{{range $.Labels}}<option value="{{.}}"{{if eq . $label}} selected{{end}}>{{.}}</option>{{end}}</select>{{end}}<span class="conf" id="conf-{{$item.Index}}-{{.Index}}">{{conf .Confidence}}</span></label>
{{end}}</div>
{{if not $.ReadOnly}}<div class="actions"><button type="button" class="save">Save</button><button type="button" class="skip">Skip</button><span class="status" role="status" aria-live="polite"></span></div>
<ul class="warnings"></ul>{{end}}
</section>
{{else}}<p class="muted" id="empty">Nothing to review: no unlabelled predictions of this model in the cache or among recent requests.</p>
{{end}}</div>
{{if not .ReadOnly}}<script>` + reviewJS + `</script>{{end}}
{{end}}
</body>
</html>
`
