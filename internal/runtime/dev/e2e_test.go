package dev_test

import (
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev/devtest"
)

// Failure injection (retries, 4xx, timeouts, breaker, bulkhead, bad input)
// runs against the real binaries, in images/runtime.

func TestSamplesAnswerEndToEnd(t *testing.T) {
	for style, want := range map[string]string{
		"sync-chain":        `{"id":7,"cart":"loaded","priced":true,"taxed":true}`,
		"sync-orchestrated": `{"charge":{"id":7,"valid":true,"charged":true},"reserve":{"id":7,"valid":true,"reserved":true},"confirmed":true}`,
	} {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenSample(t, style)
			a := whenPostJSON(t, env.EntryURL, `{"id":7}`)
			g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
			g.Expect(a.Body).To(MatchJSON(want))
			g.Expect(a.Header.Get("Content-Type")).To(Equal("application/json"))
			g.Expect(a.Header.Get(contract.HeaderRunID)).NotTo(BeEmpty())
		})
	}
}

func TestStepsReceiveTheStepContractHeaders(t *testing.T) {
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenWorkflow(t, devtest.WorkflowYAML(style, "",
				stepSpec{Name: "first", Args: []string{"--mode=echo"}},
				stepSpec{Name: "second", Args: []string{"--mode=echo"}, DependsOn: []string{"first"}}))
			a := whenPost(t, env.EntryURL+"", "application/json", []byte(`{"x":1}`))
			g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
			runID := a.Header.Get(contract.HeaderRunID)
			for _, step := range []string{"first", "second"} {
				h := stepStats(g, env, step).LastHeaders
				g.Expect(h).To(HaveKeyWithValue("Ce-Specversion", "1.0"))
				g.Expect(h).To(HaveKeyWithValue("Ce-Id", runID+"."+step))
				g.Expect(h).To(HaveKeyWithValue("Ce-Type", contract.EventType))
				g.Expect(h).To(HaveKeyWithValue("Ce-Source", HavePrefix("/patchbay/default/test/")))
				g.Expect(h).To(HaveKeyWithValue("Patchbay-Run-Id", runID))
				g.Expect(h).To(HaveKeyWithValue("Traceparent", MatchRegexp(`^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$`)))
				g.Expect(h).To(HaveKeyWithValue("Content-Type", "application/json"))
			}
			// One trace across the run.
			first, second := stepStats(g, env, "first").LastHeaders["Traceparent"], stepStats(g, env, "second").LastHeaders["Traceparent"]
			g.Expect(second[3:35]).To(Equal(first[3:35]))
		})
	}
}

func TestParallelStepsAreInFlightTogether(t *testing.T) {
	// The middle steps join a two-party barrier before answering: both pass it
	// only if both are in flight at once. Run one after the other, the first
	// would wait at the barrier alone and the run would fail.
	t.Run("sync-orchestrated diamond", func(t *testing.T) {
		g := NewWithT(t)
		barrier := "--barrier=" + barrierURL(t, "diamond", 2)
		env := givenWorkflow(t, devtest.WorkflowYAML("sync-orchestrated", "",
			stepSpec{Name: "validate", Args: []string{"--mode=transform", "--set=valid=true"}},
			stepSpec{Name: "charge", Args: []string{"--mode=transform", "--set=charged=true", barrier}, DependsOn: []string{"validate"}},
			stepSpec{Name: "reserve", Args: []string{"--mode=transform", "--set=reserved=true", barrier}, DependsOn: []string{"validate"}},
			stepSpec{Name: "confirm", Args: []string{"--mode=transform", "--set=confirmed=true"}, DependsOn: []string{"charge", "reserve"}}))
		a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
		g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
		g.Expect(a.Body).To(MatchJSON(`{"charge":{"id":1,"valid":true,"charged":true},"reserve":{"id":1,"valid":true,"reserved":true},"confirmed":true}`))
		g.Expect(stepStats(g, env, "charge").BarrierMet).To(BeEquivalentTo(1))
		g.Expect(stepStats(g, env, "reserve").BarrierMet).To(BeEquivalentTo(1))
	})
	t.Run("sync-chain fan-out", func(t *testing.T) {
		g := NewWithT(t)
		barrier := "--barrier=" + barrierURL(t, "fanout", 2)
		env := givenWorkflow(t, devtest.WorkflowYAML("sync-chain", "",
			stepSpec{Name: "root", Args: []string{"--mode=transform", "--set=root=true"}},
			stepSpec{Name: "left", Args: []string{"--mode=transform", "--set=left=true", barrier}, DependsOn: []string{"root"}},
			stepSpec{Name: "right", Args: []string{"--mode=transform", "--set=right=true", barrier}, DependsOn: []string{"root"}},
			stepSpec{Name: "after-right", Args: []string{"--mode=transform", "--set=last=true"}, DependsOn: []string{"right"}}))
		a := whenPostJSON(t, env.EntryURL, `{}`)
		g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
		// The result is an object of the sinks: left, and after-right behind right.
		g.Expect(a.Body).To(MatchJSON(`{"left":{"root":true,"left":true},"after-right":{"root":true,"right":true,"last":true}}`))
		g.Expect(stepStats(g, env, "left").BarrierMet).To(BeEquivalentTo(1))
		g.Expect(stepStats(g, env, "right").BarrierMet).To(BeEquivalentTo(1))
	})
}

func TestAdminEndpoints(t *testing.T) {
	g := NewWithT(t)
	env := givenSample(t, "sync-orchestrated")
	g.Expect(whenPostJSON(t, env.EntryURL, `{}`).Code).To(Equal(http.StatusOK))
	for path, want := range map[string]string{
		"healthz":        "ok",
		"readyz":         "ok",
		"metrics":        `patchbay_breaker_state{from="orchestrator",to="charge"} 0`,
		"debug/breakers": `"to": "reserve"`,
	} {
		resp, err := client.Get(env.AdminURL + path)
		g.Expect(err).NotTo(HaveOccurred())
		var body strings.Builder
		readBody(&body, resp)
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK), path)
		g.Expect(body.String()).To(ContainSubstring(want), path)
	}
	resp, err := client.Get(env.AdminURL + "metrics")
	g.Expect(err).NotTo(HaveOccurred())
	var body strings.Builder
	readBody(&body, resp)
	g.Expect(body.String()).To(And(
		ContainSubstring(`patchbay_runs_total{outcome="success",workflow="checkout"} 1`),
		ContainSubstring(`patchbay_hop_attempts_total{from="orchestrator",to="confirm"} 1`),
		ContainSubstring(`patchbay_inbound_requests_total{code="2xx",step="validate"} 1`),
	))
}
