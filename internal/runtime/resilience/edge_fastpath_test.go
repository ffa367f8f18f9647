package resilience

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// answer is what one attempt of a scripted step does.
type answer struct {
	status     int
	retryAfter time.Duration
	err        error
	hang       bool // wait for the attempt's context to end (a timeout)
}

// edgeCall is one call on an edge: its attempts get the answers in turn, the
// last one forever.
type edgeCall struct {
	answers  []answer
	ctx      string // "" (background), "canceled" or "deadline" (one minute)
	halfOpen bool   // put the breaker in half-open before the call
}

// observed is everything the caller, the hooks, the breaker and the registry
// show after a call.
type observed struct {
	Status, Attempts, Calls, Retries int
	Err                              string
	State                            circuitbreaker.State
	Transitions                      []string
	Registry                         []BreakerState
}

var (
	ok200    = answer{status: 200}
	dialErr  = answer{err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	boom     = answer{err: Permanent(errors.New("boom"))}
	hang     = answer{hang: true}
	rejected = answer{status: 503, retryAfter: -1} // the relay's rejected mark
)

func calls(answers ...[]answer) []edgeCall {
	out := make([]edgeCall, len(answers))
	for i, a := range answers {
		out[i] = edgeCall{answers: a}
	}
	return out
}

func a(answers ...answer) []answer { return answers }

// runScript makes the calls on a fresh edge and records what each showed.
func runScript(t *testing.T, fast, relay bool, p plan.Policy, script []edgeCall) []observed {
	t.Helper()
	reg := NewRegistry()
	var retries int
	var transitions []string
	hooks := Hooks{
		OnRetry: func(EdgeName) { retries++ },
		OnBreakerState: func(_ EdgeName, from, to circuitbreaker.State) {
			transitions = append(transitions, fmt.Sprintf("%s->%s", from, to))
		},
	}
	var e *Edge[*outcome]
	if relay {
		e = NewRelay[*outcome](EdgeName{"a", "b"}, p, func(o *outcome) bool { return o.retryAfter == -1 }, hooks, reg)
	} else {
		e = NewEdge[*outcome](EdgeName{"a", "b"}, p, hooks, reg)
	}
	e.fastPath = fast
	var out []observed
	for _, c := range script {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		switch c.ctx {
		case "canceled":
			ctx, cancel = context.WithCancel(ctx)
			cancel()
		case "deadline":
			ctx, cancel = context.WithTimeout(ctx, time.Minute)
		}
		if c.halfOpen {
			e.breaker.HalfOpen()
		}
		n := 0
		res := e.Do(ctx, func(actx context.Context) (*outcome, error) {
			ans := c.answers[min(n, len(c.answers)-1)]
			n++
			switch {
			case ans.hang:
				<-actx.Done()
				return nil, actx.Err()
			case ans.err != nil:
				return nil, ans.err
			}
			return &outcome{status: ans.status, retryAfter: ans.retryAfter}, nil
		})
		cancel()
		o := observed{Attempts: res.Attempts, Calls: n, Retries: retries, Err: fmt.Sprint(res.Err),
			State: e.breaker.State(), Transitions: append([]string(nil), transitions...), Registry: reg.States()}
		if res.Last != nil {
			o.Status = res.Last.status
		}
		for i := range o.Registry {
			o.Registry[i].RetryIn = "" // a time left, which differs by the microseconds between the runs
		}
		out = append(out, o)
	}
	return out
}

// TestEdgeFastPathMatchesTheExecutor runs the same calls through an edge that
// takes Do's fast path and one that always goes through the failsafe-go
// executor: every call must end the same way (answer, error, attempts, calls
// of the step), with the same retries, breaker state, state transitions and
// breaker metrics.
func TestEdgeFastPathMatchesTheExecutor(t *testing.T) {
	p := policy(3, 3, time.Hour)
	p.Timeout = plan.D(20 * time.Millisecond)
	p.Retry.InitialDelay, p.Retry.MaxDelay = plan.D(time.Microsecond), plan.D(time.Millisecond)
	longWait := p
	longWait.Retry.MaxDelay = plan.D(3 * time.Hour)

	cases := []struct {
		name   string
		policy plan.Policy
		relay  bool
		script []edgeCall
	}{
		{"successes and client errors", p, false, calls(a(ok200), a(answer{status: 400}), a(answer{status: 404}), a(ok200))},
		{"retried until success", p, false, calls(a(answer{status: 503}, ok200), a(answer{status: 502}, answer{status: 502}, ok200), a(dialErr, ok200), a(hang, ok200), a(ok200))},
		{"the breaker opens and rejects", p, false, calls(a(answer{status: 500}), a(ok200), a(ok200))},
		{"failures and successes interleave", p, false, calls(a(answer{status: 500}, ok200), a(answer{status: 500}, ok200), a(answer{status: 500}, ok200), a(ok200), a(answer{status: 500}, answer{status: 500}, ok200), a(ok200))},
		{"errors", p, false, calls(a(boom), a(dialErr, dialErr, dialErr), a(ok200), a(hang), a(ok200))},
		{"retry-after", p, false, calls(a(answer{status: 429, retryAfter: 500 * time.Microsecond}, ok200), a(answer{status: 429, retryAfter: time.Minute}), a(ok200))},
		{"half-open", p, false, []edgeCall{{answers: a(ok200), halfOpen: true}, {answers: a(ok200)}, {answers: a(answer{status: 500}), halfOpen: true}, {answers: a(ok200)}}},
		{"run deadline", longWait, false, []edgeCall{{answers: a(answer{status: 503, retryAfter: 2 * time.Hour}), ctx: "deadline"}, {answers: a(ok200), ctx: "deadline"}, {answers: a(answer{status: 503}, ok200), ctx: "deadline"}}},
		{"cancelled caller", p, false, []edgeCall{{answers: a(ok200), ctx: "canceled"}, {answers: a(ok200)}}},
		{"relay", p, true, calls(a(answer{status: 503}), a(rejected, ok200), a(dialErr, ok200), a(rejected, rejected, rejected), a(ok200), a(hang), a(ok200))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			viaExecutor := runScript(t, false, tc.relay, tc.policy, tc.script)
			fast := runScript(t, true, tc.relay, tc.policy, tc.script)
			g.Expect(fast).To(Equal(viaExecutor))
		})
	}
}

// TestEdgeFastPathIsTaken keeps the equivalence test honest: a success on a
// closed breaker does skip the executor (its result is the executor's, so only
// the allocation count tells them apart).
func TestEdgeFastPathIsTaken(t *testing.T) {
	g := NewWithT(t)
	e := NewEdge[*outcome](EdgeName{"a", "b"}, policy(3, 5, time.Hour), Hooks{}, nil)
	call := func(context.Context) (*outcome, error) { return benchOK, nil }
	ctx := context.Background()
	fast := testing.AllocsPerRun(100, func() { e.Do(ctx, call) })
	e.fastPath = false
	slow := testing.AllocsPerRun(100, func() { e.Do(ctx, call) })
	g.Expect(fast).To(BeNumerically("<=", 8))
	g.Expect(slow).To(BeNumerically(">", fast))
}
