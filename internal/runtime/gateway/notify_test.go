package gateway

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// The orchestrator that finishes a run has its result in hand and sends it
// with the notification to the gateway holding the caller, which answers
// with it: a sync caller's answer costs no read of the stream. GET
// /runs/{id} still reads the result where the record says it is.
func TestASyncCallerIsAnsweredWithTheResultItsNotificationCarries(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "inline", `
style: async-orchestrated
entry: {timeout: 20s}
steps:
- {name: a, image: demo}
- {name: b, image: demo, dependsOn: [a]}
`)
	commands := e.Subscribe(t, e.Command("a"), e.Command("b"))
	reads := e.Reads(t, e.Plan.Stream.Name)
	orch := e.orchestrator(t, g)
	t.Cleanup(orch.Stop)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)

	answered := make(chan *http.Response, 1)
	go func() {
		w := do(gw, http.MethodPost, "/", `{"order":1}`)
		answered <- w.Result()
	}()
	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	runID := m.Header.Get(contract.HeaderRunID)
	e.Answer(t, "a", m, contract.ResultOK, `{"order":1,"a":true}`)
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(e.Command("b")))
	e.Answer(t, "b", m, contract.ResultOK, `{"order":1,"a":true,"b":true}`)

	var resp *http.Response
	g.Eventually(answered).WithTimeout(20 * time.Second).Should(Receive(&resp))
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get(contract.HeaderRunID)).To(Equal(runID))
	g.Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(body).To(MatchJSON(`{"order":1,"a":true,"b":true}`))
	e.Sync(t)
	g.Expect(reads).NotTo(Receive(), "the gateway read the result back from the stream")

	w := do(gw, http.MethodGet, "/runs/"+runID, "")
	g.Expect(w.Code).To(Equal(http.StatusOK))
	g.Expect(w.Body.String()).To(MatchJSON(`{"order":1,"a":true,"b":true}`))
	e.Sync(t)
	g.Expect(reads).To(Receive(), "GET /runs/{id} reads the result from the stream")
}

// An orchestrated run's record is written once, with its outcome: the
// start carries the record the gateway made, each command carries it on
// with what the run has done, each result carries it back, and neither the
// gateway nor the orchestrator reads or writes the runs bucket before the
// run ends. A run of two steps costs the record one write and no read.
func TestAnOrchestratedRunCostsItsRecordOneWriteAndNoRead(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "lean", `
style: async-orchestrated
runTimeout: 1h
entry: {timeout: 20s}
steps:
- {name: a, image: demo}
- {name: b, image: demo, dependsOn: [a]}
`)
	commands := e.Subscribe(t, e.Command("a"), e.Command("b"))
	bucket := e.Plan.Stream.RunsBucket
	reads := e.Reads(t, "KV_"+bucket)
	streamReads := e.Reads(t, e.Plan.Stream.Name)
	writes := e.Subscribe(t, "$KV."+bucket+".>")
	orch := e.orchestrator(t, g)
	t.Cleanup(orch.Stop)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)

	answered := make(chan int, 1)
	go func() { answered <- do(gw, http.MethodPost, "/", `{"order":1}`).Code }()
	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(e.Command("a")))
	e.Answer(t, "a", m, contract.ResultOK, `{"order":1,"a":true}`)
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(e.Command("b")))
	e.Sync(t)
	g.Expect(writes).NotTo(Receive(), "the record was written before the run ended")

	e.Answer(t, "b", m, contract.ResultOK, `{"order":1,"a":true,"b":true}`)
	g.Eventually(answered).WithTimeout(20 * time.Second).Should(Receive(Equal(http.StatusOK)))
	e.Sync(t)
	var w *nats.Msg
	g.Expect(writes).To(Receive(&w), "the orchestrator writes the outcome")
	g.Expect(string(w.Data)).To(ContainSubstring(`"status":"succeeded"`))
	g.Expect(writes).NotTo(Receive())
	g.Expect(reads).NotTo(Receive(), "a record was read")
	g.Expect(streamReads).NotTo(Receive(), "a message was read back from the stream")
}

