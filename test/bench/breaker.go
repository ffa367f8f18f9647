package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// breakerPolicy is every policy of an edge, as hopWorkflow resolves them, with
// a short retry delay so that opening the breaker takes no time and an open
// duration that outlasts the benchmark.
var breakerPolicy = plan.Policy{
	Timeout:        plan.D(2 * time.Second),
	Retry:          plan.Retry{Attempts: 3, Backoff: "exponential", InitialDelay: plan.D(time.Microsecond), MaxDelay: plan.D(time.Microsecond)},
	CircuitBreaker: plan.CircuitBreaker{ConsecutiveFailures: 5, OpenDuration: plan.D(time.Hour), HalfOpenRequests: 1},
	Bulkhead:       plan.Bulkhead{MaxConcurrent: 256},
}

// outcome is a step's answer without a body.
type outcome struct{ status int }

func (o *outcome) StatusCode() int                { return o.status }
func (o *outcome) RetryAfterDelay() time.Duration { return 0 }

var (
	okOutcome   = &outcome{status: http.StatusOK}
	downOutcome = &outcome{status: http.StatusServiceUnavailable}
	// call is the app call of the closed-path benchmarks, through a variable so
	// that the bare baseline is not inlined away.
	call = func(context.Context) (*outcome, error) { return okOutcome, nil }
)

func newBenchEdge() *resilience.Edge[*outcome] {
	return resilience.NewEdge[*outcome](resilience.EdgeName{From: "bench", To: "app"}, breakerPolicy, resilience.Hooks{}, resilience.NewRegistry())
}

// benchBareCall is the baseline: the app call without any policy.
func benchBareCall(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := call(ctx); r.status != http.StatusOK {
			b.Fatal("unexpected status")
		}
	}
}

// benchClosedEdge is the same call through the edge's retry, closed breaker and timeout.
func benchClosedEdge(b *testing.B) {
	e := newBenchEdge()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := e.Do(ctx, call); res.Err != nil || res.Attempts != 1 {
			b.Fatalf("closed edge: %v after %d attempts", res.Err, res.Attempts)
		}
	}
}

// benchOpenEdge is a call refused by the edge's open breaker.
func benchOpenEdge(b *testing.B) {
	e := newBenchEdge()
	ctx := context.Background()
	for e.BreakerRemaining() == 0 {
		e.Do(ctx, func(context.Context) (*outcome, error) { return downOutcome, nil })
	}
	b.ReportAllocs()
	for b.Loop() {
		if res := e.Do(ctx, call); !errors.Is(res.Err, resilience.ErrBreakerOpen) || res.Attempts != 0 {
			b.Fatalf("open edge: %v after %d attempts", res.Err, res.Attempts)
		}
	}
}

// benchOpenTarget is what a sidecar or orchestrator does with a call to a step
// whose breaker is open: the edge refuses it and the hop turns that into the
// 503 it answers, without touching the network.
func benchOpenTarget(b *testing.B) {
	tracing, err := telemetry.NewTracing(context.Background(), "", "bench")
	if err != nil {
		b.Fatal(err)
	}
	tel := telemetry.New(slog.New(slog.DiscardHandler), tracing)
	step := &plan.Step{Name: "app", Policy: breakerPolicy}
	// Nothing listens on port 1: every attempt fails to connect until the breaker opens.
	t, err := hop.NewStepTarget("bench", step, "http://127.0.0.1:1/", contract.SourceOf("bench", "bench", "entry"), hop.NewTransport(), tel)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	inv := &contract.Invocation{RunID: "r", ContentType: "application/json", Body: []byte(`{}`)}
	for {
		_, herr := t.Invoke(ctx, inv)
		if herr != nil && herr.Attempts == 0 {
			break
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, herr := t.Invoke(ctx, inv); herr == nil || herr.Code != http.StatusServiceUnavailable || herr.Attempts != 0 {
			b.Fatalf("open target answered %+v", herr)
		}
	}
}

// runBreaker runs the breaker benchmarks with Go's benchmark harness.
func runBreaker(rep *report, rounds int) {
	fmt.Println("Breaker: Go benchmarks of internal/runtime/resilience's edge (retry, breaker, timeout)")
	bare := bestOf(rounds, "bare call", benchBareCall)
	closed := bestOf(rounds, "closed edge", benchClosedEdge)
	open := bestOf(rounds, "open edge", benchOpenEdge)
	target := bestOf(rounds, "open hop target (503)", benchOpenTarget)

	overhead := closed.ns - bare.ns
	rep.check("breaker", "policy overhead per call ≤ 1 µs and ≤ 8 allocs (closed)", fmt.Sprintf("bare %.0f ns", bare.ns),
		fmt.Sprintf("edge %.0f ns (%d allocs)", closed.ns, closed.allocs),
		fmt.Sprintf("+%.2f µs", overhead/1e3), closed.cpu, overhead <= 1000 && closed.allocs <= 8)
	rep.check("breaker", "open-state rejection < 50 µs (edge)", "50 µs",
		fmt.Sprintf("%.2f µs (%d allocs)", open.ns/1e3, open.allocs), fmt.Sprintf("%.3f", open.ns/50e3), open.cpu, open.ns < 50e3)
	rep.check("breaker", "open-state rejection < 50 µs (hop → 503)", "50 µs",
		fmt.Sprintf("%.2f µs (%d allocs)", target.ns/1e3, target.allocs), fmt.Sprintf("%.3f", target.ns/50e3), target.cpu, target.ns < 50e3)
	rep.notef("breaker: best of %d runs of Go's benchmark harness, one goroutine; the edge is resilience.NewEdge with retry (3 attempts), breaker and a 2s timeout", rounds)
}

type benchResult struct {
	ns     float64
	allocs int64
	cpu    string // the process's CPU time per operation, GC included
}

// bestOf runs a benchmark rounds times and keeps the fastest, the run least
// disturbed by other work on the machine.
func bestOf(rounds int, name string, f func(*testing.B)) benchResult {
	var best benchResult
	for i := range max(1, rounds) {
		cpu := selfCPU()
		r := testing.Benchmark(f)
		cpu = selfCPU() - cpu
		ns := float64(r.T.Nanoseconds()) / float64(max(r.N, 1))
		if i == 0 || ns < best.ns {
			best = benchResult{ns: ns, allocs: r.AllocsPerOp(), cpu: cpuPer(cpu, int64(r.N), "op")}
		}
	}
	fmt.Printf("  %-24s %10.0f ns/op %4d allocs/op\n", name, best.ns, best.allocs)
	return best
}
