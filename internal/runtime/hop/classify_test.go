package hop

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// A caller that goes away ends the run with contract.StatusClientClosedRequest, the one
// code every role checks to skip logging and retrying an answer nobody reads.
func TestClassifyCanceledCallerIsClientClosedRequest(t *testing.T) {
	g := NewWithT(t)
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer app.Close()
	defer close(release)
	tracing, err := telemetry.NewTracing(context.Background(), "", "test")
	g.Expect(err).NotTo(HaveOccurred())
	tel := telemetry.New(slog.New(slog.DiscardHandler), tracing)
	step := &plan.Step{Name: "charge", Policy: plan.Policy{
		Timeout:        plan.D(time.Minute),
		Retry:          plan.Retry{Attempts: 3, Backoff: "constant", InitialDelay: plan.D(time.Millisecond), MaxDelay: plan.D(time.Millisecond)},
		CircuitBreaker: plan.CircuitBreaker{ConsecutiveFailures: 5, OpenDuration: plan.D(time.Minute), HalfOpenRequests: 1},
	}}
	target, err := NewStepTarget("orchestrator", step, app.URL+"/", "/test", NewTransport(), tel)
	g.Expect(err).NotTo(HaveOccurred())

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, herr := target.Invoke(ctx, &contract.Invocation{RunID: "r1", Body: []byte("{}")})
	g.Expect(herr).To(HaveOccurred())
	g.Expect(herr.Code).To(Equal(contract.StatusClientClosedRequest))
	g.Expect(contract.StatusClientClosedRequest).To(Equal(499))
}
