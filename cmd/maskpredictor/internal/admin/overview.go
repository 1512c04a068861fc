package admin

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// Limits of the cache walk behind one overview page.
const (
	scanBudget   = 1500 * time.Millisecond
	scanMaxKeys  = 200_000
	sampleKeys   = 500
	lowestShown  = 25
	scanPageSize = 1000
)

// overview is what the page shows.
type overview struct {
	Generated       time.Time
	Status          httpapi.Status
	RedisConfigured bool
	RedisError      string
	// The primary this process writes to (host:port), where it comes from,
	// and what the node says of itself (INFO replication).
	RedisPrimary string
	RedisMode    string
	Replication  httpapi.Replication

	CacheEntries       int64
	CacheEntriesCapped bool
	CacheSampled       int
	Counts             httpapi.CacheCounts
	HaveCounts         bool

	Queues []httpapi.QueueStat
	Dead   int64

	Lowest []httpapi.Scored

	QueuesLink string // asynqmon, when mounted
	ReadOnly   bool

	// The label store (issue 13): nil Labels without one.
	Labels      *httpapi.LabelStats
	LabelsError string
	// ReviewQueue is the number of candidates at the last review
	// computation, at ReviewAt (zero: none since the start).
	ReviewQueue int
	ReviewAt    time.Time
}

func (h *Handler) collect(ctx context.Context) overview {
	ov := overview{Generated: time.Now(), Status: h.cfg.Status(), ReadOnly: h.cfg.ReadOnly}
	if h.queues != nil {
		ov.QueuesLink = QueuesPath + "/"
	}
	if h.cfg.Metrics != nil {
		ov.Counts, ov.HaveCounts = h.cfg.Metrics.CacheCounts(), true
	}
	var scored []httpapi.Scored
	if h.cfg.Recent != nil {
		scored = h.cfg.Recent.Lowest(lowestShown * 4)
	}
	if h.cfg.Redis != nil {
		ov.RedisConfigured = true
		ov.RedisMode = h.cfg.RedisMode
		if h.cfg.RedisPrimary != nil {
			ov.RedisPrimary = h.cfg.RedisPrimary()
		}
		var errs []error
		if info, err := h.cfg.Redis.Info(ctx, "replication").Result(); err == nil {
			ov.Replication = httpapi.ParseReplication(info)
		}
		qs, dead, err := httpapi.ReadQueues(ctx, h.cfg.Redis, h.cfg.Queues)
		if err != nil {
			errs = append(errs, err)
			for _, q := range h.cfg.Queues {
				qs = append(qs, httpapi.QueueStat{Name: q, Depth: -1})
			}
		}
		ov.Queues, ov.Dead = qs, dead
		sample, n, capped, err := h.scanCache(ctx, ov.Status.ModelVersion)
		if err != nil {
			errs = append(errs, err)
		}
		ov.CacheEntries, ov.CacheEntriesCapped, ov.CacheSampled = n, capped, len(sample)
		scored = append(sample, scored...) // the recent ones win on duplicates
		if err := errors.Join(errs...); err != nil {
			ov.RedisError = err.Error()
		}
	} else {
		for _, q := range h.cfg.Queues {
			ov.Queues = append(ov.Queues, httpapi.QueueStat{Name: q, Depth: -1})
		}
	}
	ov.Lowest = httpapi.LowestConfidence(scored, lowestShown)
	ov.ReviewQueue, ov.ReviewAt = h.queue.get()
	if h.cfg.Labels != nil && h.cfg.Redis != nil {
		st, err := LabelStats(h.cfg.Labels, h.cfg.Redis)(ctx)
		if err != nil {
			h.log.Warn("admin: reading the label store", zap.Error(err))
			ov.LabelsError = "reading the label store: Redis unavailable"
		} else {
			ov.Labels = &st
		}
	}
	return ov
}

