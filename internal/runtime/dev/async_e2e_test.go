package dev_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev/devtest"
	"github.com/patchbay-dev/patchbay/internal/runtime/gateway"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// fastAsync keeps redelivery backoff short and the breaker out of the way.
const fastAsync = "{timeout: 2s, retry: {attempts: 3, backoff: exponential, initialDelay: 10ms, maxDelay: 50ms}, circuitBreaker: {consecutiveFailures: 100}}"

func TestAsyncSamplesAnswerEndToEnd(t *testing.T) {
	for style, want := range map[string]string{
		"async-orchestrated": `{"id":7,"valid":true,"picked":true,"packed":true,"shipped":true}`,
		"choreography":       `{"id":7,"reserved":true,"charged":true}`,
		"hybrid":             `{"charge":{"id":7,"valid":true,"charged":true},"reserve":{"id":7,"valid":true,"reserved":true}}`,
	} {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env, a := expectSampleAnswers(t, g, style, want)
			runID := a.Header.Get(contract.HeaderRunID)
			g.Expect(runID).NotTo(BeEmpty())
			// The outcome is in the runs bucket too.
			r := whenGet(t, env.EntryURL+"runs/"+runID)
			g.Expect(r.Code).To(Equal(http.StatusOK))
			g.Expect(r.Body).To(MatchJSON(want))
		})
	}
}

func TestAsyncStepsReceiveTheStepContractOverTheBus(t *testing.T) {
	g := NewWithT(t)
	env := givenSample(t, "async-orchestrated")
	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	runID := a.Header.Get(contract.HeaderRunID)
	var traces []string
	for _, step := range []string{"validate", "pick", "pack", "ship"} {
		h := stepStats(g, env, step).LastHeaders
		g.Expect(h).To(HaveKeyWithValue("Ce-Id", runID+"."+step))
		g.Expect(h).To(HaveKeyWithValue("Ce-Specversion", "1.0"))
		g.Expect(h).To(HaveKeyWithValue("Patchbay-Run-Id", runID))
		g.Expect(h).To(HaveKeyWithValue("Traceparent", MatchRegexp(`^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$`)))
		traces = append(traces, h["Traceparent"][3:35])
	}
	g.Expect(traces).To(HaveEach(traces[0]), "one trace across the bus")
}

func TestAsyncRetryableFailuresAreRetriedByRedelivery(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: async-orchestrated
resilience: `+fastAsync+`
steps:
- {name: first, image: demo, args: ["--mode=transform", "--set=first=true"]}
- {name: flaky, image: demo, args: ["--mode=transform", "--set=flaky=true", "--fail-first=2", "--fail-status=503"], dependsOn: [first]}
`)
	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	g.Expect(a.Body).To(MatchJSON(`{"id":1,"first":true,"flaky":true}`))
	g.Expect(stepStats(g, env, "flaky").Calls).To(BeEquivalentTo(3))
	g.Expect(stepStats(g, env, "first").Calls).To(BeEquivalentTo(1))
	g.Expect(metric(g, env, `patchbay_consumer_redeliveries_total{consumer="flaky_cmd"}`)).To(Equal("2"))
}

func TestAsync4xxIsDeadLetteredAndFailsTheRun(t *testing.T) {
	for _, tc := range []struct{ style, spec string }{
		{"async-orchestrated", `
style: async-orchestrated
steps:
- {name: first, image: demo, args: ["--mode=echo"]}
- {name: picky, image: demo, args: ["--mode=echo", "--fail-first=100", "--fail-status=400"], dependsOn: [first]}
`},
		{"choreography", `
style: choreography
entry: {sync: true, timeout: 10s, event: req, completesOn: [done]}
steps:
- {name: first, image: demo, args: ["--mode=echo"], subscribes: [req], emits: [checked]}
- {name: picky, image: demo, args: ["--mode=echo", "--fail-first=100", "--fail-status=400"], subscribes: [checked], emits: [done]}
`},
	} {
		t.Run(tc.style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenSpec(t, "resilience: "+fastAsync+"\n"+tc.spec)
			dlq := subscribe(t, env, env.Plan.Stream.DeadLetter)

			a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
			g.Expect(a.Code).To(Equal(http.StatusBadRequest), "%s", a.Body)
			e := a.RunError(g)
			g.Expect(e.Step).To(Equal("picky"))
			g.Expect(e.Status).To(Equal(http.StatusBadRequest))
			g.Expect(e.Attempts).To(Equal(1), "a 4xx is not retried")
			g.Expect(stepStats(g, env, "picky").Calls).To(BeEquivalentTo(1))

			var m *nats.Msg
			eventually(g, dlq).Should(Receive(&m))
			dl := bus.ParseDeadLetter("", "", m.Header, m.Data)
			g.Expect(dl.Step).To(Equal("picky"))
			g.Expect(dl.Attempts).To(Equal(1))
			g.Expect(dl.Status).To(Equal(http.StatusBadRequest))
			g.Expect(dl.RunID).To(Equal(a.Header.Get(contract.HeaderRunID)))
			g.Expect(dl.Error).To(ContainSubstring("picky"))
			g.Expect(dl.Payload).To(MatchJSON(`{"id":1}`))
			// The sidecar counts a dead letter after publishing it.
			eventually(g, func(g Gomega) string { return metric(g, env, `patchbay_dead_letters_total{status="400",step="picky"}`) }).Should(Equal("1"))
		})
	}
}

func TestAsyncExhaustedRetriesAreDeadLettered(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: async-orchestrated
resilience: `+fastAsync+`
steps:
- {name: down, image: demo, args: ["--mode=echo", "--fail-first=100", "--fail-status=503"]}
`)
	dlq := subscribe(t, env, env.Plan.Stream.DeadLetter)
	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.Expect(a.Code).To(Equal(http.StatusServiceUnavailable), "%s", a.Body)
	g.Expect(a.RunError(g).Step).To(Equal("down"))
	g.Expect(a.RunError(g).Attempts).To(Equal(3))
	g.Expect(stepStats(g, env, "down").Calls).To(BeEquivalentTo(3))
	var m *nats.Msg
	eventually(g, dlq).Should(Receive(&m))
	dl := bus.ParseDeadLetter("", "", m.Header, m.Data)
	g.Expect(*dl).To(And(HaveField("Step", "down"), HaveField("Attempts", 3), HaveField("Status", 503)))
}

