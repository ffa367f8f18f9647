package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startNATS runs the NATS server role of self on a free port, storing under
// dir, and returns it with its URL.
func startNATS(ctx context.Context, self, dir string) (*process, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	srv, err := startProcess(ctx, "nats-server", dialable(addr), self, roleNATS, "--listen", addr, "--store", filepath.Join(dir, "js"))
	return srv, "nats://" + addr, err
}

// roleNATS runs a NATS server with JetStream as a process of its own.
const roleNATS = "serve-nats"

// natsConfig is the size of the NATS section.
type natsConfig struct {
	requests  int // sequential core request-replies
	messages  int // JetStream messages published, then consumed
	wrapper   hopConfig
	runtimeOK bool
}

// roundTripRuns are the runs whose broker round trips the wrapper counts.
const roundTripRuns = 50

// asyncWorkflow is the spec of a Workflow of one async-orchestrated step: the gateway holds the caller
// while the orchestrator sends the step a command over JetStream and the
// step's sidecar pulls it, calls the app and publishes the result.
const asyncWorkflow = `
style: async-orchestrated
broker: {name: default}
entry: {sync: true, timeout: 10s}
resilience:
  timeout: 2s
  retry: {attempts: 3, backoff: exponential, initialDelay: 50ms, maxDelay: 1s}
  bulkhead: {maxConcurrent: 256}
steps:
- {name: echo, image: bench/echo, port: 9000}
`

