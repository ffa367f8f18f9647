package resilience

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

type outcome struct {
	status     int
	retryAfter time.Duration
}

func (o *outcome) StatusCode() int                { return o.status }
func (o *outcome) RetryAfterDelay() time.Duration { return o.retryAfter }

func policy(attempts, failures int32, open time.Duration) plan.Policy {
	return plan.Policy{
		Timeout:        plan.D(time.Second),
		Retry:          plan.Retry{Attempts: attempts, Backoff: "exponential", InitialDelay: plan.D(time.Millisecond), MaxDelay: plan.D(5 * time.Millisecond)},
		CircuitBreaker: plan.CircuitBreaker{ConsecutiveFailures: failures, OpenDuration: plan.D(open), HalfOpenRequests: 1},
		Bulkhead:       plan.Bulkhead{MaxConcurrent: 4},
	}
}

// script answers attempts with the given statuses in turn, the last one forever.
func script(calls *atomic.Int32, statuses ...int) func(context.Context) (*outcome, error) {
	return func(context.Context) (*outcome, error) {
		n := int(calls.Add(1)) - 1
		return &outcome{status: statuses[min(n, len(statuses)-1)]}, nil
	}
}

func TestEdgeRetriesRetryableStatusesUntilSuccess(t *testing.T) {
	g := NewWithT(t)
	e := NewEdge[*outcome](EdgeName{"a", "b"}, policy(3, 10, time.Minute), Hooks{}, nil)
	var calls atomic.Int32
	res := e.Do(context.Background(), script(&calls, 503, 503, 200))
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Last.status).To(Equal(200))
	g.Expect(res.Attempts).To(Equal(3))
	g.Expect(calls.Load()).To(BeEquivalentTo(3))
}

func TestEdgeReturnsLastFailureAfterTheLastAttempt(t *testing.T) {
	g := NewWithT(t)
	e := NewEdge[*outcome](EdgeName{"a", "b"}, policy(3, 10, time.Minute), Hooks{}, nil)
	var calls atomic.Int32
	res := e.Do(context.Background(), script(&calls, 502))
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Last.status).To(Equal(502))
	g.Expect(res.Attempts).To(Equal(3))
}

func TestEdgeDoesNotRetryClientErrors(t *testing.T) {
	g := NewWithT(t)
	e := NewEdge[*outcome](EdgeName{"a", "b"}, policy(3, 10, time.Minute), Hooks{}, nil)
	var calls atomic.Int32
	res := e.Do(context.Background(), script(&calls, 400, 200))
	g.Expect(res.Last.status).To(Equal(400))
	g.Expect(res.Attempts).To(Equal(1))
}

func TestEdgeTimesOutEachAttempt(t *testing.T) {
	g := NewWithT(t)
	p := policy(2, 10, time.Minute)
	p.Timeout = plan.D(20 * time.Millisecond)
	e := NewEdge[*outcome](EdgeName{"a", "b"}, p, Hooks{}, nil)
	start := time.Now()
	res := e.Do(context.Background(), func(ctx context.Context) (*outcome, error) {
		<-ctx.Done() // a step that never answers
		return nil, ctx.Err()
	})
	g.Expect(res.Err).To(MatchError(ErrTimeout))
	g.Expect(res.Attempts).To(Equal(2))
	g.Expect(time.Since(start)).To(BeNumerically(">=", 40*time.Millisecond))
}

func TestEdgeHonoursRetryAfter(t *testing.T) {
	g := NewWithT(t)
	p := policy(2, 10, time.Minute)
	p.Retry.MaxDelay = plan.D(2 * time.Second)
	e := NewEdge[*outcome](EdgeName{"a", "b"}, p, Hooks{}, nil)
	var calls atomic.Int32
	var first time.Time
	var gap time.Duration
	res := e.Do(context.Background(), func(context.Context) (*outcome, error) {
		if calls.Add(1) == 1 {
			first = time.Now()
			return &outcome{status: 503, retryAfter: time.Second}, nil
		}
		gap = time.Since(first)
		return &outcome{status: 200}, nil
	})
	g.Expect(res.Last.status).To(Equal(200))
	g.Expect(gap).To(BeNumerically(">=", time.Second))
}

