package sidecar

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// orchestratedPlan is one step the orchestrator calls: its sidecar proxies a
// run's hop to the app.
func orchestratedPlan(path string) *plan.Plan {
	return &plan.Plan{Version: plan.Version, Namespace: "ns", Workflow: "wf", Style: v1alpha1.StyleSyncOrchestrated,
		Entry: plan.Entry{Kind: plan.EntryOrchestrator, Timeout: plan.D(10 * time.Second)},
		Steps: []plan.Step{{Name: "only", Mode: plan.ModeOrchestrated, App: plan.App{Path: path},
			Policy: plan.Policy{Bulkhead: plan.Bulkhead{MaxConcurrent: 4}}}}}
}

// TestProxyDropsHopByHopHeadersAndKeepsTrailers sends a raw request whose
// Connection header names a header of its own, and an app answer that does the
// same and ends with a trailer: neither named header crosses the sidecar, in
// either direction, and the trailer reaches the caller.
func TestProxyDropsHopByHopHeadersAndKeepsTrailers(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		p          *plan.Plan
	}{
		{"a run's hop", "/", orchestratedPlan("/run")},
		{"dual support", "/orders/7", chainPlan(plan.Step{Name: "only", App: plan.App{Path: "/run"}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			seen := make(chan http.Header, 1)
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Clone()
				w.Header().Set("Connection", "X-App-Hop")
				w.Header().Set("X-App-Hop", "private")
				w.Header().Set("X-App-Kept", "public")
				w.Header().Set("Trailer", "X-Checksum")
				_, _ = io.Copy(w, r.Body)
				w.Header().Set("X-Checksum", "abc")
			}))
			defer app.Close()
			sc, err := New(Config{Plan: tc.p, Step: "only", AppURL: app.URL, Resolver: contract.StaticResolver{}, Telemetry: testTelemetry()})
			g.Expect(err).NotTo(HaveOccurred())
			srv := httptest.NewServer(sc)
			defer srv.Close()

			conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			g.Expect(err).NotTo(HaveOccurred())
			defer conn.Close()
			body := `{"a":1}`
			_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
				"Connection: keep-alive, X-Caller-Hop\r\nX-Caller-Hop: secret\r\nX-Caller-Kept: yes\r\nTe: trailers\r\n\r\n%s", tc.path, len(body), body)
			g.Expect(err).NotTo(HaveOccurred())
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			g.Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			g.Expect(err).NotTo(HaveOccurred())

			g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
			g.Expect(string(got)).To(Equal(body))
			var in http.Header
			g.Eventually(seen).Should(Receive(&in))
			g.Expect(in.Get("X-Caller-Hop")).To(BeEmpty(), "a header named in the caller's Connection reached the app")
			g.Expect(in.Get("X-Caller-Kept")).To(Equal("yes"))
			g.Expect(resp.Header.Get("X-App-Hop")).To(BeEmpty(), "a header named in the app's Connection reached the caller")
			g.Expect(resp.Header.Get("X-App-Kept")).To(Equal("public"))
			g.Expect(resp.Trailer.Get("X-Checksum")).To(Equal("abc"), "the app's trailer was dropped")
		})
	}
}

// TestProxyAnswersForAnAppThatIsDown: a hop to an app that does not listen
// is the sidecar's 502 naming the step, not an empty answer.
func TestProxyAnswersForAnAppThatIsDown(t *testing.T) {
	g := NewWithT(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	addr := l.Addr().String()
	g.Expect(l.Close()).To(Succeed())
	sc, err := New(Config{Plan: orchestratedPlan("/run"), Step: "only", AppURL: "http://" + addr, Resolver: contract.StaticResolver{}, Telemetry: testTelemetry()})
	g.Expect(err).NotTo(HaveOccurred())
	rec := httptest.NewRecorder()
	sc.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`)))
	g.Expect(rec.Code).To(Equal(http.StatusBadGateway))
	g.Expect(rec.Body.String()).To(ContainSubstring("step only's app is unreachable"))
}
