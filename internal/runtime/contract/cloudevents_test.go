package contract

import (
	"context"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func TestStepHeadersFollowTheStepContract(t *testing.T) {
	g := NewWithT(t)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	inject := func(ctx context.Context, h http.Header) {
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
	}
	c, err := NewContract(SourceOf("ns", "wf", "orchestrator"), "charge", inject)
	g.Expect(err).NotTo(HaveOccurred())
	h := c.Header(ctx, "r1", "text/plain")
	g.Expect(h.Get("Ce-Specversion")).To(Equal("1.0"))
	g.Expect(h.Get("Ce-Id")).To(Equal("r1.charge"))
	g.Expect(h.Get("Ce-Type")).To(Equal(EventType))
	g.Expect(h.Get("Ce-Source")).To(Equal("/patchbay/ns/wf/orchestrator"))
	g.Expect(h.Get("Ce-Subject")).To(Equal("charge"))
	g.Expect(h.Get("Content-Type")).To(Equal("text/plain"))
	g.Expect(h.Get(HeaderRunID)).To(Equal("r1"))
	g.Expect(h.Get("Traceparent")).To(Equal("00-01000000000000000000000000000000-0200000000000000-01"))
}

func TestContractHeadersOfCallsAreIndependent(t *testing.T) {
	g := NewWithT(t)
	c, err := NewContract("/s", "step", func(context.Context, http.Header) {})
	g.Expect(err).NotTo(HaveOccurred())
	a, b := c.Header(context.Background(), "a", ""), c.Header(context.Background(), "b", "text/csv")
	g.Expect(a.Get("Ce-Id")).To(Equal("a.step"))
	g.Expect(a.Get("Content-Type")).To(Equal("application/json"))
	g.Expect(b.Get("Ce-Id")).To(Equal("b.step"))
	g.Expect(b.Get("Content-Type")).To(Equal("text/csv"))
}
