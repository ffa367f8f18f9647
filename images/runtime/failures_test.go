package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/demostep"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev/devtest"
	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
)

// Failure injection through real processes: patchbay-runtime dev runs the data
// plane, and every step is a demo-step process it starts (a cmd: step). The
// helpers read as Given (a running data plane), When (a request), Expect (what
// the caller and the steps saw).

var syncStyles = []string{"sync-chain", "sync-orchestrated"}

// fastRetries keeps retries quick and the breaker out of the way.
const fastRetries = "{timeout: 2s, retry: {attempts: 3, backoff: exponential, initialDelay: 10ms, maxDelay: 50ms}, circuitBreaker: {consecutiveFailures: 100}}"

// stepSpec is one step of a test Workflow.
type stepSpec = devtest.Step

// devEnv is a running patchbay-runtime dev and the demo-step processes it started.
type devEnv struct {
	proc         *process
	entry, admin string
	apps         map[string]string // step: base URL of its demo-step
}

// adminLine is dev's startup log line, which names the admin URL.
var adminLine = regexp.MustCompile(`msg="Dev data plane is up".* admin=(http://\S+)`)

// givenDev runs `patchbay-runtime dev` on a Workflow whose steps are demo-step
// processes. Each step command writes the $PORT dev gave it, so the test can
// ask the step itself what it saw.
func givenDev(t *testing.T, style, policies string, steps ...stepSpec) *devEnv {
	t.Helper()
	g := NewWithT(t)
	dir := t.TempDir()
	file := writeWorkflow(t, devtest.WorkflowYAML(style, policies, steps...))
	args := []string{"dev", "-f", file}
	for _, s := range steps {
		args = append(args, "--step", fmt.Sprintf("%s=cmd:echo $$ > %s; echo $PORT > %s; exec %s --name=%s %s",
			s.Name, shellQuote(filepath.Join(dir, s.Name+".pid")), shellQuote(filepath.Join(dir, s.Name+".port")),
			shellQuote(demoStepBin), s.Name, shellJoin(s.Args)))
	}
	admin := &lineMatcher{re: adminLine, found: make(chan string, 1)}
	p, stdout := startReadingStdoutTee(t, admin, runtimeBin, args...)
	// dev runs each step command in its own process group, so stop dev the
	// way a user does and let it stop them; then make sure they are gone.
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(waitBound):
			t.Errorf("patchbay-runtime dev did not exit within %s of SIGTERM", waitBound)
		}
		for _, s := range steps {
			b, err := os.ReadFile(filepath.Join(dir, s.Name+".pid"))
			if err != nil {
				continue
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && !gone(pid) {
				t.Errorf("step %s (pid %d) outlived patchbay-runtime dev", s.Name, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	env := &devEnv{proc: p, entry: readLine(t, stdout), apps: map[string]string{}}
	g.Expect(env.entry).To(MatchRegexp(`^http://127\.0\.0\.1:\d+/$`), p.stderr.String())
	g.Eventually(admin.found).WithTimeout(waitBound).Should(Receive(&env.admin))
	for _, s := range steps {
		port, err := os.ReadFile(filepath.Join(dir, s.Name+".port"))
		g.Expect(err).NotTo(HaveOccurred())
		env.apps[s.Name] = "http://127.0.0.1:" + strings.TrimSpace(string(port))
	}
	return env
}

// lineMatcher sends the first submatch of re in the output it is given, once.
// Only the command's output copier calls Write.
type lineMatcher struct {
	re    *regexp.Regexp
	found chan string // buffered, 1
	sent  bool
	buf   []byte
}

func (m *lineMatcher) Write(b []byte) (int, error) {
	if m.sent {
		return len(b), nil
	}
	m.buf = append(m.buf, b...)
	for {
		i := bytes.IndexByte(m.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := m.buf[:i]
		m.buf = m.buf[i+1:]
		if sub := m.re.FindSubmatch(line); sub != nil {
			m.found <- string(sub[1])
			m.sent, m.buf = true, nil
			return len(b), nil
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// answer is what a caller got.
type answer = devtest.Answer

var client = devtest.Client

func whenPost(g Gomega, url, contentType string, body []byte) answer {
	a, err := devtest.Post(url, contentType, body)
	g.Expect(err).NotTo(HaveOccurred())
	return a
}

func whenPostJSON(g Gomega, url, body string) answer {
	return whenPost(g, url, "application/json", []byte(body))
}

func getJSON(g Gomega, url string, into any) { devtest.GetJSON(g, url, into) }

// stepStats is what the step's own demo-step process observed.
func (e *devEnv) stepStats(g Gomega, step string) demostep.Stats {
	var s demostep.Stats
	getJSON(g, e.apps[step]+"/_demo/stats", &s)
	return s
}

// breaker is the state of the breaker in front of step's app, as the
// sidecar (sync-chain) or the orchestrator (sync-orchestrated) reports it.
func (e *devEnv) breaker(g Gomega, step string) resilience.BreakerState {
	var out struct {
		Breakers []resilience.BreakerState `json:"breakers"`
	}
	getJSON(g, e.admin+"debug/breakers", &out)
	for _, b := range out.Breakers {
		if b.To == step && (b.From == "orchestrator" || b.From == "sidecar") {
			return b
		}
	}
	g.Expect(out.Breakers).To(ContainElement(HaveField("EdgeName.To", step)))
	return resilience.BreakerState{}
}

func eventually(g Gomega, f any) AsyncAssertion {
	return g.Eventually(f).WithTimeout(waitBound).WithPolling(pollEvery)
}

func TestStepFailingTwiceWith503SucceedsOnTheThirdCall(t *testing.T) {
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenDev(t, style, fastRetries,
				stepSpec{Name: "front", Args: []string{"--mode=transform", "--set=front=true"}},
				stepSpec{Name: "flaky", Args: []string{"--mode=transform", "--set=flaky=true", "--fail-first=2", "--fail-status=503"}, DependsOn: []string{"front"}})
			a := whenPostJSON(g, env.entry, `{}`)
			g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
			g.Expect(a.Body).To(MatchJSON(`{"front":true,"flaky":true}`))
			g.Expect(env.stepStats(g, "flaky").Calls).To(BeEquivalentTo(3))
			g.Expect(env.stepStats(g, "front").Calls).To(BeEquivalentTo(1), "a retry replays the failed step only")
		})
	}
}

func TestClientErrorFailsTheRunAtOnce(t *testing.T) {
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenDev(t, style, fastRetries,
				stepSpec{Name: "front", Args: []string{"--mode=echo"}},
				stepSpec{Name: "picky", Args: []string{"--mode=echo", "--fail-first=1000", "--fail-status=400"}, DependsOn: []string{"front"}},
				stepSpec{Name: "after", Args: []string{"--mode=echo"}, DependsOn: []string{"picky"}})
			a := whenPostJSON(g, env.entry, `{}`)
			g.Expect(a.Code).To(Equal(http.StatusBadRequest), "%s", a.Body)
			e := a.RunError(g)
			g.Expect(e.Step).To(Equal("picky"))
			g.Expect(e.Status).To(Equal(400))
			g.Expect(e.Attempts).To(Equal(1))
			g.Expect(e.RunID).To(Equal(a.Header.Get(contract.HeaderRunID)))
			g.Expect(e.Detail).To(ContainSubstring("injected failure"))
			g.Expect(env.stepStats(g, "picky").Calls).To(BeEquivalentTo(1))
			g.Expect(env.stepStats(g, "after").Calls).To(BeZero())
		})
	}
}

func TestSlowStepTimesOutAfterEveryAttempt(t *testing.T) {
	const attemptTimeout, attempts = 100 * time.Millisecond, 3
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenDev(t, style, fastRetries,
				stepSpec{Name: "front", Args: []string{"--mode=echo"}},
				stepSpec{Name: "slow", Args: []string{"--mode=echo", "--latency=1m"}, DependsOn: []string{"front"},
					Resilience: "{timeout: 100ms, retry: {attempts: 3, initialDelay: 10ms, maxDelay: 20ms}}"})
			start := time.Now()
			a := whenPostJSON(g, env.entry, `{}`)
			g.Expect(a.Code).To(Equal(http.StatusGatewayTimeout), "%s", a.Body)
			// A lower bound only: every attempt waited out its timeout.
			g.Expect(time.Since(start)).To(BeNumerically(">=", attempts*attemptTimeout))
			e := a.RunError(g)
			g.Expect(e.Step).To(Equal("slow"))
			g.Expect(e.Attempts).To(Equal(attempts))
			g.Expect(e.Status).To(BeZero(), "the step never answered")
			g.Expect(e.Message).To(ContainSubstring("timed out"))
			eventually(g, func(g Gomega) { g.Expect(env.stepStats(g, "slow").Calls).To(BeEquivalentTo(attempts)) }).Should(Succeed())
		})
	}
}

