package resilience

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// jitterFactor spreads retries of many callers by ±20% of the backoff delay.
const jitterFactor = 0.2

// Outcome is what one attempt of a hop produced, as far as the policies care.
// Implementations must accept calls on a nil receiver only through the predicates
// below, which never call them when the attempt returned an error.
type Outcome interface {
	StatusCode() int
	// RetryAfterDelay is the step's Retry-After, 0 when it sent none.
	RetryAfterDelay() time.Duration
}

// EdgeName names a hop: who calls whom.
type EdgeName struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func (n EdgeName) String() string { return n.From + "->" + n.To }

// Hooks observe an edge; any may be nil.
type Hooks struct {
	// OnRetry is called before every retry.
	OnRetry func(EdgeName)
	// OnBreakerState is called when the edge's breaker changes state.
	OnBreakerState func(name EdgeName, from, to circuitbreaker.State)
}

// Edge is the resilience of one hop, built once per edge and shared by every call
// on it: retry (outermost) around a circuit breaker around a per-attempt timeout.
type Edge[R Outcome] struct {
	Name     EdgeName
	executor failsafe.Executor[R]
	breaker  circuitbreaker.CircuitBreaker[R]
	timeout  time.Duration
	// failed is the edge's failure predicate; attempts its retry.attempts.
	failed   func(R, error) bool
	attempts int
	// fastPath lets Do skip the executor for a first attempt that succeeds on
	// a closed breaker; tests turn it off to compare both paths.
	fastPath bool
}

// Result is how a call on an edge ended.
type Result[R Outcome] struct {
	// Last is the last attempt's response; the zero R when it produced none.
	Last R
	// Err is the last attempt's error: nil, ErrTimeout, ErrBreakerOpen, or a transport error.
	Err error
	// Attempts counts the attempts that reached the wire (a call refused by an open
	// breaker made none).
	Attempts int
}

// Errors a Result can carry besides transport errors.
var (
	ErrTimeout     = timeout.ErrExceeded
	ErrBreakerOpen = circuitbreaker.ErrOpen
)

// NewEdge builds the full policy of a call to a step: every failure that the
// step contract (docs/step-contract.md) calls retryable (408, 429, 5xx,
// connect errors, timeouts) is retried and counts against the breaker.
func NewEdge[R Outcome](name EdgeName, p plan.Policy, hooks Hooks, reg *Registry) *Edge[R] {
	failed := func(r R, err error) bool {
		if err != nil {
			return retryableError(err)
		}
		return RetryableStatus(r.StatusCode())
	}
	return newEdge(name, p, failed, p.Timeout.Duration, hooks, reg)
}

// NewRelay builds the policy of a sync-chain forward from one sidecar to the next.
// The next sidecar applies the step's own policy to its app and calls the steps
// after it, so the relay must not time out or replay that work: it retries only
// calls that never reached the app, that is connect errors and answers for which
// rejected returns true (a full bulkhead).
func NewRelay[R Outcome](name EdgeName, p plan.Policy, rejected func(R) bool, hooks Hooks, reg *Registry) *Edge[R] {
	failed := func(r R, err error) bool {
		if err != nil {
			return IsConnectError(err)
		}
		return rejected(r)
	}
	return newEdge(name, p, failed, 0, hooks, reg)
}

func newEdge[R Outcome](name EdgeName, p plan.Policy, failed func(R, error) bool, attemptTimeout time.Duration, hooks Hooks, reg *Registry) *Edge[R] {
	retry := retrypolicy.NewBuilder[R]().
		HandleIf(failed).
		AbortOnErrors(circuitbreaker.ErrOpen, context.Canceled).
		ReturnLastFailure().
		WithMaxAttempts(max(1, int(p.Retry.Attempts))).
		WithJitterFactor(jitterFactor)
	maxDelay := p.Retry.MaxDelay.Duration
	if p.Retry.Backoff == "constant" {
		retry = retry.WithDelay(p.Retry.InitialDelay.Duration)
	} else {
		retry = retry.WithBackoff(p.Retry.InitialDelay.Duration, max(maxDelay, p.Retry.InitialDelay.Duration))
	}
	// A Retry-After the retry cannot honour within maxDelay ends the retries: the
	// failure then carries it back to the caller instead of hammering the step.
	retry = retry.
		AbortIf(func(r R, err error) bool { return err == nil && r.RetryAfterDelay() > maxDelay }).
		WithDelayFunc(func(exec failsafe.ExecutionAttempt[R]) time.Duration {
			if exec.LastError() != nil {
				return -1
			}
			ra := exec.LastResult().RetryAfterDelay()
			if ra <= 0 {
				return -1
			}
			// Jitter is applied after this function and may shorten the delay by
			// jitterFactor; scale up so the shortest jittered delay is Retry-After.
			return time.Duration(float64(ra) / (1 - jitterFactor))
		})
	if hooks.OnRetry != nil {
		retry = retry.OnRetry(func(failsafe.ExecutionEvent[R]) { hooks.OnRetry(name) })
	}

	cb := p.CircuitBreaker
	breakerBuilder := circuitbreaker.NewBuilder[R]().
		HandleIf(failed).
		WithFailureThreshold(uint(max(1, cb.ConsecutiveFailures))).
		WithSuccessThreshold(uint(max(1, cb.HalfOpenRequests))).
		WithDelay(cb.OpenDuration.Duration)
	if hooks.OnBreakerState != nil {
		breakerBuilder = breakerBuilder.OnStateChanged(func(ev circuitbreaker.StateChangedEvent) {
			hooks.OnBreakerState(name, ev.OldState, ev.NewState)
		})
	}
	breaker := breakerBuilder.Build()

	// The per-attempt timeout is a deadline on the attempt's context (see Do)
	// rather than failsafe-go's timeout policy, whose timer, goroutine and child
	// execution cost more than the rest of the closed path together.
	e := &Edge[R]{Name: name, executor: failsafe.With[R](retry.Build(), breaker), breaker: breaker, timeout: attemptTimeout,
		failed: failed, attempts: max(1, int(p.Retry.Attempts)), fastPath: true}
	if reg != nil {
		reg.add(name, breaker, cb)
	}
	return e
}

