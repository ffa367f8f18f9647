package bus

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// The client reconnects for ever; between passes over the servers it backs
// off from 250ms to 5s, with jitter, and never stops.
func TestReconnectDelayBacksOffAndStaysBounded(t *testing.T) {
	g := NewWithT(t)
	within := func(d time.Duration) OmegaMatcher {
		return And(BeNumerically(">=", d), BeNumerically("<=", d+d/5))
	}
	g.Expect(reconnectDelay(1)).To(within(250 * time.Millisecond))
	g.Expect(reconnectDelay(2)).To(within(500 * time.Millisecond))
	g.Expect(reconnectDelay(3)).To(within(time.Second))
	for _, n := range []int{6, 7, 64, 1 << 20} {
		g.Expect(reconnectDelay(n)).To(within(5*time.Second), "attempt %d", n)
	}
}