// breakerFailures opens a breaker that trips after 3 consecutive failures.
const breakerFailures = 3

// givenOpenBreaker runs a one-step workflow whose app fails its first calls
// with 500, and fails it until the breaker in front of it opens.
func givenOpenBreaker(t *testing.T, style, openDuration string) *devEnv {
	t.Helper()
	g := NewWithT(t)
	env := givenDev(t, style,
		fmt.Sprintf("{retry: {attempts: 1}, circuitBreaker: {consecutiveFailures: %d, openDuration: %s, halfOpenRequests: 1}}", breakerFailures, openDuration),
		stepSpec{Name: "flaky", Args: []string{"--mode=echo", fmt.Sprintf("--fail-first=%d", breakerFailures), "--fail-status=500"}})
	for range breakerFailures {
		a := whenPostJSON(g, env.entry, `{}`)
		g.Expect(a.Code).To(Equal(http.StatusBadGateway), "%s", a.Body)
		g.Expect(a.RunError(g).Status).To(Equal(500))
	}
	eventually(g, func(g Gomega) { g.Expect(env.breaker(g, "flaky").State).To(Equal("open")) }).Should(Succeed())
	return env
}

func TestBreakerRejectsWithoutCallingTheAppWhileOpen(t *testing.T) {
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			// Open for an hour: no call in this test can become the probe.
			env := givenOpenBreaker(t, style, "1h")
			for range 2 {
				a := whenPostJSON(g, env.entry, `{}`)
				g.Expect(a.Code).To(Equal(http.StatusServiceUnavailable), "%s", a.Body)
				g.Expect(a.Header.Get("Retry-After")).To(MatchRegexp(`^\d+$`))
				e := a.RunError(g)
				g.Expect(e.Step).To(Equal("flaky"))
				g.Expect(e.Message).To(ContainSubstring("circuit breaker"))
			}
			g.Expect(env.stepStats(g, "flaky").Calls).To(BeEquivalentTo(breakerFailures), "an open breaker does not call the app")
			g.Expect(env.breaker(g, "flaky").State).To(Equal("open"))
		})
	}
}

