package resilience

import (
	"context"
	"testing"
	"time"
)

var benchOK = &outcome{status: 200}

// BenchmarkClosedEdge is a successful call through retry, a closed breaker and
// the per-attempt timeout: the policy overhead that make bench holds to ≤ 1 µs per call.
func BenchmarkClosedEdge(b *testing.B) {
	e := NewEdge[*outcome](EdgeName{From: "bench", To: "app"}, policy(3, 5, time.Hour), Hooks{}, NewRegistry())
	call := func(context.Context) (*outcome, error) { return benchOK, nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := e.Do(ctx, call); res.Err != nil || res.Attempts != 1 {
			b.Fatalf("closed edge: %v after %d attempts", res.Err, res.Attempts)
		}
	}
}
