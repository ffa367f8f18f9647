package gateway

import (
	"context"
	"log/slog"
	"net"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// A start that fails, as it does when the broker is not there yet and the
// role retries it, returns the error: it used to stop a nil gateway and panic.
func TestStartThatFailsOnTheBrokerReturnsTheError(t *testing.T) {
	g := NewWithT(t)
	var wf v1alpha1.Workflow
	g.Expect(yaml.UnmarshalStrict([]byte(`apiVersion: patchbay.dev/v1alpha1
kind: Workflow
metadata: {name: w, namespace: default}
spec:
  style: async-orchestrated
  steps:
  - {name: only, image: demo}
`), &wf)).To(Succeed())
	p, err := topology.Compile(&wf)
	g.Expect(err).NotTo(HaveOccurred())

	// No server listens there: the client keeps retrying in the background.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	url := "nats://" + l.Addr().String()
	g.Expect(l.Close()).To(Succeed())
	log := slog.New(slog.DiscardHandler)
	conn, err := bus.Connect(bus.Options{URL: url, Name: "test"}, log)
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	g.Expect(conn.Ready()).To(MatchError(ContainSubstring("not connected to the broker at " + url)))

	tracing, err := telemetry.NewTracing(context.Background(), "", "test")
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gw, err := Start(ctx, Config{Plan: p, Conn: conn, Telemetry: telemetry.New(log, tracing)})
	g.Expect(err).To(HaveOccurred())
	g.Expect(gw).To(BeNil())
}
