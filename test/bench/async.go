package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
)

// asyncConfig is the size of the async throughput section.
type asyncConfig struct {
	duration time.Duration // measured load per workflow
	warmup   time.Duration
	workers  int // callers, each starting a run and collecting its result in turn
	messages int // raw JetStream baseline: messages published and consumed
	payload  int
	self     string
	runtime  string
	sidecar  string // patchbay-sidecar
}

// asyncPolicies are the broker, the run deadline and the policies of every
// asyncWorkflows entry. The gateways check every run's deadline when it comes
// (the deadline consumer's second delivery of its start), which is part of
// what a run costs: the deadline is shorter than the warm-up, so that the
// measured load pays for the checks of the runs before it, as a steady load
// does.
const asyncPolicies = `broker: {name: default}
runTimeout: ` + asyncRunTimeout + `
resilience: {timeout: 5s, retry: {attempts: 3, backoff: exponential, initialDelay: 50ms, maxDelay: 1s}, bulkhead: {maxConcurrent: 256}}`

// asyncRunTimeout is the run deadline of the async section's workflows; the
// warm-up must be longer (main.go), and a run under the load takes
// milliseconds.
const asyncRunTimeout = "2s"

// asyncWorkflows are the workflows (name, Workflow and spec) whose throughput
// the async section measures; every step is the same echo app.
var asyncWorkflows = []struct{ name, workflow, spec string }{
	{"async-orchestrated, 1 step", "one", asyncPolicies + `
style: async-orchestrated
entry: {sync: true, timeout: 10s}
steps:
- {name: s1, image: bench/echo, port: 9000}
`},
	{"async-orchestrated, 3 steps", "three", asyncPolicies + `
style: async-orchestrated
entry: {sync: true, timeout: 10s}
steps:
- {name: s1, image: bench/echo, port: 9000}
- {name: s2, image: bench/echo, port: 9000, dependsOn: [s1]}
- {name: s3, image: bench/echo, port: 9000, dependsOn: [s2]}
`},
	{"choreography fan-out to 3", "fan", asyncPolicies + `
style: choreography
entry: {sync: true, timeout: 10s, event: bench.requested, completesOn: [bench.done]}
steps:
- {name: s1, image: bench/echo, port: 9000, subscribes: [bench.requested], emits: [bench.done]}
- {name: s2, image: bench/echo, port: 9000, subscribes: [bench.requested]}
- {name: s3, image: bench/echo, port: 9000, subscribes: [bench.requested]}
`},
}

