package hop

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// Target is one edge: where it calls, with which resilience, observed how.
// It is built once per edge and shared by every run.
type Target struct {
	Name      resilience.EdgeName
	headers   *contract.Contract
	url       string
	step      string
	edge      *resilience.Edge[*Response]
	transport http.RoundTripper
	metrics   *telemetry.Hop
	tracing   *telemetry.Tracing
	maxBody   int64
	spanName  string
}

// NewStepTarget is an edge that calls step's app (or the sidecar in front of it)
// at url with the step's full policy; source is the CloudEvents source of its calls.
func NewStepTarget(from string, step *plan.Step, url, source string, transport http.RoundTripper, tel *telemetry.Telemetry) (*Target, error) {
	headers, err := contract.NewContract(source, step.Name, tel.Tracing.Inject)
	if err != nil {
		return nil, err
	}
	name := resilience.EdgeName{From: from, To: step.Name}
	t := newTarget(name, step.Name, url, resilience.NewEdge[*Response](name, step.Policy, tel.EdgeHooks(), tel.Breakers), transport, tel)
	t.headers = headers
	return t, nil
}

// NewRelayTarget is a sync-chain edge from one sidecar to the next step's sidecar
// (see resilience.NewRelay).
func NewRelayTarget(from string, step *plan.Step, url string, transport http.RoundTripper, tel *telemetry.Telemetry) *Target {
	name := resilience.EdgeName{From: from, To: step.Name}
	rejected := func(r *Response) bool { return r.Rejected }
	return newTarget(name, step.Name, url, resilience.NewRelay[*Response](name, step.Policy, rejected, tel.EdgeHooks(), tel.Breakers), transport, tel)
}

func newTarget(name resilience.EdgeName, step, url string, edge *resilience.Edge[*Response], transport http.RoundTripper, tel *telemetry.Telemetry) *Target {
	return &Target{
		Name: name, url: url, step: step, edge: edge, transport: transport,
		metrics: tel.Metrics.Hop(name), tracing: tel.Tracing, maxBody: plan.DefaultMaxBodyLen,
		spanName: "call " + step,
	}
}

// Invoke calls the step with the step contract's headers. It returns the step's
// 2xx answer, or the run's error naming the step.
func (t *Target) Invoke(ctx context.Context, inv *contract.Invocation) (*Response, *contract.Error) {
	ctx, span := t.tracing.Start(ctx, t.spanName, trace.SpanKindClient)
	defer span.End()
	h := t.headers.Header(ctx, inv.RunID, inv.ContentType)
	inv.Event.SetHeaders(h)
	res := t.do(ctx, h, inv.Body)
	if res.Err == nil && res.Last.OK() {
		return res.Last, nil
	}
	e := t.Classify(ctx, res)
	e.RunID = inv.RunID
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("patchbay.attempts", res.Attempts), attribute.Int("http.response.status_code", e.Status))
		span.SetStatus(codes.Error, e.Message)
	}
	return nil, e
}

// Relay forwards a sync-chain hop to the next sidecar. Whatever that sidecar
// answers is returned as is (its errors already name the failed step); only a
// hop that never got an answer becomes a contract.Error.
func (t *Target) Relay(ctx context.Context, h http.Header, body []byte) (*Response, *contract.Error) {
	res := t.do(ctx, h, body)
	if res.Err == nil {
		return res.Last, nil
	}
	return nil, t.Classify(ctx, res)
}

// do runs the attempts under the edge's policies and records the call.
func (t *Target) do(ctx context.Context, h http.Header, body []byte) resilience.Result[*Response] {
	start := time.Now()
	res := t.edge.Do(ctx, func(ctx context.Context) (*Response, error) { return t.attempt(ctx, h, body) })
	t.metrics.Done(res.Err == nil && res.Last.OK(), res.Attempts, start)
	return res
}

// attempt is one request. The response body is read inside the attempt, so the
// per-attempt timeout covers a step that stalls mid-body too.
func (t *Target) attempt(ctx context.Context, h http.Header, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return nil, resilience.Permanent(err)
	}
	req.Header = h // shared by the attempts: nothing below writes to it
	resp, err := t.transport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	r := &Response{
		Status:      resp.StatusCode,
		ContentType: resp.Header.Get("Content-Type"),
		RetryAfter:  resilience.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Rejected:    resp.Header.Get(contract.HeaderRejected) != "",
		EventType:   resp.Header.Get(contract.CETypeHeader),
		Body:        contract.GetBuffer(),
	}
	if err := contract.ReadBody(r.Body, resp.Body, resp.ContentLength, t.maxBody); err != nil {
		r.Release()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, resilience.Permanent(err)
	}
	return r, nil
}
