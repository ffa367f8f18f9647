//go:build faults

package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/proctest"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// A cluster is a Workflow's data plane as Kubernetes would run it, as
// processes on loopback: per step a demo-step app and a patchbay-runtime
// sidecar, the orchestrator and the gateway where the style has them, and a
// nats-server on a file store for the async styles. A supervisor restarts
// every process but the apps when it exits, as the kubelet restarts a
// container, so the suite only has to kill.
type cluster struct {
	plan    *plan.Plan
	wf      *v1alpha1.Workflow
	dir     string
	nats    *proctest.NATS
	steps   map[string]*stepProcs
	orch    *proctest.Proc
	gateway *proctest.Proc
	// entry is where runs start; readyz are the /readyz URLs of the roles.
	entry  string
	readyz []string

	mu       sync.Mutex // guards stopping against a restart
	stopping bool
	procs    []*proctest.Proc
	restarts atomic.Int64
	superv   sync.WaitGroup
}

type stepProcs struct {
	app, sidecar                 *proctest.Proc
	appURL, sidecarAddr, adminAt string
}

// givenCluster starts the Workflow in yaml and waits until every role is
// ready. DeferCleanup kills every process it started.
func givenCluster(yaml string) *cluster {
	GinkgoHelper()
	wf, err := dev.ParseWorkflow("workflow.yaml", []byte(yaml))
	Expect(err).NotTo(HaveOccurred())
	p, err := topology.Compile(wf)
	Expect(err).NotTo(HaveOccurred())
	return givenPlan(wf, p)
}

// givenSample starts config/samples/<style>.yaml.
func givenSample(style string) *cluster {
	GinkgoHelper()
	b, err := os.ReadFile(filepath.Join(root, "config", "samples", style+".yaml"))
	Expect(err).NotTo(HaveOccurred())
	return givenCluster(string(b))
}

