package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
	"github.com/patchbay-dev/patchbay/internal/runtime/orchestrator"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// A run whose step never answers fails at its deadline (spec.runTimeout) with
// 504 naming that step, and is dead-lettered with its entry payload, even
// though the orchestrator that dispatched the step and the gateway replica
// that accepted the run are both gone: the deadline lives in the broker.
func TestARunPastItsDeadlineFailsWith504AndIsDeadLettered(t *testing.T) {
	g := NewWithT(t)
	e := givenWorkflow(t, g, `apiVersion: patchbay.dev/v1alpha1
kind: Workflow
metadata: {name: late, namespace: default}
spec:
  style: async-orchestrated
  runTimeout: 3s
  entry: {sync: false}
  steps:
  - {name: fast, image: demo}
  - {name: stuck, image: demo, dependsOn: [fast]}
`)
	p, test := e.p, e.test
	ctx := context.Background()
	commands := make(chan *nats.Msg, 8)
	for _, s := range []string{"fast", "stuck"} {
		_, err := test.NC.ChanSubscribe(p.Step(s).Consumers[0].FilterSubject, commands)
		g.Expect(err).NotTo(HaveOccurred())
	}
	dead := make(chan *nats.Msg, 8)
	_, err := test.NC.ChanSubscribe(p.Stream.DeadLetter, dead)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(test.NC.Flush()).To(Succeed())

	tracing, _ := telemetry.NewTracing(ctx, "", "test")
	orch, err := orchestrator.StartAsync(ctx, orchestrator.AsyncConfig{Plan: p, Conn: e.conn(t, g), Telemetry: telemetry.New(slog.New(slog.DiscardHandler), tracing)})
	g.Expect(err).NotTo(HaveOccurred())
	first := e.gateway(t, g)

	w := do(first, http.MethodPost, "/", `{"order":1}`)
	g.Expect(w.Code).To(Equal(http.StatusAccepted))
	runID := w.Header().Get(hop.HeaderRunID)
	var m *nats.Msg
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(p.Step("fast").Consumers[0].FilterSubject))
	g.Expect(m.Header.Get(bus.HeaderDeadline)).NotTo(BeEmpty(), "a command carries the run's deadline")
	h := nats.Header{bus.HeaderStatus: {bus.StatusOK}, hop.HeaderRunID: {runID}, "Content-Type": {"application/json"}}
	res := p.Step("fast").Output.ResultSubject
	g.Expect(test.Publish(ctx, &nats.Msg{Subject: res, Header: h, Data: []byte(`{"order":1,"fast":true}`)}, res+"/"+runID)).To(Succeed())
	g.Eventually(commands).WithTimeout(20 * time.Second).Should(Receive(&m))
	g.Expect(m.Subject).To(Equal(p.Step("stuck").Consumers[0].FilterSubject))

	// Nobody who saw the run is left; another gateway replica comes up.
	orch.Stop()
	first.Stop()
	second := e.gateway(t, g)
	t.Cleanup(second.Stop)

	g.Eventually(func(g Gomega) {
		w := do(second, http.MethodGet, "/runs/"+runID, "")
		g.Expect(w.Code).To(Equal(http.StatusGatewayTimeout), w.Body.String())
		var herr hop.Error
		g.Expect(json.Unmarshal(w.Body.Bytes(), &herr)).To(Succeed())
		g.Expect(herr.Step).To(Equal("stuck"))
		g.Expect(herr.Message).To(ContainSubstring("deadline"))
		g.Expect(herr.Message).To(ContainSubstring("3s"))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	g.Eventually(dead).WithTimeout(10 * time.Second).Should(Receive(&m))
	g.Expect(m.Header.Get(bus.HeaderErrorCode)).To(Equal("504"))
	var dl bus.DeadLetter
	g.Expect(json.Unmarshal(m.Data, &dl)).To(Succeed())
	g.Expect(dl.RunID).To(Equal(runID))
	g.Expect(dl.Step).To(Equal("stuck"))
	g.Expect(dl.Payload).To(MatchJSON(`{"order":1}`), "the entry payload, so that the run can be replayed")
}
