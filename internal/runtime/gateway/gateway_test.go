package gateway

import (
	"context"
	"net"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bustest"
)

// A start that fails, as it does when the broker is not there yet and the
// role retries it, returns the error: it used to stop a nil gateway and panic.
func TestStartThatFailsOnTheBrokerReturnsTheError(t *testing.T) {
	g := NewWithT(t)
	p := bustest.Compile(t, "w", `
style: async-orchestrated
steps:
- {name: only, image: demo}
`)

	// No server listens there: the client keeps retrying in the background.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	url := "nats://" + l.Addr().String()
	g.Expect(l.Close()).To(Succeed())
	conn := bustest.Connect(t, url)
	g.Expect(conn.Ready()).To(MatchError(ContainSubstring("not connected to the broker at " + url)))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gw, err := Start(ctx, Config{Plan: p, Conn: conn, Telemetry: bustest.Telemetry()})
	g.Expect(err).To(HaveOccurred())
	g.Expect(gw).To(BeNil())
}
