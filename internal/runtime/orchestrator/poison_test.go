package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
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

// A message that no redelivery can make right (no run id, a run id that is
// not a valid key, the result of a step the workflow does not have) is
// dead-lettered on its first delivery, with the reason, instead of dropped.
func TestAMessageNoRetryCanFixIsDeadLetteredAtOnce(t *testing.T) {
	g := NewWithT(t)
	env := givenAsyncWorkflow(t, "hopeless", `
style: async-orchestrated
steps:
- {name: only, image: demo}
`)
	p, test := env.Plan, env.Test
	ctx := context.Background()
	dead := env.Subscribe(t, p.Stream.DeadLetter)
	runs := env.Runs(t)
	// r2 is a pending run: a result of a step this orchestrator does not have
	// (another style's, during a switch that changed the steps) does not fail it.
	g.Expect(runs.Create(ctx, &bus.Run{ID: "r2", Status: bus.RunPending, Started: time.Now()})).To(Succeed())
	t.Cleanup(env.start(t, g).Stop)

	for name, tc := range map[string]struct {
		subject, runID, reason string
	}{
		"no run id":      {p.Stream.StartSubject, "", "has no " + contract.HeaderRunID},
		"invalid run id": {p.Stream.StartSubject, "not a key!", "run id"},
		"no such step":   {p.Stream.ResultPrefix + ".ghost", "r2", "is the result of no step"},
	} {
		h := nats.Header{"Content-Type": {"application/json"}}
		if tc.runID != "" {
			h[contract.HeaderRunID] = []string{tc.runID}
		}
		g.Expect(test.Publish(ctx, &nats.Msg{Subject: tc.subject, Header: h, Data: []byte(`{}`)}, "hopeless/"+name)).To(Succeed())
		var m *nats.Msg
		g.Eventually(dead).WithTimeout(20*time.Second).Should(Receive(&m), name)
		dl := bus.ParseDeadLetter("", "", m.Header, m.Data)
		g.Expect(dl.Subject).To(Equal(tc.subject), name)
		g.Expect(dl.RunID).To(Equal(tc.runID), name)
		g.Expect(dl.Attempts).To(Equal(1), name)
		g.Expect(dl.Error).To(ContainSubstring(tc.reason), name)
	}
	r, _, err := runs.Get(ctx, "r2")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.Status).To(Equal(bus.RunPending), "a result of no step of this orchestrator fails no run")
}
