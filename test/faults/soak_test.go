//go:build faults

package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/proctest"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// The soak: for each async style, soakRuns runs through the sample Workflow
// while a seeded killer SIGKILLs, at random moments, the orchestrator, a step
// sidecar, the gateway and the nats-server; a supervisor restarts each, as
// Kubernetes would. FAULTS_SEED replays a seed; FAULTS_RUNS changes the
// number of runs.

const (
	soakRuns    = 500
	soakClients = 8
	// soakRate is how many runs per second the clients start, at most.
	soakRate = 25
	// retryBound is how long a client keeps retrying one POST that got a
	// connection error or a 503.
	retryBound = 2 * time.Minute
	// settleBound is how long the runs may take to end once the killing stopped.
	settleBound = 3 * time.Minute
	// deadlineGrace is how late after its deadline a run may be seen to end:
	// the time to notice the deadline and write the record.
	deadlineGrace = 2 * time.Second
)

// soakOutputs are the sample Workflows' results for the input {"n":N}.
var soakOutputs = map[string]string{
	"async-orchestrated": `{"n":%d,"valid":true,"picked":true,"packed":true,"shipped":true}`,
	"choreography":       `{"n":%d,"reserved":true,"charged":true}`,
	"hybrid":             `{"charge":{"n":%d,"valid":true,"charged":true},"reserve":{"n":%d,"valid":true,"reserved":true}}`,
}

func expectedOutput(style string, n int) string {
	f := soakOutputs[style]
	return fmt.Sprintf(f, repeat(n, strings.Count(f, "%d"))...)
}

func repeat(n, times int) []any {
	out := make([]any, times)
	for i := range out {
		out[i] = n
	}
	return out
}

// soakRow is one style's figures.
type soakRow struct {
	style                              string
	seed                               uint64
	sent, accepted, conflicts, refused int
	completed, failed, deadLettered    int
	duplicates                         int64
	kills                              map[string]int
	restarts                           int64
	pendingPastDeadline                int
	took                               time.Duration
}

func soakTable(rows []soakRow) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "style\tseed\tsent\taccepted\tcompleted\tfailed\tdead letters\tduplicates seen by apps\tkilled (orch/sidecar/gw/nats)\trestarts\t409 on retry\trefused\tpast deadline\ttook\t")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d/%d/%d/%d\t%d\t%d\t%d\t%d\t%s\t\n", r.style, r.seed, r.sent, r.accepted, r.completed, r.failed,
			r.deadLettered, r.duplicates, r.kills["orchestrator"], r.kills["sidecar"], r.kills["gateway"], r.kills["nats"],
			r.restarts, r.conflicts, r.refused, r.pendingPastDeadline, r.took.Round(time.Second))
	}
	_ = w.Flush()
	return "\nFault-injection soak:\n" + b.String()
}

// soakSeed is FAULTS_SEED, else a new seed; it is printed so a run can be replayed.
func soakSeed() uint64 {
	if s := os.Getenv("FAULTS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		Expect(err).NotTo(HaveOccurred(), "FAULTS_SEED")
		return n
	}
	return rand.Uint64()
}

func soakRunCount() int {
	if s := os.Getenv("FAULTS_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		Expect(err).NotTo(HaveOccurred(), "FAULTS_RUNS")
		return n
	}
	return soakRuns
}

// sentRun is what one client saw of one run.
type sentRun struct {
	n  int
	id string
	// accepted: the gateway answered 200 or 202; conflict: a retry got 409.
	accepted, conflict bool
	code               int
	body               []byte
	attempts           int
	err                error
}

