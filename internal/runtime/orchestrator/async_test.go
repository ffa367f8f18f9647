package orchestrator

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/bustest"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// A run lives in the runs bucket, not in an orchestrator: a second
// orchestrator finishes a run the first one started and then stopped.
func TestASecondOrchestratorFinishesARunTheFirstStarted(t *testing.T) {
	g := NewWithT(t)
	env := givenAsyncWorkflow(t, "handoff", `
style: async-orchestrated
steps:
- {name: first, image: demo}
- {name: second, image: demo, dependsOn: [first]}
`)
	p := env.Plan
	ctx := context.Background()
	// The test plays the gateway and the steps' sidecars.
	test, runs := env.Test, env.runs
	commands := env.Subscribe(t, env.Command("first"), env.Command("second"))
	inbox := test.NC.NewInbox()
	outcomes := env.Subscribe(t, inbox)

	a := env.start(t, g)
	g.Expect(runs.Create(ctx, &bus.Run{ID: "r1", Status: bus.RunPending, Started: time.Now(), ReplyTo: inbox})).To(Succeed())
	env.Publish(t, p.Stream.StartSubject, "r1", nil, `{"id":1}`)

	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(env.Command("first")))
	g.Expect(m.Data).To(MatchJSON(`{"id":1}`))
	a.Stop()

	// first's result arrives while no orchestrator runs; a new one continues.
	env.Result(t, "first", "r1", contract.ResultOK, `{"id":1,"first":true}`)
	b := env.start(t, g)
	t.Cleanup(b.Stop)
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(env.Command("second")))
	g.Expect(m.Data).To(MatchJSON(`{"id":1,"first":true}`))
	env.Result(t, "second", "r1", contract.ResultOK, `{"id":1,"first":true,"second":true}`)

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
	*bustest.Env
	runs *bus.Runs
}

func givenAsyncWorkflow(t *testing.T, name, spec string) *asyncEnv {
	t.Helper()
	b := bustest.Given(t, name, spec)
	return &asyncEnv{Env: b, runs: b.Runs(t)}
}

// start starts an orchestrator on a connection of its own.
func (e *asyncEnv) start(t *testing.T, g Gomega) *Async {
	a, err := StartAsync(context.Background(), AsyncConfig{Plan: e.Plan, Conn: bustest.Connect(t, e.URL), Telemetry: bustest.Telemetry()})
	g.Expect(err).NotTo(HaveOccurred())
	return a
}

// A result can say its run's record is stored (the revision it carries is
// not 0) before the record is visible to this process (a replica of the
// runs bucket that has not caught up, seen on the local cluster after a
// NATS server restarted). Its outcome is retried, not dropped: before, the
// run stayed pending for good.
func TestAResultOfARunNotVisibleYetIsRetried(t *testing.T) {
	g := NewWithT(t)
	env := givenAsyncWorkflow(t, "lag", `
style: async-orchestrated
steps:
- {name: first, image: demo}
`)
	ctx := context.Background()
	t.Cleanup(env.start(t, g).Stop)

	run := &bus.Run{ID: "r2", Status: bus.RunPending, Started: time.Now()}
	run.Step("first").Dispatched = true
	value, err := json.Marshal(run)
	g.Expect(err).NotTo(HaveOccurred())
	h := http.Header{contract.HeaderStatus: {contract.ResultOK}}
	bus.SetRecord(h, value, 1)
	env.Publish(t, bus.ResultOf(env.Plan.Step("first").Output.ResultSubject, "r2"), "r2", nats.Header(h), `{"first":true}`)
	g.Consistently(func() error {
		_, _, err := env.runs.Get(ctx, "r2")
		return err
	}).WithTimeout(time.Second).Should(MatchError(bus.ErrNoRun), "no outcome is written over a record that is not visible")

	// The record becomes visible: the redelivered result finishes the run.
	g.Expect(env.runs.Create(ctx, run)).To(Succeed())
	g.Eventually(func(g Gomega) {
		r, _, err := env.runs.Get(ctx, "r2")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(r.Status).To(Equal(bus.RunSucceeded))
	}).WithTimeout(20 * time.Second).Should(Succeed())
}