func TestBreakerLetsOneProbeThroughAfterOpenDurationAndCloses(t *testing.T) {
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenOpenBreaker(t, style, "200ms")
			// Calls are rejected until openDuration passed; then one probe goes
			// through, and the app, past its failures, answers it.
			var a answer
			eventually(g, func(g Gomega) {
				a = whenPostJSON(g, env.entry, `{"probe":1}`)
				g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
			}).Should(Succeed())
			g.Expect(a.Body).To(MatchJSON(`{"probe":1}`))
			g.Expect(env.stepStats(g, "flaky").Calls).To(BeEquivalentTo(breakerFailures+1), "only the probe reached the app")
			g.Expect(env.breaker(g, "flaky").State).To(Equal("closed"))
		})
	}
}

func TestBulkheadRejectsRequestsOverTheLimit(t *testing.T) {
	const limit = 2
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenDev(t, style, fmt.Sprintf("{bulkhead: {maxConcurrent: %d}, retry: {attempts: 1}}", limit),
				stepSpec{Name: "gated", Args: []string{"--mode=echo", "--hold"}})

			var wg sync.WaitGroup
			held := make([]answer, limit)
			for i := range limit {
				wg.Go(func() { held[i] = whenPostJSON(g, env.entry, `{}`) })
			}
			eventually(g, func(g Gomega) { g.Expect(env.stepStats(g, "gated").InFlight).To(BeEquivalentTo(limit)) }).Should(Succeed())

			a := whenPostJSON(g, env.entry, `{}`)
			g.Expect(a.Code).To(BeElementOf(http.StatusServiceUnavailable, http.StatusTooManyRequests), "%s", a.Body)
			if style == "sync-orchestrated" {
				// The orchestrator's own bulkhead, sized from the steps', is
				// full first: it rejects before reading the request.
				g.Expect(a.Header.Get(contract.HeaderRejected)).To(Equal("bulkhead"), "%s", a.Body)
			} else {
				g.Expect(a.RunError(g).Step).To(Equal("gated"))
			}
			g.Expect(env.stepStats(g, "gated").Calls).To(BeEquivalentTo(limit), "a rejected request never reaches the app")

			resp, err := client.Post(env.apps["gated"]+"/_demo/release", "", nil)
			g.Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			wg.Wait()
			for _, h := range held {
				g.Expect(h.Code).To(Equal(http.StatusOK), "%s", h.Body)
			}
		})
	}
}

