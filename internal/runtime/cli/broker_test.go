package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/natsauth/natsauthtest"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// These tests run the roles in process through Main, against an embedded
// nats-server that the test starts, stops and restarts on a fixed port, as a
// Broker's StatefulSet comes up after the workflow's pods and loses servers.

// waitBound bounds every wait, generous for a loaded 2-core machine.
const (
	waitBound = 60 * time.Second
	pollEvery = 50 * time.Millisecond
)

const (
	natsUser     = "patchbay"
	natsPassword = "s3cret"
)

// testBroker is an embedded nats-server with JetStream and a client password,
// on a port and store directory that outlive its restarts.
type testBroker struct {
	t    *testing.T
	port int
	dir  string
	srv  *server.Server
	// maxControlLine, when set, lowers the server's limit on a protocol line
	// (4096 by default), over which it closes the client's connection.
	maxControlLine int32
	// conf, when set, is the nats.conf of a Broker whose keys are auth: the
	// server runs from it, as a Broker's does, in place of a password.
	conf string
	auth *natsauth.Broker
}

// givenBroker is a running testBroker with the plan's stream and buckets.
func givenBroker(t *testing.T, p *plan.Plan) *testBroker {
	b := newTestBroker(t)
	b.start()
	b.setUp(p)
	return b
}

// newBrokerAsRendered is a testBroker that runs from the nats.conf a
// one-server Broker renders, with its own keys.
func newBrokerAsRendered(t *testing.T) *testBroker {
	b := newTestBroker(t)
	b.auth, b.conf = natsauthtest.Rendered(t)
	return b
}

// workflowCredentials writes a workflow's credentials Secret on b as its
// pods mount it.
func (b *testBroker) workflowCredentials(p *plan.Plan) string {
	b.t.Helper()
	u, err := b.auth.NewWorkflowUser(p)
	if err != nil {
		b.t.Fatal(err)
	}
	dir := b.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, natsauth.CredentialsKey), u.Creds, 0o600); err != nil {
		b.t.Fatal(err)
	}
	return dir
}

// jetStream is a JetStream client of the running broker as the user of a
// broker without keys, closed when the test ends.
func (b *testBroker) jetStream() jetstream.JetStream {
	b.t.Helper()
	nc, err := nats.Connect(b.url(), nats.UserInfo(natsUser, natsPassword))
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.t.Fatal(err)
	}
	return js
}

// setUp creates the workflow's stream and buckets on the running broker, as
// the manager does (a workflow's own user may not).
func (b *testBroker) setUp(p *plan.Plan) {
	b.t.Helper()
	if b.auth != nil {
		natsauthtest.Manage(b.t, b.auth, b.url(), p)
		return
	}
	nc, err := nats.Connect(b.url(), nats.UserInfo(natsUser, natsPassword))
	if err != nil {
		b.t.Fatal(err)
	}
	defer nc.Close()
	natsauthtest.EnsureResources(b.t, nc, p)
}

func newTestBroker(t *testing.T) *testBroker {
	b := &testBroker{t: t, port: freePort(t), dir: t.TempDir()}
	t.Cleanup(b.stop)
	return b
}

func (b *testBroker) url() string { return "nats://127.0.0.1:" + strconv.Itoa(b.port) }

func (b *testBroker) start() {
	b.t.Helper()
	opts := &server.Options{
		ServerName: "patchbay-test", Host: "127.0.0.1", Port: b.port,
		JetStream: true, StoreDir: b.dir, NoSigs: true, NoLog: true,
		Username: natsUser, Password: natsPassword, MaxControlLine: b.maxControlLine,
	}
	if b.conf != "" {
		opts = natstest.ConfigOptions(b.t, b.conf, render.NATSDataDir, b.dir, map[string]string{render.NATSServerNameEnv: "patchbay-test"})
		opts.Port = b.port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		b.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(waitBound) {
		srv.Shutdown()
		b.t.Fatalf("embedded NATS on port %d is not ready within %s", b.port, waitBound)
	}
	b.srv = srv
}

func (b *testBroker) stop() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.srv = nil
	}
}