// runAsync measures async throughput at saturation: runs started with
// "Prefer: respond-async" and their results collected from GET /runs/{id}
// (with "Prefer: wait"),
// against raw JetStream publish + consume of the same payload in the same run.
func runAsync(ctx context.Context, cfg asyncConfig, rep *report) error {
	dir, err := os.MkdirTemp("", "patchbay-bench-async-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, natsURL, err := startNATS(ctx, cfg.self, dir)
	if err != nil {
		return err
	}
	defer srv.stop()
	payload := jsonPayload(cfg.payload)

	fmt.Printf("Async: raw JetStream, %d messages of %d bytes published and consumed at once (durable consumer, explicit acks)\n", cfg.messages, len(payload))
	cpu0 := selfCPU() + cpuOf(srv)
	raw, err := jetStreamPipeline(ctx, natsURL, payload, cfg.messages)
	if err != nil {
		return err
	}
	rawCPU := selfCPU() + cpuOf(srv) - cpu0
	fmt.Printf("  %.0f msg/s\n", raw)
	rep.add(row{Section: "async", Target: "raw JetStream publish+consume msg/s (baseline)", Measured: fmt.Sprintf("%.0f", raw),
		CPU: cpuPer(rawCPU, int64(cfg.messages), "msg")})

	app, appURL, err := startEchoApp(ctx, cfg.self)
	if err != nil {
		return err
	}
	defer app.stop()
	for i, w := range asyncWorkflows {
		planFile := filepath.Join(dir, fmt.Sprintf("plan-%d.json", i))
		if err := asyncWorkflow1(ctx, cfg, w.name, w.workflow, w.spec, planFile, natsURL, srv, app, appURL, raw, rep); err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
	}
	rep.notef("async: %d callers for %s per workflow after %s warm-up, runTimeout %s (every run's deadline check falls in the load), each POSTing %d-byte JSON with Prefer: respond-async, then GET /runs/{id} with Prefer: wait=10 until the result; a hop is a message of the workflow's stream delivered to a consumer (counted on the stream's consumers; a fan-out delivers one event to each subscriber; not the deadline consumer's deliveries), raw is a message published and consumed by one durable consumer at once; CPU counts every process of the data plane (gateway, orchestrator, sidecars, app, NATS), not the callers",
		cfg.workers, cfg.duration, cfg.warmup, asyncRunTimeout, cfg.payload)
	return nil
}

// asyncWorkflow1 runs one workflow's data plane, its plan written to
// planFile, and loads it.
func asyncWorkflow1(ctx context.Context, cfg asyncConfig, name, workflow, spec, planFile, natsURL string, srv, app *process, appURL string, raw float64, rep *report) error {
	p, err := writePlan(planFile, workflow, spec)
	if err != nil {
		return err
	}
	if err := ensureResources(ctx, natsURL, p); err != nil {
		return err
	}
	common := []string{"--plan", planFile, "--nats-url", natsURL, "--log-level", "warn"}
	var procs []*process
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	resolve := []string{}
	for _, s := range p.Steps {
		listen, err := freeAddr()
		if err != nil {
			return err
		}
		admin, err := freeAddr()
		if err != nil {
			return err
		}
		sc, err := startProcessEnv(ctx, "sidecar "+s.Name, answers("http://"+admin+"/readyz"), sidecarEnv(),
			append([]string{cfg.sidecar, "sidecar", "--step", s.Name, "--app-url", appURL, "--listen", listen, "--admin-listen", admin}, common...)...)
		if err != nil {
			return err
		}
		procs = append(procs, sc)
		resolve = append(resolve, "--resolve", s.Name+"=http://"+listen)
	}
	if p.Roles.Orchestrator {
		a, err := freeAddr()
		if err != nil {
			return err
		}
		orch, err := startProcess(ctx, "orchestrator", answers("http://"+a+"/readyz"), append([]string{cfg.runtime, "orchestrator", "--listen", a}, common...)...)
		if err != nil {
			return err
		}
		procs = append(procs, orch)
	}
	gwAddr, err := freeAddr()
	if err != nil {
		return err
	}
	gw, err := startProcess(ctx, "gateway", answers("http://"+gwAddr+"/readyz"),
		append(append([]string{cfg.runtime, "gateway", "--listen", gwAddr}, resolve...), common...)...)
	if err != nil {
		return err
	}
	procs = append(procs, gw)

	nc, js, err := connectJetStream(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	// counts are the workflow stream's messages, their deliveries to its
	// consumers, and the messages of every other stream (the runs bucket).
	// The deadline consumer's deliveries (every start at once, and again at
	// its deadline) are no hops of a run: they are counted apart, and what
	// they cost is in the CPU.
	type counts struct{ msgs, deliveries, deadline, other uint64 }
	count := func() (counts, error) {
		var c counts
		for name := range js.StreamNames(ctx).Name() {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return c, err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return c, err
			}
			if name != p.Stream.Name {
				c.other += info.State.LastSeq
				continue
			}
			c.msgs = info.State.LastSeq
			for ci := range s.ListConsumers(ctx).Info() {
				if ci.Name == p.Stream.DeadlineDurable {
					c.deadline += ci.Delivered.Consumer
					continue
				}
				c.deliveries += ci.Delivered.Consumer
			}
		}
		return c, nil
	}

	base := "http://" + gwAddr
	fmt.Printf("Async: %s, %d callers, %s\n", name, cfg.workers, cfg.duration)
	if _, err := loadAsync(ctx, base, jsonPayload(cfg.payload), cfg.workers, cfg.warmup); err != nil {
		return err
	}
	all := append([]*process{srv, app}, procs...)
	c0, err := count()
	if err != nil {
		return err
	}
	cpu0 := cpuOf(all...)
	each0 := make([]time.Duration, len(all))
	for i, p := range all {
		each0[i] = cpuOf(p)
	}
	start := time.Now()
	res, err := loadAsync(ctx, base, jsonPayload(cfg.payload), cfg.workers, cfg.duration)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	cpu := cpuOf(all...) - cpu0
	byProcess := make([]string, len(all))
	for i, p := range all {
		byProcess[i] = p.name + " " + cpuPer(cpuOf(p)-each0[i], max(res.done, 1), "run")
	}
	c1, err := count()
	if err != nil {
		return err
	}
	hops := int64(c1.msgs - c0.msgs)
	deliveries := int64(c1.deliveries - c0.deliveries)
	other := int64(c1.other - c0.other)
	runsPerSec := float64(res.done) / elapsed.Seconds()
	// A hop is a message delivered to a consumer, as in the raw baseline; a
	// fan-out delivers one message to every subscriber.
	hopsPerSec := float64(deliveries) / elapsed.Seconds()
	hopsPerRun := float64(deliveries) / float64(max(res.done, 1))
	perRun := func(n int64) float64 { return float64(n) / float64(max(res.done, 1)) }
	fmt.Printf("  %d runs (%d failed, %d still pending at the end) in %s: %.0f runs/s; per run %.1f stream messages, %.1f deliveries, %.1f run-record (KV) writes; %.0f messages/s, %.0f deliveries (hops)/s\n",
		res.done, res.failed, res.pending, elapsed.Round(time.Millisecond), runsPerSec, perRun(hops), hopsPerRun, perRun(other), float64(hops)/elapsed.Seconds(), hopsPerSec)
	rep.notef("async: %s per run: %.1f stream messages, %.1f deliveries to the steps' and roles' consumers (hops), %.1f to the deadline consumer, %.1f messages on other streams (the runs bucket's record writes)",
		name, perRun(hops), hopsPerRun, perRun(int64(c1.deadline-c0.deadline)), perRun(other))
	rep.notef("async: %s: CPU per run by process: %s", name, strings.Join(byProcess, ", "))
	ratio := hopsPerSec / raw
	rep.check("async", name+": hops/s ≥ 0.5 × raw JetStream",
		fmt.Sprintf("raw %.0f msg/s", raw),
		fmt.Sprintf("%.0f runs/s × %.1f hops = %.0f hops/s (%d failed)", runsPerSec, hopsPerRun, hopsPerSec, res.failed),
		fmt.Sprintf("%.2f", ratio),
		fmt.Sprintf("%s, %s", cpuPer(cpu, res.done, "run"), cpuPer(cpu, deliveries, "hop")),
		res.failed == 0 && ratio >= 0.5)

	fmt.Printf("  broker round trips of %d sync runs, one at a time\n", roundTripRuns)
	trips, err := countRoundTrips(ctx, natsURL, base+"/", jsonPayload(cfg.payload), roundTripRuns, p.RunTimeout.Duration+3*time.Second)
	if err != nil {
		return fmt.Errorf("counting round trips: %w", err)
	}
	checkRoundTrips(rep, "async", name+":", p, trips)
	return nil
}

// asyncResult counts the runs of a load.
type asyncResult struct{ done, failed, pending int64 }

// loadAsync runs workers callers for d: each POSTs a run with "Prefer:
// respond-async", then GETs its Location with "Prefer: wait=10" until it is
// no longer pending, then starts the next. Runs still pending at the end
// are waited for but not counted.
func loadAsync(ctx context.Context, base string, payload []byte, workers int, d time.Duration) (asyncResult, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers * 2}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var res asyncResult
	var done, failed, pending atomic.Int64
	var firstErr error
	var once sync.Once
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				ok, err := oneAsyncRun(ctx, client, base, payload)
				switch {
				case err != nil:
					once.Do(func() { firstErr = err })
					return
				case !time.Now().Before(end):
					pending.Add(1)
				case ok:
					done.Add(1)
				default:
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	res.done, res.failed, res.pending = done.Load(), failed.Load(), pending.Load()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return res, firstErr
}

// oneAsyncRun starts a run and collects it: ok is a 200 with a body.
func oneAsyncRun(ctx context.Context, c *http.Client, base string, payload []byte) (bool, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	loc := resp.Header.Get("Location")
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		return false, fmt.Errorf("POST / answered %s without a Location", resp.Status)
	}
	for {
		// Held by the gateway until the run ends (RFC 7240), not polled.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+loc, http.NoBody)
		req.Header.Set("Prefer", "wait=10")
		resp, err := c.Do(req)
		if err != nil {
			return false, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			continue
		case http.StatusOK:
			return json.Valid(body) && len(body) > 0, nil
		default:
			return false, nil
		}
	}
}

// jetStreamPipeline publishes n messages asynchronously to a file-stored R1
// stream while a durable pull consumer with explicit acks reads them, and
// returns the rate at which messages went through both.
func jetStreamPipeline(ctx context.Context, url string, payload []byte, n int) (float64, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PIPE", Subjects: []string{"bench.pipe.>"}, Storage: jetstream.FileStorage, Replicas: 1})
	if err != nil {
		return 0, err
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "pipe", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
	if err != nil {
		return 0, err
	}
	sub, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	done := make(chan struct{})
	var got atomic.Int64
	start := time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(n) {
			close(done)
		}
	})
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	for i := range n {
		if _, err := js.PublishAsync(fmt.Sprintf("bench.pipe.%d", i%16), payload); err != nil {
			return 0, err
		}
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("consumed %d of %d messages in 2m", got.Load(), n)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// ensureResources creates the workflow's stream and buckets as the manager
// does: the roles wait for them.
func ensureResources(ctx context.Context, natsURL string, p *plan.Plan) error {
	nc, js, err := connectJetStream(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	return bus.EnsureResources(ctx, js, p, bus.DefaultStorage)
}

// connectJetStream connects to the broker at url; the caller closes nc.
func connectJetStream(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