func TestBadRequestsGet4xx(t *testing.T) {
	tooLarge := []byte(`{"pad":"` + strings.Repeat("x", plan.DefaultMaxBodyLen) + `"}`)
	for _, style := range syncStyles {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenDev(t, style, "",
				stepSpec{Name: "first", Args: []string{"--mode=transform", "--set=first=true"}},
				stepSpec{Name: "second", Args: []string{"--mode=transform", "--set=second=true"}, DependsOn: []string{"first"}})

			a := whenPost(g, env.entry, "application/json", []byte(`{"id":`))
			g.Expect(a.Code).To(Equal(http.StatusBadRequest), "%s", a.Body)
			a.RunError(g)

			a = whenPost(g, env.entry, "application/json", tooLarge)
			g.Expect(a.Code).To(Equal(http.StatusRequestEntityTooLarge), "%s", a.Body)

			// Still serving, and nothing crashed.
			a = whenPostJSON(g, env.entry, `{"id":1}`)
			g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
			g.Expect(a.Body).To(MatchJSON(`{"id":1,"first":true,"second":true}`))
			g.Expect(env.proc.terminate(t)).To(Equal(0), env.proc.stderr.String())
			g.Expect(env.proc.stderr.String()).NotTo(ContainSubstring("panic"))
		})
	}
	t.Run("a fan-out refuses a body that is not JSON before any step runs", func(t *testing.T) {
		g := NewWithT(t)
		env := givenDev(t, "sync-chain", "",
			stepSpec{Name: "root", Args: []string{"--mode=echo"}},
			stepSpec{Name: "a", Args: []string{"--mode=echo"}, DependsOn: []string{"root"}},
			stepSpec{Name: "b", Args: []string{"--mode=echo"}, DependsOn: []string{"root"}})
		a := whenPost(g, env.entry, "text/plain", []byte(`not json`))
		g.Expect(a.Code).To(Equal(http.StatusBadRequest), "%s", a.Body)
		g.Expect(a.RunError(g).Message).To(ContainSubstring("not valid JSON"))
		g.Expect(env.stepStats(g, "root").Calls).To(BeZero())
	})
}