// credentials writes the Broker's client Secret as the pod mounts it.
func credentials(t *testing.T) string {
	dir := t.TempDir()
	for name, v := range map[string]string{"user": natsUser, "password": natsPassword} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func freePort(t *testing.T) int { return natstest.FreePort(t) }

// planFile compiles a sample Workflow as the operator does and writes its plan.
func planFile(t *testing.T, style string) (string, *plan.Plan) {
	t.Helper()
	wf, err := dev.LoadWorkflow(filepath.Join("..", "..", "..", "config", "samples", style+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := topology.Compile(wf)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, p
}

// syncBuffer is a log sink the role and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// role is a role running through Main.
type role struct {
	admin  string // host:port of /healthz and /readyz
	stderr *syncBuffer
	done   chan struct{} // closed when Main returned
	code   int           // Main's exit code, once done
	stop   context.CancelFunc
}

// exitCode waits for Main to return.
func (r *role) exitCode(g Gomega) int {
	g.Eventually(r.done).WithTimeout(waitBound).Should(BeClosed())
	return r.code
}

// testProgram has the roles of this package, as patchbay-runtime has them.
var testProgram = Program{Name: "patchbay-runtime", Roles: []Role{Sidecar, Orchestrator, Gateway, DLQ}}

// startRole runs Main(args) until the test ends (as SIGTERM would end it).
func startRole(t *testing.T, admin string, args ...string) *role {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &role{admin: admin, stderr: &syncBuffer{}, done: make(chan struct{}), stop: cancel}
	go func() {
		defer close(r.done)
		r.code = testProgram.Main(ctx, append(args, "--log-format=text", "--log-level=debug"), io.Discard, r.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(waitBound):
			t.Errorf("%s did not return within %s after its context ended", args[0], waitBound)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", args[0], r.stderr.String())
		}
	})
	return r
}

// status GETs path on the role's admin address; 0 when nothing answers.
func (r *role) status(path string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + r.admin + path)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// probes is what the kubelet sees: /healthz, /readyz, and whether Main returned.
type probes struct {
	Healthz, Readyz int
	Exited          bool
}

func (r *role) probes() probes {
	p := probes{Healthz: r.status("/healthz"), Readyz: r.status("/readyz")}
	select {
	case <-r.done:
		p.Exited = true
	default:
	}
	return p
}

var (
	waiting = probes{Healthz: http.StatusOK, Readyz: http.StatusServiceUnavailable}
	ready   = probes{Healthz: http.StatusOK, Readyz: http.StatusOK}
)

// The measured bug: every async role restarted three to five times before
// its Broker was up, because it listened (and so answered /healthz) only once
// connected and set up on the broker. A role must serve /healthz from its
// start, say not ready while the broker is unreachable, and never exit for it.
//
// The broker runs from the nats.conf a Broker renders, and the gateway
// connects as its workflow's own user.
func TestGatewayWaitsForTheBrokerAndRidesOutItsRestarts(t *testing.T) {
	g := NewWithT(t)
	file, p := planFile(t, "async-orchestrated")
	broker := newBrokerAsRendered(t)
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	gw := startRole(t, listen, "gateway", "--plan="+file, "--listen="+listen,
		"--nats-url="+broker.url(), "--nats-credentials="+broker.workflowCredentials(p), "--shutdown-delay=0")

	// No broker yet: alive, not ready, and it stays so.
	g.Eventually(gw.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(waiting))
	g.Consistently(gw.probes).WithTimeout(3 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(waiting))
	// Its routes answer 503 rather than hang.
	code, body := postAsync(g, listen, "")
	g.Expect(code).To(Equal(http.StatusServiceUnavailable), body)

	// The broker comes up, the manager creates the stream and buckets: the
	// gateway sets itself up and takes runs.
	broker.start()
	broker.setUp(p)
	g.Eventually(gw.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))
	code, body = postAsync(g, listen, "run-1")
	g.Expect(code).To(Equal(http.StatusAccepted), body)
	g.Expect(get(listen, "/runs/run-1")).To(Equal(http.StatusAccepted))

	// The broker goes away: not ready, still alive, still running.
	broker.stop()
	g.Eventually(gw.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(waiting))
	g.Consistently(gw.probes).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(waiting))

	// It comes back with its store: ready again, and the run is still there.
	broker.start()
	g.Eventually(gw.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))
	g.Eventually(func() int { return get(listen, "/runs/run-1") }).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(http.StatusAccepted))
	code, body = postAsync(g, listen, "run-2")
	g.Expect(code).To(Equal(http.StatusAccepted), body)

	// SIGTERM still ends it cleanly.
	gw.stop()
	g.Expect(gw.exitCode(g)).To(Equal(0))
}