func TestAsyncSlowRunAnswers202ThenTheRunHasTheResult(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: async-orchestrated
entry: {sync: true, timeout: 200ms}
steps:
- {name: slow, image: demo, args: ["--mode=transform", "--set=slow=true", "--hold"]}
`)
	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.Expect(a.Code).To(Equal(http.StatusAccepted), "%s", a.Body)
	loc := a.Header.Get("Location")
	g.Expect(loc).To(Equal("/runs/" + a.Header.Get(contract.HeaderRunID)))
	g.Expect(whenGet(t, env.EntryURL+loc[1:]).Code).To(Equal(http.StatusAccepted), "still pending")

	release(t, env, "slow")
	eventually(g, func(g Gomega) {
		r := whenGet(t, env.EntryURL+loc[1:])
		g.Expect(r.Code).To(Equal(http.StatusOK))
		g.Expect(r.Body).To(MatchJSON(`{"id":1,"slow":true}`))
	}).Should(Succeed())
}

func TestAsyncRunsAreAnsweredByAnyGatewayReplica(t *testing.T) {
	g := NewWithT(t)
	env := givenSample(t, "async-orchestrated")
	a := whenPostJSON(t, env.EntryURL, `{"id":3}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)

	// A second gateway, sharing nothing with the first but the broker.
	conn, err := bus.Connect(bus.Options{URL: env.NATSURL, Name: "second gateway"}, testTelemetry(t).Log)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(conn.Close)
	gw, err := gateway.Start(context.Background(), gateway.Config{Plan: env.Plan, Conn: conn, Telemetry: testTelemetry(t)})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(gw.Stop)
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)

	r := whenGet(t, srv.URL+"/runs/"+a.Header.Get(contract.HeaderRunID))
	g.Expect(r.Code).To(Equal(http.StatusOK))
	g.Expect(r.Body).To(MatchJSON(a.Body))
	// And it starts runs of its own, its outcome coming back to its own inbox.
	b := whenPostJSON(t, srv.URL+"/", `{"id":4}`)
	g.Expect(b.Code).To(Equal(http.StatusOK), "%s", b.Body)
	g.Expect(b.Body).To(MatchJSON(`{"id":4,"valid":true,"picked":true,"packed":true,"shipped":true}`))
}

