package orchestrator

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/bustest"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// A run lives in the runs bucket, not in an orchestrator: a second
// orchestrator finishes a run the first one started and then stopped.
func TestASecondOrchestratorFinishesARunTheFirstStarted(t *testing.T) {
	g := NewWithT(t)
	env := givenAsyncWorkflow(t, g, `apiVersion: patchbay.dev/v1alpha1
kind: Workflow
metadata: {name: handoff, namespace: default}
spec:
  style: async-orchestrated
  steps:
  - {name: first, image: demo}
  - {name: second, image: demo, dependsOn: [first]}
`)
	p := env.p
	ctx := context.Background()
	// The test plays the gateway and the steps' sidecars.
	test, runs := env.test, env.runs
	commands := make(chan *nats.Msg, 8)
	command := func(step string) string { return p.Step(step).Consumers[0].FilterSubject }
	for _, step := range []string{"first", "second"} {
		_, err := test.NC.ChanSubscribe(command(step), commands)
		g.Expect(err).NotTo(HaveOccurred())
	}
	outcomes := make(chan *nats.Msg, 8)
	inbox := test.NC.NewInbox()
	_, err := test.NC.ChanSubscribe(inbox, outcomes)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(test.NC.Flush()).To(Succeed())

	a := env.start(t, g)
	g.Expect(runs.Create(ctx, &bus.Run{ID: "r1", Status: bus.RunPending, Started: time.Now(), ReplyTo: inbox})).To(Succeed())
	publish := func(subject string, h nats.Header, body string) {
		h[contract.HeaderRunID] = []string{"r1"}
		h["Content-Type"] = []string{"application/json"}
		g.Expect(test.Publish(ctx, &nats.Msg{Subject: subject, Header: h, Data: []byte(body)}, subject+"/r1")).To(Succeed())
	}
	publish(p.Stream.StartSubject, nats.Header{}, `{"id":1}`)

	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(command("first")))
	g.Expect(m.Data).To(MatchJSON(`{"id":1}`))
	a.Stop()

	// first's result arrives while no orchestrator runs; a new one continues.
	publish(p.Step("first").Output.ResultSubject, nats.Header{contract.HeaderStatus: {contract.ResultOK}}, `{"id":1,"first":true}`)
	b := env.start(t, g)
	t.Cleanup(b.Stop)
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(command("second")))
	g.Expect(m.Data).To(MatchJSON(`{"id":1,"first":true}`))
	publish(p.Step("second").Output.ResultSubject, nats.Header{contract.HeaderStatus: {contract.ResultOK}}, `{"id":1,"first":true,"second":true}`)

	g.Eventually(outcomes).WithTimeout(20 * time.Second).Should(Receive(&m))
	var r bus.Run
	g.Expect(json.Unmarshal(m.Data, &r)).To(Succeed())
	g.Expect(r.Status).To(Equal(bus.RunSucceeded))
	result, _, err := test.Payload(ctx, p, r.Result)
	g.Expect(err).NotTo(HaveOccurred(), "the record refers to the sink's result message")
	g.Expect(result).To(MatchJSON(`{"id":1,"first":true,"second":true}`))
	stored, _, err := runs.Get(ctx, "r1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(stored.Status).To(Equal(bus.RunSucceeded))
}

// asyncEnv is an embedded broker with a workflow's stream and runs bucket, a
// connection for the test to play the gateway and the steps with, and the
// means to start orchestrators on it.
type asyncEnv struct {
	p    *plan.Plan
	test *bus.Conn
	runs *bus.Runs
	url  string
}

func givenAsyncWorkflow(t *testing.T, g Gomega, manifest string) *asyncEnv {
	t.Helper()
	b := bustest.Given(t, manifest)
	e := &asyncEnv{p: b.Plan, test: b.Test, url: b.URL}
	var err error
	e.runs, err = bus.WaitRuns(context.Background(), e.test.JS, e.p)
	g.Expect(err).NotTo(HaveOccurred())
	return e
}

// conn is a new connection to the broker, closed when the test ends.
func (e *asyncEnv) conn(t *testing.T, _ Gomega) *bus.Conn {
	return bustest.Connect(t, e.url)
}

// start starts an orchestrator on a connection of its own.
func (e *asyncEnv) start(t *testing.T, g Gomega) *Async {
	a, err := StartAsync(context.Background(), AsyncConfig{Plan: e.p, Conn: e.conn(t, g), Telemetry: bustest.Telemetry()})
	g.Expect(err).NotTo(HaveOccurred())
	return a
}

func compile(t *testing.T, manifest string) *plan.Plan { return bustest.Compile(t, manifest) }

// A result can be read before its run's record is visible to this process
// (a replica of the runs bucket that has not caught up, seen on the local
// cluster after a NATS server restarted). It is retried, not dropped: before,
// the run stayed pending for good.
func TestAResultOfARunNotVisibleYetIsRetried(t *testing.T) {
	g := NewWithT(t)
	env := givenAsyncWorkflow(t, g, `apiVersion: patchbay.dev/v1alpha1
kind: Workflow
metadata: {name: lag, namespace: default}
spec:
  style: async-orchestrated
  steps:
  - {name: first, image: demo}
  - {name: second, image: demo, dependsOn: [first]}
`)
	p, test, runs := env.p, env.test, env.runs
	ctx := context.Background()
	commands := make(chan *nats.Msg, 8)
	_, err := test.NC.ChanSubscribe(p.Step("second").Consumers[0].FilterSubject, commands)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(test.NC.Flush()).To(Succeed())
	t.Cleanup(env.start(t, g).Stop)

	subject := p.Step("first").Output.ResultSubject
	h := nats.Header{contract.HeaderStatus: {contract.ResultOK}, contract.HeaderRunID: {"r2"}, "Content-Type": {"application/json"}}
	g.Expect(test.Publish(ctx, &nats.Msg{Subject: subject, Header: h, Data: []byte(`{"first":true}`)}, subject+"/r2")).To(Succeed())
	g.Consistently(commands).WithTimeout(time.Second).ShouldNot(Receive())

	// The record becomes visible: the redelivered result moves the run on.
	run := &bus.Run{ID: "r2", Status: bus.RunPending, Started: time.Now()}
	run.Step("first").Dispatched = true
	g.Expect(runs.Create(ctx, run)).To(Succeed())
	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Data).To(MatchJSON(`{"first":true}`))
}
