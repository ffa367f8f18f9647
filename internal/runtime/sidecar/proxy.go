package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// newProxy is the sidecar's streaming proxy to the app: httputil.ReverseProxy
// on the process's transport. It drops the hop-by-hop headers, those named in
// Connection included, keeps trailers and upgrades (RFC 9110 §7.6.1), and
// sends a request to path when path is set (a run's hop), else to the
// request's own path (dual support).
func (s *Sidecar) newProxy(path string) *httputil.ReverseProxy {
	app, err := url.Parse(s.appBase)
	if err != nil || app.Host == "" {
		app = &url.URL{Scheme: "http", Host: "127.0.0.1"}
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = app.Scheme, app.Host
			if path != "" {
				pr.Out.URL.Path, pr.Out.URL.RawPath = path, ""
			}
			pr.Out.Host = ""
		},
		Transport:    s.transport,
		BufferPool:   copyBuffers,
		ErrorHandler: s.proxyError,
	}
}

// bufferPool lends the proxies their copy buffers.
type bufferPool struct{ sync.Pool }

func (p *bufferPool) Get() []byte  { return *(p.Pool.Get().(*[]byte)) }
func (p *bufferPool) Put(b []byte) { p.Pool.Put(&b) }

var copyBuffers = &bufferPool{sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

// statusWriter remembers the status the proxy answered with.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (the proxy's flushes) reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

// proxy streams a request to the app and its answer back, under the bulkhead.
// For a run's hop (invoke) it adds the step contract's headers when the caller
// did not send them. It returns the status answered.
func (s *Sidecar) proxy(w http.ResponseWriter, r *http.Request, invoke bool) int {
	if r.ContentLength > s.plan.MaxBody() {
		return s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is over the limit of %d", r.ContentLength, s.plan.MaxBody()))
	}
	if !s.bulkhead.TryAcquirePermit() {
		return s.reject(w, r.Header.Get(contract.HeaderRunID))
	}
	defer s.bulkhead.ReleasePermit()

	r.Body = http.MaxBytesReader(w, r.Body, s.plan.MaxBody())
	rp := s.passProxy
	if invoke {
		rp = s.invokeProxy
		switch {
		case r.Header.Get("Ce-Id") == "":
			s.addContract(r.Context(), r.Header)
		case s.tel.Tracing.Exporting():
			// A span for this hop, child of the caller's; the app sees it as parent.
			ctx, span := s.tel.Tracing.Start(s.tel.Tracing.Extract(r.Context(), r.Header), s.spanName, trace.SpanKindServer)
			defer span.End()
			s.tel.Tracing.Inject(ctx, r.Header)
		}
	}
	sw := statusWriters.Get().(*statusWriter)
	sw.ResponseWriter, sw.code = w, 0
	rp.ServeHTTP(sw, r)
	code := sw.code
	sw.ResponseWriter = nil
	statusWriters.Put(sw)
	return code
}

// proxyError answers a request the app did not answer. The status it writes
// is what proxy returns.
func (s *Sidecar) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over the limit of %d bytes", s.plan.MaxBody()))
	case errors.Is(err, context.Canceled) || r.Context().Err() != nil:
		// The caller left: nobody reads an answer.
		if sw, ok := w.(*statusWriter); ok {
			sw.code = contract.StatusClientClosedRequest
		}
	default:
		s.fail(w, r, http.StatusBadGateway, fmt.Sprintf("step %s's app is unreachable: %v", s.step.Name, err))
	}
}

// addContract gives a hop that arrived without them the step contract's
// headers: a run ID, CloudEvents attributes and traceparent.
func (s *Sidecar) addContract(ctx context.Context, h http.Header) {
	runID := h.Get(contract.HeaderRunID)
	if runID == "" {
		runID = newRunID()
		h.Set(contract.HeaderRunID, runID)
	}
	ctx = s.tel.Tracing.Extract(ctx, h)
	for k, v := range s.contract.Header(ctx, runID, h.Get("Content-Type")) {
		h[k] = v
	}
}

// fail answers with a JSON error naming this step.
func (s *Sidecar) fail(w http.ResponseWriter, r *http.Request, code int, msg string) int {
	e := &contract.Error{Code: code, Step: s.step.Name, RunID: r.Header.Get(contract.HeaderRunID), Message: msg}
	e.Write(w)
	return code
}
