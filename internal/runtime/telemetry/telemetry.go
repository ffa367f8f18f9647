package telemetry

import (
	"context"
	"log/slog"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
)

// Telemetry is what every component of a process shares: its logger, metrics,
// breakers and tracing.
type Telemetry struct {
	Log      *slog.Logger
	Registry *prometheus.Registry
	Metrics  *Metrics
	Breakers *resilience.Registry
	Tracing  *Tracing
}

// New makes the telemetry of a process, with Go and process collectors.
func New(log *slog.Logger, tracing *Tracing) *Telemetry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	breakers := resilience.NewRegistry()
	reg.MustRegister(breakers)
	return &Telemetry{Log: log, Registry: reg, Metrics: NewMetrics(reg), Breakers: breakers, Tracing: tracing}
}

// EdgeHooks count retries and log breaker transitions.
func (t *Telemetry) EdgeHooks() resilience.Hooks {
	return resilience.Hooks{
		OnRetry: func(n resilience.EdgeName) {
			t.Metrics.retries.WithLabelValues(n.From, n.To).Inc()
		},
		OnBreakerState: func(n resilience.EdgeName, from, to circuitbreaker.State) {
			t.Metrics.breakerTransitions.WithLabelValues(n.From, n.To, to.String()).Inc()
			t.Log.Warn("Circuit breaker changed state", "from", n.From, "to", n.To, "old", from.String(), "new", to.String())
		},
	}
}

// Close flushes the pending spans. A process on its way out has no one to
// return a failed flush to, so it is logged.
func (t *Telemetry) Close(ctx context.Context) {
	if err := t.Tracing.Shutdown(ctx); err != nil {
		t.Log.Warn("Flushing traces failed", "err", err)
	}
}
