package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// GET /runs/{id} with "Prefer: wait=N" (RFC 7240) holds the caller until
// the run ends or N seconds pass, instead of answering 202 at once: on the
// replica that started the run, which is told of its outcome and answers
// with the result the notification carries (no read of the stream), and on
// any other, which watches the run's record.
func TestAGetThatPrefersToWaitIsAnsweredWhenTheRunEnds(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "longpoll", `
style: async-orchestrated
entry: {sync: false}
steps:
- {name: a, image: demo}
`)
	commands := e.Subscribe(t, e.Command("a"))
	streamReads := e.Reads(t, e.Plan.Stream.Name)
	recordReads := e.Reads(t, "KV_"+e.Plan.Stream.RunsBucket)
	orch := e.orchestrator(t, g)
	t.Cleanup(orch.Stop)
	starter := e.gateway(t, g)
	t.Cleanup(starter.Stop)
	other := e.gateway(t, g)
	t.Cleanup(other.Stop)

	runID := accepted(g, starter, `{"order":1}`)
	g.Expect(do(starter, http.MethodGet, "/runs/"+runID, "").Code).To(Equal(http.StatusAccepted), "no preference: pending at once")
	e.Sync(t)
	for len(recordReads) > 0 {
		<-recordReads
	}

	answers := make(chan *httptest.ResponseRecorder, 2)
	for _, gw := range []http.Handler{starter, other} {
		go func() { answers <- do(gw, http.MethodGet, "/runs/"+runID, "", "Prefer", "wait=30") }()
	}
	var cmd *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&cmd))
	// The other replica has looked for the record, then found the run's
	// start, pending; the starting replica knows the run is open. Both wait.
	g.Eventually(recordReads).WithTimeout(20 * time.Second).Should(Receive())
	g.Consistently(answers).WithTimeout(300*time.Millisecond).ShouldNot(Receive(), "held while the run is pending")
	e.Sync(t)
	g.Expect(recordReads).NotTo(Receive(), "the starting replica read the record")
	e.Sync(t)
	for len(streamReads) > 0 {
		<-streamReads
	}
	e.Answer(t, "a", cmd, contract.ResultOK, `{"order":1,"a":true}`)
	for range 2 {
		var got *httptest.ResponseRecorder
		g.Eventually(answers).WithTimeout(20 * time.Second).Should(Receive(&got))
		g.Expect(got.Code).To(Equal(http.StatusOK))
		g.Expect(got.Body.String()).To(MatchJSON(`{"order":1,"a":true}`))
		g.Expect(got.Header().Get("Preference-Applied")).To(Equal("wait=30"))
	}
	e.Sync(t)
	g.Expect(streamReads).To(Receive(), "the other replica reads the result from the stream")
	g.Expect(streamReads).NotTo(Receive(), "the starting replica read the result too")
}

// A wait that ends before the run does answers 202 with the Location, as
// without the preference.
func TestAGetThatPrefersToWaitAnswers202WhenTheWaitEndsFirst(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "shortpoll", `
style: async-orchestrated
entry: {sync: false}
steps:
- {name: a, image: demo}
`)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)
	runID := accepted(g, gw, `{"order":1}`)

	start := time.Now()
	w := do(gw, http.MethodGet, "/runs/"+runID, "", "Prefer", "respond-async, wait=1")
	g.Expect(w.Code).To(Equal(http.StatusAccepted))
	g.Expect(w.Header().Get("Location")).To(Equal("/runs/" + runID))
	g.Expect(w.Header().Get("Preference-Applied")).To(Equal("wait=1"))
	g.Expect(time.Since(start)).To(BeNumerically(">=", time.Second), "held for the wait")
}

func TestPreferWaitIsReadAsRFC7240SaysAndBounded(t *testing.T) {
	g := NewWithT(t)
	for v, want := range map[string]time.Duration{
		"":                      0,
		"respond-async":         0,
		"wait=5":                5 * time.Second,
		"respond-async, wait=2": 2 * time.Second,
		`WAIT="3"`:              3 * time.Second,
		"wait=3600":             maxPreferWait,
		"wait=-1":               0,
		"wait=soon":             0,
	} {
		g.Expect(preferWait(http.Header{"Prefer": {v}})).To(Equal(want), v)
	}
}

// The replica that started a run answers a waiting GET from the run's
// notification; one that was never told (the notification lost, say on a
// reconnect) still answers from the record: at once without a wait, and at
// the end of a wait.
func TestAGetOfARunWhoseNotificationWasLostIsAnsweredFromTheRecord(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, "lost", `
style: async-orchestrated
entry: {sync: false}
steps:
- {name: a, image: demo}
`)
	gw := e.gateway(t, g)
	t.Cleanup(gw.Stop)
	runID := accepted(g, gw, `{"order":1}`)

	// The run ends, as an orchestrator would end it, but this replica is
	// not told.
	ctx := context.Background()
	r, err := gw.conn.Started(ctx, e.Plan, runID)
	g.Expect(err).NotTo(HaveOccurred())
	r.Fail(&contract.Error{Code: http.StatusBadGateway, Step: "a", Message: "step a failed"})
	_, err = gw.runs.Store(ctx, r, 0)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(do(gw, http.MethodGet, "/runs/"+runID, "").Code).To(Equal(http.StatusBadGateway), "without a wait")
	g.Expect(do(gw, http.MethodGet, "/runs/"+runID, "", "Prefer", "wait=1").Code).To(Equal(http.StatusBadGateway), "at the end of a wait")
}
