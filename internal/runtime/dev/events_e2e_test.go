package dev_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/demostep"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev/devtest"
	"github.com/patchbay-dev/patchbay/internal/runtime/gateway"
)

// payments: pay chooses payment.failed for a declined card, else
// payment.captured; ship and refund each react to one of them, notify to both.
const payments = `
style: choreography
resilience: ` + fastAsync + `
entry: {sync: true, timeout: 10s, event: order.placed, completesOn: [done]}
steps:
- {name: pay, image: demo, args: ["--mode=transform", "--set=paid=true", "--emit=payment.captured", "--emit-when=card=declined:payment.failed"], subscribes: [order.placed], emits: [payment.captured, payment.failed]}
- {name: ship, image: demo, args: ["--mode=transform", "--set=shipped=true"], subscribes: [payment.captured], emits: [done]}
- {name: refund, image: demo, args: ["--mode=transform", "--set=refunded=true"], subscribes: [payment.failed], emits: [done]}
- {name: notify, image: demo, args: ["--mode=echo"], subscribes: [payment.captured, payment.failed]}
`

func TestAStepEmitsTheEventItChoosesAndOnlyItsSubscribersReact(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, payments)
	paySource := contract.SourceOf(env.Plan.Namespace, env.Plan.Workflow, "pay")

	a := whenPostJSON(t, env.EntryURL, `{"id":1,"card":"declined"}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	g.Expect(a.Body).To(MatchJSON(`{"id":1,"card":"declined","refunded":true}`), "refund reacted to payment.failed")
	runID := a.Header.Get(contract.HeaderRunID)
	eventually(g, func() int64 { return stepStats(g, env, "notify").Calls }).Should(BeEquivalentTo(1))
	g.Expect(stepStats(g, env, "notify").LastHeaders).To(And(
		HaveKeyWithValue("Ce-Type", "payment.failed"),
		HaveKeyWithValue("Ce-Source", paySource),
		HaveKeyWithValue("Ce-Id", bus.MsgID(runID, "pay", "order.placed", "payment.failed")),
		HaveKeyWithValue("Patchbay-Run-Id", runID)), "notify sees which event it got, and from whom")
	g.Expect(stepStats(g, env, "refund").LastHeaders).To(HaveKeyWithValue("Ce-Type", "payment.failed"))
	g.Expect(stepStats(g, env, "pay").LastHeaders).To(And(
		HaveKeyWithValue("Ce-Type", "order.placed"),
		HaveKeyWithValue("Ce-Source", contract.SourceOf(env.Plan.Namespace, env.Plan.Workflow, "gateway"))))

	a = whenPostJSON(t, env.EntryURL, `{"id":2,"card":"ok"}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	g.Expect(a.Body).To(MatchJSON(`{"id":2,"card":"ok","paid":true,"shipped":true}`))
	eventually(g, func() int64 { return stepStats(g, env, "notify").Calls }).Should(BeEquivalentTo(2))
	g.Expect(stepStats(g, env, "notify").LastHeaders).To(HaveKeyWithValue("Ce-Type", "payment.captured"))

	g.Expect(stepStats(g, env, "ship").Calls).To(BeEquivalentTo(1), "ship reacted to payment.captured only")
	g.Expect(stepStats(g, env, "refund").Calls).To(BeEquivalentTo(1), "refund reacted to payment.failed only")
	conn := connect(t, env)
	for typ, want := range map[string]uint64{"payment.failed": 1, "payment.captured": 1} {
		g.Expect(subjectCount(g, conn, env, eventSubject(env, typ))).To(Equal(want), "one %s per run that chose it", typ)
	}
}

