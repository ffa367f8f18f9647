package bus

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"
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

// A consumer deleted while the client has no pull pending on the server (it
// holds the only message it asked for) gets no answer to tell it so: later
// pulls meet no responders and no heartbeats. Consume asks the server then,
// stops, and fails the connection, so that the role exits and is restarted.
func TestConsumeFailsTheConnectionWhenItsConsumerIsDeletedBetweenPulls(t *testing.T) {
	g := NewWithT(t)
	log := slog.New(slog.DiscardHandler)
	c, err := Connect(Options{URL: natstest.Start(t), Name: "test"}, log)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(c.Close)
	ctx := context.Background()
	s, err := c.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	g.Expect(err).NotTo(HaveOccurred())
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.JS.Publish(ctx, "s.1", []byte("1"))
	g.Expect(err).NotTo(HaveOccurred())

	held, release := make(chan struct{}), make(chan struct{})
	var stopping atomic.Bool
	_, err = c.Consume(cons, func(m jetstream.Msg) {
		close(held)
		<-release
		_ = m.Ack()
	}, &stopping, log, jetstream.PullMaxMessages(1), jetstream.PullExpiry(2*time.Second), jetstream.PullHeartbeat(500*time.Millisecond))
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(held).WithTimeout(10 * time.Second).Should(BeClosed())
	g.Expect(s.DeleteConsumer(ctx, "d")).To(Succeed())
	close(release)

	g.Eventually(c.Failed()).WithTimeout(30 * time.Second).Should(BeClosed())
	g.Expect(c.Err()).To(MatchError("consumer d stopped consuming"))
}