func givenPlan(wf *v1alpha1.Workflow, p *plan.Plan) *cluster {
	GinkgoHelper()
	dir, err := os.MkdirTemp("", "patchbay-faults-")
	Expect(err).NotTo(HaveOccurred())
	c := &cluster{plan: p, wf: wf, dir: dir, steps: map[string]*stepProcs{}}
	DeferCleanup(func() {
		c.stop()
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("The processes' logs are kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	b, err := p.Marshal()
	Expect(err).NotTo(HaveOccurred())
	planFile := filepath.Join(dir, "plan.json")
	Expect(os.WriteFile(planFile, b, 0o600)).To(Succeed())

	var natsArgs []string
	if p.Stream != nil {
		store := filepath.Join(dir, "nats")
		Expect(os.MkdirAll(store, 0o700)).To(Succeed())
		c.nats, err = proctest.StartNATS(natsBin, store, c.logFile("nats-server"))
		Expect(err).NotTo(HaveOccurred())
		c.supervise(c.nats.Proc)
		Expect(proctest.WaitDialable(c.nats.Proc, c.nats.Addr, waitBound)).To(Succeed())
		natsArgs = []string{"--nats-url", c.nats.URL()}
		// The stream and buckets, as the manager creates them; the roles
		// wait for them.
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		Expect(bus.EnsureResources(ctx, c.js(), p, bus.DefaultStorage)).To(Succeed())
	}
	// Every address is found free and handed out once: a port closed by
	// FreeAddr may come back from the next call.
	taken := map[string]bool{}
	if c.nats != nil {
		taken[c.nats.Addr] = true
	}
	addr := func() string {
		for {
			a, err := proctest.FreeAddr()
			Expect(err).NotTo(HaveOccurred())
			if !taken[a] {
				taken[a] = true
				return a
			}
		}
	}
	var resolve []string
	for i := range wf.Spec.Steps {
		st := &wf.Spec.Steps[i]
		sp := &stepProcs{sidecarAddr: addr(), adminAt: addr()}
		c.steps[st.Name] = sp
		resolve = append(resolve, "--resolve", st.Name+"=http://"+sp.sidecarAddr)
	}
	role := []string{"--log-level=warn", "--plan", planFile}
	for i := range wf.Spec.Steps {
		st := &wf.Spec.Steps[i]
		sp := c.steps[st.Name]
		appAddr := addr()
		sp.appURL = "http://" + appAddr
		// Apps are not killed: they count what they saw for the suite.
		sp.app, err = proctest.Start("app "+st.Name, c.logFile("app-"+st.Name), demoStepBin,
			append([]string{"--addr=" + appAddr, "--name=" + st.Name}, st.Args...)...)
		Expect(err).NotTo(HaveOccurred())
		c.track(sp.app)
		Expect(proctest.WaitDialable(sp.app, appAddr, waitBound)).To(Succeed())
		args := append(append([]string{"sidecar", "--step", st.Name, "--listen", sp.sidecarAddr, "--admin-listen", sp.adminAt,
			"--app-url", sp.appURL}, role...), natsArgs...)
		sp.sidecar = c.startRole("sidecar-"+st.Name, append(args, resolve...)...)
		c.readyz = append(c.readyz, "http://"+sp.adminAt+"/readyz")
	}
	if p.Stream != nil && p.Roles.Orchestrator {
		orchAddr := addr()
		c.orch = c.startRole("orchestrator", append(append(append([]string{"orchestrator", "--listen", orchAddr}, role...), natsArgs...), resolve...)...)
		c.readyz = append(c.readyz, "http://"+orchAddr+"/readyz")
		// The orchestrator is ready before the gateway starts.
		c.waitReady()
	}
	switch p.Entry.Kind {
	case plan.EntryGateway:
		gwAddr := addr()
		c.gateway = c.startRole("gateway", append(append(append([]string{"gateway", "--listen", gwAddr}, role...), natsArgs...), resolve...)...)
		c.entry = "http://" + gwAddr + "/"
		c.readyz = append(c.readyz, c.entry+"readyz")
	case plan.EntryStep:
		c.entry = "http://" + c.steps[p.Entry.Step].sidecarAddr + "/"
	default:
		Fail("the suite runs the async styles and sync-chain, not " + string(p.Style))
	}
	c.waitReady()
	return c
}

// startRole starts a patchbay-runtime role under supervision.
func (c *cluster) startRole(name string, args ...string) *proctest.Proc {
	GinkgoHelper()
	p, err := proctest.Start(name, c.logFile(name), runtimeBin, args...)
	Expect(err).NotTo(HaveOccurred())
	c.supervise(p)
	return p
}

func (c *cluster) logFile(name string) io.Writer {
	GinkgoHelper()
	f, err := os.OpenFile(filepath.Join(c.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(f.Close)
	return f
}

func (c *cluster) track(p *proctest.Proc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs = append(c.procs, p)
}

// supervise restarts p whenever it exits, until the cluster stops. As the
// kubelet does, it backs off while the process keeps exiting right after it
// started (such as when its port is taken).
func (c *cluster) supervise(p *proctest.Proc) {
	c.track(p)
	c.superv.Go(func() {
		defer GinkgoRecover()
		backoff := time.Duration(0)
		for {
			started := time.Now()
			<-p.Exited()
			if time.Since(started) < time.Second {
				backoff = min(max(2*backoff, 100*time.Millisecond), 2*time.Second)
				time.Sleep(backoff) // the crash-loop backoff, not a synchronization
			} else {
				backoff = 0
			}
			c.mu.Lock()
			if c.stopping {
				c.mu.Unlock()
				return
			}
			err := p.Restart()
			c.mu.Unlock()
			if err != nil {
				GinkgoWriter.Printf("restart %s: %v\n", p.Name, err)
				return
			}
			c.restarts.Add(1)
		}
	})
}

// stop kills every process the cluster started, process groups and all.
func (c *cluster) stop() {
	c.mu.Lock()
	c.stopping = true
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
	c.superv.Wait()
}

// waitReady polls every role's /readyz until it answers 200.
func (c *cluster) waitReady() {
	GinkgoHelper()
	client := &http.Client{Timeout: 5 * time.Second}
	for _, u := range c.readyz {
		Eventually(func() (int, error) {
			resp, err := client.Get(u)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}).WithTimeout(waitBound).WithPolling(pollEvery).Should(Equal(http.StatusOK), u)
	}
}

// js connects the suite to the cluster's broker, to read what the data plane
// wrote there.
func (c *cluster) js() jetstream.JetStream {
	GinkgoHelper()
	nc, err := nats.Connect(c.nats.URL(), nats.MaxReconnects(-1), nats.Name("faults suite"))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	return js
}

// runs reads the run records from the runs bucket.
func (c *cluster) runs(js jetstream.JetStream) *bus.Runs {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	kv, err := js.KeyValue(ctx, c.plan.Stream.RunsBucket)
	Expect(err).NotTo(HaveOccurred())
	return &bus.Runs{KV: kv}
}

// deadLetters reads every dead letter of the workflow's dead-letter stream,
// by run id, through bus.DeadLetters as GET /deadletters does.
func (c *cluster) deadLetters(js jetstream.JetStream) map[string][]bus.DeadLetter {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	dl := &bus.DeadLetters{Plan: c.plan, Conn: &bus.Conn{JS: js}}
	out := map[string][]bus.DeadLetter{}
	var after uint64
	for {
		page, err := dl.List(ctx, after, 256)
		Expect(err).NotTo(HaveOccurred())
		if len(page) == 0 {
			return out
		}
		for _, d := range page {
			out[d.RunID] = append(out[d.RunID], *d)
			after, err = strconv.ParseUint(d.ID, 10, 64)
			Expect(err).NotTo(HaveOccurred(), "dead letter id %q", d.ID)
		}
	}
}

// result reads a finished run's result from the workflow's stream, as the
// gateway answers GET /runs/{id}.
func (c *cluster) result(js jetstream.JetStream, r *bus.Run) string {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	data, _, err := (&bus.Conn{JS: js}).Payload(ctx, c.plan, r.Result)
	Expect(err).NotTo(HaveOccurred(), "the result of run %s", r.ID)
	return string(data)
}

// deliveries is how often each step's app saw each Ce-Id.
func (c *cluster) deliveries() map[string]map[string]int64 {
	GinkgoHelper()
	out := map[string]map[string]int64{}
	for name, sp := range c.steps {
		m := map[string]int64{}
		getJSON(sp.appURL+"/_demo/deliveries", &m)
		out[name] = m
	}
	return out
}

// maxDeliveries is how often the broker may deliver one message to a step:
// its consumers' MaxDeliver, plus the one delivery that dead-letters a
// message whose last attempt was cut short (bus.StepConsumerConfig).
func (c *cluster) maxDeliveries(step string) int64 {
	var n int64
	for _, cons := range c.plan.Step(step).Consumers {
		n = max(n, int64(bus.StepConsumerConfig(cons).MaxDeliver))
	}
	return n
}

// explainPending says where a pending run's messages are: every message of
// the workflow's stream that carries its run id (sequence, subject, message
// id), then every consumer's delivered and ack-floor sequences, so that a
// failure shows whether the run's start was stored and which consumer has
// passed it.
func (c *cluster) explainPending(js jetstream.JetStream, runID string) string {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "run %s:", runID)
	s, err := js.Stream(ctx, c.plan.Stream.Name)
	Expect(err).NotTo(HaveOccurred())
	last := s.CachedInfo().State.LastSeq
	oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	Expect(err).NotTo(HaveOccurred())
	for seen := uint64(0); seen < last; {
		m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			fmt.Fprintf(&b, " (stream read stopped at %d of %d: %v)", seen, last, err)
			break
		}
		md, err := m.Metadata()
		Expect(err).NotTo(HaveOccurred())
		seen = md.Sequence.Stream
		if m.Headers().Get(contract.HeaderRunID) == runID {
			fmt.Fprintf(&b, " seq %d %s (id %s);", seen, m.Subject(), m.Headers().Get(jetstream.MsgIDHeader))
		}
	}
	names := s.ConsumerNames(ctx)
	for name := range names.Name() {
		cons, err := s.Consumer(ctx, name)
		if err != nil {
			fmt.Fprintf(&b, " consumer %s: %v;", name, err)
			continue
		}
		ci := cons.CachedInfo()
		fmt.Fprintf(&b, " consumer %s: delivered %d, ack floor %d, pending %d, ack pending %d, redelivered %d;",
			name, ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending, ci.NumRedelivered)
	}
	return b.String()
}