func TestHybridStepsChooseTheirEventToo(t *testing.T) {
	g := NewWithT(t)
	env := givenSample(t, "hybrid")
	a := whenPostJSON(t, env.EntryURL, `{"id":3,"card":"declined"}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	g.Expect(a.Body).To(MatchJSON(`{"charge":{"id":3,"card":"declined","valid":true},"reserve":{"id":3,"card":"declined","valid":true,"reserved":true}}`))
	eventually(g, func() int64 { return stepStats(g, env, "notify").Calls }).Should(BeEquivalentTo(1))
	g.Expect(stepStats(g, env, "notify").LastHeaders).To(And(
		HaveKeyWithValue("Ce-Type", "payment.failed"),
		HaveKeyWithValue("Ce-Source", contract.SourceOf(env.Plan.Namespace, env.Plan.Workflow, "charge"))))
	g.Expect(subjectCount(g, connect(t, env), env, eventSubject(env, "payment.captured"))).To(BeZero(), "audit's event was not emitted")
	g.Expect(stepStats(g, env, "audit").Calls).To(BeZero())
}

func TestAnEventTheStepDoesNotDeclareIsDeadLetteredAsAContractError(t *testing.T) {
	for name, tc := range map[string]struct{ args, emits, want string }{
		"undeclared type": {`"--emit=order.shipped"`, `[done]`, "answered Ce-Type: order.shipped, which is not among its emits (done)"},
		"no choice":       {`"--mode=echo"`, `[done, lost]`, "declares several emits (done, lost) and answered without Ce-Type"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			env := givenSpec(t, `
style: choreography
resilience: `+fastAsync+`
entry: {sync: true, timeout: 10s, event: req, completesOn: [done]}
steps:
- {name: pick, image: demo, args: [`+tc.args+`], subscribes: [req], emits: `+tc.emits+`}
`)
			dlq := subscribe(t, env, env.Plan.Stream.DeadLetter)
			a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
			g.Expect(a.Code).To(Equal(http.StatusBadGateway), "%s", a.Body)
			e := a.RunError(g)
			g.Expect(e.Step).To(Equal("pick"))
			g.Expect(e.Message).To(ContainSubstring(tc.want))

			var m *nats.Msg
			eventually(g, dlq).Should(Receive(&m))
			dl := bus.ParseDeadLetter("", "", m.Header, m.Data)
			g.Expect(dl.Step).To(Equal("pick"))
			g.Expect(dl.Error).To(And(ContainSubstring("broke the step contract"), ContainSubstring(tc.want)))
			g.Expect(dl.Status).To(Equal(http.StatusOK))
			g.Expect(dl.Attempts).To(Equal(1), "a contract error is not retried")
			g.Expect(stepStats(g, env, "pick").Calls).To(BeEquivalentTo(1))
			g.Expect(subjectCount(g, connect(t, env), env, eventSubject(env, "done"))).To(BeZero())
		})
	}
}

func TestAStepThatAnswers204EmitsNothing(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: choreography
resilience: `+fastAsync+`
entry: {sync: false, event: req}
steps:
- {name: quiet, image: demo, args: ["--status=204"], subscribes: [req], emits: [done]}
- {name: after, image: demo, args: ["--mode=echo"], subscribes: [done]}
`)
	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.Expect(a.Code).To(Equal(http.StatusAccepted), "%s", a.Body)
	conn := connect(t, env)
	// The sidecar publishes what a message makes before it acknowledges it:
	// once the message is acknowledged, whatever it emitted is in the stream.
	eventually(g, func(g Gomega) {
		c, err := conn.JS.Consumer(context.Background(), env.Plan.Stream.Name, env.Plan.Step("quiet").Consumers[0].Durable)
		g.Expect(err).NotTo(HaveOccurred())
		ci, err := c.Info(context.Background())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ci.AckFloor.Stream).To(BeNumerically(">=", 1))
		g.Expect(ci.NumAckPending).To(BeZero())
	}).Should(Succeed())
	g.Expect(stepStats(g, env, "quiet").Calls).To(BeEquivalentTo(1))
	g.Expect(subjectCount(g, conn, env, eventSubject(env, "done"))).To(BeZero())
	g.Expect(stepStats(g, env, "after").Calls).To(BeZero())
}

// projections: the read model of order events. placed has no subscriber
// that emits anything (log answers 204), so the test publishes the events
// itself, as any producer on the bus may.
func projections(mode string) string {
	return `
style: choreography
entry: {sync: false, event: order.placed}
steps:
- {name: log, image: demo, args: ["--status=204"], subscribes: [order.placed], emits: [order.paid, order.shipped]}
readModel:
  events: [order.placed, order.paid, order.shipped]
  key: /orderId
  mode: ` + mode + `
  fields:
  - {event: order.shipped, select: [/tracking, /payment/currency]}
`
}

