package topology

import (
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// defaults is the policy of a step when neither it nor its workflow says anything.
func defaults() plan.Policy {
	return plan.Policy{
		Timeout: plan.D(v1alpha1.DefaultTimeout),
		Retry: plan.Retry{
			Attempts:     v1alpha1.DefaultRetryAttempts,
			Backoff:      string(v1alpha1.DefaultBackoff),
			InitialDelay: plan.D(v1alpha1.DefaultInitialDelay),
			MaxDelay:     plan.D(v1alpha1.DefaultMaxDelay),
		},
		CircuitBreaker: plan.CircuitBreaker{
			ConsecutiveFailures: v1alpha1.DefaultFailures,
			OpenDuration:        plan.D(v1alpha1.DefaultOpenDuration),
			HalfOpenRequests:    v1alpha1.DefaultHalfOpen,
		},
		Bulkhead: plan.Bulkhead{MaxConcurrent: v1alpha1.DefaultMaxConcurrent},
	}
}

func resilience(t *testing.T, y string) *v1alpha1.Resilience {
	t.Helper()
	if y == "" {
		return nil
	}
	var r v1alpha1.Resilience
	if err := yaml.UnmarshalStrict([]byte(y), &r); err != nil {
		t.Fatalf("resilience %q: %v", y, err)
	}
	return &r
}

// TestResolvePolicy pins the merge: for every part, the step's override wins,
// then the workflow's value, then the default; a part set at one level leaves
// its siblings to the levels below.
func TestResolvePolicy(t *testing.T) {
	cases := []struct {
		name, step, workflow string
		want                 func(p *plan.Policy)
	}{
		{name: "nothing set gives the defaults", want: func(*plan.Policy) {}},
		{
			name:     "workflow timeout",
			workflow: `{timeout: 3s}`,
			want:     func(p *plan.Policy) { p.Timeout = plan.D(3 * time.Second) },
		},
		{
			name:     "step timeout beats workflow timeout",
			step:     `{timeout: 500ms}`,
			workflow: `{timeout: 3s}`,
			want:     func(p *plan.Policy) { p.Timeout = plan.D(500 * time.Millisecond) },
		},
		{
			name:     "step retry attempts keep the workflow's backoff and delays",
			step:     `{retry: {attempts: 8}}`,
			workflow: `{retry: {attempts: 5, backoff: constant, initialDelay: 200ms, maxDelay: 5s}}`,
			want: func(p *plan.Policy) {
				p.Retry = plan.Retry{Attempts: 8, Backoff: "constant", InitialDelay: plan.D(200 * time.Millisecond), MaxDelay: plan.D(5 * time.Second)}
			},
		},
		{
			name: "step backoff alone over defaults",
			step: `{retry: {backoff: constant}}`,
			want: func(p *plan.Policy) { p.Retry.Backoff = "constant" },
		},
		{
			name:     "breaker parts from step, workflow and defaults",
			step:     `{circuitBreaker: {openDuration: 15s}}`,
			workflow: `{circuitBreaker: {consecutiveFailures: 3, openDuration: 1m}}`,
			want: func(p *plan.Policy) {
				p.CircuitBreaker.ConsecutiveFailures = 3
				p.CircuitBreaker.OpenDuration = plan.D(15 * time.Second)
			},
		},
		{
			name:     "step bulkhead, workflow timeout",
			step:     `{bulkhead: {maxConcurrent: 8}}`,
			workflow: `{timeout: 1s}`,
			want: func(p *plan.Policy) {
				p.Bulkhead.MaxConcurrent = 8
				p.Timeout = plan.D(time.Second)
			},
		},
		{
			name:     "empty step parts inherit everything",
			step:     `{retry: {}, circuitBreaker: {}, bulkhead: {}}`,
			workflow: `{retry: {attempts: 2}, circuitBreaker: {halfOpenRequests: 4}, bulkhead: {maxConcurrent: 16}}`,
			want: func(p *plan.Policy) {
				p.Retry.Attempts = 2
				p.CircuitBreaker.HalfOpenRequests = 4
				p.Bulkhead.MaxConcurrent = 16
			},
		},
		{
			name: "a full step override replaces everything",
			step: `{timeout: 9s, retry: {attempts: 1, backoff: constant, initialDelay: 1s, maxDelay: 1s},
			        circuitBreaker: {consecutiveFailures: 9, openDuration: 9s, halfOpenRequests: 9}, bulkhead: {maxConcurrent: 9}}`,
			workflow: `{timeout: 3s, retry: {attempts: 5}, circuitBreaker: {consecutiveFailures: 3}, bulkhead: {maxConcurrent: 32}}`,
			want: func(p *plan.Policy) {
				*p = plan.Policy{
					Timeout:        plan.D(9 * time.Second),
					Retry:          plan.Retry{Attempts: 1, Backoff: "constant", InitialDelay: plan.D(time.Second), MaxDelay: plan.D(time.Second)},
					CircuitBreaker: plan.CircuitBreaker{ConsecutiveFailures: 9, OpenDuration: plan.D(9 * time.Second), HalfOpenRequests: 9},
					Bulkhead:       plan.Bulkhead{MaxConcurrent: 9},
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := defaults()
			tc.want(&want)
			got := resolvePolicy(resilience(t, tc.step), resilience(t, tc.workflow))
			if got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			// The same through Compile, as the step's plan policy.
			w := &v1alpha1.Workflow{Spec: v1alpha1.WorkflowSpec{
				Style:      v1alpha1.StyleSyncOrchestrated,
				Resilience: resilience(t, tc.workflow),
				Steps:      []v1alpha1.Step{{Name: "a", Image: "x", Resilience: resilience(t, tc.step)}},
			}}
			w.Name = "wf"
			p, err := Compile(w)
			if err != nil {
				t.Fatal(err)
			}
			if p.Steps[0].Policy != want {
				t.Errorf("plan policy %+v\nwant %+v", p.Steps[0].Policy, want)
			}
		})
	}
}