func TestAsyncRedeliveryIsNotDuplicatedDownstream(t *testing.T) {
	g := NewWithT(t)
	env := givenSample(t, "choreography")
	a := whenPostJSON(t, env.EntryURL, `{"orderId":"o-9"}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	runID := a.Header.Get(contract.HeaderRunID)

	// The entry event of the same run again, as a redelivery would bring it:
	// reserve runs again, but its event is the same message.
	conn := connect(t, env)
	h := nats.Header{contract.HeaderRunID: {runID}, "Content-Type": {"application/json"}}
	_, err := conn.JS.PublishMsg(context.Background(), &nats.Msg{Subject: env.Plan.Entry.EventSubject, Header: h, Data: []byte(`{"orderId":"o-9"}`)},
		jetstream.WithMsgID("redelivered-"+runID))
	g.Expect(err).NotTo(HaveOccurred())
	eventually(g, func() int64 { return stepStats(g, env, "reserve").Calls }).Should(BeEquivalentTo(2))

	reserved := env.Plan.Step("reserve").Output.Emits[0].Subject
	g.Consistently(func() uint64 { return subjectCount(g, conn, env, reserved) }).
		WithTimeout(300 * time.Millisecond).WithPolling(50 * time.Millisecond).Should(BeEquivalentTo(1))
	g.Expect(stepStats(g, env, "charge").Calls).To(BeEquivalentTo(1))
}

func TestHybridLeavesGetTheEventButTheRunDoesNotWaitForThem(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: hybrid
steps:
- {name: validate, image: demo, args: ["--mode=transform", "--set=valid=true"]}
- {name: charge, image: demo, args: ["--mode=transform", "--set=charged=true"], dependsOn: [validate], emits: [payment.captured]}
- {name: notify, image: demo, args: ["--mode=echo", "--hold"], subscribes: [payment.captured]}
- {name: audit, image: demo, args: ["--mode=echo", "--hold"], subscribes: [payment.captured]}
`)
	t.Cleanup(func() { release(t, env, "notify"); release(t, env, "audit") })
	a := whenPostJSON(t, env.EntryURL, `{"id":5}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	g.Expect(a.Body).To(MatchJSON(`{"id":5,"valid":true,"charged":true}`))
	for _, leaf := range []string{"notify", "audit"} {
		eventually(g, func() int64 { return stepStats(g, env, leaf).InFlight }).Should(BeEquivalentTo(1), leaf)
		g.Expect(stepStats(g, env, leaf).LastHeaders).To(And(
			HaveKeyWithValue("Patchbay-Run-Id", a.Header.Get(contract.HeaderRunID)),
			HaveKeyWithValue("Ce-Type", "payment.captured"),
			HaveKeyWithValue("Ce-Id", bus.MsgID(a.Header.Get(contract.HeaderRunID), "charge", "cmd", "payment.captured"))),
			"the leaf gets the event as charge emitted it")
	}
}

func TestReadModelServesTheProjectedEvent(t *testing.T) {
	g := NewWithT(t)
	env := givenSample(t, "choreography")
	g.Expect(whenGet(t, env.EntryURL+"query/o-7").Code).To(Equal(http.StatusNotFound))
	a := whenPostJSON(t, env.EntryURL, `{"orderId":"o-7","qty":2}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	eventually(g, func(g Gomega) {
		r := whenGet(t, env.EntryURL+"query/o-7")
		g.Expect(r.Code).To(Equal(http.StatusOK))
		g.Expect(r.Body).To(MatchJSON(`{"orderId":"o-7","qty":2,"reserved":true,"charged":true}`))
	}).Should(Succeed())
	g.Expect(metric(g, env, `patchbay_read_model_lag_seconds{workflow="orders"}`)).NotTo(BeEmpty())
}

func TestGatewayProxiesDualSupportRequestsToSteps(t *testing.T) {
	g := NewWithT(t)
	env := givenSample(t, "hybrid")
	r := whenGet(t, env.EntryURL+"steps/notify/_demo/stats")
	g.Expect(r.Code).To(Equal(http.StatusOK))
	g.Expect(r.Body).To(ContainSubstring(`"name":"notify"`))
	g.Expect(whenGet(t, env.EntryURL+"steps/nope/x").Code).To(Equal(http.StatusNotFound))
}

// --- helpers of the async tests

func whenGet(t *testing.T, url string) answer {
	t.Helper()
	a, err := devtest.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func release(t *testing.T, env *dev.Env, step string) {
	t.Helper()
	resp, err := client.Post(env.AppURL(step)+"/_demo/release", "", nil)
	if err != nil {
		t.Errorf("release %s: %v", step, err)
		return
	}
	_ = resp.Body.Close()
}

func connect(t *testing.T, env *dev.Env) *bus.Conn {
	t.Helper()
	conn, err := bus.Connect(bus.Options{URL: env.NATSURL, Name: "test"}, testTelemetry(t).Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// subscribe collects the messages published on subject from now on.
func subscribe(t *testing.T, env *dev.Env, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	nc := connect(t, env).NC
	if _, err := nc.ChanSubscribe(subject, ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// subjectCount is how many messages the workflow's stream holds on subject.
func subjectCount(g Gomega, conn *bus.Conn, env *dev.Env, subject string) uint64 {
	s, err := conn.JS.Stream(context.Background(), env.Plan.Stream.Name)
	g.Expect(err).NotTo(HaveOccurred())
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	g.Expect(err).NotTo(HaveOccurred())
	return info.State.Subjects[subject]
}

func testTelemetry(t *testing.T) *telemetry.Telemetry { return devtest.Telemetry(t) }

// metric is the value of one series on the dev mode's /metrics, "" when absent.
func metric(g Gomega, env *dev.Env, series string) string {
	resp, err := client.Get(env.AdminURL + "metrics")
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// A Retry-After that outlasts the run's deadline ends the retries at once:
// the step's own answer fails the run, rather than the run sitting out the
// pause only to fail with 504 at its deadline.
func TestAsyncRetryAfterPastTheRunsDeadlineIsNotWaitedFor(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: async-orchestrated
runTimeout: 5s
entry: {timeout: 30s}
resilience: {timeout: 2s, retry: {attempts: 3, initialDelay: 10ms, maxDelay: 1m}}
steps:
- {name: busy, image: demo, args: ["--mode=echo", "--fail-first=1", "--fail-status=503", "--retry-after=40s"]}
`)
	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.Expect(a.Code).To(Equal(http.StatusServiceUnavailable), "%s", a.Body)
	e := a.RunError(g)
	g.Expect(e.Step).To(Equal("busy"))
	g.Expect(e.Status).To(Equal(http.StatusServiceUnavailable))
	g.Expect(e.Attempts).To(Equal(1))
	g.Expect(stepStats(g, env, "busy").Calls).To(BeEquivalentTo(1))
}

// A retried POST with the same Idempotency-Key gets the first run's id and
// result, and the steps' apps are called once.
func TestAsyncIdempotencyKeyCallsTheAppsOnce(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: async-orchestrated
steps:
- {name: first, image: demo, args: ["--mode=transform", "--set=first=true"]}
- {name: second, image: demo, args: ["--mode=transform", "--set=second=true"], dependsOn: [first]}
`)
	send := func() answer {
		req, err := http.NewRequest(http.MethodPost, env.EntryURL, strings.NewReader(`{"id":9}`))
		g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "order-9-attempt")
		a, err := devtest.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		return a
	}
	a, b := send(), send()
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	g.Expect(b.Code).To(Equal(http.StatusOK), "%s", b.Body)
	g.Expect(b.Body).To(MatchJSON(a.Body))
	g.Expect(b.Header.Get(contract.HeaderRunID)).To(Equal(a.Header.Get(contract.HeaderRunID)))
	g.Expect(stepStats(g, env, "first").Calls).To(BeEquivalentTo(1))
	g.Expect(stepStats(g, env, "second").Calls).To(BeEquivalentTo(1))
}

// A choreographed run that never gets its completing event fails at its
// deadline with 504, naming the events it waits for, and is dead-lettered
// with the entry event, so that it can be replayed.
func TestChoreographedRunPastItsDeadlineFails(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: choreography
runTimeout: 2s
entry: {sync: true, timeout: 30s, event: req, completesOn: [done]}
resilience: {timeout: 10s}
steps:
- {name: first, image: demo, args: ["--mode=echo"], subscribes: [req], emits: [checked]}
- {name: slow, image: demo, args: ["--mode=echo", "--latency=4s"], subscribes: [checked], emits: [done]}
`)
	dlq := subscribe(t, env, env.Plan.Stream.DeadLetter)
	a := whenPostJSON(t, env.EntryURL, `{"id":3}`)
	g.Expect(a.Code).To(Equal(http.StatusGatewayTimeout), "%s", a.Body)
	g.Expect(a.RunError(g).Message).To(And(ContainSubstring("deadline"), ContainSubstring("event done")))
	var m *nats.Msg
	eventually(g, dlq).Should(Receive(&m))
	dl := bus.ParseDeadLetter("", "", m.Header, m.Data)
	g.Expect(dl.Subject).To(Equal(env.Plan.Entry.EventSubject))
	g.Expect(dl.Code).To(Equal(http.StatusGatewayTimeout))
	g.Expect(dl.Payload).To(MatchJSON(`{"id":3}`))
}
