//go:build faults

package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/demostep"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
)

// The predicted failures of the async data plane (issue "No accepted run is
// lost"), each as a case of its own against real processes. A case whose
// feature has not landed carries Label("pending-feature:NAME").

// workflow renders a Workflow: style, the entry, the workflow-wide
// resilience and steps as YAML flow mappings.
func workflow(style, entry, resilience string, steps ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: patchbay.dev/v1alpha1\nkind: Workflow\nmetadata: {name: faults}\nspec:\n  style: %s\n", style)
	if entry != "" {
		fmt.Fprintf(&b, "  entry: %s\n", entry)
	}
	if resilience != "" {
		fmt.Fprintf(&b, "  resilience: %s\n", resilience)
	}
	b.WriteString("  steps:\n")
	for _, s := range steps {
		fmt.Fprintf(&b, "  - %s\n", s)
	}
	return b.String()
}

// quick keeps retries fast and the breaker out of the way; holding is for a
// step held (--hold) until the case releases it: its attempt outlasts any
// wait of the case, and is not retried.
const (
	quick   = "{timeout: 2s, retry: {attempts: 3, backoff: exponential, initialDelay: 10ms, maxDelay: 50ms}, circuitBreaker: {consecutiveFailures: 100}}"
	holding = "{timeout: 5m, retry: {attempts: 1}, circuitBreaker: {consecutiveFailures: 100}}"
)

func (c *cluster) stats(step string) demostep.Stats {
	GinkgoHelper()
	var s demostep.Stats
	getJSON(c.steps[step].appURL+"/_demo/stats", &s)
	return s
}

func (c *cluster) release(step string) {
	GinkgoHelper()
	a := whenPost(c.steps[step].appURL+"/_demo/release", nil, "")
	Expect(a.code).To(Equal(http.StatusNoContent))
}

// waitInFlight waits until step's app holds n calls.
func (c *cluster) waitInFlight(step string, n int64) {
	GinkgoHelper()
	Eventually(func() int64 { return c.stats(step).InFlight }).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(n))
}

// eventuallyRun polls GET /runs/{id} until the run is no longer pending.
func (c *cluster) eventuallyRun(id string, bound time.Duration) answer {
	GinkgoHelper()
	var a answer
	Eventually(func(g Gomega) {
		a = whenGet(c.entry + "runs/" + id)
		g.Expect(a.code).NotTo(Equal(http.StatusAccepted), "run %s is still pending", id)
	}).WithTimeout(bound).WithPolling(pollEvery).Should(Succeed())
	return a
}

// deadLetterOf waits for a dead letter of the run.
func (c *cluster) deadLetterOf(id string) bus.DeadLetter {
	GinkgoHelper()
	js := c.js()
	var d []bus.DeadLetter
	Eventually(func() []bus.DeadLetter { d = c.deadLetters(js)[id]; return d }).WithTimeout(waitBound).WithPolling(500 * time.Millisecond).ShouldNot(BeEmpty())
	return d[0]
}

// expectServing checks that the entry still starts runs and that no role
// restarted.
func (c *cluster) expectServing(body, want string) {
	GinkgoHelper()
	a := whenPost(c.entry, nil, body)
	Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
	Expect(a.body).To(MatchJSON(want))
	Expect(c.restarts.Load()).To(BeZero(), "no role exited; see %s", c.dir)
}

// rawRequest opens a connection to the URL's host and writes head, then
// whatever body it is given, and nothing more.
func rawRequest(u, head, body string) net.Conn {
	GinkgoHelper()
	pu, err := url.Parse(u)
	Expect(err).NotTo(HaveOccurred())
	conn, err := net.DialTimeout("tcp", pu.Host, 5*time.Second)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	_, err = conn.Write([]byte(head + body))
	Expect(err).NotTo(HaveOccurred())
	return conn
}

