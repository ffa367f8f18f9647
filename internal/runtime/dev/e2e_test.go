package dev_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
)

// fastRetries keeps retries quick and the breaker out of the way.
const fastRetries = "{timeout: 2s, retry: {attempts: 3, backoff: exponential, initialDelay: 10ms, maxDelay: 50ms}, circuitBreaker: {consecutiveFailures: 100}}"

func TestSamplesAnswerEndToEnd(t *testing.T) {
	for style, want := range map[string]string{
		"sync-chain":        `{"id":7,"cart":"loaded","priced":true,"taxed":true}`,
		"sync-orchestrated": `{"charge":{"id":7,"valid":true,"charged":true},"reserve":{"id":7,"valid":true,"reserved":true},"confirmed":true}`,
	} {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenSample(t, style)
			a := whenPostJSON(t, env.EntryURL, `{"id":7}`)
			g.Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
			g.Expect(a.body).To(MatchJSON(want))
			g.Expect(a.header.Get("Content-Type")).To(Equal("application/json"))
			g.Expect(a.header.Get(hop.HeaderRunID)).NotTo(BeEmpty())
		})
	}
}

func TestStepsReceiveTheStepContractHeaders(t *testing.T) {
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenWorkflow(t, workflowYAML(style, "",
				stepSpec{name: "first", args: []string{"--mode=echo"}},
				stepSpec{name: "second", args: []string{"--mode=echo"}, dependsOn: []string{"first"}}))
			a := whenPost(t, env.EntryURL+"", "application/json", []byte(`{"x":1}`))
			g.Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
			runID := a.header.Get(hop.HeaderRunID)
			for _, step := range []string{"first", "second"} {
				h := stepStats(g, env, step).LastHeaders
				g.Expect(h).To(HaveKeyWithValue("Ce-Specversion", "1.0"))
				g.Expect(h).To(HaveKeyWithValue("Ce-Id", runID+"."+step))
				g.Expect(h).To(HaveKeyWithValue("Ce-Type", hop.EventType))
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
		env := givenWorkflow(t, workflowYAML("sync-orchestrated", "",
			stepSpec{name: "validate", args: []string{"--mode=transform", "--set=valid=true"}},
			stepSpec{name: "charge", args: []string{"--mode=transform", "--set=charged=true", barrier}, dependsOn: []string{"validate"}},
			stepSpec{name: "reserve", args: []string{"--mode=transform", "--set=reserved=true", barrier}, dependsOn: []string{"validate"}},
			stepSpec{name: "confirm", args: []string{"--mode=transform", "--set=confirmed=true"}, dependsOn: []string{"charge", "reserve"}}))
		a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
		g.Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
		g.Expect(a.body).To(MatchJSON(`{"charge":{"id":1,"valid":true,"charged":true},"reserve":{"id":1,"valid":true,"reserved":true},"confirmed":true}`))
		g.Expect(stepStats(g, env, "charge").BarrierMet).To(BeEquivalentTo(1))
		g.Expect(stepStats(g, env, "reserve").BarrierMet).To(BeEquivalentTo(1))
	})
	t.Run("sync-chain fan-out", func(t *testing.T) {
		g := NewWithT(t)
		barrier := "--barrier=" + barrierURL(t, "fanout", 2)
		env := givenWorkflow(t, workflowYAML("sync-chain", "",
			stepSpec{name: "root", args: []string{"--mode=transform", "--set=root=true"}},
			stepSpec{name: "left", args: []string{"--mode=transform", "--set=left=true", barrier}, dependsOn: []string{"root"}},
			stepSpec{name: "right", args: []string{"--mode=transform", "--set=right=true", barrier}, dependsOn: []string{"root"}},
			stepSpec{name: "after-right", args: []string{"--mode=transform", "--set=last=true"}, dependsOn: []string{"right"}}))
		a := whenPostJSON(t, env.EntryURL, `{}`)
		g.Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
		// The result is an object of the sinks: left, and after-right behind right.
		g.Expect(a.body).To(MatchJSON(`{"left":{"root":true,"left":true},"after-right":{"root":true,"right":true,"last":true}}`))
		g.Expect(stepStats(g, env, "left").BarrierMet).To(BeEquivalentTo(1))
		g.Expect(stepStats(g, env, "right").BarrierMet).To(BeEquivalentTo(1))
	})
}