func TestEdgeStopsRetryingWhenRetryAfterPassesMaxDelay(t *testing.T) {
	g := NewWithT(t)
	e := NewEdge[*outcome](EdgeName{"a", "b"}, policy(3, 10, time.Minute), Hooks{}, nil)
	var calls atomic.Int32
	res := e.Do(context.Background(), func(context.Context) (*outcome, error) {
		calls.Add(1)
		return &outcome{status: 429, retryAfter: time.Minute}, nil
	})
	g.Expect(res.Last.status).To(Equal(429))
	g.Expect(res.Attempts).To(Equal(1))
}

func TestEdgeBreakerOpensAndRejectsWithoutCalling(t *testing.T) {
	g := NewWithT(t)
	reg := NewRegistry()
	var transitions atomic.Int32
	hooks := Hooks{OnBreakerState: func(EdgeName, circuitbreaker.State, circuitbreaker.State) { transitions.Add(1) }}
	e := NewEdge[*outcome](EdgeName{"a", "b"}, policy(1, 3, time.Hour), hooks, reg)
	var calls atomic.Int32
	for range 3 {
		res := e.Do(context.Background(), script(&calls, 500))
		g.Expect(res.Last.status).To(Equal(500))
	}
	res := e.Do(context.Background(), script(&calls, 200))
	g.Expect(res.Err).To(MatchError(ErrBreakerOpen))
	g.Expect(res.Attempts).To(Equal(0))
	g.Expect(calls.Load()).To(BeEquivalentTo(3))
	g.Expect(e.BreakerRemaining()).To(BeNumerically(">", 59*time.Minute))
	g.Expect(transitions.Load()).To(BeEquivalentTo(1))
	g.Expect(reg.States()).To(ConsistOf(HaveField("State", "open")))
}

func TestEdgeBreakerHalfOpensAfterOpenDurationAndClosesOnSuccess(t *testing.T) {
	g := NewWithT(t)
	reg := NewRegistry()
	e := NewEdge[*outcome](EdgeName{"a", "b"}, policy(1, 1, 50*time.Millisecond), Hooks{}, reg)
	var calls atomic.Int32
	e.Do(context.Background(), script(&calls, 500))
	g.Expect(reg.States()[0].State).To(Equal("open"))
	g.Eventually(e.BreakerRemaining).WithTimeout(5 * time.Second).WithPolling(5 * time.Millisecond).Should(BeZero())
	res := e.Do(context.Background(), script(&calls, 200))
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(calls.Load()).To(BeEquivalentTo(2))
	g.Expect(reg.States()[0].State).To(Equal("closed"))
}

func TestRelayRetriesOnlyWhatNeverReachedTheStep(t *testing.T) {
	g := NewWithT(t)
	rejected := func(o *outcome) bool { return o.retryAfter == -1 } // stands for the rejected mark
	e := NewRelay[*outcome](EdgeName{"a", "b"}, policy(3, 10, time.Minute), rejected, Hooks{}, nil)

	var calls atomic.Int32
	res := e.Do(context.Background(), script(&calls, 503))
	g.Expect(res.Attempts).To(Equal(1), "a step's own 503 is not replayed by the relay")

	dialErr := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	calls.Store(0)
	res = e.Do(context.Background(), func(context.Context) (*outcome, error) {
		if calls.Add(1) < 3 {
			return nil, dialErr
		}
		return &outcome{status: 200}, nil
	})
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Attempts).To(Equal(3))
}

func TestEdgeStopsRetryingWhenRetryAfterPassesTheRunsDeadline(t *testing.T) {
	g := NewWithT(t)
	p := policy(3, 10, time.Minute)
	p.Retry.MaxDelay = plan.D(time.Minute) // maxDelay allows the wait, the run's deadline does not
	e := NewEdge[*outcome](EdgeName{"a", "b"}, p, Hooks{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	res := e.Do(ctx, func(context.Context) (*outcome, error) {
		return &outcome{status: 503, retryAfter: 30 * time.Second}, nil
	})
	// The step's own answer comes back at once, not the deadline's 504 later.
	g.Expect(res.Err).NotTo(HaveOccurred())
	g.Expect(res.Last.status).To(Equal(503))
	g.Expect(res.Attempts).To(Equal(1))
	g.Expect(time.Since(start)).To(BeNumerically("<", time.Second))
}
