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
			_, a := expectSampleAnswers(t, g, style, want)
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
	transform := func(name, set, barrier string, dependsOn ...string) stepSpec {
		args := []string{"--mode=transform", "--set=" + set + "=true"}
		if barrier != "" {
			args = append(args, "--barrier="+barrier)
		}
		return stepSpec{Name: name, Args: args, DependsOn: dependsOn}
	}
	for _, tc := range []struct {
		name, style string
		steps       func(barrier string) []stepSpec
		body, want  string
		together    []string // the steps that join the barrier
	}{
		{
			name: "sync-orchestrated diamond", style: "sync-orchestrated",
			steps: func(barrier string) []stepSpec {
				return []stepSpec{
					transform("validate", "valid", ""),
					transform("charge", "charged", barrier, "validate"),
					transform("reserve", "reserved", barrier, "validate"),
					transform("confirm", "confirmed", "", "charge", "reserve"),
				}
			},
			body:     `{"id":1}`,
			want:     `{"charge":{"id":1,"valid":true,"charged":true},"reserve":{"id":1,"valid":true,"reserved":true},"confirmed":true}`,
			together: []string{"charge", "reserve"},
		},
		{
			name: "sync-chain fan-out", style: "sync-chain",
			steps: func(barrier string) []stepSpec {
				return []stepSpec{
					transform("root", "root", ""),
					transform("left", "left", barrier, "root"),
					transform("right", "right", barrier, "root"),
					transform("after-right", "last", "", "right"),
				}
			},
			body: `{}`,
			// The result is an object of the sinks: left, and after-right behind right.
			want:     `{"left":{"root":true,"left":true},"after-right":{"root":true,"right":true,"last":true}}`,
			together: []string{"left", "right"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			env := givenWorkflow(t, devtest.WorkflowYAML(tc.style, "", tc.steps(barrierURL(t, tc.style, len(tc.together)))...))
			a := whenPostJSON(t, env.EntryURL, tc.body)
			g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
			g.Expect(a.Body).To(MatchJSON(tc.want))
			for _, step := range tc.together {
				g.Expect(stepStats(g, env, step).BarrierMet).To(BeEquivalentTo(1), step)
			}
		})
	}
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
