package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// hopHeaders are connection-scoped and never forwarded (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// proxy streams a request to the app at path and its answer back, under the
// bulkhead. For a run's hop (invoke) it adds the step contract's headers when
// the caller did not send them.
func (s *Sidecar) proxy(w http.ResponseWriter, r *http.Request, path string, invoke bool) int {
	if r.ContentLength > s.plan.MaxBody() {
		return s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is over the limit of %d", r.ContentLength, s.plan.MaxBody()))
	}
	if !s.bulkhead.TryAcquirePermit() {
		return s.reject(w, r.Header.Get(contract.HeaderRunID))
	}
	defer s.bulkhead.ReleasePermit()

	target := s.appBase + path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	body := http.MaxBytesReader(w, r.Body, s.plan.MaxBody())
	out, err := http.NewRequestWithContext(r.Context(), r.Method, target, body)
	if err != nil {
		return s.fail(w, r, http.StatusBadRequest, err.Error())
	}
	out.ContentLength = r.ContentLength
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if invoke {
		switch {
		case out.Header.Get("Ce-Id") == "":
			s.addContract(r.Context(), out)
		case s.tel.Tracing.Exporting():
			// A span for this hop, child of the caller's; the app sees it as parent.
			ctx, span := s.tel.Tracing.Start(s.tel.Tracing.Extract(r.Context(), r.Header), s.spanName, trace.SpanKindServer)
			defer span.End()
			s.tel.Tracing.Inject(ctx, out.Header)
		}
	}
	resp, err := s.transport.RoundTrip(out)
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over the limit of %d bytes", s.plan.MaxBody()))
		case errors.Is(err, context.Canceled):
			return contract.StatusClientClosedRequest
		default:
			return s.fail(w, r, http.StatusBadGateway, fmt.Sprintf("step %s's app is unreachable: %v", s.step.Name, err))
		}
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	w.WriteHeader(resp.StatusCode)
	buf := copyBuffers.Get().(*[]byte)
	_, _ = io.CopyBuffer(w, resp.Body, *buf)
	copyBuffers.Put(buf)
	return resp.StatusCode
}

// addContract gives a hop that arrived without them the step contract's
// headers: a run ID, CloudEvents attributes and traceparent.
func (s *Sidecar) addContract(ctx context.Context, out *http.Request) {
	runID := out.Header.Get(contract.HeaderRunID)
	if runID == "" {
		runID = newRunID()
		out.Header.Set(contract.HeaderRunID, runID)
	}
	ctx = s.tel.Tracing.Extract(ctx, out.Header)
	for k, v := range s.contract.Header(ctx, runID, out.Header.Get("Content-Type")) {
		out.Header[k] = v
	}
}

// fail answers with a JSON error naming this step.
func (s *Sidecar) fail(w http.ResponseWriter, r *http.Request, code int, msg string) int {
	e := &contract.Error{Code: code, Step: s.step.Name, RunID: r.Header.Get(contract.HeaderRunID), Message: msg}
	e.Write(w)
	return code
}
