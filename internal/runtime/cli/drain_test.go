package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// A rollout stops a pod's app before its native sidecar. These tests play the
// pod's side of it with a real sidecar, a real app server and a real broker:
// the app's preStop hook (GET /drain on the sidecar's admin port), then the
// app stops, then the sidecar gets SIGTERM.

// slowApp is a step's app that takes delay per call and counts its calls.
type slowApp struct {
	addr  string
	srv   *http.Server
	delay time.Duration
	// hold, when set, keeps every call until it is closed.
	hold chan struct{}

	mu                sync.Mutex
	started, finished int
}

type appStats struct{ Started, Finished, InFlight int }

func startSlowApp(t *testing.T, delay time.Duration) *slowApp {
	t.Helper()
	return startSlowAppOn(t, "127.0.0.1:0", delay)
}

// startSlowAppOn starts the app on addr, such as one a sidecar already calls.
func startSlowAppOn(t *testing.T, addr string, delay time.Duration) *slowApp {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	a := &slowApp{addr: l.Addr().String(), delay: delay}
	a.srv = &http.Server{Handler: http.HandlerFunc(a.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.srv.Serve(l) }()
	t.Cleanup(a.stop)
	return a
}

func (a *slowApp) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.started++
	a.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	time.Sleep(a.delay) // the app's work
	if a.hold != nil {
		<-a.hold
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"picked":true}`))
	a.mu.Lock()
	a.finished++
	a.mu.Unlock()
}

func (a *slowApp) stats() appStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return appStats{Started: a.started, Finished: a.finished, InFlight: a.started - a.finished}
}

// stop ends the app as its container's exit does: the port closes.
func (a *slowApp) stop() { _ = a.srv.Close() }

func loopback(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }

// drain calls the preStop hook in the background, as the kubelet does, and
// yields its status (0 when nothing answered).
func drain(admin string) <-chan int {
	out := make(chan int, 1)
	go func() {
		c := http.Client{Timeout: waitBound}
		resp, err := c.Get("http://" + admin + "/drain")
		if err != nil {
			out <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out <- resp.StatusCode
	}()
	return out
}

// runWatch collects, from the workflow's stream, the runs a step completed
// and the dead letters.
type runWatch struct {
	mu        sync.Mutex
	completed map[string]bool
	dead      []string
}

func watchRuns(t *testing.T, g Gomega, js jetstream.JetStream, stream, results, deadLetters string) *runWatch {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	oc, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{results, deadLetters}})
	g.Expect(err).NotTo(HaveOccurred())
	w := &runWatch{completed: map[string]bool{}}
	cc, err := oc.Consume(func(m jetstream.Msg) {
		h := bus.HTTPHeader(m)
		w.mu.Lock()
		defer w.mu.Unlock()
		switch {
		case m.Subject() == deadLetters:
			w.dead = append(w.dead, h.Get(contract.HeaderRunID))
		case h.Get(contract.HeaderStatus) == contract.ResultOK:
			w.completed[h.Get(contract.HeaderRunID)] = true
		}
	})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(cc.Stop)
	return w
}

// missing are the runs of ids not completed yet.
func (w *runWatch) missing(ids []string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, id := range ids {
		if !w.completed[id] {
			out = append(out, id)
		}
	}
	return out
}

func (w *runWatch) deadLetters() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.dead...)
}

// runFeed publishes a steady stream of commands to a step, as its
// orchestrator would, until stop; it keeps the runs the broker accepted.
type runFeed struct {
	stopc    chan struct{}
	done     chan struct{}
	accepted []string
}

func feedRuns(js jetstream.JetStream, subject string, every time.Duration) *runFeed {
	f := &runFeed{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-f.stopc:
				return
			case <-tick.C:
			}
			id := fmt.Sprintf("run-%d", i)
			m := bus.NewMsg(subject, http.Header{contract.HeaderRunID: {id}, "Content-Type": {"application/json"}}, []byte(`{"sku":"a1"}`))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(id+":cmd"))
			cancel()
			if err == nil {
				f.accepted = append(f.accepted, id)
			}
		}
	}()
	return f
}

// stop ends the feed and returns the accepted runs.
func (f *runFeed) stop() []string {
	close(f.stopc)
	<-f.done
	return f.accepted
}

// The measured bug: the app of an async step stopped before its sidecar,
// which kept fetching messages into a closed port until they were
// dead-lettered. With the preStop drain, the sidecar stops fetching and
// finishes the messages in hand while the app is up; what the stream still
// holds is left to the step's other replicas.
func TestAsyncSidecarDrainsBeforeItsAppStops(t *testing.T) {
	g := NewWithT(t)
	file, p := planFile(t, "async-orchestrated")
	step := p.Step("pick")
	broker := givenBroker(t, p)
	creds := credentials(t)
	sidecar := func(app *slowApp) *role {
		listen, admin := loopback(t), loopback(t)
		return startRole(t, admin, "sidecar", "--plan="+file, "--step="+step.Name,
			"--listen="+listen, "--admin-listen="+admin, "--app-url=http://"+app.addr,
			"--nats-url="+broker.url(), "--nats-credentials="+creds,
			"--shutdown-delay=500ms", "--drain-timeout=20s")
	}

	js := broker.jetStream()

	app := startSlowApp(t, 300*time.Millisecond)
	first := sidecar(app)
	g.Eventually(first.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))
	watch := watchRuns(t, g, js, p.Stream.Name, step.Output.ResultSubject+".>", p.Stream.DeadLetter)
	feed := feedRuns(js, step.Consumers[0].FilterSubject, 20*time.Millisecond)
	g.Eventually(app.stats).WithTimeout(waitBound).WithPolling(pollEvery).Should(And(
		HaveField("Finished", BeNumerically(">=", 5)), HaveField("InFlight", BeNumerically(">", 0))))

	// The app's preStop hook: the sidecar turns not ready at once and
	// answers once the messages in hand are done.
	drained := drain(first.admin)
	g.Eventually(func() int { return first.status("/readyz") }).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(http.StatusServiceUnavailable))
	var code int
	g.Eventually(drained).WithTimeout(waitBound).Should(Receive(&code))
	g.Expect(code).To(Equal(http.StatusOK))
	atDrain := app.stats()
	g.Expect(atDrain.InFlight).To(BeZero(), "every message in hand finished before /drain answered")
	// Runs keep coming, but none reaches this app any more.
	g.Consistently(app.stats).WithTimeout(time.Second).WithPolling(pollEvery).Should(Equal(atDrain))
	g.Expect(first.status("/readyz")).To(Equal(http.StatusServiceUnavailable))

	// The app stops, then the sidecar gets SIGTERM.
	app.stop()
	g.Consistently(app.stats).WithTimeout(500 * time.Millisecond).WithPolling(pollEvery).Should(Equal(atDrain))
	first.stop()
	g.Expect(first.exitCode(g)).To(Equal(0))
	accepted := feed.stop()
	g.Expect(len(accepted)).To(BeNumerically(">", atDrain.Started), "runs were still coming after the drain")

	// The replacement replica takes every run that is left.
	next := startSlowApp(t, 10*time.Millisecond)
	second := sidecar(next)
	g.Eventually(second.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))
	g.Eventually(func() []string { return watch.missing(accepted) }).WithTimeout(waitBound).WithPolling(pollEvery).Should(BeEmpty())
	g.Expect(watch.deadLetters()).To(BeEmpty())
	g.Expect(first.stderr.String()).NotTo(ContainSubstring("Dead-lettered"))
	g.Expect(atDrain.Started + next.stats().Finished).To(BeNumerically(">=", len(accepted)))
}

// The kubelet starts a pod's app only after its native sidecar has started.
// Measured on the local cluster: a new pick sidecar of a rollout consumed at
// once, its calls to the app that was not listening yet failed, the breaker
// opened and runs were dead-lettered. The sidecar now turns ready, and
// consumes, only once its app listens.
func TestAsyncSidecarConsumesOnlyOnceItsAppListens(t *testing.T) {
	g := NewWithT(t)
	file, p := planFile(t, "async-orchestrated")
	step := p.Step("pick")
	broker := givenBroker(t, p)
	js := broker.jetStream()

	appAddr, listen, admin := loopback(t), loopback(t), loopback(t)
	sc := startRole(t, admin, "sidecar", "--plan="+file, "--step="+step.Name,
		"--listen="+listen, "--admin-listen="+admin, "--app-url=http://"+appAddr,
		"--nats-url="+broker.url(), "--nats-credentials="+credentials(t))
	g.Eventually(func() int { return sc.status("/healthz") }).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(http.StatusOK))
	watch := watchRuns(t, g, js, p.Stream.Name, step.Output.ResultSubject+".>", p.Stream.DeadLetter)
	feed := feedRuns(js, step.Consumers[0].FilterSubject, 20*time.Millisecond)

	// Runs arrive while the app is not listening: the sidecar is not ready
	// and fails none of them.
	g.Consistently(func() int { return sc.status("/readyz") }).WithTimeout(2 * time.Second).WithPolling(pollEvery).Should(Equal(http.StatusServiceUnavailable))
	g.Expect(watch.deadLetters()).To(BeEmpty())

	startSlowAppOn(t, appAddr, 5*time.Millisecond)
	g.Eventually(sc.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))
	accepted := feed.stop()
	g.Expect(accepted).NotTo(BeEmpty())
	g.Eventually(func() []string { return watch.missing(accepted) }).WithTimeout(waitBound).WithPolling(pollEvery).Should(BeEmpty())
	g.Expect(watch.deadLetters()).To(BeEmpty())
}

// The measured bug: a rollout of sync-chain steps under load failed 9.6% of
// requests, because a sidecar kept taking requests for an app that had
// stopped. With the preStop drain, the sidecar fails /readyz at once (the
// endpoints stop routing to it) while the requests that still come in reach
// the live app, then closes its inbound listener before the app stops.
func TestSyncSidecarDrainsBeforeItsAppStops(t *testing.T) {
	g := NewWithT(t)
	file, p := planFile(t, "sync-chain")
	// The step no other depends on has no next hop: its sidecar answers with
	// its app's output.
	var last string
	for _, s := range p.Steps {
		if !slices.ContainsFunc(p.Steps, func(o plan.Step) bool { return slices.Contains(o.DependsOn, s.Name) }) {
			last = s.Name
		}
	}
	app := startSlowApp(t, 20*time.Millisecond)
	listen, admin := loopback(t), loopback(t)
	sc := startRole(t, admin, "sidecar", "--plan="+file, "--step="+last,
		"--listen="+listen, "--admin-listen="+admin, "--app-url=http://"+app.addr,
		"--shutdown-delay=1s", "--drain-timeout=10s")
	g.Eventually(sc.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))

	// A steady stream of requests, as the endpoints keep sending for a while.
	var (
		mu       sync.Mutex
		ok       int
		failures []string // answers other than 200
		dropped  []string // connections that got no answer
	)
	stopLoad, loadDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(loadDone)
		// A new connection per request: a request on a kept-alive connection
		// that the server closes as idle fails with EOF before the server
		// sees it, a race of HTTP/1.1 that the server cannot close.
		c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			resp, err := c.Post("http://"+listen+"/", "application/json", strings.NewReader(`{"sku":"a1"}`))
			mu.Lock()
			if err != nil {
				dropped = append(dropped, err.Error())
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok++
				} else {
					failures = append(failures, resp.Status)
				}
			}
			mu.Unlock()
		}
	}()
	succeeded := func() int { mu.Lock(); defer mu.Unlock(); return ok }
	g.Eventually(succeeded).WithTimeout(waitBound).WithPolling(pollEvery).Should(BeNumerically(">=", 10))

	drained := drain(admin)
	g.Eventually(func() int { return sc.status("/readyz") }).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(http.StatusServiceUnavailable))
	g.Expect(drained).NotTo(Receive(), "/readyz fails at once, long before the drain is over")
	atNotReady := succeeded()
	var code int
	g.Eventually(drained).WithTimeout(waitBound).Should(Receive(&code))
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(succeeded()).To(BeNumerically(">", atNotReady), "requests routed during the drain reached the app")
	// After the hook, before the app stops, the inbound listener is closed: a
	// caller still routed here is refused, and retries elsewhere, rather than
	// reaching an app that is about to stop.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Post("http://"+listen+"/", "application/json", strings.NewReader(`{"sku":"a1"}`))
	if err == nil {
		resp.Body.Close()
	}
	g.Expect(err).To(MatchError(ContainSubstring("connection refused")))

	close(stopLoad)
	<-loadDone
	mu.Lock()
	// Every request the sidecar answered succeeded. The only others are
	// connections that got no answer as the listener closed at the end of the
	// drain: refused, or caught in the listen backlog (reset, EOF). A caller
	// routed here by then (the endpoints dropped the pod seconds earlier)
	// dials again.
	g.Expect(failures).To(BeEmpty())
	g.Expect(dropped).To(HaveEach(Or(ContainSubstring("connection refused"), ContainSubstring("connection reset by peer"), HaveSuffix(": EOF"))))
	mu.Unlock()
	app.stop()
	sc.stop()
	g.Expect(sc.exitCode(g)).To(Equal(0))
}

// A drain cut short (the app's calls outlast the drain timeout) leaves the
// sidecar with messages in hand when the app exits under them: their calls
// fail for want of an app, which is no failure of the step. The stopping
// sidecar hands them back at once and dead-letters none of them, even on
// their last attempt.
func TestStoppingSidecarDeadLettersNothingForAnAppThatIsGone(t *testing.T) {
	g := NewWithT(t)
	file, p := planFile(t, "async-orchestrated")
	step := p.Step("pick")
	// One attempt: any failure of the step would be dead-lettered at once.
	step.Policy.Retry.Attempts = 1
	step.Consumers[0].MaxDeliver = 1
	b, err := p.Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(file, b, 0o600)).To(Succeed())
	broker := givenBroker(t, p)
	js := broker.jetStream()

	app := startSlowApp(t, 0)
	app.hold = make(chan struct{})
	t.Cleanup(func() { close(app.hold) })
	listen, admin := loopback(t), loopback(t)
	sc := startRole(t, admin, "sidecar", "--plan="+file, "--step="+step.Name,
		"--listen="+listen, "--admin-listen="+admin, "--app-url=http://"+app.addr,
		"--nats-url="+broker.url(), "--nats-credentials="+credentials(t),
		"--shutdown-delay=0", "--drain-timeout=1s")
	g.Eventually(sc.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))
	watch := watchRuns(t, g, js, p.Stream.Name, step.Output.ResultSubject+".>", p.Stream.DeadLetter)
	feed := feedRuns(js, step.Consumers[0].FilterSubject, 10*time.Millisecond)
	g.Eventually(app.stats).WithTimeout(waitBound).WithPolling(pollEvery).Should(HaveField("InFlight", BeNumerically(">=", 3)))
	accepted := feed.stop()

	// The hook's drain is cut short by the calls in hand; then the app exits
	// under them, then the sidecar gets SIGTERM.
	var code int
	g.Eventually(drain(admin)).WithTimeout(waitBound).Should(Receive(&code))
	g.Expect(code).To(Equal(http.StatusInternalServerError))
	app.stop()
	g.Eventually(sc.stderr.String).WithTimeout(waitBound).WithPolling(pollEvery).Should(ContainSubstring("handing the message back"))
	sc.stop()
	g.Expect(sc.exitCode(g)).To(Equal(0))
	g.Expect(sc.stderr.String()).To(ContainSubstring("handing the message back"))
	g.Expect(sc.stderr.String()).NotTo(ContainSubstring("Dead-lettered"))
	g.Consistently(watch.deadLetters).WithTimeout(500 * time.Millisecond).WithPolling(pollEvery).Should(BeEmpty())
	g.Expect(watch.missing(accepted)).To(HaveLen(len(accepted)), "no run completed without its app")
}