func TestStepFailingTwiceWith503SucceedsOnTheThirdCall(t *testing.T) {
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenWorkflow(t, workflowYAML(style, fastRetries,
				stepSpec{name: "front", args: []string{"--mode=transform", "--set=front=true"}},
				stepSpec{name: "flaky", args: []string{"--mode=transform", "--set=flaky=true", "--fail-first=2", "--fail-status=503"}, dependsOn: []string{"front"}}))
			a := whenPostJSON(t, env.EntryURL, `{}`)
			g.Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
			g.Expect(a.body).To(MatchJSON(`{"front":true,"flaky":true}`))
			g.Expect(stepStats(g, env, "flaky").Calls).To(BeEquivalentTo(3))
			g.Expect(stepStats(g, env, "front").Calls).To(BeEquivalentTo(1), "a retry replays the failed step only")
		})
	}
}

func TestClientErrorFailsTheRunAtOnce(t *testing.T) {
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenWorkflow(t, workflowYAML(style, fastRetries,
				stepSpec{name: "front", args: []string{"--mode=echo"}},
				stepSpec{name: "picky", args: []string{"--mode=echo", "--fail-first=1000", "--fail-status=400"}, dependsOn: []string{"front"}},
				stepSpec{name: "after", args: []string{"--mode=echo"}, dependsOn: []string{"picky"}}))
			a := whenPostJSON(t, env.EntryURL, `{}`)
			g.Expect(a.code).To(Equal(http.StatusBadRequest), "%s", a.body)
			e := a.runError(g)
			g.Expect(e.Step).To(Equal("picky"))
			g.Expect(e.Status).To(Equal(400))
			g.Expect(e.Attempts).To(Equal(1))
			g.Expect(e.RunID).To(Equal(a.header.Get(hop.HeaderRunID)))
			g.Expect(e.Detail).To(ContainSubstring("injected failure"))
			g.Expect(stepStats(g, env, "picky").Calls).To(BeEquivalentTo(1))
			g.Expect(stepStats(g, env, "after").Calls).To(BeZero())
		})
	}
}

func TestSlowStepTimesOutAfterEveryAttempt(t *testing.T) {
	const attemptTimeout, attempts = 100 * time.Millisecond, 3
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenWorkflow(t, workflowYAML(style, fastRetries,
				stepSpec{name: "front", args: []string{"--mode=echo"}},
				stepSpec{name: "slow", args: []string{"--mode=echo", "--latency=1m"}, dependsOn: []string{"front"},
					resilience: "{timeout: 100ms, retry: {attempts: 3, initialDelay: 10ms, maxDelay: 20ms}}"}))
			start := time.Now()
			a := whenPostJSON(t, env.EntryURL, `{}`)
			g.Expect(a.code).To(Equal(http.StatusGatewayTimeout), "%s", a.body)
			g.Expect(time.Since(start)).To(BeNumerically(">=", attempts*attemptTimeout))
			e := a.runError(g)
			g.Expect(e.Step).To(Equal("slow"))
			g.Expect(e.Attempts).To(Equal(attempts))
			g.Expect(e.Status).To(BeZero(), "the step never answered")
			g.Expect(e.Message).To(ContainSubstring("timed out"))
			eventually(g, func(g Gomega) { g.Expect(stepStats(g, env, "slow").Calls).To(BeEquivalentTo(attempts)) }).Should(Succeed())
		})
	}
}

func TestBreakerOpensThenProbesAndCloses(t *testing.T) {
	const failures = 3
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			t.Parallel() // each waits out openDuration
			g := NewWithT(t)
			env := givenWorkflow(t, workflowYAML(style,
				"{retry: {attempts: 1}, circuitBreaker: {consecutiveFailures: 3, openDuration: 2s, halfOpenRequests: 1}}",
				stepSpec{name: "flaky", args: []string{"--mode=echo", "--fail-first=3", "--fail-status=500"}}))
			for range failures {
				a := whenPostJSON(t, env.EntryURL, `{}`)
				g.Expect(a.code).To(Equal(http.StatusBadGateway), "%s", a.body)
				g.Expect(a.runError(g).Status).To(Equal(500))
			}
			g.Expect(breakerOf(g, env, "flaky").State).To(Equal("open"))

			a := whenPostJSON(t, env.EntryURL, `{}`)
			g.Expect(a.code).To(Equal(http.StatusServiceUnavailable), "%s", a.body)
			g.Expect(a.header.Get("Retry-After")).To(MatchRegexp(`^[12]$`))
			e := a.runError(g)
			g.Expect(e.Step).To(Equal("flaky"))
			g.Expect(e.Message).To(ContainSubstring("circuit breaker"))
			g.Expect(stepStats(g, env, "flaky").Calls).To(BeEquivalentTo(failures), "an open breaker does not call the app")

			eventually(g, func(g Gomega) { g.Expect(breakerOf(g, env, "flaky").RetryIn).To(BeEmpty()) }).Should(Succeed())
			a = whenPostJSON(t, env.EntryURL, `{"probe":1}`)
			g.Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
			g.Expect(a.body).To(MatchJSON(`{"probe":1}`))
			g.Expect(stepStats(g, env, "flaky").Calls).To(BeEquivalentTo(failures + 1))
			g.Expect(breakerOf(g, env, "flaky").State).To(Equal("closed"))
		})
	}
}

