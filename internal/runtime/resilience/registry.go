package resilience

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Registry knows every breaker of a process. It serves them as JSON on
// GET /debug/breakers and as the patchbay_breaker_state metric, read at scrape
// time so that the hot path never touches a gauge.
type Registry struct {
	mu       sync.RWMutex
	breakers []registered
	desc     *prometheus.Desc
}

type registered struct {
	name    EdgeName
	breaker breakerView
	policy  plan.CircuitBreaker
}

// breakerView is the part of a CircuitBreaker[R] the registry reads, whatever R is.
type breakerView interface {
	State() circuitbreaker.State
	RemainingDelay() time.Duration
	Metrics() circuitbreaker.Metrics
}

// NewRegistry makes an empty registry.
func NewRegistry() *Registry {
	return &Registry{desc: prometheus.NewDesc(
		"patchbay_breaker_state",
		"State of the circuit breaker of an edge: 0 closed, 1 half-open, 2 open.",
		[]string{"from", "to"}, nil)}
}

func (r *Registry) add(name EdgeName, b breakerView, p plan.CircuitBreaker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.breakers = append(r.breakers, registered{name: name, breaker: b, policy: p})
	slices.SortFunc(r.breakers, func(a, b registered) int {
		return strings.Compare(a.name.String(), b.name.String())
	})
}

// BreakerState is one breaker as GET /debug/breakers shows it.
type BreakerState struct {
	EdgeName
	State string `json:"state"`
	// RetryIn is how long an open breaker stays open.
	RetryIn             string `json:"retryIn,omitempty"`
	Failures            uint   `json:"failures"`
	Successes           uint   `json:"successes"`
	ConsecutiveFailures int32  `json:"consecutiveFailures"`
	OpenDuration        string `json:"openDuration"`
	HalfOpenRequests    int32  `json:"halfOpenRequests"`
}

// States lists every breaker, sorted by edge.
func (r *Registry) States() []BreakerState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]BreakerState, 0, len(r.breakers))
	for _, b := range r.breakers {
		s := BreakerState{
			EdgeName:            b.name,
			State:               stateName(b.breaker.State()),
			Failures:            b.breaker.Metrics().Failures(),
			Successes:           b.breaker.Metrics().Successes(),
			ConsecutiveFailures: b.policy.ConsecutiveFailures,
			OpenDuration:        b.policy.OpenDuration.String(),
			HalfOpenRequests:    b.policy.HalfOpenRequests,
		}
		if d := b.breaker.RemainingDelay(); d > 0 {
			s.RetryIn = d.Round(time.Millisecond).String()
		}
		out = append(out, s)
	}
	return out
}

// ServeHTTP answers GET /debug/breakers.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{"breakers": r.States()})
}

// Describe implements prometheus.Collector.
func (r *Registry) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

// Collect implements prometheus.Collector.
func (r *Registry) Collect(ch chan<- prometheus.Metric) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, b := range r.breakers {
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue,
			StateValue(b.breaker.State()), b.name.From, b.name.To)
	}
}

// StateValue is the metric value of a breaker state.
func StateValue(s circuitbreaker.State) float64 {
	switch s {
	case circuitbreaker.HalfOpenState:
		return 1
	case circuitbreaker.OpenState:
		return 2
	default:
		return 0
	}
}

func stateName(s circuitbreaker.State) string {
	switch s {
	case circuitbreaker.HalfOpenState:
		return "half-open"
	case circuitbreaker.OpenState:
		return "open"
	default:
		return "closed"
	}
}