// scanCache counts the cache entries (SCAN, within a time and key budget)
// and decodes a sample of them: the current model's predictions, for the
// lowest-confidence list.
func (h *Handler) scanCache(ctx context.Context, version string) (sample []httpapi.Scored, n int64, capped bool, err error) {
	deadline := time.Now().Add(scanBudget)
	var keys []string
	var cursor uint64
	for {
		page, next, err := h.cfg.Redis.Scan(ctx, cursor, h.cfg.CachePrefix+"*", scanPageSize).Result()
		if err != nil {
			return nil, n, true, fmt.Errorf("counting cache entries: %w", err)
		}
		n += int64(len(page))
		if room := sampleKeys - len(keys); room > 0 {
			keys = append(keys, page[:min(room, len(page))]...)
		}
		cursor = next
		if cursor == 0 {
			break
		}
		if n >= scanMaxKeys || time.Now().After(deadline) {
			capped = true
			break
		}
	}
	if len(keys) == 0 {
		return nil, n, capped, nil
	}
	vals, err := h.cfg.Redis.MGet(ctx, keys...).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, n, capped, fmt.Errorf("reading cache entries: %w", err)
	}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		var p predictor.Prediction
		if p.UnmarshalJSON([]byte(s)) != nil || p.Fallback || (version != "" && p.ModelVersion != version) {
			continue
		}
		sample = append(sample, httpapi.Scored{
			MaskName: p.MaskName, Normalized: strings.TrimPrefix(keys[i], h.cfg.CachePrefix),
			Confidence: p.Confidence, ModelVersion: p.ModelVersion,
		})
	}
	return sample, n, capped, nil
}

type sourceCount struct {
	Source string
	N      int
}

type overviewRenderer struct{ t *template.Template }

func newOverviewRenderer() (*overviewRenderer, error) {
	t, err := template.New("overview").Funcs(template.FuncMap{
		"pct": func(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) },
		"conf": func(f float64) string {
			if math.IsNaN(f) {
				return "–"
			}
			return fmt.Sprintf("%.3f", f)
		},
		"dur": func(d time.Duration) string {
			switch {
			case d <= 0:
				return "0 s"
			case d < time.Second:
				return fmt.Sprintf("%d ms", d.Milliseconds())
			default:
				return d.Round(100 * time.Millisecond).String()
			}
		},
		"ts":         func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"total":      func(c httpapi.CacheCounts) int64 { return c.HTTPHits + c.HTTPMisses + c.WorkerHits + c.WorkerMisses },
		"countedMax": func() int { return LabelsCountedMax },
		"counted":    func(m map[string]int) bool { return m != nil },
		"sources": func(m map[string]int) []sourceCount {
			out := make([]sourceCount, 0, len(m))
			for k, v := range m {
				if k == "" {
					k = "(none)"
				}
				out = append(out, sourceCount{k, v})
			}
			sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
			return out
		},
	}).Parse(overviewHTML)
	if err != nil {
		return nil, fmt.Errorf("admin: parsing the overview template: %w", err)
	}
	return &overviewRenderer{t: t}, nil
}

func (o *overviewRenderer) render(w io.Writer, ov overview) error {
	if err := o.t.Execute(w, ov); err != nil {
		return fmt.Errorf("rendering: %w", err)
	}
	return nil
}

const overviewHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>maskpredictor admin</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #1d2430; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #d6dbe3; padding-bottom: .2em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #eceff3; vertical-align: top; }
th { font-weight: 600; color: #4a5568; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: .9em; background: #f2f4f7; padding: 0 .25em; border-radius: 3px; word-break: break-all; }
.ok { color: #17663a; font-weight: 600; }
.bad { color: #a4161a; font-weight: 600; }
.muted { color: #6b7280; }
nav a { margin-right: 1em; }
</style>
</head>
<body>
<h1>maskpredictor</h1>
<nav><a href="/admin/">Overview</a><a href="/admin/review" id="review-link">Review &amp; label</a>{{if .QueuesLink}}<a href="{{.QueuesLink}}">Queues (asynqmon{{if .ReadOnly}}, read-only{{end}})</a>{{end}}<a href="/health">/health</a><a href="/metrics">/metrics</a></nav>
<p class="muted">Generated {{ts .Generated}}</p>

<h2>Model</h2>
<table id="model">
<tr><th>State</th><td>{{if .Status.ModelLoaded}}<span class="ok">model loaded</span>{{else}}<span class="bad">rule-based fallback</span>{{end}}</td></tr>
<tr><th>Model version</th><td><code id="model-version">{{.Status.ModelVersion}}</code></td></tr>
<tr><th>Source</th><td>{{.Status.ModelSource}}</td></tr>
{{if .Status.FallbackReason}}<tr><th>Fallback reason</th><td class="bad">{{.Status.FallbackReason}}</td></tr>{{end}}
<tr><th>Redis</th><td>{{if not .RedisConfigured}}<span class="muted">not configured</span>{{else if .RedisError}}<span class="bad">{{.RedisError}}</span>{{else}}<span class="ok">ok</span>{{end}}</td></tr>
{{if .RedisConfigured}}<tr><th>Redis primary</th><td id="redis-primary">{{if .RedisPrimary}}<code>{{.RedisPrimary}}</code>{{else}}<span class="muted">not connected yet</span>{{end}}{{if .Replication.Role}} — {{if eq .Replication.Role "master"}}<span class="ok">primary</span>{{else}}<span class="bad">{{.Replication.Role}} (read-only)</span>{{end}}, id <code>{{.Replication.PrimaryID}}</code>, {{.Replication.Replicas}} replica(s) connected{{end}}{{if .RedisMode}}<br><span class="muted">from {{.RedisMode}}</span>{{end}}</td></tr>{{end}}
</table>

<h2>Prediction cache</h2>
<table id="cache">
<tr><th>Entries</th><td class="num">{{if .RedisConfigured}}{{if .CacheEntriesCapped}}≥ {{end}}{{.CacheEntries}}{{else}}–{{end}}</td></tr>
{{if .HaveCounts}}<tr><th>Hit ratio since start</th><td class="num">{{if total .Counts}}{{pct .Counts.Ratio}}{{else}}–{{end}}</td></tr>
<tr><th>HTTP hits / misses</th><td class="num">{{.Counts.HTTPHits}} / {{.Counts.HTTPMisses}}</td></tr>
<tr><th>Worker hits / misses</th><td class="num">{{.Counts.WorkerHits}} / {{.Counts.WorkerMisses}}</td></tr>{{end}}
</table>

<h2>Sidekiq ingress queues</h2>
<table id="queues">
<tr><th>Queue</th><th class="num">Depth</th><th class="num">Latency</th></tr>
{{range .Queues}}<tr><td><code>{{.Name}}</code></td>{{if lt .Depth 0}}<td class="num muted">–</td><td class="num muted">–</td>{{else}}<td class="num">{{.Depth}}</td><td class="num">{{dur .Latency}}</td>{{end}}</tr>
{{end}}</table>
<p>Dead set (Sidekiq <code>dead</code>, all queues): <strong id="dead">{{if .RedisConfigured}}{{.Dead}}{{else}}–{{end}}</strong></p>

<h2>Labels</h2>
<table id="labels">
{{if .Labels}}<tr><th>Labelled names</th><td class="num" id="labels-stored">{{.Labels.Stored}}</td></tr>
{{if counted .Labels.BySource}}{{range sources .Labels.BySource}}<tr><th>&nbsp;&nbsp;from {{.Source}}</th><td class="num">{{.N}}</td></tr>
{{end}}{{else}}<tr><th>&nbsp;&nbsp;by source</th><td class="num muted">not counted (more than {{countedMax}} labels)</td></tr>
{{end}}{{else if .LabelsError}}<tr><th>Labelled names</th><td class="bad">{{.LabelsError}}</td></tr>
{{else}}<tr><th>Labelled names</th><td class="muted">no label store (needs Redis)</td></tr>
{{end}}<tr><th>Review queue</th><td class="num" id="review-queue">{{if .ReviewAt.IsZero}}<span class="muted">not computed yet: open <a href="/admin/review">Review</a></span>{{else}}{{.ReviewQueue}} candidates <span class="muted">at {{ts .ReviewAt}}</span>{{end}}</td></tr>
{{with .Labels}}{{with .Retrain}}<tr><th>Last retrain</th><td id="retrain">{{ts .At}}: {{if .Published}}<span class="ok">published</span>{{else if .DryRun}}dry run{{else}}<span class="muted">not published</span>{{end}} {{if .Reason}}<span class="muted">({{.Reason}})</span>{{end}}</td></tr>
<tr><th>&nbsp;&nbsp;token accuracy new / current</th><td class="num">{{conf .NewScore}} / {{conf .CurrentScore}}</td></tr>
<tr><th>&nbsp;&nbsp;name accuracy new / current</th><td class="num">{{conf .NewNameScore}} / {{conf .CurrentNameScore}}</td></tr>
<tr><th>&nbsp;&nbsp;labels, versions</th><td>{{.Labels}} labels; <code>{{.NewVersion}}</code> vs <code>{{.CurrentVersion}}</code></td></tr>
{{else}}<tr><th>Last retrain</th><td class="muted">none recorded</td></tr>{{end}}{{end}}
</table>

<h2>Lowest-confidence predictions</h2>
<p class="muted">Names worth labelling next: recent HTTP predictions{{if .RedisConfigured}} and a sample of {{.CacheSampled}} cache entries of this model version{{end}}; rule-fallback answers are left out.</p>
<table id="lowest">
<tr><th>Mask name</th><th class="num">Confidence</th></tr>
{{range .Lowest}}<tr><td>{{.MaskName}}</td><td class="num">{{conf .Confidence}}</td></tr>
{{else}}<tr><td colspan="2" class="muted">no predictions yet</td></tr>
{{end}}</table>
</body>
</html>
`
