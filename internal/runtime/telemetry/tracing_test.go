package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/trace"
)

func TestWithoutAnEndpointTraceparentIsStillPropagated(t *testing.T) {
	g := NewWithT(t)
	tr, err := NewTracing(context.Background(), "", "test")
	g.Expect(err).NotTo(HaveOccurred())

	// No caller trace: one is started, so apps still get a traceparent.
	ctx := tr.Extract(context.Background(), http.Header{})
	ctx, span := tr.Start(ctx, "hop", trace.SpanKindClient)
	span.End()
	h := http.Header{}
	tr.Inject(ctx, h)
	g.Expect(h.Get("Traceparent")).To(MatchRegexp(`^00-[0-9a-f]{32}-[0-9a-f]{16}-00$`))

	// A caller's trace passes through unchanged.
	in := http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	ctx = tr.Extract(context.Background(), in)
	ctx, span = tr.Start(ctx, "hop", trace.SpanKindClient)
	span.End()
	out := http.Header{}
	tr.Inject(ctx, out)
	g.Expect(out.Get("Traceparent")).To(Equal(in.Get("Traceparent")))
}

func TestWithAnEndpointSpansAreExportedOverOTLP(t *testing.T) {
	g := NewWithT(t)
	var exports atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			exports.Add(1)
		}
	}))
	defer collector.Close()
	tr, err := NewTracing(context.Background(), collector.URL, "test")
	g.Expect(err).NotTo(HaveOccurred())

	in := http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	ctx, span := tr.Start(tr.Extract(context.Background(), in), "hop", trace.SpanKindClient)
	g.Expect(span.IsRecording()).To(BeTrue())
	out := http.Header{}
	tr.Inject(ctx, out)
	g.Expect(out.Get("Traceparent")).To(HavePrefix("00-0af7651916cd43dd8448eb211c80319c-"), "same trace")
	g.Expect(out.Get("Traceparent")).NotTo(Equal(in.Get("Traceparent")), "a new span")
	span.End()
	g.Expect(tr.Shutdown(context.Background())).To(Succeed())
	g.Expect(exports.Load()).To(BeNumerically(">=", 1))
}