func TestBulkheadRejectsRequestsOverTheLimit(t *testing.T) {
	const limit = 2
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenWorkflow(t, workflowYAML(style, "{bulkhead: {maxConcurrent: 2}, retry: {attempts: 1}}",
				stepSpec{name: "gated", args: []string{"--mode=echo", "--hold"}}))
			url := env.SidecarURL("gated") + "/"

			var wg sync.WaitGroup
			held := make([]answer, limit)
			for i := range limit {
				wg.Go(func() { held[i] = whenPostJSON(t, url, `{}`) })
			}
			eventually(g, func(g Gomega) { g.Expect(stepStats(g, env, "gated").InFlight).To(BeEquivalentTo(limit)) }).Should(Succeed())

			a := whenPostJSON(t, url, `{}`)
			g.Expect(a.code).To(Equal(http.StatusServiceUnavailable), "%s", a.body)
			g.Expect(a.header.Get(hop.HeaderRejected)).To(Equal("bulkhead"))
			g.Expect(a.runError(g).Step).To(Equal("gated"))
			g.Expect(stepStats(g, env, "gated").Calls).To(BeEquivalentTo(limit), "a rejected request never reaches the app")

			resp, err := client.Post(env.AppURL("gated")+"/_demo/release", "", nil)
			g.Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			wg.Wait()
			for _, h := range held {
				g.Expect(h.code).To(Equal(http.StatusOK), "%s", h.body)
			}
		})
	}
}

func TestBadRequestsGet4xx(t *testing.T) {
	tooLarge := []byte(`{"pad":"` + strings.Repeat("x", plan.DefaultMaxBodyLen) + `"}`)
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenSample(t, style)

			a := whenPost(t, env.EntryURL, "application/json", []byte(`{"id":`))
			g.Expect(a.code).To(Equal(http.StatusBadRequest), "%s", a.body)
			a.runError(g)

			a = whenPost(t, env.EntryURL, "application/json", tooLarge)
			g.Expect(a.code).To(Equal(http.StatusRequestEntityTooLarge), "%s", a.body)

			// Still serving.
			a = whenPostJSON(t, env.EntryURL, `{"id":1}`)
			g.Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
		})
	}
	t.Run("a fan-out refuses a body that is not JSON before any step runs", func(t *testing.T) {
		g := NewWithT(t)
		env := givenWorkflow(t, workflowYAML("sync-chain", "",
			stepSpec{name: "root", args: []string{"--mode=echo"}},
			stepSpec{name: "a", args: []string{"--mode=echo"}, dependsOn: []string{"root"}},
			stepSpec{name: "b", args: []string{"--mode=echo"}, dependsOn: []string{"root"}}))
		a := whenPost(t, env.EntryURL, "text/plain", []byte(`not json`))
		g.Expect(a.code).To(Equal(http.StatusBadRequest), "%s", a.body)
		g.Expect(a.runError(g).Message).To(ContainSubstring("not valid JSON"))
		g.Expect(stepStats(g, env, "root").Calls).To(BeZero())
	})
}

func TestAdminEndpoints(t *testing.T) {
	g := NewWithT(t)
	env := givenSample(t, "sync-orchestrated")
	g.Expect(whenPostJSON(t, env.EntryURL, `{}`).code).To(Equal(http.StatusOK))
	for path, want := range map[string]string{
		"healthz":        "ok",
		"readyz":         "ok",
		"metrics":        `patchbay_breaker_state{from="orchestrator",to="charge"} 0`,
		"debug/breakers": `"to": "reserve"`,
	} {
		resp, err := client.Get(env.AdminURL + path)
		g.Expect(err).NotTo(HaveOccurred())
		var body strings.Builder
		_, _ = ioCopy(&body, resp)
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK), path)
		g.Expect(body.String()).To(ContainSubstring(want), path)
	}
	resp, err := client.Get(env.AdminURL + "metrics")
	g.Expect(err).NotTo(HaveOccurred())
	var body strings.Builder
	_, _ = ioCopy(&body, resp)
	g.Expect(body.String()).To(And(
		ContainSubstring(`patchbay_runs_total{outcome="success",workflow="checkout"} 1`),
		ContainSubstring(`patchbay_hop_attempts_total{from="orchestrator",to="confirm"} 1`),
		ContainSubstring(`patchbay_inbound_requests_total{code="2xx",step="validate"} 1`),
	))
}
