package reload

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes a Reloader's counters to Prometheus:
//
//	maskpredictor_model_reload_checks_total
//	maskpredictor_model_reloads_total{outcome="reloaded|rejected|failed"}
//	maskpredictor_model_last_reload_timestamp_seconds (0: none yet)
//
// Register it with the HTTP server's registry. The rejected series is the
// one to alert on: a model was uploaded that the service refused.
func Collector(r *Reloader) prometheus.Collector { return &collector{r: r} }

type collector struct{ r *Reloader }

var (
	descChecks = prometheus.NewDesc("maskpredictor_model_reload_checks_total",
		"Checks of the model store for a new model (polls and SIGHUP).", nil, nil)
	descOutcomes = prometheus.NewDesc("maskpredictor_model_reloads_total",
		"Model reload attempts by outcome: reloaded (swapped in), rejected (failed to load or validate; "+
			"the old model kept serving), failed (the store could not be read).", []string{"outcome"}, nil)
	descLast = prometheus.NewDesc("maskpredictor_model_last_reload_timestamp_seconds",
		"Unix time of the last successful hot reload (0: none since start).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descChecks
	ch <- descOutcomes
	ch <- descLast
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(descChecks, prometheus.CounterValue, float64(s.Checks))
	ch <- prometheus.MustNewConstMetric(descOutcomes, prometheus.CounterValue, float64(s.Reloads), "reloaded")
	ch <- prometheus.MustNewConstMetric(descOutcomes, prometheus.CounterValue, float64(s.Rejected), "rejected")
	ch <- prometheus.MustNewConstMetric(descOutcomes, prometheus.CounterValue, float64(s.Failures), "failed")
	last := 0.0
	if !s.LastReload.IsZero() {
		last = float64(s.LastReload.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, last)
}
