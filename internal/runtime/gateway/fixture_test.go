package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bustest"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/orchestrator"
)

// env is an embedded broker with a workflow's plan, a connection for the
// test to play the other roles with, and the means to start gateways.
type env struct{ *bustest.Env }

func givenWorkflow(t *testing.T, name, spec string) *env {
	t.Helper()
	return &env{bustest.Given(t, name, spec)}
}

// gateway starts a gateway replica on a connection of its own.
func (e *env) gateway(t *testing.T, g Gomega) *Gateway {
	gw, err := Start(context.Background(), Config{Plan: e.Plan, Conn: bustest.Connect(t, e.URL), Telemetry: bustest.Telemetry()})
	g.Expect(err).NotTo(HaveOccurred())
	return gw
}

// orchestrator starts an async orchestrator on a connection of its own.
func (e *env) orchestrator(t *testing.T, g Gomega) *orchestrator.Async {
	orch, err := orchestrator.StartAsync(context.Background(), orchestrator.AsyncConfig{Plan: e.Plan, Conn: bustest.Connect(t, e.URL), Telemetry: bustest.Telemetry()})
	g.Expect(err).NotTo(HaveOccurred())
	return orch
}

// completing is the subject of the event that completes a run of the
// choreographed workflow.
func (e *env) completing(t *testing.T) string {
	t.Helper()
	for _, ev := range e.Plan.Events {
		if ev.Completes {
			return ev.Subject
		}
	}
	t.Fatal("the workflow has no completing event")
	return ""
}

// accepted starts a run through the gateway h with body, answered 202, and
// returns its id.
func accepted(g Gomega, h http.Handler, body string) string {
	w := do(h, http.MethodPost, "/", body)
	g.ExpectWithOffset(1, w.Code).To(Equal(http.StatusAccepted), w.Body.String())
	return w.Header().Get(contract.HeaderRunID)
}

// do sends a request to a gateway in process.
func do(h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}
