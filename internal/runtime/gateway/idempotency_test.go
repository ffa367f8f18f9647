package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// heldRun starts the workflow held, whose one step the test answers, and
// returns a function that answers the step's command for a run.
func heldRun(t *testing.T, g Gomega) (*env, *Gateway, chan *nats.Msg, func(runID, output string)) {
	e := givenWorkflow(t, "held", heldSpec)
	commands := e.Subscribe(t, e.Command("only"))
	orch := e.orchestrator(t, g)
	t.Cleanup(orch.Stop)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)
	answer := func(runID, output string) { e.Result(t, "only", runID, contract.ResultOK, output) }
	return e, gw, commands, answer
}

// post sends a POST in the background and returns where its answer lands.
func post(h http.Handler, body string, header ...string) <-chan *httptest.ResponseRecorder {
	out := make(chan *httptest.ResponseRecorder, 1)
	go func() { out <- do(h, http.MethodPost, "/", body, header...) }()
	return out
}

// expectOutcome expects a caller held for its run's outcome to get it: 200
// with the body.
func expectOutcome(g Gomega, caller <-chan *httptest.ResponseRecorder, body string, why ...any) *httptest.ResponseRecorder {
	var w *httptest.ResponseRecorder
	g.Eventually(caller).WithTimeout(20*time.Second).Should(Receive(&w), why...)
	g.Expect(w.Code).To(Equal(http.StatusOK), w.Body.String())
	g.Expect(w.Body.String()).To(MatchJSON(body))
	return w
}

const heldSpec = `
style: async-orchestrated
entry: {timeout: 1m}
steps:
- {name: only, image: demo}
`

// A second POST with a Patchbay-Run-Id that is taken is refused with 409 and
// leaves the first caller waiting for its own outcome: it used to replace,
// then delete, the first caller's waiter, which then only got 202 at
// entry.timeout.
func TestADuplicateRunIDDoesNotStealTheFirstCallersWaiter(t *testing.T) {
	g := NewWithT(t)
	_, gw, commands, answer := heldRun(t, g)

	first := post(gw, `{"n":1}`, contract.HeaderRunID, "order-7")
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive())
	second := do(gw, http.MethodPost, "/", `{"n":2}`, contract.HeaderRunID, "order-7")
	g.Expect(second.Code).To(Equal(http.StatusConflict), second.Body.String())

	answer("order-7", `{"n":1,"done":true}`)
	expectOutcome(g, first, `{"n":1,"done":true}`, "the first caller gets its outcome before its entry.timeout (1m)")
}

// POSTs with one Idempotency-Key, at once, join one run: the step is
// commanded once, and every caller gets that run's id and result.
func TestConcurrentPostsWithOneIdempotencyKeyJoinOneRun(t *testing.T) {
	g := NewWithT(t)
	e, gw, commands, answer := heldRun(t, g)
	second := e.gateway(t, g) // another replica
	t.Cleanup(second.Stop)

	const callers = 6
	answers := make([]<-chan *httptest.ResponseRecorder, callers)
	for i := range answers {
		h := http.Handler(gw)
		if i%2 == 1 {
			h = second
		}
		answers[i] = post(h, `{"n":1}`, HeaderIdempotencyKey, "pay-42")
	}
	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	runID := m.Header.Get(contract.HeaderRunID)
	answer(runID, `{"n":1,"paid":true}`)
	for _, a := range answers {
		w := expectOutcome(g, a, `{"n":1,"paid":true}`)
		g.Expect(w.Header().Get(contract.HeaderRunID)).To(Equal(runID))
	}
	g.Expect(commands).NotTo(Receive(), "one run, one command")

	// Later, the same key gets the same run again, without a new command.
	w := do(second, http.MethodPost, "/", `{"n":1}`, HeaderIdempotencyKey, "pay-42")
	g.Expect(w.Code).To(Equal(http.StatusOK))
	g.Expect(w.Header().Get(contract.HeaderRunID)).To(Equal(runID))
	g.Expect(w.Header().Get("Idempotent-Replayed")).To(Equal("true"))
	g.Expect(w.Body.String()).To(MatchJSON(`{"n":1,"paid":true}`))
	g.Expect(commands).NotTo(Receive())

	// The same key for another request is a mistake, and a bad key never
	// reaches the broker.
	w = do(gw, http.MethodPost, "/", `{"n":2}`, HeaderIdempotencyKey, "pay-42")
	g.Expect(w.Code).To(Equal(http.StatusUnprocessableEntity), w.Body.String())
	g.Expect(w.Body.String()).To(ContainSubstring("another request body"))
	w = do(gw, http.MethodPost, "/", `{"n":2}`, HeaderIdempotencyKey, "pay 42*")
	g.Expect(w.Code).To(Equal(http.StatusBadRequest), w.Body.String())
	g.Expect(w.Body.String()).To(ContainSubstring("Idempotency-Key header"))
	g.Expect(commands).NotTo(Receive())
}

// The window of Idempotency-Keys is the plan's, from spec.entry.idempotencyWindow.
func TestIdempotencyKeysAreKeptForTheWindow(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "window", `
style: choreography
entry: {sync: true, timeout: 5s, event: req, completesOn: [done], idempotencyWindow: 90m}
steps:
- {name: only, image: demo, subscribes: [req], emits: [done]}
`)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)
	kv, err := e.Test.JS.KeyValue(context.Background(), e.Plan.Stream.IdempotencyBucket)
	g.Expect(err).NotTo(HaveOccurred())
	st, err := kv.Status(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.TTL()).To(Equal(90 * time.Minute))
}

// A run whose record was created but whose start was never published (its
// gateway was killed in between, or the broker went away) is started by the
// caller's retry with the same Patchbay-Run-Id: the retry used to get 409,
// and the run never started. A choreographed run's record comes first, so
// that its entry event never precedes it (an orchestrated run has none
// before it ends: TestATakenRunIDIsRefusedWithoutARecord).
func TestARetryStartsARunWhoseStartWasNeverPublished(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "retried", `
style: choreography
entry: {sync: true, timeout: 1m, event: order.requested, completesOn: [order.confirmed]}
steps:
- {name: confirm, image: demo, subscribes: [order.requested], emits: [order.confirmed]}
`)
	completes := e.completing(t)
	entries := e.Subscribe(t, e.Plan.Entry.EventSubject)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)
	started := time.Now().UTC()
	// What the killed gateway left: a pending record naming its inbox.
	g.Expect(gw.runs.Create(context.Background(), &bus.Run{ID: "order-8", Status: bus.RunPending, Started: started, ReplyTo: "_INBOX.gone"})).To(Succeed())

	retry := post(gw, `{"n":8}`, contract.HeaderRunID, "order-8")
	var entry *nats.Msg
	g.Eventually(entries).WithTimeout(20*time.Second).Should(Receive(&entry), "the retry published the run's entry event")
	g.Expect(entry.Header.Get(contract.HeaderRunID)).To(Equal("order-8"))
	g.Expect(string(entry.Data)).To(MatchJSON(`{"n":8}`))
	// Meanwhile the run is started: another POST with its id is refused.
	again := do(gw, http.MethodPost, "/", `{"n":8}`, contract.HeaderRunID, "order-8")
	g.Expect(again.Code).To(Equal(http.StatusConflict), again.Body.String())

	e.Publish(t, completes, "order-8", nil, `{"n":8,"done":true}`)
	expectOutcome(g, retry, `{"n":8,"done":true}`, "the retry is held for the outcome like a first POST")
	g.Expect(entries).NotTo(Receive(), "the entry event was published once")
}
