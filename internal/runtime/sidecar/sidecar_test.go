package sidecar

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

func testTelemetry() *telemetry.Telemetry {
	tracing, _ := telemetry.NewTracing(context.Background(), "", "test")
	return telemetry.New(slog.New(slog.DiscardHandler), tracing)
}

func chainPlan(steps ...plan.Step) *plan.Plan {
	for i := range steps {
		steps[i].Mode = plan.ModeChain
		steps[i].Policy = plan.Policy{Timeout: plan.D(time.Second), Retry: plan.Retry{Attempts: 1},
			CircuitBreaker: plan.CircuitBreaker{ConsecutiveFailures: 5, OpenDuration: plan.D(time.Second), HalfOpenRequests: 1},
			Bulkhead:       plan.Bulkhead{MaxConcurrent: 4}}
	}
	return &plan.Plan{Version: plan.Version, Namespace: "ns", Workflow: "wf", Style: v1alpha1.StyleSyncChain,
		Entry: plan.Entry{Kind: plan.EntryStep, Step: steps[0].Name, Timeout: plan.D(10 * time.Second)}, Steps: steps}
}

func TestOtherRequestsPassThroughToTheApp(t *testing.T) {
	g := NewWithT(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen", r.Method+" "+r.URL.RequestURI())
		_, _ = io.WriteString(w, "read model")
	}))
	defer app.Close()
	sc, err := New(Config{Plan: chainPlan(plan.Step{Name: "only", App: plan.App{Path: "/run"}}), Step: "only",
		AppURL: app.URL, Resolver: contract.StaticResolver{}, Telemetry: testTelemetry()})
	g.Expect(err).NotTo(HaveOccurred())
	srv := httptest.NewServer(sc)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/orders/7?full=1")
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get("X-Seen")).To(Equal("GET /orders/7?full=1"))
	g.Expect(string(body)).To(Equal("read model"))
}

func TestChainRunsCallTheAppAtItsPath(t *testing.T) {
	g := NewWithT(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.Expect(r.URL.Path).To(Equal("/run"))
		_, _ = io.Copy(w, r.Body)
	}))
	defer app.Close()
	sc, err := New(Config{Plan: chainPlan(plan.Step{Name: "only", App: plan.App{Path: "/run"}}), Step: "only",
		AppURL: app.URL, Resolver: contract.StaticResolver{}, Telemetry: testTelemetry()})
	g.Expect(err).NotTo(HaveOccurred())
	rec := httptest.NewRecorder()
	sc.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", http.NoBody))
	g.Expect(rec.Code).To(Equal(http.StatusOK), rec.Body.String())
}

func TestNewRefusesWhatASidecarCannotRun(t *testing.T) {
	g := NewWithT(t)
	_, err := New(Config{Plan: chainPlan(plan.Step{Name: "a"}), Step: "b", Telemetry: testTelemetry()})
	g.Expect(err).To(MatchError(ContainSubstring(`no step "b"`)))

	join := chainPlan(plan.Step{Name: "a", Output: plan.Output{Next: []string{"b", "c"}}},
		plan.Step{Name: "b", DependsOn: []string{"a"}, Output: plan.Output{Next: []string{"d"}}},
		plan.Step{Name: "c", DependsOn: []string{"a"}, Output: plan.Output{Next: []string{"d"}}},
		plan.Step{Name: "d", DependsOn: []string{"b", "c"}})
	g.Expect(ValidateChain(join)).To(MatchError(ContainSubstring("cannot join branches")))
}

// watchedBody records whether anything read it.
type watchedBody struct {
	read atomic.Bool
	io.Reader
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.Reader.Read(p)
}

func TestChainRejectsOverTheBulkheadBeforeReadingTheBody(t *testing.T) {
	g := NewWithT(t)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = io.Copy(w, r.Body)
	}))
	defer app.Close()
	defer close(release)
	p := chainPlan(plan.Step{Name: "only"})
	p.Steps[0].Policy.Bulkhead.MaxConcurrent = 1
	sc, err := New(Config{Plan: p, Step: "only", AppURL: app.URL, Resolver: contract.StaticResolver{}, Telemetry: testTelemetry()})
	g.Expect(err).NotTo(HaveOccurred())

	first := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		sc.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}")))
		first <- rec.Code
	}()
	g.Eventually(entered).WithTimeout(5 * time.Second).Should(Receive())

	body := &watchedBody{Reader: strings.NewReader(`{"big":"body"}`)}
	rec := httptest.NewRecorder()
	sc.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", body))
	g.Expect(rec.Code).To(Equal(http.StatusServiceUnavailable), rec.Body.String())
	g.Expect(rec.Header().Get(contract.HeaderRejected)).To(Equal("bulkhead"))
	g.Expect(rec.Header().Get("Retry-After")).To(Equal("1"), "a bulkhead's 503 says when to retry, as the gateway's does")
	g.Expect(body.read.Load()).To(BeFalse(), "the body was read before the bulkhead decided")

	release <- struct{}{}
	g.Eventually(first).WithTimeout(5 * time.Second).Should(Receive(Equal(http.StatusOK)))
}