// serveNATS runs the NATS server role until SIGINT or SIGTERM.
func serveNATS(args []string) error {
	fs := flag.NewFlagSet(roleNATS, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:4222", "client address")
	store := fs.String("store", "", "JetStream store directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		return err
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		return err
	}
	s, err := server.NewServer(&server.Options{Host: host, Port: p, JetStream: true, StoreDir: *store, NoSigs: true, MaxPayload: 8 << 20})
	if err != nil {
		return err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return errors.New("NATS server not ready after 10s")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// dialable reports whether something listens on addr.
func dialable(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
}

// runNATS measures the raw NATS baselines on a NATS server
// process, then the sync wrapper (gateway → orchestrator → step sidecar →
// app over JetStream) against direct + 4 × the raw request-reply p50.
func runNATS(ctx context.Context, cfg natsConfig, rep *report) error {
	dir, err := os.MkdirTemp("", "patchbay-bench-nats-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, url, err := startNATS(ctx, cfg.wrapper.self, dir)
	if err != nil {
		return err
	}
	defer srv.stop()
	payload := jsonPayload(cfg.wrapper.payload)

	fmt.Printf("NATS: %d sequential core request-replies of %d bytes\n", cfg.requests, len(payload))
	cpu0 := selfCPU() + cpuOf(srv)
	rr, err := requestReply(url, payload, cfg.requests, 0)
	if err != nil {
		return err
	}
	rrCPU := selfCPU() + cpuOf(srv) - cpu0
	fmt.Printf("  p50/p90/p99 %.0f/%.0f/%.0f µs\n", rr[0], rr[1], rr[2])
	rep.add(row{Section: "nats", Target: "raw core request-reply p50/p90/p99 µs", Measured: fmt.Sprintf("%.0f/%.0f/%.0f", rr[0], rr[1], rr[2]),
		Ratio: "reference machine: 65/-/231", CPU: cpuPer(rrCPU, int64(cfg.requests+min(cfg.requests/10, 1000)), "req")})

	// The same, one request every 1/qps as the wrapper's open loop sends
	// them: a process that idles between requests wakes up for each, and
	// that costs every hop of a path.
	paced := int(cfg.wrapper.qps * 5)
	fmt.Printf("NATS: %d core request-replies, one every %s\n", paced, time.Duration(float64(time.Second)/cfg.wrapper.qps))
	rrPaced, err := requestReply(url, payload, paced, time.Duration(float64(time.Second)/cfg.wrapper.qps))
	if err != nil {
		return err
	}
	rep.add(row{Section: "nats", Target: fmt.Sprintf("raw core request-reply at %.0f req/s p50/p90/p99 µs", cfg.wrapper.qps), Measured: fmt.Sprintf("%.0f/%.0f/%.0f", rrPaced[0], rrPaced[1], rrPaced[2]), Ratio: "-", CPU: "-"})

	fmt.Printf("NATS: JetStream async publish, then a durable consumer with explicit acks, %d messages\n", cfg.messages)
	cpu0 = selfCPU() + cpuOf(srv)
	pub, sub, err := jetStreamRates(ctx, url, payload, cfg.messages)
	if err != nil {
		return err
	}
	jsCPU := selfCPU() + cpuOf(srv) - cpu0
	fmt.Printf("  publish %.0f msg/s, consume %.0f msg/s\n", pub, sub)
	rep.add(row{Section: "nats", Target: "raw JetStream async publish msg/s", Measured: fmt.Sprintf("%.0f", pub), Ratio: "reference machine: 129k",
		CPU: cpuPer(jsCPU, int64(cfg.messages), "msg") + " (publish+consume)"})
	rep.add(row{Section: "nats", Target: "raw durable consumer, explicit acks msg/s", Measured: fmt.Sprintf("%.0f", sub), Ratio: "reference machine: 139k",
		CPU: cpuPer(jsCPU, int64(cfg.messages), "msg") + " (publish+consume)"})

	if !cfg.runtimeOK {
		return nil
	}
	return runWrapper(ctx, cfg, srv, url, dir, rr[0], rep)
}

// requestReply times n sequential requests to a responder that echoes them:
// back to back, or one every period when every is not 0.
func requestReply(url string, payload []byte, n int, every time.Duration) ([3]float64, error) {
	var out [3]float64
	responder, err := nats.Connect(url)
	if err != nil {
		return out, err
	}
	defer responder.Close()
	if _, err := responder.Subscribe("bench.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		return out, err
	}
	if err := responder.Flush(); err != nil {
		return out, err
	}
	requester, err := nats.Connect(url)
	if err != nil {
		return out, err
	}
	defer requester.Close()
	for range min(n/10, 1000) { // warm-up
		if _, err := requester.Request("bench.echo", payload, time.Second); err != nil {
			return out, err
		}
	}
	samples := make([]float64, 0, n)
	var next time.Time
	for range n {
		if every > 0 {
			// Paced: one request every period, as an open loop sends them.
			next = next.Add(every)
			if wait := time.Until(next); wait > 0 {
				time.Sleep(wait)
			} else {
				next = time.Now()
			}
		}
		start := time.Now()
		if _, err := requester.Request("bench.echo", payload, time.Second); err != nil {
			return out, err
		}
		samples = append(samples, float64(time.Since(start).Nanoseconds())/1e3)
	}
	slices.Sort(samples)
	for i, p := range percentiles {
		out[i] = samples[min(max(int(math.Ceil(p/100*float64(len(samples))))-1, 0), len(samples)-1)]
	}
	return out, nil
}

// jetStreamRates publishes n messages asynchronously to a file-stored R1
// stream, then reads them back with a durable pull consumer that acks each.
func jetStreamRates(ctx context.Context, url string, payload []byte, n int) (pub, sub float64, err error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.js.>"}, Storage: jetstream.FileStorage, Replicas: 1})
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for i := range n {
		if _, err := js.PublishAsync(fmt.Sprintf("bench.js.%d", i%16), payload); err != nil {
			return 0, 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return 0, 0, errors.New("JetStream publish did not complete in 2m")
	}
	pub = float64(n) / time.Since(start).Seconds()

	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
	if err != nil {
		return 0, 0, err
	}
	done := make(chan struct{})
	got := 0
	start = time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		got++
		if got == n {
			close(done)
		}
	})
	if err != nil {
		return 0, 0, err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return 0, 0, fmt.Errorf("consumed %d of %d messages in 2m", got, n)
	}
	sub = float64(n) / time.Since(start).Seconds()
	return pub, sub, nil
}

// runWrapper runs the async data plane as separate processes and measures a
// sync caller through the gateway against the same app called directly.
func runWrapper(ctx context.Context, cfg natsConfig, natsSrv *process, natsURL, dir string, rrP50 float64, rep *report) error {
	planFile := filepath.Join(dir, "async-plan.json")
	p, err := writePlan(planFile, "bench", asyncWorkflow)
	if err != nil {
		return err
	}
	if err := ensureResources(ctx, natsURL, p); err != nil {
		return err
	}
	w := cfg.wrapper
	app, appURL, err := startEchoApp(ctx, w.self)
	if err != nil {
		return err
	}
	defer app.stop()
	var addrs [4]string
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return err
		}
	}
	scAddr, scAdmin, orchAddr, gwAddr := addrs[0], addrs[1], addrs[2], addrs[3]
	common := []string{"--plan", planFile, "--nats-url", natsURL, "--log-level", "warn"}
	sc, err := startProcessEnv(ctx, "async sidecar", answers("http://"+scAdmin+"/readyz"), sidecarEnv(),
		append([]string{w.sidecarBin, "sidecar", "--step", "echo", "--app-url", appURL, "--listen", scAddr, "--admin-listen", scAdmin}, common...)...)
	if err != nil {
		return err
	}
	defer sc.stop()
	orch, err := startProcess(ctx, "async orchestrator", answers("http://"+orchAddr+"/readyz"),
		append([]string{w.runtimeBin, "orchestrator", "--listen", orchAddr}, common...)...)
	if err != nil {
		return err
	}
	defer orch.stop()
	gw, err := startProcess(ctx, "gateway", answers("http://"+gwAddr+"/readyz"),
		append([]string{w.runtimeBin, "gateway", "--listen", gwAddr, "--resolve", "echo=http://" + scAddr}, common...)...)
	if err != nil {
		return err
	}
	defer gw.stop()

	targets := []*hopTarget{
		{name: "direct", url: appURL + "/", front: app},
		{name: "wrapper", url: "http://" + gwAddr + "/", front: gw, behind: []*process{orch, sc, app, natsSrv}},
	}
	if err := measureInterleaved(ctx, "Sync wrapper", w, targets); err != nil {
		return err
	}
	var staggered []*hopTarget
	if !w.uniform {
		// The same load with the connections' requests staggered (fortio's
		// uniform mode). Otherwise the 16 connections send together, 16
		// requests at once every 80 ms at 200 qps, and a run waits for the
		// others of its burst on the machine's two cores: that wait is most
		// of the wrapper's p50, and this says how much.
		su := w
		su.uniform = true
		staggered = []*hopTarget{
			{name: "direct", url: targets[0].url, front: app},
			{name: "wrapper", url: targets[1].url, front: gw, behind: targets[1].behind},
		}
		if err := measureInterleaved(ctx, "Sync wrapper, connections staggered", su, staggered); err != nil {
			return err
		}
	}
	fmt.Printf("Sync wrapper: broker round trips of %d runs, one at a time\n", roundTripRuns)
	trips, err := countRoundTrips(ctx, natsURL, "http://"+gwAddr+"/", jsonPayload(w.payload), roundTripRuns, p.RunTimeout.Duration+3*time.Second)
	if err != nil {
		return fmt.Errorf("counting round trips: %w", err)
	}
	direct, wrapper := targets[0].result(), targets[1].result()
	addLatencyRows(rep, "wrapper", "", direct, wrapper)
	limit := direct.p[0] + 4*rrP50
	rep.check("wrapper", "sync wrapper p50 ≤ direct p50 + 4 × raw request-reply p50",
		fmt.Sprintf("%.0f + 4×%.0f = %.0f µs", direct.p[0], rrP50, limit), fmt.Sprintf("%.0f µs", wrapper.p[0]),
		fmt.Sprintf("%.2f", wrapper.p[0]/limit), cpuPer(wrapper.cpuPerReq, 1, "req"), wrapper.errors == 0 && wrapper.p[0] <= limit)
	if staggered != nil {
		d, sw := staggered[0].result(), staggered[1].result()
		addLatencyRows(rep, "wrapper", ", connections staggered", d, sw)
		slimit := d.p[0] + 4*rrP50
		rep.notef("wrapper: with the connections' requests staggered (fortio -uniform), the same load without its bursts of %d: wrapper p50 %.0f µs against %.0f + 4×%.0f = %.0f µs, %.2f× (for information: the target is judged on the row above)",
			w.conns, sw.p[0], d.p[0], rrP50, slimit, sw.p[0]/slimit)
	}
	checkRoundTrips(rep, "wrapper", "", p, trips)
	rep.notef("wrapper: fortio open loop, %.0f qps, %d connections, %d-byte JSON POST to the gateway (held sync) of a one-step async-orchestrated workflow; gateway, orchestrator, step sidecar, app and NATS (JetStream, file storage) each a process; CPU/req of the wrapper is that of every process of the data plane together (gateway, orchestrator, sidecar, app, NATS)",
		w.qps, w.conns, w.payload)
	return nil
}
