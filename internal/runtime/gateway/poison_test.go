package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
)

// A completion the gateway fails on every time (here: the run's record is not
// readable) is tried bus.RoleMaxDeliver times, then ends as one dead letter;
// that dead letter, which fails the same way, is given up on without a
// second one, and nothing is delivered again.
func TestAPoisonCompletionEndsAsOneDeadLetter(t *testing.T) {
	g := NewWithT(t)
	saved := redeliveryDelay
	redeliveryDelay = func(int) time.Duration { return 10 * time.Millisecond }
	t.Cleanup(func() { redeliveryDelay = saved })

	e := givenWorkflow(t, "poison", `
style: choreography
entry: {sync: true, timeout: 5s, event: order.requested, completesOn: [order.confirmed]}
steps:
- {name: confirm, image: demo, subscribes: [order.requested], emits: [order.confirmed]}
`)
	p := e.Plan
	completes := e.completing(t)

	ctx := context.Background()
	_, err := e.Runs(t).KV.Put(ctx, "r1", []byte("not a run record"))
	g.Expect(err).NotTo(HaveOccurred())
	dead := e.Subscribe(t, p.Stream.DeadLetter)

	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)

	e.Publish(t, completes, "r1", nil, `{"done":true}`)

	var m *nats.Msg
	g.Eventually(dead).WithTimeout(20 * time.Second).Should(Receive(&m))
	dl := bus.ParseDeadLetter("", "", m.Header, m.Data)
	g.Expect(dl.Step).To(Equal("gateway"))
	g.Expect(dl.RunID).To(Equal("r1"))
	g.Expect(dl.Subject).To(Equal(completes))
	g.Expect(dl.Attempts).To(Equal(bus.RoleMaxDeliver))

	g.Eventually(func(g Gomega) {
		cons, err := e.Test.JS.Consumer(ctx, p.Stream.Name, p.Stream.CompletionDurable)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(cons.CachedInfo().Delivered.Stream).To(BeEquivalentTo(2), "the dead letter (stream sequence 2) was consumed too")
	}).WithTimeout(10 * time.Second).Should(Succeed())
	e.ExpectSettled(g, p.Stream.CompletionDurable)
	g.Consistently(dead).WithTimeout(time.Second).ShouldNot(Receive())
}