func TestReadModelMergesTheEventsOfAKey(t *testing.T) {
	for mode, want := range map[string]string{
		// paid removes items (null), adds payment; shipped adds only the
		// selected tracking and payment.currency, not its status or secret.
		"merge":   `{"orderId":"k1","status":"paid","payment":{"amount":5,"currency":"EUR"},"tracking":"T1"}`,
		"replace": `{"tracking":"T1","payment":{"currency":"EUR"}}`,
	} {
		t.Run(mode, func(t *testing.T) {
			g := NewWithT(t)
			env := givenSpec(t, projections(mode))
			conn := connect(t, env)
			publish := func(typ, body string) {
				_, err := conn.JS.PublishMsg(context.Background(), &nats.Msg{Subject: eventSubject(env, typ), Data: []byte(body),
					Header: nats.Header{"Content-Type": {"application/json"}, "Ce-Type": {typ}}})
				g.Expect(err).NotTo(HaveOccurred())
			}
			publish("order.placed", `{"orderId":"k1","status":"placed","items":2}`)
			publish("order.paid", `{"orderId":"k1","status":"paid","items":null,"payment":{"amount":5}}`)
			publish("order.shipped", `{"orderId":"k1","status":"shipped","secret":"s","tracking":"T1","payment":{"currency":"EUR"}}`)
			publish("order.placed", `{"orderId":"k2","status":"placed"}`)
			publish("order.placed", `{"orderId":"x9","status":"placed"}`)

			eventually(g, func(g Gomega) {
				r := whenGet(t, env.EntryURL+"query/x9")
				g.Expect(r.Code).To(Equal(http.StatusOK), "%s", r.Body)
			}).Should(Succeed())
			r := whenGet(t, env.EntryURL+"query/k1")
			g.Expect(r.Code).To(Equal(http.StatusOK), "%s", r.Body)
			g.Expect(r.Body).To(MatchJSON(want))
			g.Expect(r.Header.Get(gateway.HeaderRevision)).To(Equal("3"), "three events wrote k1, one revision each")
			at, err := time.Parse(time.RFC3339Nano, r.Header.Get(gateway.HeaderProjectedAt))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(at).NotTo(BeZero())

			var list gateway.DocumentList
			getJSON(g, env.EntryURL+"query?prefix=k", &list)
			g.Expect(list.Next).To(BeEmpty())
			g.Expect(list.Items).To(HaveLen(2))
			g.Expect(list.Items[0].Key).To(Equal("k1"))
			g.Expect(list.Items[0].Revision).To(BeEquivalentTo(3))
			g.Expect(list.Items[0].ProjectedAt).To(BeTemporally("==", at))
			g.Expect(list.Items[0].Document).To(MatchJSON(want))
			g.Expect(list.Items[1].Key).To(Equal("k2"))

			getJSON(g, env.EntryURL+"query?limit=1", &list)
			g.Expect(list.Items).To(HaveLen(1))
			g.Expect(list.Items[0].Key).To(Equal("k1"))
			g.Expect(list.Next).To(Equal("k1"))
			getJSON(g, env.EntryURL+"query?limit=5&after=k1", &list)
			g.Expect(list.Items).To(HaveLen(2))
			g.Expect([]string{list.Items[0].Key, list.Items[1].Key}).To(Equal([]string{"k2", "x9"}))

			// x9 is readable a moment before its event is acknowledged.
			eventually(g, func() string { return metric(g, env, `patchbay_read_model_pending{workflow="test"}`) }).Should(Equal("0"))
			var st gateway.ReadModelStatus
			eventually(g, func(g Gomega) {
				getJSON(g, env.EntryURL+"readmodel", &st)
				g.Expect(st.Pending).To(BeZero())
			}).Should(Succeed())
			g.Expect(st.Current).To(BeTrue())
			g.Expect(st.LastProjectedAt).NotTo(BeNil())
			g.Expect(*st.LastProjectedAt).To(BeTemporally(">=", at), "the last event acknowledged (x9) came after k1's")
		})
	}
}

func TestReadModelListRefusesBadParameters(t *testing.T) {
	env := givenSpec(t, projections("merge"))
	for query, field := range map[string]string{
		"limit=0":                                "limit query parameter",
		"limit=1001":                             "limit query parameter",
		"limit=x":                                "limit query parameter",
		"prefix=" + strings.Repeat("p", 257):     "prefix query parameter",
		"prefix=%FF":                             "prefix query parameter",
		"after=" + strings.Repeat("%C3%BC", 200): "after query parameter",
	} {
		t.Run(query[:min(len(query), 20)], func(t *testing.T) {
			g := NewWithT(t)
			a := whenGet(t, env.EntryURL+"query?"+query)
			g.Expect(a.Code).To(Equal(http.StatusBadRequest), "%.300s", a.Body)
			g.Expect(a.RunError(g).Message).To(ContainSubstring(field))
		})
	}
}

// eventSubject is the subject of event type typ in env's plan.
func eventSubject(env *dev.Env, typ string) string {
	for _, ev := range env.Plan.Events {
		if ev.Type == typ {
			return ev.Subject
		}
	}
	panic("no event " + typ)
}