// A taken run id is refused by the stream, with no record to look it up
// in: the start is published on the run's own subject only when that holds
// none yet. GET /runs/{id} answers a pending run from its start.
func TestATakenRunIDIsRefusedWithoutARecord(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "taken", `
style: async-orchestrated
entry: {sync: false}
steps:
- {name: a, image: demo}
`)
	commands := e.Subscribe(t, e.Command("a"))
	orch := e.orchestrator(t, g)
	t.Cleanup(orch.Stop)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)

	w := do(gw, http.MethodPost, "/", `{"n":1}`, contract.HeaderRunID, "order-9")
	g.Expect(w.Code).To(Equal(http.StatusAccepted), w.Body.String())
	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	_, _, err := gw.runs.Get(context.Background(), "order-9")
	g.Expect(err).To(MatchError(bus.ErrNoRun), "a pending run has no record")
	g.Expect(do(gw, http.MethodGet, "/runs/order-9", "").Code).To(Equal(http.StatusAccepted))
	g.Expect(do(gw, http.MethodGet, "/runs/order-10", "").Code).To(Equal(http.StatusNotFound))

	again := do(gw, http.MethodPost, "/", `{"n":2}`, contract.HeaderRunID, "order-9")
	g.Expect(again.Code).To(Equal(http.StatusConflict), again.Body.String())
	g.Consistently(commands).WithTimeout(300*time.Millisecond).ShouldNot(Receive(), "the taken id started nothing")

	e.Answer(t, "a", m, contract.ResultOK, `{"n":1,"a":true}`)
	g.Eventually(func(g Gomega) {
		w := do(gw, http.MethodGet, "/runs/order-9", "")
		g.Expect(w.Code).To(Equal(http.StatusOK))
		g.Expect(w.Body.String()).To(MatchJSON(`{"n":1,"a":true}`))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	again = do(gw, http.MethodPost, "/", `{"n":3}`, contract.HeaderRunID, "order-9")
	g.Expect(again.Code).To(Equal(http.StatusConflict), "also once it has ended")
}

// The gateway holding a caller is told when the run ends; at the run's
// deadline its check of that run then acks the start without reading the
// record.
func TestTheDeadlineCheckOfARunTheGatewaySawEndReadsNoRecord(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "seen", `
style: async-orchestrated
runTimeout: 2s
entry: {timeout: 20s}
steps:
- {name: a, image: demo}
`)
	commands := e.Subscribe(t, e.Command("a"))
	reads := e.Reads(t, "KV_"+e.Plan.Stream.RunsBucket)
	acks := e.Subscribe(t, "$JS.ACK."+e.Plan.Stream.Name+"."+e.Plan.Stream.DeadlineDurable+".>")
	orch := e.orchestrator(t, g)
	t.Cleanup(orch.Stop)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)

	answered := make(chan int, 1)
	go func() { answered <- do(gw, http.MethodPost, "/", `{"order":1}`).Code }()
	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	e.Answer(t, "a", m, contract.ResultOK, `{"order":1,"a":true}`)
	g.Eventually(answered).WithTimeout(20 * time.Second).Should(Receive(Equal(http.StatusOK)))

	// The check acks the start at the deadline (after handing it back once).
	g.Eventually(acks).WithTimeout(20 * time.Second).Should(Receive(WithTransform(func(m *nats.Msg) string { return string(m.Data) }, Equal("+ACK"))))
	e.Sync(t)
	g.Expect(reads).NotTo(Receive(), "a record was read")
}

// A gateway that creates a choreographed run's record is the one that
// finishes it on the completing event: it updates the record with a
// compare-and-set on the revision it created, without reading it.
func TestAChoreographedRunCostsItsRecordTwoWritesAndNoRead(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "chorelean", `
style: choreography
entry: {sync: true, timeout: 20s, event: order.requested, completesOn: [order.confirmed]}
steps:
- {name: confirm, image: demo, subscribes: [order.requested], emits: [order.confirmed]}
`)
	completes := e.completing(t)
	entries := e.Subscribe(t, e.Plan.Entry.EventSubject)
	bucket := e.Plan.Stream.RunsBucket
	reads := e.Reads(t, "KV_"+bucket)
	writes := e.Subscribe(t, "$KV."+bucket+".>")
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)

	answered := make(chan int, 1)
	go func() { answered <- do(gw, http.MethodPost, "/", `{"order":1}`).Code }()
	var m *nats.Msg
	g.Eventually(entries).WithTimeout(20 * time.Second).Should(Receive(&m))
	e.Publish(t, completes, m.Header.Get(contract.HeaderRunID), nil, `{"order":1,"confirmed":true}`)
	g.Eventually(answered).WithTimeout(20 * time.Second).Should(Receive(Equal(http.StatusOK)))
	e.Sync(t)
	g.Expect(writes).To(Receive(), "the gateway creates the record")
	g.Expect(writes).To(Receive(), "the gateway writes the outcome")
	g.Expect(writes).NotTo(Receive())
	g.Expect(reads).NotTo(Receive(), "the gateway read the record it created")
}
