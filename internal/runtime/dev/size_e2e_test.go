package dev_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// jsonOf is a JSON object of about n bytes.
func jsonOf(n int) string { return fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", n-12)) }

// A payload near the size budget into a step that refuses it fails the run
// with the step's answer: before, its dead letter (the payload base64 in a
// JSON envelope) was over the stream's message size, so the run stayed
// pending and the caller got 202 at entry.timeout.
func TestAsyncLargePayloadIntoARefusingStepFailsTheRun(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: async-orchestrated
entry: {timeout: 30s}
resilience: `+fastAsync+`
steps:
- {name: picky, image: demo, args: ["--mode=echo", "--fail-first=100", "--fail-status=400"]}
`)
	dlq := subscribe(t, env, env.Plan.Stream.DeadLetter)
	a := whenPostJSON(t, env.EntryURL, jsonOf(3584<<10))
	g.Expect(a.Code).To(Equal(http.StatusBadRequest), "%.300s", a.Body)
	g.Expect(a.RunError(g).Step).To(Equal("picky"))
	eventually(g, dlq).Should(Receive())
}

// A step's input merged from outputs that together exceed the size budget
// fails the run with 413 naming those steps, instead of the orchestrator
// retrying a command the broker refuses.
func TestAsyncFanInOverTheBudgetFailsWith413(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: async-orchestrated
entry: {timeout: 30s}
resilience: `+fastAsync+`
steps:
- {name: left, image: demo, args: ["--mode=echo"]}
- {name: right, image: demo, args: ["--mode=echo"]}
- {name: join, image: demo, args: ["--mode=echo"], dependsOn: [left, right]}
`)
	a := whenPostJSON(t, env.EntryURL, jsonOf(2560<<10))
	g.Expect(a.Code).To(Equal(http.StatusRequestEntityTooLarge), "%.300s", a.Body)
	e := a.RunError(g)
	g.Expect(e.Message).To(And(ContainSubstring("left"), ContainSubstring("right"), ContainSubstring("join")))
	g.Expect(stepStats(g, env, "join").Calls).To(BeZero())
}

// A run's result and its steps' outputs near the budget are kept: the run
// record refers to them instead of holding copies.
func TestAsyncOutputsNearTheBudgetAreTheResult(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: async-orchestrated
entry: {timeout: 30s}
steps:
- {name: first, image: demo, args: ["--mode=echo"]}
- {name: second, image: demo, args: ["--mode=echo"], dependsOn: [first]}
`)
	body := jsonOf(4000 << 10)
	a := whenPostJSON(t, env.EntryURL, body)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%.300s", a.Body)
	g.Expect(a.Body).To(HaveLen(len(body)))
	g.Expect(string(a.Body)).To(Equal(body))
	g.Expect(whenGet(t, strings.TrimSuffix(env.EntryURL, "/")+"/runs/"+a.Header.Get("Patchbay-Run-Id")).Body).To(HaveLen(len(body)))
}
