// Package metrics defines the dispatcher's Prometheus metrics. They live on
// a registry owned by the process (no global state), so tests can run many
// dispatchers side by side.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every dispatcher collector.
type Metrics struct {
	Registry *prometheus.Registry

	TasksReceived   prometheus.Counter
	TasksSkipped    prometheus.Counter
	DoneSetTrimmed  prometheus.Counter
	OutcomesDropped prometheus.Counter
	Outcomes        *prometheus.CounterVec // status, error_code
	DeadLetters     *prometheus.CounterVec // error_code
	LeasesGranted   prometheus.Counter
	LeaseExpiries   prometheus.Counter
	Releases        prometheus.Counter
	Retries         *prometheus.CounterVec // error_code
	StaleMessages   *prometheus.CounterVec // kind
	QueueDepth      prometheus.GaugeFunc
	LeasesInFlight  prometheus.GaugeFunc
	Agents          prometheus.GaugeFunc
	OldestQueuedAge prometheus.GaugeFunc
	Buffered        prometheus.GaugeFunc
	TxnCommits      *prometheus.CounterVec // result
	TxnCommitTime   prometheus.Histogram
	PublishBatch    prometheus.Histogram
	ConsumerLag     *prometheus.GaugeVec // partition
	IntakePaused    prometheus.Gauge
	BreakerState    *prometheus.GaugeVec // endpoint
	// ConnectionLimit is each FTP endpoint's fleet-wide limit in force:
	// max_connections, or less while a limit learned from the server's
	// refusals applies.
	ConnectionLimit *prometheus.GaugeVec // endpoint
}

// Gauges are the live values the gauge functions read.
type Gauges struct {
	QueueDepth      func() float64
	LeasesInFlight  func() float64
	Agents          func() float64
	OldestQueuedAge func() float64
	Buffered        func() float64
}

// New registers every collector on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{reg}
	return &Metrics{
		Registry:      reg,
		TasksReceived: f.counter("ftp_pooler_tasks_received_total", "Records read from the input topic."),
		TasksSkipped: f.counter("ftp_pooler_tasks_skipped_total",
			"Records skipped because the partition's previous owner had published their outcome."),
		OutcomesDropped: f.counter("ftp_pooler_outcomes_dropped_total",
			"Outcomes not published because their partition moved to another dispatcher first (it redoes the task)."),
		DoneSetTrimmed: f.counter("ftp_pooler_offset_metadata_trimmed_total",
			"Finished offsets left out of a commit's metadata (offset.metadata.max.bytes): a next owner would redo them."),
		Outcomes: f.counterVec("ftp_pooler_outcomes_total", "Outcomes handed to the publisher, by status and error code.",
			"status", "error_code"),
		DeadLetters:   f.counterVec("ftp_pooler_dead_letters_total", "Records sent to the DLQ, by reason.", "error_code"),
		LeasesGranted: f.counter("ftp_pooler_leases_granted_total", "Leases handed to agents, first deliveries and re-leases."),
		LeaseExpiries: f.counter("ftp_pooler_lease_expiries_total", "Leases taken back because their heartbeat stopped."),
		Releases:      f.counter("ftp_pooler_lease_releases_total", "Leases handed back by agents without an outcome."),
		Retries:       f.counterVec("ftp_pooler_task_retries_total", "Deliveries that failed and were queued again, by error code.", "error_code"),
		StaleMessages: f.counterVec("ftp_pooler_stale_lease_messages_total", "Agent messages refused for a stale or unknown lease token, by kind.", "kind"),
		TxnCommits:    f.counterVec("ftp_pooler_publish_commits_total", "Outcome batches committed to Kafka, by result.", "result"),
		TxnCommitTime: f.histogram("ftp_pooler_publish_commit_duration_seconds", "Time to publish and commit one batch of outcomes.",
			prometheus.ExponentialBuckets(0.001, 2, 14)),
		PublishBatch: f.histogram("ftp_pooler_publish_batch_outcomes", "Outcomes per published batch.",
			prometheus.ExponentialBuckets(1, 2, 12)),
		ConsumerLag:  f.gaugeVec("ftp_pooler_consumer_lag_messages", "Messages between the committed offset and the end of each assigned partition.", "partition"),
		IntakePaused: f.gauge("ftp_pooler_intake_paused", "1 while consumption is paused (operator or buffer full)."),
		BreakerState: f.gaugeVec("ftp_pooler_circuit_breaker_state", "Per-endpoint circuit breaker: 0 closed, 1 half-open, 2 open.", "endpoint"),
		ConnectionLimit: f.gaugeVec("ftp_pooler_endpoint_connection_limit",
			"Per-endpoint fleet-wide connection limit in force: max_connections, or lower while one learned from the server refusing logins for being full applies.", "endpoint"),
	}
}

// SetGauges wires the gauge functions once their sources exist.
func (m *Metrics) SetGauges(g Gauges) {
	f := factory{m.Registry}
	m.QueueDepth = f.gaugeFunc("ftp_pooler_queue_depth_tasks", "Tasks waiting for an agent, retries in backoff included.", g.QueueDepth)
	m.LeasesInFlight = f.gaugeFunc("ftp_pooler_leases_in_flight", "Leases held by agents.", g.LeasesInFlight)
	m.Agents = f.gaugeFunc("ftp_pooler_agents_connected", "Agent sessions connected.", g.Agents)
	m.OldestQueuedAge = f.gaugeFunc("ftp_pooler_oldest_queued_task_age_seconds", "Age of the oldest queued task.", g.OldestQueuedAge)
	m.Buffered = f.gaugeFunc("ftp_pooler_buffered_tasks", "Records read but not yet committed.", g.Buffered)
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeFunc(name, help string, fn func() float64) prometheus.GaugeFunc {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}