// sendRun POSTs one run, retrying a connection error or a 503 with the same
// Patchbay-Run-Id until retryBound, as a careful client would. A 409 on a
// retry means an earlier attempt created the run but its answer was lost
// (or was a 503): the run is not accepted, and the suite looks at its record.
func sendRun(entry string, r *sentRun) {
	h := http.Header{contract.HeaderRunID: {r.id}, "Content-Type": {"application/json"}}
	body := []byte(fmt.Sprintf(`{"n":%d}`, r.n))
	deadline := time.Now().Add(retryBound)
	backoff := 50 * time.Millisecond
	for {
		r.attempts++
		a, err := do(http.MethodPost, entry, h, body)
		r.err, r.code, r.body = err, a.code, a.body
		switch {
		case err == nil && (a.code == http.StatusOK || a.code == http.StatusAccepted):
			r.accepted = true
			return
		case err == nil && a.code == http.StatusConflict && r.attempts > 1:
			r.conflict = true
			return
		case err == nil && a.code != http.StatusServiceUnavailable:
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(backoff) // a client's backoff between retries
		backoff = min(2*backoff, time.Second)
	}
}

// awaitEnded waits until the runs of sent that which selects have ended,
// and keeps their records; a run still pending after settleBound fails the
// spec with where its messages sit against every consumer.
func awaitEnded(c *cluster, js jetstream.JetStream, runs *bus.Runs, sent []*sentRun, records map[string]*bus.Run, which func(*sentRun) bool, what string) {
	GinkgoHelper()
	pending := map[string]*bus.Run{}
	failures := InterceptGomegaFailures(func() {
		Eventually(func(g Gomega) {
			ctx, cancel := context.WithTimeout(context.Background(), waitBound)
			defer cancel()
			clear(pending)
			for _, r := range sent {
				if !which(r) || records[r.id] != nil {
					continue
				}
				rec, _, err := runs.Get(ctx, r.id)
				g.Expect(err).NotTo(HaveOccurred(), "run %s", r.id)
				if rec.Done() {
					records[r.id] = rec
				} else {
					pending[r.id] = rec
				}
			}
			g.Expect(pending).To(BeEmpty(), "%s still pending", what)
		}).WithTimeout(settleBound).WithPolling(time.Second).Should(Succeed())
	})
	if len(failures) > 0 {
		why := []string{failures[0]}
		for id, rec := range pending {
			why = append(why, fmt.Sprintf("%+v; %s", rec, c.explainPending(js, id)))
		}
		Fail(strings.Join(why, "\n"))
	}
}

// killer SIGKILLs the cluster's processes at random moments.
type killer struct {
	c     *cluster
	rng   *rand.Rand
	kills map[string]int
	// kinds are what it kills: the orchestrator where the style has one, a
	// step sidecar, the gateway and the nats-server.
	kinds []string
	stopc chan struct{}
	done  chan struct{}
}

func startKiller(c *cluster, seed uint64) *killer {
	k := &killer{c: c, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), kills: map[string]int{},
		stopc: make(chan struct{}), done: make(chan struct{})}
	kinds := []string{"sidecar", "gateway", "nats"}
	if c.orch != nil {
		kinds = append(kinds, "orchestrator")
	}
	k.kinds = kinds
	var steps []string
	for name := range c.steps {
		steps = append(steps, name)
	}
	sort.Strings(steps)
	go func() {
		defer GinkgoRecover()
		defer close(k.done)
		// Rounds of every kind in a random order, so each is killed at
		// least once; the moments between kills are random too.
		for {
			order := append([]string(nil), kinds...)
			k.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, kind := range order {
				t := time.NewTimer(time.Duration(200+k.rng.IntN(1300)) * time.Millisecond)
				select {
				case <-k.stopc:
					if len(k.kills) == len(kinds) {
						t.Stop()
						return
					}
					<-t.C
				case <-t.C:
				}
				var p *proctest.Proc
				switch kind {
				case "sidecar":
					p = c.steps[steps[k.rng.IntN(len(steps))]].sidecar
				case "gateway":
					p = c.gateway
				case "nats":
					p = c.nats.Proc
				case "orchestrator":
					p = c.orch
				}
				p.Kill() // the supervisor restarts it
				k.kills[kind]++
			}
		}
	}()
	return k
}

// stop ends the killing once every kind was killed at least once.
func (k *killer) stop() map[string]int {
	close(k.stopc)
	<-k.done
	return k.kills
}

