// Package metrics defines jobfleet's Prometheus metrics, all named
// jobfleet_*. Each service makes one Metrics on its own registry (New) and
// serves it at /metrics (Handler); the cores record through it. Tests make
// their own with New and read values with prometheus/testutil.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every jobfleet collector.
type Metrics struct {
	Registry *prometheus.Registry

	Submitted         *prometheus.CounterVec   // type
	Deduplicated      *prometheus.CounterVec   // type
	Rejected          *prometheus.CounterVec   // source (http, ingress), reason
	Started           *prometheus.CounterVec   // type
	Finished          *prometheus.CounterVec   // type, outcome
	QueueWait         *prometheus.HistogramVec // type: submit (or run_at) → start
	RunTime           *prometheus.HistogramVec // type, outcome
	Running           prometheus.Gauge         // jobs running in this worker
	LeasesLost        *prometheus.CounterVec   // type
	Stale             prometheus.Counter       // work messages that could not start
	Reclaims          *prometheus.CounterVec   // reason
	Resends           prometheus.Counter
	Redrives          prometheus.Counter
	Promotions        prometheus.Counter
	DeadLetters       *prometheus.CounterVec // queue
	Backlog           *prometheus.GaugeVec   // queue, state (visible, in_flight, delayed)
	Workers           *prometheus.GaugeVec   // state (pending, running)
	ScalerDesired     prometheus.Gauge
	ScalerActual      prometheus.Gauge
	BacklogPerWorker  prometheus.Gauge
	Provisioned       prometheus.Counter
	ProvisionFailures *prometheus.CounterVec   // reason
	FleetStops        *prometheus.CounterVec   // class
	FleetEvents       *prometheus.CounterVec   // last_status
	HTTPRequests      *prometheus.CounterVec   // route, code
	HTTPDuration      *prometheus.HistogramVec // route
	SweepDuration     *prometheus.HistogramVec // sweep
	Errors            *prometheus.CounterVec   // component, op
	FleetTasks        *prometheus.GaugeVec     // last_status: workers by status, as fleet events report them
	TaskStart         prometheus.Histogram     // fleet events: created → running
	AWSRequests       *prometheus.CounterVec   // service, operation, outcome
	AWSLatency        *prometheus.HistogramVec // service, operation
}

// waitBuckets span milliseconds to hours: dispatch latency and long queues.
var waitBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600}

// New makes the collectors and registers them, plus the Go and process
// collectors, on a new registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{Registry: r}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobfleet_" + name, Help: help}, labels)
		f(c)
		return c
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jobfleet_" + name, Help: help}, labels)
		f(g)
		return g
	}
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jobfleet_" + name, Help: help, Buckets: buckets}, labels)
		f(h)
		return h
	}
	m.Submitted = counter("jobs_submitted_total", "Jobs accepted, by type.", "type")
	m.Deduplicated = counter("jobs_deduplicated_total", "Submissions answered with an existing job holding the key, by type.", "type")
	m.Rejected = counter("submissions_rejected_total", "Submissions refused, by source and reason.", "source", "reason")
	m.Started = counter("jobs_started_total", "Attempts started, by type.", "type")
	m.Finished = counter("jobs_finished_total", "Attempts ended, by type and outcome.", "type", "outcome")
	m.QueueWait = hist("job_queue_wait_seconds", "Time from a job becoming runnable to its attempt starting.", waitBuckets, "type")
	m.RunTime = hist("job_run_seconds", "Attempt run time, by type and outcome.", waitBuckets, "type", "outcome")
	m.Running = gauge("jobs_running", "Jobs running in this worker.").WithLabelValues()
	m.LeasesLost = counter("leases_lost_total", "Leases a worker lost while running a job (it committed nothing).", "type")
	m.Stale = counter("stale_messages_total", "Work messages that could not start their job (terminal, newer attempt, live lease elsewhere).").WithLabelValues()
	m.Reclaims = counter("reclaims_total", "Running jobs reclaimed by the reaper, by reason.", "reason")
	m.Resends = counter("resends_total", "Work messages re-sent for queued jobs past their resend deadline.").WithLabelValues()
	m.Redrives = counter("redrives_total", "Dead-lettered work messages of jobs that never started with them, whose resend the reaper brought forward.").WithLabelValues()
	m.Promotions = counter("promotions_total", "Scheduled jobs moved to the queue.").WithLabelValues()
	m.DeadLetters = counter("dead_letters_total", "Dead-lettered messages handled, by queue.", "queue")
	m.Backlog = gauge("backlog", "Messages in a queue, by state.", "queue", "state")
	m.Workers = gauge("workers", "Workers in the fleet, by state.", "state")
	m.ScalerDesired = gauge("scaler_desired_workers", "Workers the scaler wants.").WithLabelValues()
	m.ScalerActual = gauge("scaler_actual_workers", "Workers running or starting, as the scaler saw them.").WithLabelValues()
	m.BacklogPerWorker = gauge("backlog_per_worker", "Visible plus in-flight work messages per active worker (backlog when there are none).").WithLabelValues()
	m.Provisioned = counter("workers_provisioned_total", "Workers the scaler started.").WithLabelValues()
	m.ProvisionFailures = counter("provision_failures_total", "Workers that could not be started, by reason.", "reason")
	m.FleetStops = counter("fleet_stops_total", "Workers stopped, by classified reason.", "class")
	m.FleetEvents = counter("fleet_events_total", "Fleet state-change events read, by last status.", "last_status")
	m.HTTPRequests = counter("http_requests_total", "HTTP requests, by route and status code.", "route", "code")
	m.HTTPDuration = hist("http_request_seconds", "HTTP request latency, by route.", prometheus.DefBuckets, "route")
	m.SweepDuration = hist("sweep_seconds", "Reaper sweep duration, by sweep.", prometheus.DefBuckets, "sweep")
	m.Errors = counter("errors_total", "Errors by component and operation (backend calls that failed).", "component", "op")
	m.FleetTasks = gauge("fleet_tasks", "Workers by last status, as the fleet's state-change events report them (reaper).", "last_status")
	m.TaskStart = hist("task_start_seconds", "Worker start latency from fleet events: created to running.", waitBuckets).WithLabelValues().(prometheus.Histogram)
	m.AWSRequests = counter("aws_requests_total", "AWS request attempts, by service, operation and outcome (ok or the error code).", "service", "operation", "outcome")
	m.AWSLatency = hist("aws_request_seconds", "AWS request attempt latency, by service and operation.", prometheus.DefBuckets, "service", "operation")
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Since returns seconds since t, for histograms.
func Since(now, t time.Time) float64 { return now.Sub(t).Seconds() }
