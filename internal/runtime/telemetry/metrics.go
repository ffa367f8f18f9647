package telemetry

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
)

// latencyBuckets cover a sidecar hop (sub-millisecond) up to a slow step.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics are the data plane's Prometheus metrics. One value serves every
// component of a process (the dev mode runs many), told apart by labels.
type Metrics struct {
	inbound            *prometheus.CounterVec
	inboundDuration    *prometheus.HistogramVec
	inflight           *prometheus.GaugeVec
	rejected           *prometheus.CounterVec
	hopDuration        *prometheus.HistogramVec
	hopAttempts        *prometheus.CounterVec
	retries            *prometheus.CounterVec
	breakerTransitions *prometheus.CounterVec
	runs               *prometheus.CounterVec
	runDuration        *prometheus.HistogramVec
	deadLetters        *prometheus.CounterVec
	redeliveries       *prometheus.CounterVec
	readModelLag       *prometheus.GaugeVec
	readModelPending   *prometheus.GaugeVec
	readModelSkipped   *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_inbound_requests_total",
			Help: "Requests a sidecar received, by step and status class.",
		}, []string{"step", "code"}),
		inboundDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "patchbay_inbound_request_duration_seconds", Buckets: latencyBuckets,
			Help: "Time a sidecar took to answer a request, by step.",
		}, []string{"step"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchbay_inbound_in_flight",
			Help: "Requests a sidecar is handling now, by step.",
		}, []string{"step"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_bulkhead_rejections_total",
			Help: "Requests a sidecar rejected because its bulkhead was full, by step (gateway or orchestrator for theirs).",
		}, []string{"step"}),
		hopDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "patchbay_hop_duration_seconds", Buckets: latencyBuckets,
			Help: "Time a call on an edge took, retries included, by edge and outcome.",
		}, []string{"from", "to", "outcome"}),
		hopAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_hop_attempts_total",
			Help: "Attempts made on an edge, first attempts and retries.",
		}, []string{"from", "to"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_hop_retries_total",
			Help: "Retries made on an edge.",
		}, []string{"from", "to"}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_breaker_transitions_total",
			Help: "Circuit breaker state changes of an edge, by the state entered.",
		}, []string{"from", "to", "state"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_runs_total",
			Help: "Workflow runs an entry point finished, by outcome.",
		}, []string{"workflow", "outcome"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "patchbay_run_duration_seconds", Buckets: latencyBuckets,
			Help: "Duration of workflow runs, by outcome.",
		}, []string{"workflow", "outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_dead_letters_total",
			Help: "Messages a step's sidecar gave up on and published to the dead-letter subject, by step and last status.",
		}, []string{"step", "status"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_consumer_redeliveries_total",
			Help: "JetStream messages received again after a nak, an ack timeout or a crash, by consumer.",
		}, []string{"consumer"}),
		readModelLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchbay_read_model_lag_seconds",
			Help: "Age of the last event the read model projected when it was written: how stale GET /query answers are.",
		}, []string{"workflow"}),
		readModelPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchbay_read_model_pending",
			Help: "Events waiting for the read model's projector behind the last one it handled: 0 when GET /query answers are current.",
		}, []string{"workflow"}),
		readModelSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_read_model_skipped_total",
			Help: "Events the read model acknowledged without projecting them, by reason: not JSON, no key, key not a string or number, invalid key.",
		}, []string{"workflow", "reason"}),
	}
	reg.MustRegister(m.inbound, m.inboundDuration, m.inflight, m.rejected, m.hopDuration,
		m.hopAttempts, m.retries, m.breakerTransitions, m.runs, m.runDuration,
		m.deadLetters, m.redeliveries, m.readModelLag, m.readModelPending, m.readModelSkipped)
	return m
}

// Inbound are one step's inbound metrics, resolved once so that the hot path
// does no label lookups.
type Inbound struct {
	codes    [6]prometheus.Counter // by status class: index 1..5 for 1xx..5xx
	duration prometheus.Observer
	inflight prometheus.Gauge
	rejected prometheus.Counter
}