func TestSyncOrchestratorRunsEachStepOnceItsOwnDependenciesAnswered(t *testing.T) {
	g := NewWithT(t)
	// Levels: a | fast, slow | fast2 | join. Run level by level, fast2 would
	// wait for slow although it needs only fast.
	env := givenWorkflow(t, devtest.WorkflowYAML("sync-orchestrated", "{timeout: 30s}",
		stepSpec{Name: "a", Args: []string{"--mode=transform", "--set=a=true"}},
		stepSpec{Name: "slow", Args: []string{"--mode=transform", "--set=slow=true", "--latency=2s"}, DependsOn: []string{"a"}},
		stepSpec{Name: "fast", Args: []string{"--mode=transform", "--set=fast=true"}, DependsOn: []string{"a"}},
		stepSpec{Name: "fast2", Args: []string{"--mode=transform", "--set=fast2=true", "--latency=1s"}, DependsOn: []string{"fast"}},
		stepSpec{Name: "join", Args: []string{"--mode=echo"}, DependsOn: []string{"slow", "fast2"}},
	))
	g.Expect(env.Plan.Levels).To(Equal([][]string{{"a"}, {"fast", "slow"}, {"fast2"}, {"join"}}))
	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	g.Expect(a.Body).To(MatchJSON(`{"slow":{"id":1,"a":true,"slow":true},"fast2":{"id":1,"a":true,"fast":true,"fast2":true}}`))

	at := map[string]*demostep.Timing{}
	for _, s := range []string{"a", "slow", "fast", "fast2", "join"} {
		at[s] = stepStats(g, env, s).Last
		g.Expect(at[s]).NotTo(BeNil(), s)
	}
	g.Expect(at["fast2"].Start).To(BeTemporally(">=", at["fast"].End), "fast2 waits for its dependency")
	g.Expect(at["fast2"].Start).To(BeTemporally("<", at["slow"].End), "fast2 does not wait for slow, which it does not depend on")
	g.Expect(at["join"].Start).To(BeTemporally(">=", at["slow"].End))
	g.Expect(at["join"].Start).To(BeTemporally(">=", at["fast2"].End))

	// The run, as the steps saw it, took its critical path (a, slow, join)
	// and overheads, not the sum of its levels' slowest steps.
	took := func(s string) time.Duration { return at[s].End.Sub(at[s].Start) }
	run := at["join"].End.Sub(at["a"].Start)
	levels := took("a") + took("slow") + took("fast2") + took("join")
	g.Expect(run).To(BeNumerically("<", levels), "run %s, sum of the levels %s", run, levels)
	g.Expect(run).To(BeNumerically(">=", took("a")+took("slow")+took("join")))
}

func TestSyncOrchestratorCancelsTheCallsInFlightOnAFailure(t *testing.T) {
	g := NewWithT(t)
	// held answers only when released or canceled; bad refuses at once.
	// The run's deadline (entry.timeout) and held's attempt timeout are
	// longer than the test client waits for an answer.
	yaml := strings.Replace(devtest.WorkflowYAML("sync-orchestrated", "{timeout: 10m, retry: {attempts: 1}}",
		stepSpec{Name: "a", Args: []string{"--mode=echo"}},
		stepSpec{Name: "held", Args: []string{"--mode=echo", "--hold"}, DependsOn: []string{"a"}},
		stepSpec{Name: "bad", Args: []string{"--mode=echo", "--fail-first=100", "--fail-status=400"}, DependsOn: []string{"a"}},
		stepSpec{Name: "after", Args: []string{"--mode=echo"}, DependsOn: []string{"held"}},
	), "  steps:\n", "  entry: {timeout: 10m}\n  steps:\n", 1)
	env := givenWorkflow(t, yaml)
	t.Cleanup(func() { release(t, env, "held") })
	g.Expect(env.Plan.Entry.Timeout.Duration).To(Equal(10 * time.Minute))
	// The run answers although held is never released: its call was canceled.
	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.Expect(a.Code).To(Equal(http.StatusBadRequest), "%s", a.Body)
	g.Expect(a.RunError(g).Step).To(Equal("bad"))
	eventually(g, func() int64 { return stepStats(g, env, "held").InFlight }).Should(BeZero())
	g.Expect(stepStats(g, env, "held").Calls).To(BeEquivalentTo(1))
	g.Expect(stepStats(g, env, "after").Calls).To(BeZero(), "a step whose dependency was canceled never starts")
}
