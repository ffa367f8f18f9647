package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// env is an embedded broker with a workflow's plan, a connection for the
// test to play the other roles with, and the means to start gateways.
type env struct {
	p    *plan.Plan
	url  string
	test *bus.Conn
}

func givenWorkflow(t *testing.T, g Gomega, manifest string) *env {
	t.Helper()
	var wf v1alpha1.Workflow
	g.Expect(yaml.UnmarshalStrict([]byte(manifest), &wf)).To(Succeed())
	p, err := topology.Compile(&wf)
	g.Expect(err).NotTo(HaveOccurred())
	e := &env{p: p, url: natstest.Start(t)}
	e.test = e.conn(t, g)
	// What the manager makes on a Broker.
	g.Expect(bus.EnsureResources(context.Background(), e.test.JS, p, e.test.Storage)).To(Succeed())
	return e
}

// conn is a new connection to the broker, closed when the test ends.
func (e *env) conn(t *testing.T, g Gomega) *bus.Conn {
	c, err := bus.Connect(bus.Options{URL: e.url, Name: "test"}, slog.New(slog.DiscardHandler))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(c.Close)
	return c
}

// gateway starts a gateway replica on a connection of its own.
func (e *env) gateway(t *testing.T, g Gomega) *Gateway {
	tracing, _ := telemetry.NewTracing(context.Background(), "", "test")
	gw, err := Start(context.Background(), Config{Plan: e.p, Conn: e.conn(t, g), Telemetry: telemetry.New(slog.New(slog.DiscardHandler), tracing)})
	g.Expect(err).NotTo(HaveOccurred())
	return gw
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
