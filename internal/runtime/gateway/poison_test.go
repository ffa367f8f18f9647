package gateway

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
	"github.com/patchbay-dev/patchbay/internal/topology"
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

	var wf v1alpha1.Workflow
	g.Expect(yaml.UnmarshalStrict([]byte(`apiVersion: patchbay.dev/v1alpha1
kind: Workflow
metadata: {name: poison, namespace: default}
spec:
  style: choreography
  entry: {sync: true, timeout: 5s, event: order.requested, completesOn: [order.confirmed]}
  steps:
  - {name: confirm, image: demo, subscribes: [order.requested], emits: [order.confirmed]}
`), &wf)).To(Succeed())
	p, err := topology.Compile(&wf)
	g.Expect(err).NotTo(HaveOccurred())
	var completes string
	for _, ev := range p.Events {
		if ev.Completes {
			completes = ev.Subject
		}
	}
	g.Expect(completes).NotTo(BeEmpty())

	url := natstest.Start(t)
	conn := func() *bus.Conn {
		c, err := bus.Connect(bus.Options{URL: url, Name: "test"}, slog.New(slog.DiscardHandler))
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(c.Close)
		return c
	}
	ctx := context.Background()
	test := conn()
	g.Expect(bus.EnsureResources(ctx, test.JS, p, test.Storage)).To(Succeed())
	runs, err := bus.WaitRuns(ctx, test.JS, p)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = runs.KV.Put(ctx, "r1", []byte("not a run record"))
	g.Expect(err).NotTo(HaveOccurred())
	dead := make(chan *nats.Msg, 8)
	_, err = test.NC.ChanSubscribe(p.Stream.DeadLetter, dead)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(test.NC.Flush()).To(Succeed())

	tracing, _ := telemetry.NewTracing(ctx, "", "test")
	gw, err := Start(ctx, Config{Plan: p, Conn: conn(), Telemetry: telemetry.New(slog.New(slog.DiscardHandler), tracing)})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(gw.Stop)

	h := nats.Header{contract.HeaderRunID: {"r1"}, "Content-Type": {"application/json"}}
	g.Expect(test.Publish(ctx, &nats.Msg{Subject: completes, Header: h, Data: []byte(`{"done":true}`)}, "done/r1")).To(Succeed())

	var m *nats.Msg
	g.Eventually(dead).WithTimeout(20 * time.Second).Should(Receive(&m))
	dl := bus.ParseDeadLetter("", "", m.Header, m.Data)
	g.Expect(dl.Step).To(Equal("gateway"))
	g.Expect(dl.RunID).To(Equal("r1"))
	g.Expect(dl.Subject).To(Equal(completes))
	g.Expect(dl.Attempts).To(Equal(bus.RoleMaxDeliver))

	cons, err := test.JS.Consumer(ctx, p.Stream.Name, p.Stream.CompletionDurable)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cons.CachedInfo().Config.MaxDeliver).To(Equal(bus.RoleConsumerMaxDeliver))
	g.Eventually(func(g Gomega) {
		info, err := cons.Info(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(info.Delivered.Stream).To(BeEquivalentTo(2), "the dead letter (stream sequence 2) was consumed too")
		g.Expect(info.NumPending).To(BeZero())
		g.Expect(info.NumAckPending).To(BeZero())
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Consistently(dead).WithTimeout(time.Second).ShouldNot(Receive())
}
