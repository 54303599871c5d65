// Package metrics defines the agent's Prometheus metrics, on a registry
// owned by the process.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every agent collector.
type Metrics struct {
	Registry *prometheus.Registry

	Transfers     *prometheus.CounterVec   // direction, status, error_code
	Bytes         *prometheus.CounterVec   // direction, src, dst
	Duration      *prometheus.HistogramVec // direction
	DialDuration  *prometheus.HistogramVec // endpoint
	DialFailures  *prometheus.CounterVec   // endpoint
	Sessions      prometheus.Gauge
	SlotsBusy     prometheus.Gauge
	Slots         prometheus.Gauge
	CommitRefused prometheus.Counter
}

// New registers every collector on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		Transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftp_pooler_transfers_total", Help: "Transfers finished on this agent, by direction, status and error code.",
		}, []string{"direction", "status", "error_code"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftp_pooler_transfer_bytes_total", Help: "Bytes written to destinations, by direction and endpoints.",
		}, []string{"direction", "src", "dst"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ftp_pooler_transfer_duration_seconds", Help: "Time from lease start to outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 20),
		}, []string{"direction"}),
		DialDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ftp_pooler_pool_dial_duration_seconds", Help: "Time to connect and log in to an FTP endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"endpoint"}),
		DialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ftp_pooler_pool_dial_failures_total", Help: "Failed connects or logins, by endpoint.",
		}, []string{"endpoint"}),
		Sessions:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "ftp_pooler_agent_sessions", Help: "Dispatcher streams connected."}),
		SlotsBusy:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "ftp_pooler_agent_slots_busy", Help: "Transfers running."}),
		Slots:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "ftp_pooler_agent_slots", Help: "Transfers the agent runs at once."}),
		CommitRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "ftp_pooler_commit_refused_total", Help: "Finished transfers discarded because the dispatcher refused the commit (the lease had moved on)."}),
	}
	reg.MustRegister(m.Transfers, m.Bytes, m.Duration, m.DialDuration, m.DialFailures, m.Sessions, m.SlotsBusy, m.Slots, m.CommitRefused)
	return m
}

// PoolGauges exposes pool states through a collector reading them on scrape.
func (m *Metrics) PoolGauges(read func() []PoolState) {
	m.Registry.MustRegister(&poolCollector{read: read, desc: prometheus.NewDesc(
		"ftp_pooler_pool_connections", "Logged-in FTP connections by endpoint and state (idle, busy), and the per-endpoint limit (limit).",
		[]string{"endpoint", "state"}, nil)})
}

// PoolState is one pool's state.
type PoolState struct {
	Endpoint          string
	Idle, Busy, Limit int
}

type poolCollector struct {
	read func() []PoolState
	desc *prometheus.Desc
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.read() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(s.Idle), s.Endpoint, "idle")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(s.Busy), s.Endpoint, "busy")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(s.Limit), s.Endpoint, "limit")
	}
}
