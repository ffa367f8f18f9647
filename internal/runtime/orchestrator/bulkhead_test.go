package orchestrator

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bustest"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// The orchestrator serves at most the workflow's bulkhead maxConcurrent runs
// at once; one more is answered 503 with Retry-After, without reaching a step.
func TestOrchestratorShedsRunsOverItsBulkhead(t *testing.T) {
	g := NewWithT(t)
	p := bustest.Compile(t, "bounded", `
style: sync-orchestrated
resilience: {bulkhead: {maxConcurrent: 1}}
steps:
- {name: only, image: demo}
`)
	entered, release := make(chan struct{}, 2), make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done(): // a run that should have been rejected
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer app.Close()
	o, err := New(Config{Plan: p, Resolver: contract.StaticResolver{"only": app.URL}, Telemetry: bustest.Telemetry()})
	g.Expect(err).NotTo(HaveOccurred())

	post := func() *httptest.ResponseRecorder {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", strings.NewReader(`{}`))
		r.Header.Set("Content-Type", "application/json")
		o.ServeHTTP(rec, r)
		return rec
	}
	first := make(chan int, 1)
	go func() { first <- post().Code }()
	g.Eventually(entered).WithTimeout(5 * time.Second).Should(Receive())

	rec := post()
	g.Expect(rec.Code).To(Equal(http.StatusServiceUnavailable), rec.Body.String())
	g.Expect(rec.Header().Get("Retry-After")).To(Equal("1"))
	g.Expect(rec.Header().Get(contract.HeaderRejected)).To(Equal("bulkhead"))
	g.Expect(rec.Body.String()).To(ContainSubstring("bulkhead maxConcurrent 1"))
	g.Expect(entered).NotTo(Receive(), "the rejected run reached the step")

	close(release)
	g.Eventually(first).WithTimeout(5 * time.Second).Should(Receive(Equal(http.StatusOK)))
	g.Expect(post().Code).To(Equal(http.StatusOK), "the permit was not given back")
}