// Inbound resolves the inbound metrics of step.
func (m *Metrics) Inbound(step string) *Inbound {
	in := &Inbound{
		duration: m.inboundDuration.WithLabelValues(step),
		inflight: m.inflight.WithLabelValues(step),
		rejected: m.rejected.WithLabelValues(step),
	}
	for i, class := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		in.codes[i] = m.inbound.WithLabelValues(step, class)
	}
	return in
}

// Start counts a request in flight; call Done when it is answered.
func (in *Inbound) Start() time.Time {
	in.inflight.Inc()
	return time.Now()
}

// Done records an answered request.
func (in *Inbound) Done(code int, start time.Time) {
	in.inflight.Dec()
	in.duration.Observe(time.Since(start).Seconds())
	class := code / 100
	if class < 1 || class > 5 {
		class = 0
	}
	in.codes[class].Inc()
}

// Rejected counts a bulkhead rejection.
func (in *Inbound) Rejected() { in.rejected.Inc() }

// BulkheadRejected counts a rejection by the inbound bulkhead of a role that
// is no step (the gateway, the orchestrator): role is the step label.
func (m *Metrics) BulkheadRejected(role string) func() {
	c := m.rejected.WithLabelValues(role)
	return c.Inc
}

// Hop are one edge's metrics.
type Hop struct {
	ok, failed prometheus.Observer
	attempts   prometheus.Counter
}

// Hop resolves the metrics of an edge.
func (m *Metrics) Hop(name resilience.EdgeName) *Hop {
	return &Hop{
		ok:       m.hopDuration.WithLabelValues(name.From, name.To, "success"),
		failed:   m.hopDuration.WithLabelValues(name.From, name.To, "failure"),
		attempts: m.hopAttempts.WithLabelValues(name.From, name.To),
	}
}

// Done records a finished call on the edge.
func (h *Hop) Done(ok bool, attempts int, start time.Time) {
	d := time.Since(start).Seconds()
	if ok {
		h.ok.Observe(d)
	} else {
		h.failed.Observe(d)
	}
	h.attempts.Add(float64(attempts))
}

// Run are the run metrics of one workflow.
type Run struct {
	ok, failed         prometheus.Counter
	okTime, failedTime prometheus.Observer
}

// Run resolves the run metrics of a workflow.
func (m *Metrics) Run(workflow string) *Run {
	return &Run{
		ok:         m.runs.WithLabelValues(workflow, "success"),
		failed:     m.runs.WithLabelValues(workflow, "failure"),
		okTime:     m.runDuration.WithLabelValues(workflow, "success"),
		failedTime: m.runDuration.WithLabelValues(workflow, "failure"),
	}
}

// Done records a finished run.
func (r *Run) Done(ok bool, start time.Time) {
	d := time.Since(start).Seconds()
	if ok {
		r.ok.Inc()
		r.okTime.Observe(d)
	} else {
		r.failed.Inc()
		r.failedTime.Observe(d)
	}
}

// DeadLetter counts a message a step gave up on.
func (m *Metrics) DeadLetter(step string, status int) {
	m.deadLetters.WithLabelValues(step, strconv.Itoa(status)).Inc()
}

// Redeliveries is the redelivery counter of a consumer.
func (m *Metrics) Redeliveries(consumer string) prometheus.Counter {
	return m.redeliveries.WithLabelValues(consumer)
}

// ReadModelLag is the read model's lag gauge of a workflow.
func (m *Metrics) ReadModelLag(workflow string) prometheus.Gauge {
	return m.readModelLag.WithLabelValues(workflow)
}

// ReadModelPending is the read model's pending gauge of a workflow.
func (m *Metrics) ReadModelPending(workflow string) prometheus.Gauge {
	return m.readModelPending.WithLabelValues(workflow)
}

// ReadModelSkipped counts an event of workflow the read model did not
// project, and why.
func (m *Metrics) ReadModelSkipped(workflow, reason string) {
	m.readModelSkipped.WithLabelValues(workflow, reason).Inc()
}

// Observe records a finished run that started at start, wherever it finished
// (an async run ends in whichever replica handles its last message).
func (r *Run) Observe(ok bool, d time.Duration) {
	if ok {
		r.ok.Inc()
		r.okTime.Observe(d.Seconds())
	} else {
		r.failed.Inc()
		r.failedTime.Observe(d.Seconds())
	}
}