// The orchestrator and the sidecar of an async step wait for the broker the
// same way: alive from the start, ready once the broker is up.
func TestAsyncRolesServeHealthWhileWaitingForTheBroker(t *testing.T) {
	// The sidecar's app listens from the start: only the broker is missing.
	app := startSlowApp(t, 0).addr
	for name, args := range map[string]func(listen, admin string) []string{
		"orchestrator": func(listen, _ string) []string {
			return []string{"orchestrator", "--listen=" + listen}
		},
		"sidecar": func(listen, admin string) []string {
			return []string{"sidecar", "--step=pick", "--listen=" + listen, "--admin-listen=" + admin, "--app-url=http://" + app}
		},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			file, p := planFile(t, "async-orchestrated")
			broker := newBrokerAsRendered(t)
			listen, admin := "127.0.0.1:"+strconv.Itoa(freePort(t)), "127.0.0.1:"+strconv.Itoa(freePort(t))
			a := args(listen, admin)
			if name == "orchestrator" {
				admin = listen
			}
			r := startRole(t, admin, append(a, "--plan="+file, "--nats-url="+broker.url(), "--nats-credentials="+broker.workflowCredentials(p))...)
			g.Eventually(r.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(waiting))
			g.Consistently(r.probes).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(waiting))
			broker.start()
			// Up, but without the stream and buckets the manager creates:
			// still alive and waiting.
			g.Consistently(r.probes).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(waiting))
			broker.setUp(p)
			g.Eventually(r.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))
		})
	}
}

// A consumer the client stops on its own (here: deleted on the broker) would
// leave the role running but idle for good: it must turn not ready and exit
// non-zero, so that Kubernetes restarts it and it recreates the consumer.
func TestOrchestratorExitsWhenItsConsumerIsGone(t *testing.T) {
	g := NewWithT(t)
	file, p := planFile(t, "async-orchestrated")
	broker := givenBroker(t, p)
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	r := startRole(t, listen, "orchestrator", "--plan="+file, "--listen="+listen,
		"--nats-url="+broker.url(), "--nats-credentials="+credentials(t))
	g.Eventually(r.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))

	js := broker.jetStream()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	g.Expect(js.DeleteConsumer(ctx, p.Stream.Name, p.Stream.OrchestratorDurable)).To(Succeed())

	g.Expect(r.exitCode(g)).To(Equal(1))
	g.Expect(r.stderr.String()).To(ContainSubstring("consumer " + p.Stream.OrchestratorDurable + " stopped consuming"))
}

// The broker closes a connection whose protocol line is over its limit, and
// the client does not reconnect after that. The gateway checks every key
// against a bound far below the default limit; should a line still be too
// long (here: a broker with a lower limit), the gateway must not stay up
// disconnected: it turns not ready and exits non-zero, to be restarted.
func TestGatewayExitsWhenTheBrokerClosesItsConnection(t *testing.T) {
	g := NewWithT(t)
	file, p := planFile(t, "choreography")
	broker := newTestBroker(t)
	broker.maxControlLine = 400
	broker.start()
	broker.setUp(p)
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	gw := startRole(t, listen, "gateway", "--plan="+file, "--listen="+listen,
		"--nats-url="+broker.url(), "--nats-credentials="+credentials(t), "--shutdown-delay=0")
	g.Eventually(gw.probes).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(ready))

	// A valid read-model key (256 bytes, stored base64-encoded), whose KV
	// read is over this broker's limit.
	code := get(listen, "/query/"+strings.Repeat("%C3%BC", 128))
	g.Expect(code).To(Or(Equal(http.StatusServiceUnavailable), BeZero()))
	g.Expect(gw.exitCode(g)).To(Equal(1))
	// Whichever notices the closed connection first ends the role: the
	// connection's own error, or a consumer that it stopped.
	g.Expect(gw.stderr.String()).To(Or(ContainSubstring("maximum control line exceeded"), ContainSubstring("stopped consuming")))
}

func postAsync(g Gomega, addr, runID string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(`{"sku":"a1"}`))
	g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	if runID != "" {
		req.Header.Set("Patchbay-Run-Id", runID)
	}
	c := http.Client{Timeout: waitBound}
	resp, err := c.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// get is the status of a GET, 0 when the request fails.
func get(addr, path string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
