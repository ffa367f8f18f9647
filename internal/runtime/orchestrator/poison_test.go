package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
)

// A message the orchestrator fails on every time (here: a run start whose run
// record is not readable) is tried bus.RoleMaxDeliver times, then ends as one
// dead letter with the reason, and is not delivered again.
func TestAPoisonMessageEndsAsOneDeadLetter(t *testing.T) {
	g := NewWithT(t)
	saved := redeliveryDelay
	redeliveryDelay = func(int) time.Duration { return 10 * time.Millisecond }
	t.Cleanup(func() { redeliveryDelay = saved })

	env := givenAsyncWorkflow(t, "poison", `
style: async-orchestrated
steps:
- {name: only, image: demo}
`)
	p := env.Plan
	_, err := env.runs.KV.Put(context.Background(), "r1", []byte("not a run record"))
	g.Expect(err).NotTo(HaveOccurred())
	dead := env.Subscribe(t, p.Stream.DeadLetter)

	env.Publish(t, p.Stream.StartSubject, "r1", nil, `{}`)

	t.Cleanup(env.start(t, g).Stop)

	var m *nats.Msg
	g.Eventually(dead).WithTimeout(20 * time.Second).Should(Receive(&m))
	dl := bus.ParseDeadLetter("", "", m.Header, m.Data)
	g.Expect(dl.Step).To(Equal(plan.OrchestratorRole))
	g.Expect(dl.RunID).To(Equal("r1"))
	g.Expect(dl.Subject).To(Equal(p.Stream.StartSubject))
	g.Expect(dl.Attempts).To(Equal(bus.RoleMaxDeliver))
	g.Expect(dl.Error).To(ContainSubstring("failed on this message 10 times"))
	g.Expect(string(dl.Payload)).To(Equal(`{}`))

	// Terminated: nothing pending or awaiting an ack, and no second dead letter.
	env.ExpectSettled(g, p.Stream.OrchestratorDurable)
	g.Consistently(dead).WithTimeout(time.Second).ShouldNot(Receive())
}
