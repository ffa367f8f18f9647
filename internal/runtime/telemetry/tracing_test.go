package telemetry

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
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

// collector is an OTLP/HTTP receiver: it decodes each export request and
// answers the first `refuse` of them 503 with Retry-After: 1.
type collector struct {
	mu      sync.Mutex
	refuse  int
	posts   int
	spans   []*tracepb.Span
	service []string
	headers []http.Header
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want a POST of application/x-protobuf to /v1/traces", http.StatusBadRequest)
		return
	}
	c.posts++
	c.headers = append(c.headers, r.Header.Clone())
	if c.posts <= c.refuse {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	b, _ := io.ReadAll(r.Body)
	for len(b) > 0 { // ExportTraceServiceRequest: repeated ResourceSpans resource_spans = 1
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			http.Error(w, "not an ExportTraceServiceRequest", http.StatusBadRequest)
			return
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			http.Error(w, "truncated", http.StatusBadRequest)
			return
		}
		b = b[n+m:]
		var rs tracepb.ResourceSpans
		if err := proto.Unmarshal(v, &rs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				c.service = append(c.service, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
}

func (c *collector) got() (posts int, spans []*tracepb.Span, service []string, headers []http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.posts, c.spans, c.service, c.headers
}

func TestWithAnEndpointSpansAreExportedOverOTLP(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken,x-tenant=a")
	c := &collector{refuse: 1}
	srv := httptest.NewServer(c)
	defer srv.Close()
	tr, err := NewTracing(context.Background(), srv.URL, "test")
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

	posts, spans, service, headers := c.got()
	g.Expect(posts).To(Equal(2), "the 503 is retried after its Retry-After")
	g.Expect(service).To(ConsistOf("test"))
	g.Expect(spans).To(HaveLen(1))
	g.Expect(spans[0].GetName()).To(Equal("hop"))
	g.Expect(spans[0].GetKind()).To(Equal(tracepb.Span_SPAN_KIND_CLIENT))
	g.Expect(hex.EncodeToString(spans[0].GetTraceId())).To(Equal("0af7651916cd43dd8448eb211c80319c"))
	g.Expect(hex.EncodeToString(spans[0].GetParentSpanId())).To(Equal("b7ad6b7169203331"))
	g.Expect(headers[1].Get("Authorization")).To(Equal("Bearer t0ken"))
	g.Expect(headers[1].Get("X-Tenant")).To(Equal("a"))
}

func TestAMalformedOTLPHeadersVariableIsRefusedByName(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization")
	_, err := NewTracing(context.Background(), "http://127.0.0.1:4318", "test")
	g.Expect(err).To(MatchError(ContainSubstring("OTEL_EXPORTER_OTLP_HEADERS")))
}