var _ = Describe("Predicted failures", func() {
	Describe("a long id", func() {
		It("gets 400 naming the field, and the gateway keeps its broker link", func() {
			c := givenSample("hybrid")
			long := strings.Repeat("x", 4100)
			for _, path := range []string{"runs/" + long, "query/" + long} {
				a := whenGet(c.entry + path)
				Expect(a.code).To(Equal(http.StatusBadRequest), "GET /%s…: %s", path[:8], a.body)
				Expect(a.runError().Message).To(Or(ContainSubstring("run id"), ContainSubstring("key")))
			}
			a := whenPost(c.entry, http.Header{contract.HeaderRunID: {long}}, `{}`)
			Expect(a.code).To(Equal(http.StatusBadRequest), "%s", a.body)
			Expect(a.runError().Message).To(ContainSubstring(contract.HeaderRunID))
			Expect(whenGet(c.entry + "readyz").code).To(Equal(http.StatusOK))
			c.expectServing(`{"id":7}`, `{"charge":{"id":7,"valid":true,"charged":true},"reserve":{"id":7,"valid":true,"reserved":true}}`)
		})
	})

	Describe("size limits", func() {
		It("fails a run whose large payload a step refuses, with a dead letter, instead of leaving it pending", func() {
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 20s}", quick,
				`{name: picky, image: demo, args: ["--mode=echo", "--fail-first=1000", "--fail-status=400", "--max-body=8388608"]}`))
			big := `{"pad":"` + strings.Repeat("x", 3<<20+512<<10) + `"}`
			a := whenPost(c.entry, nil, big)
			Expect(a.code).To(Equal(http.StatusBadRequest), "the step's 400, not a 202 left pending: %.200s", a.body)
			id := a.header.Get(contract.HeaderRunID)
			Expect(a.runError().Step).To(Equal("picky"))
			Expect(c.deadLetterOf(id).Step).To(Equal("picky"))
		})

		It("fails a fan-in over the budget with 413 naming the steps", func() {
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 20s}", quick,
				`{name: fan, image: demo, args: ["--mode=echo", "--max-body=8388608"]}`,
				`{name: left, image: demo, args: ["--mode=echo", "--max-body=8388608"], dependsOn: [fan]}`,
				`{name: right, image: demo, args: ["--mode=echo", "--max-body=8388608"], dependsOn: [fan]}`,
				`{name: join, image: demo, args: ["--mode=echo", "--max-body=8388608"], dependsOn: [left, right]}`))
			// Each branch fits; both together do not.
			big := `{"pad":"` + strings.Repeat("x", 3<<20) + `"}`
			a := whenPost(c.entry, nil, big)
			Expect(a.code).To(Equal(http.StatusRequestEntityTooLarge), "%.200s", a.body)
			Expect(a.runError().Message).To(And(ContainSubstring("left"), ContainSubstring("right")))
			Expect(c.stats("join").Calls).To(BeZero())
		})
	})

	Describe("a poison message", func() {
		It("is delivered a bounded number of times, then dead-lettered, and the run fails", func() {
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 20s}", quick,
				`{name: broken, image: demo, args: ["--mode=echo", "--fail-first=1000000", "--fail-status=503"]}`))
			a := whenPost(c.entry, http.Header{"Prefer": {"respond-async"}}, `{}`)
			Expect(a.code).To(Equal(http.StatusAccepted), "%s", a.body)
			id := a.header.Get(contract.HeaderRunID)
			r := c.eventuallyRun(id, waitBound)
			Expect(r.code).To(Equal(http.StatusServiceUnavailable), "%s", r.body)
			Expect(r.runError().Step).To(Equal("broken"))
			d := c.deadLetterOf(id)
			Expect(d.Step).To(Equal("broken"))
			Expect(d.Attempts).To(BeNumerically("<=", c.maxDeliveries("broken")))
			calls := c.stats("broken").Calls
			Expect(calls).To(BeNumerically("<=", c.maxDeliveries("broken")))
			// No more deliveries come: the count is the same a while later.
			Consistently(func() int64 { return c.stats("broken").Calls }).WithTimeout(3 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(calls))
		})

		// publishBadStart publishes a run start whose id is not a valid key,
		// as a foreign publisher could.
		publishBadStart := func(c *cluster, js jetstream.JetStream, bad string) {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), waitBound)
			defer cancel()
			m := bus.NewMsg(c.plan.Stream.StartSubject, http.Header{contract.HeaderRunID: {bad}, "Content-Type": {"application/json"}}, []byte(`{}`))
			_, err := js.PublishMsg(ctx, m)
			Expect(err).NotTo(HaveOccurred())
		}
		oneStep := workflow("async-orchestrated", "{sync: true, timeout: 20s}", quick, `{name: only, image: demo, args: ["--mode=echo"]}`)

		It("with an id that is not a valid key is not redelivered", func() {
			c := givenCluster(oneStep)
			js := c.js()
			publishBadStart(c, js, "not a key!")
			Eventually(func(g Gomega) {
				ctx, cancel := context.WithTimeout(context.Background(), waitBound)
				defer cancel()
				cons, err := js.Consumer(ctx, c.plan.Stream.Name, c.plan.Stream.OrchestratorDurable)
				g.Expect(err).NotTo(HaveOccurred())
				info, err := cons.Info(ctx)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(info.Delivered.Consumer).To(BeEquivalentTo(1), "delivered once")
				g.Expect(info.NumAckPending).To(BeZero(), "and settled")
				g.Expect(info.NumRedelivered).To(BeZero())
				g.Expect(info.NumPending).To(BeZero())
			}).WithTimeout(waitBound).WithPolling(pollEvery).Should(Succeed())
			Expect(c.stats("only").Calls).To(BeZero())
			c.expectServing(`{"id":1}`, `{"id":1}`)
		})

		It("with an id that is not a valid key is dead-lettered with the reason", func() {
			c := givenCluster(oneStep)
			js := c.js()
			bad := "not a key!"
			publishBadStart(c, js, bad)
			// The id can never become valid: no redelivery can help.
			Eventually(func() []bus.DeadLetter { return c.deadLetters(js)[bad] }).WithTimeout(waitBound).WithPolling(500 * time.Millisecond).
				Should(ContainElement(HaveField("Error", ContainSubstring("run id"))))
		})
	})

	Describe("dead letters", func() {
		It("are kept in a stream of their own, past the workflow stream's age, and can be listed and replayed", func() {
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 20s}",
				"{timeout: 2s, retry: {attempts: 2, initialDelay: 10ms, maxDelay: 50ms}, circuitBreaker: {consecutiveFailures: 100}}",
				// Fails until the dead letter is replayed: attempts 2, plus the one a cut-short attempt may take.
				`{name: late, image: demo, args: ["--mode=transform", "--set=late=true", "--fail-first=3", "--fail-status=503"]}`))
			a := whenPost(c.entry, http.Header{"Prefer": {"respond-async"}}, `{"id":3}`)
			id := a.header.Get(contract.HeaderRunID)
			Expect(c.eventuallyRun(id, waitBound).code).To(Equal(http.StatusServiceUnavailable))

			js := c.js()
			ctx, cancel := context.WithTimeout(context.Background(), waitBound)
			defer cancel()
			wfStream, err := js.Stream(ctx, c.plan.Stream.Name)
			Expect(err).NotTo(HaveOccurred())
			// The dead-letter stream sources the dead letters from the
			// workflow's stream, a moment after they are published.
			Eventually(func(g Gomega) {
				var dlq []string
				names := js.StreamNames(ctx)
				for name := range names.Name() {
					if name == c.plan.Stream.Name {
						continue
					}
					s, err := js.Stream(ctx, name)
					g.Expect(err).NotTo(HaveOccurred())
					cfg := s.CachedInfo().Config
					if s.CachedInfo().State.Msgs > 0 && (cfg.MaxAge == 0 || cfg.MaxAge >= 7*24*time.Hour) {
						dlq = append(dlq, name)
					}
				}
				g.Expect(names.Err()).NotTo(HaveOccurred())
				g.Expect(dlq).NotTo(BeEmpty(), "a dead-letter stream of its own, kept 7 days by default")
			}).WithTimeout(waitBound).WithPolling(pollEvery).Should(Succeed())
			Expect(wfStream.CachedInfo().Config.MaxAge).To(BeNumerically("<", 7*24*time.Hour))

			list := whenGet(c.entry + "deadletters")
			Expect(list.code).To(Equal(http.StatusOK), "%s", list.body)
			dlID := findDeadLetterID(list.body, id)
			Expect(dlID).NotTo(BeEmpty(), "GET /deadletters lists run %s: %s", id, list.body)
			show := whenGet(c.entry + "deadletters/" + dlID)
			Expect(show.code).To(Equal(http.StatusOK), "%s", show.body)
			replay := whenPost(c.entry+"deadletters/"+dlID+"/replay", nil, "")
			Expect(replay.code).To(BeElementOf(http.StatusOK, http.StatusAccepted), "%s", replay.body)
			Eventually(func() int { return whenGet(c.entry + "runs/" + id).code }).WithTimeout(waitBound).WithPolling(pollEvery).
				Should(Equal(http.StatusOK))
			Expect(whenGet(c.entry + "runs/" + id).body).To(MatchJSON(`{"id":3,"late":true}`))
		})
	})

	Describe("a duplicate Patchbay-Run-Id", func() {
		It("gets 409 and never steals the first caller's answer", func() {
			// The entry holds a caller far longer than the suite waits: the
			// first caller's answer comes from its waiter, not from a look
			// at the record when its hold times out.
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 10m}", holding,
				`{name: held, image: demo, args: ["--mode=transform", "--set=held=true", "--hold"]}`))
			first := make(chan answer, 1)
			go func() {
				defer GinkgoRecover()
				first <- whenPost(c.entry, http.Header{contract.HeaderRunID: {"dup-1"}}, `{"caller":1}`)
			}()
			c.waitInFlight("held", 1)
			second := whenPost(c.entry, http.Header{contract.HeaderRunID: {"dup-1"}}, `{"caller":2}`)
			Expect(second.code).To(Equal(http.StatusConflict), "%s", second.body)
			c.release("held")
			var a answer
			Eventually(first).WithTimeout(waitBound).Should(Receive(&a))
			Expect(a.code).To(Equal(http.StatusOK), "the first caller still gets its answer: %s", a.body)
			Expect(a.body).To(MatchJSON(`{"caller":1,"held":true}`))
		})
	})

	Describe("Idempotency-Key", func() {
		It("returns the same run for the same key and calls the app once", func() {
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 20s}", quick,
				`{name: once, image: demo, args: ["--mode=transform", "--set=once=true"]}`))
			h := http.Header{"Idempotency-Key": {"order-42"}}
			a := whenPost(c.entry, h, `{"id":42}`)
			Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
			b := whenPost(c.entry, h, `{"id":42}`)
			Expect(b.code).To(Equal(http.StatusOK), "%s", b.body)
			Expect(b.header.Get(contract.HeaderRunID)).To(Equal(a.header.Get(contract.HeaderRunID)))
			Expect(b.body).To(MatchJSON(a.body))
			Expect(c.stats("once").Calls).To(BeEquivalentTo(1))
		})

		It("joins concurrent POSTs with one key into one run", func() {
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 10m}", holding,
				`{name: held, image: demo, args: ["--mode=transform", "--set=held=true", "--hold"]}`))
			h := http.Header{"Idempotency-Key": {"order-43"}}
			answers := make([]answer, 3)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Go(func() {
					defer GinkgoRecover()
					answers[i] = whenPost(c.entry, h.Clone(), `{"id":43}`)
				})
			}
			Eventually(func() int64 { return c.stats("held").InFlight }).WithTimeout(waitBound).WithPolling(pollEvery).Should(BeNumerically(">=", 1))
			c.release("held")
			wg.Wait()
			for _, a := range answers {
				Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
				Expect(a.header.Get(contract.HeaderRunID)).To(Equal(answers[0].header.Get(contract.HeaderRunID)))
				Expect(a.body).To(MatchJSON(`{"id":43,"held":true}`))
			}
			Expect(c.stats("held").Calls).To(BeEquivalentTo(1))
		})
	})

	Describe("a run deadline", func() {
		It("fails a run whose step never answers with 504 naming the step, and dead-letters it", func() {
			// Ten attempts of 2s outlast the entry's 3s: the deadline ends the run.
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 3s}",
				"{timeout: 2s, retry: {attempts: 10, initialDelay: 10ms, maxDelay: 50ms}, circuitBreaker: {consecutiveFailures: 100}}",
				`{name: silent, image: demo, args: ["--mode=echo", "--hold"]}`))
			a := whenPost(c.entry, http.Header{"Prefer": {"respond-async"}}, `{}`)
			Expect(a.code).To(Equal(http.StatusAccepted))
			id := a.header.Get(contract.HeaderRunID)
			r := c.eventuallyRun(id, c.plan.RunTimeout.Duration+deadlineGrace+5*time.Second)
			Expect(r.code).To(Equal(http.StatusGatewayTimeout), "%s", r.body)
			Expect(r.runError().Step).To(Equal("silent"))
			Expect(c.deadLetterOf(id).Step).To(Equal("silent"))
		})
	})

	Describe("Retry-After", func() {
		for name, retryAfter := range map[string]string{"over maxDelay": "1h", "that overflows a duration": "2562047h"} {
			It("ends the retries when it asks for a pause "+name, func() {
				c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 20s}", quick,
					`{name: busy, image: demo, args: ["--mode=echo", "--fail-first=1000", "--fail-status=503", "--retry-after=`+retryAfter+`"]}`))
				a := whenPost(c.entry, nil, `{}`)
				Expect(a.code).To(Equal(http.StatusServiceUnavailable), "the step's own answer, not a run held for %s: %s", retryAfter, a.body)
				e := a.runError()
				Expect(e.Step).To(Equal("busy"))
				Expect(e.Attempts).To(Equal(1))
				Expect(c.stats("busy").Calls).To(BeEquivalentTo(1))
				Expect(c.deadLetterOf(a.header.Get(contract.HeaderRunID)).Step).To(Equal("busy"))
				Expect(c.restarts.Load()).To(BeZero())
			})
		}
	})

	Describe("a slow body", func() {
		It("is cut off by the gateway's read timeout, and the gateway keeps serving", func() {
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 20s}", quick,
				`{name: only, image: demo, args: ["--mode=echo"]}`))
			conn := rawRequest(c.entry, "POST / HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", `{"pad":"`)
			// The gateway closes the connection, answering or not, once the
			// body has not arrived within its read timeout.
			closed := make(chan error, 1)
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := conn.Read(buf); err != nil {
						closed <- err
						return
					}
				}
			}()
			Eventually(closed).WithTimeout(serve.ReadTimeout + waitBound).Should(Receive())
			c.expectServing(`{"id":1}`, `{"id":1}`)
		})
	})

	Describe("an inbound bulkhead", func() {
		It("makes the gateway answer 503 with Retry-After when full", func() {
			const limit = 2
			c := givenCluster(workflow("async-orchestrated", "{sync: true, timeout: 30s}",
				fmt.Sprintf("{timeout: 5m, bulkhead: {maxConcurrent: %d}, retry: {attempts: 1}, circuitBreaker: {consecutiveFailures: 100}}", limit),
				`{name: held, image: demo, args: ["--mode=echo", "--hold"]}`))
			Expect(c.plan.EntryMaxConcurrent()).To(BeEquivalentTo(limit))
			held := make([]answer, limit)
			var wg sync.WaitGroup
			for i := range held {
				wg.Go(func() {
					defer GinkgoRecover()
					held[i] = whenPost(c.entry, nil, fmt.Sprintf(`{"i":%d}`, i))
				})
			}
			c.waitInFlight("held", limit)
			a := whenPost(c.entry, nil, `{}`)
			Expect(a.code).To(Equal(http.StatusServiceUnavailable), "%s", a.body)
			Expect(a.header.Get("Retry-After")).To(MatchRegexp(`^[1-9]\d*$`))
			Expect(a.header.Get(contract.HeaderRejected)).To(Equal("bulkhead"))
			c.release("held")
			wg.Wait()
			for i, h := range held {
				Expect(h.code).To(Equal(http.StatusOK), "%s", h.body)
				Expect(h.body).To(MatchJSON(fmt.Sprintf(`{"i":%d}`, i)))
			}
		})

		It("rejects in the sync chain before the body is read", func() {
			c := givenCluster(workflow("sync-chain", "{sync: true, timeout: 10m}", "{timeout: 5m, bulkhead: {maxConcurrent: 1}, retry: {attempts: 1}, circuitBreaker: {consecutiveFailures: 100}}",
				`{name: held, image: demo, args: ["--mode=echo", "--hold"]}`))
			first := make(chan answer, 1)
			go func() {
				defer GinkgoRecover()
				first <- whenPost(c.entry, nil, `{"first":true}`)
			}()
			c.waitInFlight("held", 1)
			// Headers only: a body that would take for ever to arrive.
			conn := rawRequest(c.entry, "POST / HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n", "")
			Expect(conn.SetReadDeadline(time.Now().Add(waitBound))).To(Succeed())
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			Expect(err).NotTo(HaveOccurred(), "an answer without the body having been sent")
			resp.Body.Close()
			Expect(resp.StatusCode).To(BeElementOf(http.StatusServiceUnavailable, http.StatusTooManyRequests))
			Expect(resp.Header.Get("Retry-After")).To(MatchRegexp(`^[1-9]\d*$`), "a bulkhead's 503 says when to retry, as the gateway's does")
			c.release("held")
			var a answer
			Eventually(first).WithTimeout(waitBound).Should(Receive(&a))
			Expect(a.code).To(Equal(http.StatusOK), "%s", a.body)
		})
	})
})

// findDeadLetterID finds, in a GET /deadletters answer, the id of a dead
// letter of run.
func findDeadLetterID(body []byte, run string) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	var walk func(any) string
	walk = func(v any) string {
		switch t := v.(type) {
		case map[string]any:
			if t["runId"] == run {
				if id, ok := t["id"].(string); ok {
					return id
				}
			}
			for _, x := range t {
				if id := walk(x); id != "" {
					return id
				}
			}
		case []any:
			for _, x := range t {
				if id := walk(x); id != "" {
					return id
				}
			}
		}
		return ""
	}
	return walk(v)
}