// A start carries the record its gateway created, and the orchestrator
// continues from it without a read; but not from one past the run's
// deadline: the run may have failed meanwhile, as this one did, and its
// steps are not commanded.
func TestAStartPastItsDeadlineIsCheckedAgainstTheStoredRecord(t *testing.T) {
	g := NewWithT(t)
	env := givenAsyncWorkflow(t, "late", `
style: async-orchestrated
steps:
- {name: first, image: demo}
`)
	p, ctx := env.Plan, context.Background()
	commands := env.Subscribe(t, env.Command("first"))
	reads := env.Reads(t, "KV_"+p.Stream.RunsBucket)
	t.Cleanup(env.start(t, g).Stop)

	start := func(id string, deadline time.Time) (*bus.Run, nats.Header) {
		run := &bus.Run{ID: id, Status: bus.RunPending, Started: time.Now(), Deadline: &deadline}
		run.Step("first").Dispatched = true
		value, rev, err := env.runs.Created(ctx, run)
		g.Expect(err).NotTo(HaveOccurred())
		h := http.Header{}
		bus.SetRecord(h, value, rev)
		bus.SetDeadline(h, &deadline)
		return run, nats.Header(h)
	}

	_, h := start("young", time.Now().Add(time.Hour))
	env.Publish(t, p.Stream.StartSubject, "young", h, `{"id":1}`)
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive())
	env.Sync(t)
	g.Expect(reads).NotTo(Receive(), "the start carried the record")

	late, h := start("late", time.Now().Add(-time.Second))
	_, err := env.runs.Update(ctx, late.ID, func(r *bus.Run) bool {
		r.Fail(&contract.Error{Code: http.StatusGatewayTimeout, Message: "past its deadline"})
		return true
	})
	g.Expect(err).NotTo(HaveOccurred())
	env.Publish(t, p.Stream.StartSubject, "late", h, `{"id":2}`)
	g.Eventually(reads).WithTimeout(20*time.Second).Should(Receive(), "the record is read")
	g.Consistently(commands).WithTimeout(time.Second).ShouldNot(Receive())
}

// The messages of a run carry its record, and the orchestrator writes it
// only where a later message needs what it learned: a step that joins two
// gets its input from the record, whichever branch answers last, and an
// orchestrator that takes over between the branches finishes the run. The
// record is written by each branch's result and by the outcome, never before.
func TestAJoinFindsItsBranchesInTheRecordWrittenForIt(t *testing.T) {
	g := NewWithT(t)
	env := givenAsyncWorkflow(t, "diamond", `
style: async-orchestrated
steps:
- {name: split, image: demo}
- {name: left, image: demo, dependsOn: [split]}
- {name: right, image: demo, dependsOn: [split]}
- {name: join, image: demo, dependsOn: [left, right]}
`)
	p, ctx := env.Plan, context.Background()
	commands := env.Subscribe(t, env.Command("split"), env.Command("left"), env.Command("right"), env.Command("join"))
	writes := env.Subscribe(t, "$KV."+p.Stream.RunsBucket+".>")
	inbox := env.Test.NC.NewInbox()
	outcomes := env.Subscribe(t, inbox)
	a := env.start(t, g)

	run := &bus.Run{ID: "d1", Status: bus.RunPending, Started: time.Now(), ReplyTo: inbox}
	run.Step("split").Dispatched = true
	value, err := json.Marshal(run)
	g.Expect(err).NotTo(HaveOccurred())
	h := http.Header{}
	bus.SetRecord(h, value, 0)
	env.Publish(t, bus.StartOf(p.Stream, "d1"), "d1", nats.Header(h), `{"id":1}`)

	next := func(step string) *nats.Msg {
		var m *nats.Msg
		g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
		g.Expect(m.Subject).To(Equal(env.Command(step)))
		return m
	}
	env.Answer(t, "split", next("split"), contract.ResultOK, `{"id":1}`)
	var left, right *nats.Msg
	for range 2 {
		var m *nats.Msg
		g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
		if m.Subject == env.Command("left") {
			left = m
		} else {
			right = m
		}
	}
	g.Expect(left).NotTo(BeNil())
	g.Expect(right).NotTo(BeNil())
	env.Sync(t)
	g.Expect(writes).NotTo(Receive(), "the record was written before a branch answered")

	env.Answer(t, "left", left, contract.ResultOK, `{"left":true}`)
	g.Eventually(writes).WithTimeout(20*time.Second).Should(Receive(), "the left branch is recorded for the join")
	a.Stop()
	t.Cleanup(env.start(t, g).Stop)
	// The right branch's command carries a record without the left branch:
	// the stored one has it.
	env.Answer(t, "right", right, contract.ResultOK, `{"right":true}`)
	join := next("join")
	g.Expect(join.Data).To(MatchJSON(`{"left":{"left":true},"right":{"right":true}}`))
	env.Answer(t, "join", join, contract.ResultOK, `{"joined":true}`)

	var m *nats.Msg
	g.Eventually(outcomes).WithTimeout(20 * time.Second).Should(Receive(&m))
	var r bus.Run
	g.Expect(json.Unmarshal(m.Data, &r)).To(Succeed())
	g.Expect(r.Status).To(Equal(bus.RunSucceeded))
	stored, _, err := env.runs.Get(ctx, "d1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(stored.Status).To(Equal(bus.RunSucceeded))
	for _, s := range []string{"split", "left", "right", "join"} {
		g.Expect(stored.Steps).To(HaveKeyWithValue(s, HaveField("Done", BeTrue())), "step %s", s)
	}
}
