package telemetry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing creates a span per hop when an OTLP endpoint is configured. Without
// one it creates none but still propagates W3C traceparent, starting a trace at
// the entry when the caller sent none, so apps can correlate their own logs.
type Tracing struct {
	tracer     trace.Tracer
	propagator propagation.TraceContext
	exporting  bool
	shutdown   func(context.Context) error
}

// NewTracing exports spans over OTLP/HTTP to endpoint, a collector's base URL
// such as http://otel-collector:4318 (spans go to its /v1/traces) or a full
// traces URL; an empty endpoint disables export.
func NewTracing(ctx context.Context, endpoint, service string, attrs ...attribute.KeyValue) (*Tracing, error) {
	if endpoint == "" {
		return &Tracing{tracer: noop.NewTracerProvider().Tracer(""), shutdown: func(context.Context) error { return nil }}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("OTLP endpoint %q is not an http(s) URL", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	client, err := newOTLPHTTP(u)
	if err != nil {
		return nil, err
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter for %s: %w", endpoint, err)
	}
	res := resource.NewSchemaless(append(attrs, attribute.String("service.name", service))...)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	return &Tracing{tracer: tp.Tracer("github.com/patchbay-dev/patchbay/runtime"), exporting: true, shutdown: tp.Shutdown}, nil
}

// Shutdown flushes pending spans.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// Extract returns ctx carrying the caller's trace context from h. When there is
// none and spans are not exported, it starts a new trace so that traceparent
// still reaches every app.
func (t *Tracing) Extract(ctx context.Context, h http.Header) context.Context {
	ctx = t.propagator.Extract(ctx, propagation.HeaderCarrier(h))
	if t.exporting || trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	var tid trace.TraceID
	var sid trace.SpanID
	putUint64(tid[:8], rand.Uint64())
	putUint64(tid[8:], rand.Uint64())
	putUint64(sid[:], rand.Uint64()|1) // never the all-zero invalid ID
	return trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
}

// Start starts a span (a no-op span without export).
func (t *Tracing) Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.exporting {
		return t.tracer.Start(ctx, name)
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// Exporting reports whether spans are exported; callers skip building
// attributes when they are not.
func (t *Tracing) Exporting() bool { return t.exporting }

// Inject writes ctx's trace context into h as traceparent (and tracestate).
func (t *Tracing) Inject(ctx context.Context, h http.Header) {
	t.propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}
