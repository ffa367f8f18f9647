package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// otlpHTTP is the otlptrace.Client of the span exporter: OTLP/HTTP with a
// binary protobuf body, as the OTLP specification defines it (POST to
// /v1/traces, Content-Type application/x-protobuf, retried on 429, 502, 503
// and 504 with the collector's Retry-After).
//
// otlptrace (the SDK's OTLP exporter) turns the spans into OTLP messages; this
// client only sends them. It stands in for otlptracehttp, whose configuration
// package links gRPC into every binary that imports it: about 7 MB of the
// sidecar binary and 4.7 MiB of its resident memory, against the sidecar's
// 20 MiB budget (make bench). It honours the standard environment variables
// OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_TIMEOUT (and their TRACES_
// forms).
type otlpHTTP struct {
	url     string
	header  http.Header
	timeout time.Duration
	client  *http.Client
	retry   failsafe.Executor[exportAnswer]
}

// exportAnswer is what the collector answered an export.
type exportAnswer struct {
	status     int
	retryAfter time.Duration
	message    []byte
}

// otlpDefaultTimeout is OTEL_EXPORTER_OTLP_TIMEOUT's default.
const otlpDefaultTimeout = 10 * time.Second

func newOTLPHTTP(u *url.URL) (*otlpHTTP, error) {
	header, err := otlpHeaders(otlpEnv("HEADERS"))
	if err != nil {
		return nil, err
	}
	timeout := otlpDefaultTimeout
	if v := otlpEnv("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_TIMEOUT %q: want a positive number of milliseconds", v)
		}
		timeout = time.Duration(ms) * time.Millisecond
	}
	retryable := func(a exportAnswer, err error) bool {
		if err != nil {
			return true
		}
		switch a.status {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	rp := retrypolicy.NewBuilder[exportAnswer]().
		HandleIf(retryable).
		ReturnLastFailure().
		WithMaxAttempts(3).
		WithBackoff(time.Second, 5*time.Second).
		WithDelayFunc(func(exec failsafe.ExecutionAttempt[exportAnswer]) time.Duration {
			if ra := exec.LastResult().retryAfter; ra > 0 {
				return ra
			}
			return -1
		}).
		Build()
	return &otlpHTTP{url: u.String(), header: header, timeout: timeout, client: &http.Client{}, retry: failsafe.With(rp)}, nil
}

// otlpEnv is OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name>.
func otlpEnv(name string) string {
	if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
		return v
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_" + name)
}

// otlpHeaders parses the W3C-baggage-like list of OTEL_EXPORTER_OTLP_HEADERS:
// key=value pairs separated by commas, values URL-encoded.
func otlpHeaders(s string) (http.Header, error) {
	h := http.Header{}
	for pair := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_HEADERS: %q is not key=value", pair)
		}
		value, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_HEADERS: value of %s: %w", k, err)
		}
		h.Add(k, value)
	}
	return h, nil
}

func (c *otlpHTTP) Start(context.Context) error { return nil }

func (c *otlpHTTP) Stop(context.Context) error {
	c.client.CloseIdleConnections()
	return nil
}

// UploadTraces sends one ExportTraceServiceRequest. Its only field is
// repeated ResourceSpans resource_spans = 1, so the request is the spans'
// encodings, each behind that field's tag.
func (c *otlpHTTP) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	var body []byte
	for _, rs := range spans {
		b, err := proto.Marshal(rs)
		if err != nil {
			return err
		}
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendBytes(body, b)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	a, err := c.retry.WithContext(ctx).GetWithExecution(func(exec failsafe.Execution[exportAnswer]) (exportAnswer, error) {
		return c.post(exec.Context(), body)
	})
	if err != nil {
		return fmt.Errorf("OTLP export to %s: %w", c.url, err)
	}
	if a.status/100 != 2 {
		return fmt.Errorf("OTLP export to %s: %d %s %s", c.url, a.status, http.StatusText(a.status), bytes.TrimSpace(a.message))
	}
	return nil
}

// post sends one attempt of an export.
func (c *otlpHTTP) post(ctx context.Context, body []byte) (exportAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return exportAnswer{}, err
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := c.client.Do(req)
	if err != nil {
		return exportAnswer{}, err
	}
	defer resp.Body.Close()
	// Read (a bounded part of) the answer, so that the connection is reused.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	a := exportAnswer{status: resp.StatusCode, message: msg}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		a.retryAfter = time.Duration(s) * time.Second
	}
	return a, nil
}
