package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/bustest"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// A run whose step never answers fails at its deadline (spec.runTimeout) with
// 504 naming that step, and is dead-lettered with its entry payload, even
// though the orchestrator that dispatched the step and the gateway replica
// that accepted the run are both gone: the deadline lives in the broker.
func TestARunPastItsDeadlineFailsWith504AndIsDeadLettered(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "late", `
style: async-orchestrated
runTimeout: 3s
entry: {sync: false}
steps:
- {name: fast, image: demo}
- {name: stuck, image: demo, dependsOn: [fast]}
`)
	commands := e.Subscribe(t, e.Command("fast"), e.Command("stuck"))
	dead := e.Subscribe(t, e.Plan.Stream.DeadLetter)

	orch := e.orchestrator(t, g)
	first := e.gateway(t, g)

	runID := accepted(g, first, `{"order":1}`)
	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(e.Command("fast")))
	g.Expect(m.Header.Get(bus.HeaderDeadline)).NotTo(BeEmpty(), "a command carries the run's deadline")
	e.Result(t, "fast", runID, contract.ResultOK, `{"order":1,"fast":true}`)
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(e.Command("stuck")))

	// Nobody who saw the run is left; another gateway replica comes up.
	orch.Stop()
	first.Stop()
	second := e.gateway(t, g)
	t.Cleanup(second.Stop)

	g.Eventually(func(g Gomega) {
		w := do(second, http.MethodGet, "/runs/"+runID, "")
		g.Expect(w.Code).To(Equal(http.StatusGatewayTimeout), w.Body.String())
		var herr contract.Error
		g.Expect(json.Unmarshal(w.Body.Bytes(), &herr)).To(Succeed())
		g.Expect(herr.Step).To(Equal("stuck"))
		g.Expect(herr.Message).To(ContainSubstring("deadline"))
		g.Expect(herr.Message).To(ContainSubstring("3s"))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	g.Eventually(dead).WithTimeout(10 * time.Second).Should(Receive(&m))
	g.Expect(m.Header.Get(bus.HeaderDLQCode)).To(Equal("504"))
	dl := bus.ParseDeadLetter("", "", m.Header, m.Data)
	g.Expect(dl.RunID).To(Equal(runID))
	g.Expect(dl.Step).To(Equal("stuck"))
	g.Expect(dl.Payload).To(MatchJSON(`{"order":1}`), "the entry payload, so that the run can be replayed")
}

// A replayed run gets a deadline of its own: replayed into a step that does
// not answer, it fails with 504 again, and its new dead letter names the
// step's command subject, so it can be replayed again in turn.
func TestAReplayedRunHasADeadlineOfItsOwn(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "again", `
style: async-orchestrated
runTimeout: 2s
entry: {sync: false}
steps:
- {name: stuck, image: demo}
`)
	p, test := e.Plan, e.Test
	ctx := context.Background()
	command := e.Command("stuck")
	commands := e.Subscribe(t, command)

	orch := e.orchestrator(t, g)
	t.Cleanup(orch.Stop)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)

	runID := accepted(g, gw, `{"order":2}`)

	// The test is the step's sidecar: it dead-letters the command with a 400.
	cons, err := test.JS.CreateOrUpdateConsumer(ctx, p.Stream.Name, jetstream.ConsumerConfig{FilterSubject: command, AckPolicy: jetstream.AckExplicitPolicy})
	g.Expect(err).NotTo(HaveOccurred())
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(20*time.Second))
	g.Expect(err).NotTo(HaveOccurred())
	var cmd jetstream.Msg
	g.Eventually(batch.Messages()).Should(Receive(&cmd))
	dlq, id := bus.NewDeadLetter(p, cmd, bus.Failure{Step: "stuck", Attempts: 1, Status: 400, Code: 400, Message: "step stuck answered 400"})
	g.Expect(test.Publish(ctx, dlq, id)).To(Succeed())
	e.Result(t, "stuck", runID, contract.ResultFailed, `{"code":400,"error":"step stuck answered 400","step":"stuck","status":400,"attempts":1}`)
	g.Eventually(func() int { return do(gw, http.MethodGet, "/runs/"+runID, "").Code }).WithTimeout(20 * time.Second).Should(Equal(http.StatusBadRequest))

	var page struct{ DeadLetters []bus.DeadLetter }
	g.Eventually(func(g Gomega) {
		w := do(gw, http.MethodGet, "/deadletters", "")
		g.Expect(json.Unmarshal(w.Body.Bytes(), &page)).To(Succeed())
		g.Expect(page.DeadLetters).To(HaveLen(1))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	first := page.DeadLetters[0].ID
	for len(commands) > 0 {
		<-commands
	}

	w := do(gw, http.MethodPost, "/deadletters/"+first+"/replay", "")
	g.Expect(w.Code).To(Equal(http.StatusAccepted), w.Body.String())
	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Header.Get(bus.HeaderReplay)).To(Equal("1"))
	g.Expect(m.Data).To(MatchJSON(`{"order":2}`))

	g.Eventually(func(g Gomega) {
		w := do(gw, http.MethodGet, "/runs/"+runID, "")
		g.Expect(w.Code).To(Equal(http.StatusGatewayTimeout), w.Body.String())
		g.Expect(w.Body.String()).To(ContainSubstring(`"step":"stuck"`))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Eventually(func(g Gomega) {
		w := do(gw, http.MethodGet, "/deadletters", "")
		g.Expect(json.Unmarshal(w.Body.Bytes(), &page)).To(Succeed())
		g.Expect(page.DeadLetters).To(HaveLen(2))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	second := page.DeadLetters[1]
	g.Expect(second).To(And(HaveField("Step", "stuck"), HaveField("Code", http.StatusGatewayTimeout), HaveField("Subject", command), HaveField("RunID", runID)))
}

// A gateway that dies holding a run's deadline message (or a broker that
// restarts before it stored the message's delay) leaves the message to come
// back after the deadline consumer's ack wait: the run still fails at about
// its deadline, well before the 30 s that the consumers of completions wait.
func TestARunFailsAtItsDeadlineWhenItsGatewayDiedHoldingTheCheck(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "orphan", `
  style: async-orchestrated
  runTimeout: 3s
  entry: {sync: false}
  steps:
  - {name: stuck, image: demo}
`)
	ctx := context.Background()
	runs := e.Runs(t)
	started := time.Now().UTC()
	deadline := started.Add(3 * time.Second)
	g.Expect(runs.Create(ctx, &bus.Run{ID: "r1", Status: bus.RunPending, Started: started, Deadline: &deadline})).To(Succeed())
	cons, err := bus.EnsureConsumer(ctx, e.Test.JS, e.Plan, deadlineConsumer(e.Plan))
	g.Expect(err).NotTo(HaveOccurred())
	e.Publish(t, e.Plan.Stream.StartSubject, "r1", nil, `{}`)

	// The gateway that gets the check first dies before it answers for it.
	dying := bustest.Connect(t, e.URL)
	held, err := dying.JS.Consumer(ctx, e.Plan.Stream.Name, cons.CachedInfo().Name)
	g.Expect(err).NotTo(HaveOccurred())
	batch, err := held.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	g.Expect(err).NotTo(HaveOccurred())
	var got []string
	for m := range batch.Messages() {
		got = append(got, bus.HTTPHeader(m).Get(contract.HeaderRunID))
	}
	g.Expect(got).To(Equal([]string{"r1"}))
	dying.NC.Close()

	e.gateway(t, g)
	g.Eventually(func(g Gomega) {
		r, _, err := runs.Get(ctx, "r1")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(r.Status).To(Equal(bus.RunFailed))
		g.Expect(r.Code).To(Equal(http.StatusGatewayTimeout))
		g.Expect(r.Expired).To(BeTrue())
	}).WithTimeout(completionAckWait - 10*time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// A run's start carries its deadline, so the gateways' deadline check defers
// it to then without reading the run record: the check costs the broker no
// read per run while runs are young. (The record decides at the deadline,
// as the tests above show.)
func TestTheDeadlineCheckDefersAYoungRunWithoutReadingItsRecord(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "young", `
style: async-orchestrated
runTimeout: 1h
entry: {sync: false}
steps:
- {name: a, image: demo}
`)
	reads := e.Reads(t, "KV_"+e.Plan.Stream.RunsBucket)
	naked := e.Subscribe(t, "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED."+e.Plan.Stream.Name+"."+e.Plan.Stream.DeadlineDurable)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)

	w := do(gw, http.MethodPost, "/", `{"order":1}`)
	g.Expect(w.Code).To(Equal(http.StatusAccepted))
	// The check handed the start back until the deadline...
	g.Eventually(naked).WithTimeout(20 * time.Second).Should(Receive())
	// ...having read no run record (nothing else reads one here: there is
	// no orchestrator, and the POST only created the record).
	e.Sync(t)
	g.Expect(reads).NotTo(Receive())
}

// A run that ends before its deadline acknowledges its deadline check then:
// the gateway that handed the check back until the deadline is told of the
// end and acks it, so the broker neither holds it until the deadline nor
// delivers it again then.
func TestARunThatEndsAcknowledgesItsDeadlineCheck(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "quick", `
style: async-orchestrated
runTimeout: 1h
entry: {sync: false}
steps:
- {name: a, image: demo}
`)
	ctx := context.Background()
	naked := e.Subscribe(t, "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED."+e.Plan.Stream.Name+"."+e.Plan.Stream.DeadlineDurable)
	commands := e.Subscribe(t, e.Command("a"))
	e.orchestrator(t, g)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)

	runID := accepted(g, gw, `{"order":1}`)
	g.Eventually(naked).WithTimeout(20*time.Second).Should(Receive(), "the check is handed back until the deadline")
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive())
	e.Result(t, "a", runID, contract.ResultOK, `{"order":1,"a":true}`)
	g.Eventually(func() int { return do(gw, http.MethodGet, "/runs/"+runID, "").Code }).WithTimeout(20 * time.Second).Should(Equal(http.StatusOK))

	cons, err := e.Test.JS.Consumer(ctx, e.Plan.Stream.Name, e.Plan.Stream.DeadlineDurable)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		info, err := cons.Info(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(info.NumAckPending).To(BeZero(), "the check of a run that ended still waits for its deadline")
		g.Expect(info.AckFloor.Stream).To(Equal(info.Delivered.Stream))
	}).WithTimeout(20 * time.Second).Should(Succeed())
}