var _ = Describe("Runs under SIGKILL", Label("soak"), func() {
	for _, style := range []string{"async-orchestrated", "choreography", "hybrid"} {
		Describe(style, Ordered, func() {
			var (
				c       *cluster
				row     soakRow
				sent    []*sentRun
				records map[string]*bus.Run
				dead    map[string][]bus.DeadLetter
				late    []string
			)
			BeforeAll(func() {
				c = givenSample(style)
				row = soakRow{style: style, seed: soakSeed()}
				fmt.Fprintf(GinkgoWriter, "%s: seed %d (FAULTS_SEED=%d replays it)\n", style, row.seed, row.seed)
				AddReportEntry("seed", fmt.Sprintf("%s FAULTS_SEED=%d", style, row.seed))
				DeferCleanup(func() {
					soakMu.Lock()
					defer soakMu.Unlock()
					soakRows = append(soakRows, row)
				})
			})

			It("accepts runs while the orchestrator, a sidecar, the gateway and the nats-server are SIGKILLed", func() {
				start := time.Now()
				n := soakRunCount()
				sent = make([]*sentRun, n)
				for i := range sent {
					sent[i] = &sentRun{n: i, id: fmt.Sprintf("soak-%d-%04d", row.seed%100000, i)}
				}
				k := startKiller(c, row.seed)
				work := make(chan *sentRun)
				var wg sync.WaitGroup
				for range soakClients {
					wg.Go(func() {
						for r := range work {
							sendRun(c.entry, r)
						}
					})
				}
				// Paced, as callers arrive, so the kills fall all over the load.
				pace := time.NewTicker(time.Second / soakRate)
				for _, r := range sent {
					<-pace.C
					work <- r
				}
				pace.Stop()
				close(work)
				wg.Wait()
				row.kills = k.stop()
				row.took = time.Since(start)
				row.sent = n
				var refused []string
				for _, r := range sent {
					switch {
					case r.accepted:
						row.accepted++
					case r.conflict:
						row.conflicts++
					default:
						row.refused++
						refused = append(refused, fmt.Sprintf("%s: %d %s %v", r.id, r.code, r.body, r.err))
					}
				}
				fmt.Fprintf(GinkgoWriter, "%s: %d sent, %d accepted, %d refused, kills %v\n", style, row.sent, row.accepted, row.refused, row.kills)
				for _, kind := range k.kinds {
					Expect(row.kills[kind]).To(BeNumerically(">=", 1), "%s killed", kind)
				}
				Expect(row.accepted).To(BeNumerically(">", n/2), "most runs are accepted despite the kills; refused: %v", refused)
				c.waitReady()
				row.restarts = c.restarts.Load()
			})

			It("ends every accepted run with the right output or a dead letter", func() {
				js := c.js()
				runs := c.runs(js)
				records = map[string]*bus.Run{}
				awaitEnded(c, js, runs, sent, records, func(r *sentRun) bool { return r.accepted }, "accepted runs")
				// The runs whose retry got 409 end too, by their deadline at
				// the latest (checked below).
				awaitEnded(c, js, runs, sent, records, func(r *sentRun) bool { return r.conflict }, "runs whose retry got 409")
				dead = c.deadLetters(js)
				for _, r := range sent {
					if !r.accepted {
						continue
					}
					rec := records[r.id]
					switch rec.Status {
					case bus.RunSucceeded:
						row.completed++
						Expect(c.result(js, rec)).To(MatchJSON(expectedOutput(style, r.n)), "run %s", r.id)
						if r.code == http.StatusOK {
							Expect(string(r.body)).To(MatchJSON(expectedOutput(style, r.n)), "the answer of run %s", r.id)
						}
					default:
						row.failed++
						Expect(dead).To(HaveKey(r.id), "failed run %s (%s) has a dead letter", r.id, rec.Error)
					}
				}
				// The run deadline (spec.runTimeout, else entry.timeout) holds
				// for every run with a record, the 409s' too.
				deadline := c.plan.RunTimeout.Duration
				for _, r := range sent {
					if r.accepted && dead[r.id] != nil {
						row.deadLettered++
					}
					rec := records[r.id]
					if rec == nil {
						continue
					}
					if took := rec.Finished.Sub(rec.Started); took > deadline+deadlineGrace {
						row.pendingPastDeadline++
						late = append(late, fmt.Sprintf("%s pending %s", r.id, took.Round(time.Millisecond)))
					}
				}
				Expect(row.completed + row.failed).To(Equal(row.accepted))
			})

			It("shows each step app a message at most as often as its consumer may deliver it", func() {
				var over []string
				for step, seen := range c.deliveries() {
					limit := c.maxDeliveries(step)
					for id, n := range seen {
						row.duplicates += n - 1
						if n > limit {
							over = append(over, fmt.Sprintf("%s saw %s %d times (at most %d)", step, id, n, limit))
						}
					}
				}
				Expect(over).To(BeEmpty())
			})

			// Every run ends by its deadline, plus the time to notice it: the
			// accepted ones and those whose retry got 409 alike.
			It("leaves no run pending past its deadline", func() {
				Expect(records).NotTo(BeEmpty(), "the runs ended")
				Expect(late).To(BeEmpty(), "runs pending past their deadline of %s (+%s)", c.plan.RunTimeout.Duration, deadlineGrace)
			})
		})
	}
})
