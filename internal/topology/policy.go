package topology

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// resolvePolicy merges resilience layers field by field: for every leaf, the
// first layer that sets it wins (a step's override, then the workflow's), and
// the project's defaults fill the rest. A step that overrides only retry.attempts
// keeps the workflow's backoff and delays.
func resolvePolicy(layers ...*v1alpha1.Resilience) plan.Policy {
	var (
		timeouts, initials, maxes, opens []*metav1.Duration
		attempts, failures, halfOpens    []*int32
		concurrents                      []*int32
		backoffs                         []v1alpha1.Backoff
	)
	for _, r := range layers {
		if r == nil {
			continue
		}
		timeouts = append(timeouts, r.Timeout)
		if rt := r.Retry; rt != nil {
			attempts = append(attempts, rt.Attempts)
			backoffs = append(backoffs, rt.Backoff)
			initials = append(initials, rt.InitialDelay)
			maxes = append(maxes, rt.MaxDelay)
		}
		if cb := r.CircuitBreaker; cb != nil {
			failures = append(failures, cb.ConsecutiveFailures)
			opens = append(opens, cb.OpenDuration)
			halfOpens = append(halfOpens, cb.HalfOpenRequests)
		}
		if bh := r.Bulkhead; bh != nil {
			concurrents = append(concurrents, bh.MaxConcurrent)
		}
	}
	return plan.Policy{
		Timeout: plan.D(firstDuration(v1alpha1.DefaultTimeout, timeouts)),
		Retry: plan.Retry{
			Attempts:     firstInt(v1alpha1.DefaultRetryAttempts, attempts),
			Backoff:      string(firstBackoff(v1alpha1.DefaultBackoff, backoffs)),
			InitialDelay: plan.D(firstDuration(v1alpha1.DefaultInitialDelay, initials)),
			MaxDelay:     plan.D(firstDuration(v1alpha1.DefaultMaxDelay, maxes)),
		},
		CircuitBreaker: plan.CircuitBreaker{
			ConsecutiveFailures: firstInt(v1alpha1.DefaultFailures, failures),
			OpenDuration:        plan.D(firstDuration(v1alpha1.DefaultOpenDuration, opens)),
			HalfOpenRequests:    firstInt(v1alpha1.DefaultHalfOpen, halfOpens),
		},
		Bulkhead: plan.Bulkhead{MaxConcurrent: firstInt(v1alpha1.DefaultMaxConcurrent, concurrents)},
	}
}

func firstDuration(def time.Duration, vs []*metav1.Duration) time.Duration {
	for _, v := range vs {
		if v != nil {
			return v.Duration
		}
	}
	return def
}

func firstInt(def int32, vs []*int32) int32 {
	for _, v := range vs {
		if v != nil {
			return *v
		}
	}
	return def
}

func firstBackoff(def v1alpha1.Backoff, vs []v1alpha1.Backoff) v1alpha1.Backoff {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return def
}

// checkResilience reports the values of one resilience layer that the API
// server would refuse. where names the layer ("spec.resilience" or a step's).
func checkResilience(ps *problems, steps []string, where string, r *v1alpha1.Resilience) {
	if r == nil {
		return
	}
	positive := func(field string, d *metav1.Duration) {
		if d != nil && d.Duration <= 0 {
			ps.addf(ReasonInvalidField, steps, "%s.%s must be a positive duration, not %s", where, field, d.Duration)
		}
	}
	atLeastOne := func(field string, n *int32) {
		if n != nil && *n < 1 {
			ps.addf(ReasonInvalidField, steps, "%s.%s must be at least 1, not %d", where, field, *n)
		}
	}
	positive("timeout", r.Timeout)
	if rt := r.Retry; rt != nil {
		atLeastOne("retry.attempts", rt.Attempts)
		if rt.Backoff != "" && rt.Backoff != v1alpha1.BackoffExponential && rt.Backoff != v1alpha1.BackoffConstant {
			ps.addf(ReasonInvalidField, steps, "%s.retry.backoff must be %s or %s, not %q", where, v1alpha1.BackoffExponential, v1alpha1.BackoffConstant, rt.Backoff)
		}
		positive("retry.initialDelay", rt.InitialDelay)
		positive("retry.maxDelay", rt.MaxDelay)
	}
	if cb := r.CircuitBreaker; cb != nil {
		atLeastOne("circuitBreaker.consecutiveFailures", cb.ConsecutiveFailures)
		positive("circuitBreaker.openDuration", cb.OpenDuration)
		atLeastOne("circuitBreaker.halfOpenRequests", cb.HalfOpenRequests)
	}
	if bh := r.Bulkhead; bh != nil {
		atLeastOne("bulkhead.maxConcurrent", bh.MaxConcurrent)
	}
}

// checkBackoffDelays reports an exponential backoff whose first delay is
// longer than its cap: the two may come from different layers, so it is
// checked on the resolved policy.
func checkBackoffDelays(ps *problems, steps []string, where string, p plan.Policy) {
	r := p.Retry
	if r.Backoff == string(v1alpha1.BackoffExponential) && r.InitialDelay.Duration > 0 && r.InitialDelay.Duration > r.MaxDelay.Duration {
		ps.addf(ReasonInvalidField, steps, "%s.retry: initialDelay %s is longer than maxDelay %s, so exponential backoff has nowhere to grow", where, r.InitialDelay.Duration, r.MaxDelay.Duration)
	}
}

// retryDelaysSet reports whether a layer sets any part of the backoff.
func retryDelaysSet(r *v1alpha1.Resilience) bool {
	return r != nil && r.Retry != nil && (r.Retry.Backoff != "" || r.Retry.InitialDelay != nil || r.Retry.MaxDelay != nil)
}

// ackWaitSlack is added to a step's attempt timeout to get its consumers'
// AckWait: room for the sidecar to receive, call and publish the result before
// JetStream redelivers the message to another replica.
const ackWaitSlack = 2 * time.Second

func ackWait(timeout time.Duration) time.Duration {
	if timeout > maxDuration-ackWaitSlack {
		return maxDuration
	}
	return timeout + ackWaitSlack
}

const maxDuration = time.Duration(1<<63 - 1)