// Do runs fn under the edge's policies. fn gets a context that ends with the
// attempt (the per-attempt timeout cancels it).
//
// When ctx has a deadline (the run's), a retryable answer whose Retry-After
// outlasts it ends the retries at once with that answer: waiting would only
// turn the step's own answer into the deadline's 504 later.
//
// The common case, a closed breaker and a first attempt that succeeds, does
// not go through the failsafe-go executor: the attempt runs here and its
// success is recorded on the breaker, as the executor's circuit breaker
// would (a closed breaker hands out permits without counting them). Any
// other first attempt (a failure the edge retries or counts, an error, a
// cancelled context) is handed to the executor as its first attempt, so
// that retries, delays, aborts, breaker transitions and hooks are the
// executor's own. TestEdgeFastPathMatchesTheExecutor pins the equivalence.
func (e *Edge[R]) Do(ctx context.Context, fn func(ctx context.Context) (R, error)) Result[R] {
	if e.fastPath && ctx.Err() == nil && e.breaker.IsClosed() {
		r, err := e.attempt(ctx, fn)
		if err == nil && ctx.Err() == nil && !e.failed(r, nil) {
			e.breaker.RecordSuccess()
			return Result[R]{Last: r, Attempts: 1}
		}
		return e.execute(ctx, fn, &firstAttempt[R]{r: r, err: err})
	}
	return e.execute(ctx, fn, nil)
}

// firstAttempt is an attempt Do already made, which the executor replays as
// its first instead of calling fn.
type firstAttempt[R Outcome] struct {
	r   R
	err error
}

// execute runs fn under the failsafe-go executor; first, when not nil, stands
// for the first attempt.
func (e *Edge[R]) execute(ctx context.Context, fn func(ctx context.Context) (R, error), first *firstAttempt[R]) Result[R] {
	var attempts int
	try := func() (R, error) {
		attempts++
		if first != nil && attempts == 1 {
			return first.r, first.err
		}
		return e.attempt(ctx, fn)
	}
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		r, err := e.executor.WithContext(ctx).Get(try)
		// A replayed first attempt reached the wire even when the executor
		// refused it (a breaker another call opened meanwhile).
		return Result[R]{Last: r, Err: err, Attempts: max(attempts, boolInt(first != nil))}
	}
	rctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var last R
	r, err := e.executor.WithContext(rctx).Get(func() (R, error) {
		r, err := try()
		if err == nil && attempts < e.attempts {
			if ra := r.RetryAfterDelay(); ra > 0 && ra > time.Until(deadline) && e.failed(r, nil) {
				last = r
				stop(errRetryAfterPastDeadline)
			}
		}
		return r, err
	})
	n := max(attempts, boolInt(first != nil))
	if errors.Is(context.Cause(rctx), errRetryAfterPastDeadline) {
		return Result[R]{Last: last, Attempts: n}
	}
	return Result[R]{Last: r, Err: err, Attempts: n}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// errRetryAfterPastDeadline ends an edge's retries from inside an attempt.
var errRetryAfterPastDeadline = errors.New("the step's Retry-After outlasts the run's deadline")

// attempt runs fn once under the per-attempt timeout. An attempt that outlives
// it fails with ErrTimeout whatever fn returns, as failsafe-go's timeout policy
// would have it.
func (e *Edge[R]) attempt(ctx context.Context, fn func(ctx context.Context) (R, error)) (R, error) {
	if e.timeout <= 0 {
		return fn(ctx)
	}
	actx, cancel := context.WithTimeoutCause(ctx, e.timeout, ErrTimeout)
	defer cancel()
	r, err := fn(actx)
	if errors.Is(context.Cause(actx), ErrTimeout) {
		var zero R
		return zero, ErrTimeout
	}
	return r, err
}

// AttemptTimeout is the per-attempt timeout, 0 for relays.
func (e *Edge[R]) AttemptTimeout() time.Duration { return e.timeout }

// BreakerRemaining is how long the edge's breaker stays open.
func (e *Edge[R]) BreakerRemaining() time.Duration { return e.breaker.RemainingDelay() }

// IsConnectError reports whether err happened before the request was sent, so
// that retrying it cannot run the step twice.
func IsConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
