package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/fortio/stats"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// hopConfig is the fortio load of the sync-hop benchmark.
type hopConfig struct {
	qps        float64
	conns      int
	duration   time.Duration
	warmup     time.Duration
	payload    int
	resolution time.Duration
	uniform    bool
	rounds     int    // the duration is split into this many interleaved runs per target
	runtimeBin string // patchbay-runtime
	sidecarBin string // patchbay-sidecar, as the sidecar containers run it
	self       string // this binary, re-executed as the echo app and the ReverseProxy
}

// hopWorkflow is the spec of a Workflow of one sync-chain step with every policy on: its sidecar calls
// the app under a timeout, retries and a circuit breaker, behind a bulkhead
// wide enough that the load never fills it.
const hopWorkflow = `
style: sync-chain
resilience:
  timeout: 2s
  retry: {attempts: 3, backoff: exponential, initialDelay: 50ms, maxDelay: 1s}
  circuitBreaker: {consecutiveFailures: 5, openDuration: 30s, halfOpenRequests: 1}
  bulkhead: {maxConcurrent: 256}
steps:
- {name: echo, image: bench/echo, port: 9000}
`

// proxyWorkflow is the spec of a Workflow of one sync-orchestrated step: the orchestrator applies the
// policies, so its sidecar streams the hop to the app as a proxy does (adding
// the step contract's headers), which is also the path of every request other
// than a POST to / (dual support).
const proxyWorkflow = `
style: sync-orchestrated
resilience:
  bulkhead: {maxConcurrent: 256}
steps:
- {name: echo, image: bench/echo, port: 9000}
`

// latencies are the results of one fortio run.
type latencies struct {
	name       string
	p          [3]float64 // exact p50, p90, p99 of every request, in µs
	fortioP    [3]float64 // the same from fortio's histogram
	count      int64
	errors     int64
	actualQPS  float64
	rssMaxKiB  int64 // sidecar only
	rssLastKiB int64
	anonMaxKiB int64
	// cpuPerReq is the CPU time the server in front (the app, the proxy or
	// the sidecar) spent per request during the run.
	cpuPerReq time.Duration
}

var percentiles = []float64{50, 90, 99}

// sidecarRSSMiB is the sidecar's memory target under the hop load.
const sidecarRSSMiB = 20

// runHop measures one hop three ways: straight to the app, through a bare
// httputil.ReverseProxy, and through the sidecar (patchbay-sidecar, the binary
// of the sidecar containers, with their environment).
func runHop(ctx context.Context, cfg hopConfig, rep *report) error {
	dir, err := os.MkdirTemp("", "patchbay-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	planFile := filepath.Join(dir, "plan.json")
	if _, err := writePlan(planFile, "bench", hopWorkflow); err != nil {
		return err
	}
	proxyPlanFile := filepath.Join(dir, "proxy-plan.json")
	if _, err := writePlan(proxyPlanFile, "bench", proxyWorkflow); err != nil {
		return err
	}

	app, appURL, err := startEchoApp(ctx, cfg.self)
	if err != nil {
		return err
	}
	defer app.stop()

	rpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	rp, err := startProcess(ctx, "reverse proxy", answers("http://"+rpAddr+"/"), cfg.self, roleReverseProxy, "--listen", rpAddr, "--target", appURL)
	if err != nil {
		return err
	}
	defer rp.stop()

	scAddr, err := freeAddr()
	if err != nil {
		return err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return err
	}
	sc, err := startProcessEnv(ctx, "sidecar", answers("http://"+adminAddr+"/readyz"), sidecarEnv(), cfg.sidecarBin, "sidecar",
		"--plan", planFile, "--step", "echo", "--app-url", appURL,
		"--listen", scAddr, "--admin-listen", adminAddr, "--log-level", "warn")
	if err != nil {
		return err
	}
	defer sc.stop()

	pxAddr, err := freeAddr()
	if err != nil {
		return err
	}
	pxAdmin, err := freeAddr()
	if err != nil {
		return err
	}
	px, err := startProcessEnv(ctx, "proxying sidecar", answers("http://"+pxAdmin+"/readyz"), sidecarEnv(), cfg.sidecarBin, "sidecar",
		"--plan", proxyPlanFile, "--step", "echo", "--app-url", appURL,
		"--listen", pxAddr, "--admin-listen", pxAdmin, "--log-level", "warn")
	if err != nil {
		return err
	}
	defer px.stop()

	targets := []*hopTarget{
		{name: "direct", url: appURL + "/", front: app},
		{name: "reverseproxy", url: "http://" + rpAddr + "/", front: rp},
		{name: "sidecar", url: "http://" + scAddr + "/", front: sc, sampleRSS: true},
		{name: "sidecar-proxy", url: "http://" + pxAddr + "/", front: px, sampleRSS: true},
	}
	if err := measureInterleaved(ctx, "Hop", cfg, targets); err != nil {
		return err
	}
	results := map[string]*latencies{}
	for _, t := range targets {
		results[t.name] = t.result()
	}
	if p, _ := sc.rssKiB(); p > 0 {
		results["sidecar"].rssLastKiB = p
	}
	if p, _ := px.rssKiB(); p > 0 {
		results["sidecar-proxy"].rssLastKiB = p
	}
	addHopRows(rep, cfg, results)
	return nil
}

func addHopRows(rep *report, cfg hopConfig, res map[string]*latencies) {
	direct, rp, sc, px := res["direct"], res["reverseproxy"], res["sidecar"], res["sidecar-proxy"]
	addLatencyRows(rep, "hop", "", direct, rp, sc, px)
	for _, s := range []*latencies{sc, px} {
		for i, name := range []string{"p50", "p99"} {
			idx := []int{0, 2}[i]
			rpAdded := rp.p[idx] - direct.p[idx]
			sAdded := s.p[idx] - direct.p[idx]
			ratio := sAdded / rpAdded
			rep.check("hop", s.name+" added latency "+name+" ≤ 1.0× ReverseProxy's",
				fmt.Sprintf("RP +%.0f µs", rpAdded), fmt.Sprintf("%s +%.0f µs", s.name, sAdded),
				fmt.Sprintf("%.2f", ratio), fmt.Sprintf("%s %s, RP %s", s.name, cpuPer(s.cpuPerReq, 1, "req"), cpuPer(rp.cpuPerReq, 1, "req")),
				rpAdded > 0 && s.errors == 0 && ratio <= 1.0)
		}
		rep.check("hop", fmt.Sprintf("%s RSS ≤ %d MiB at %.0f rps", s.name, sidecarRSSMiB, cfg.qps), fmt.Sprintf("%d MiB", sidecarRSSMiB),
			fmt.Sprintf("max %.1f, end %.1f MiB (anonymous max %.1f)", float64(s.rssMaxKiB)/1024, float64(s.rssLastKiB)/1024, float64(s.anonMaxKiB)/1024),
			fmt.Sprintf("%.2f", float64(s.rssMaxKiB)/1024/sidecarRSSMiB), cpuPer(s.cpuPerReq, 1, "req"), s.rssMaxKiB > 0 && s.rssMaxKiB <= sidecarRSSMiB*1024)
	}
	rep.notef("hop: fortio open loop, %.0f qps, %d connections, %d-byte JSON POST, %s per target in %d interleaved rounds after %s warm-up; percentiles are exact over every request (fortio's histogram at %s resolution printed above); added = through - direct; CPU/req is the CPU time of the server fortio calls (app, proxy or sidecar) per request",
		cfg.qps, cfg.conns, cfg.payload, cfg.duration, max(1, cfg.rounds), cfg.warmup, cfg.resolution)
	for _, l := range []*latencies{direct, rp, sc, px} {
		if l.errors > 0 {
			rep.notef("hop: %s had %d failed requests of %d", l.name, l.errors, l.count)
		}
	}
}

// hopTarget is one of the three ways to the app, and what its runs measured.
type hopTarget struct {
	name      string
	url       string
	front     *process   // the server fortio calls; its CPU time is measured
	behind    []*process // processes behind front whose CPU time counts too
	sampleRSS bool       // read front's RSS every 250 ms
	rec       *recorder
	cpu       time.Duration
	rssMaxKiB int64
	// anonMaxKiB is the largest anonymous part of the RSS.
	anonMaxKiB int64
	elapsed    time.Duration
	nonOK      int64
}

func (t *hopTarget) result() *latencies {
	l := &latencies{name: t.name, rssMaxKiB: t.rssMaxKiB, anonMaxKiB: t.anonMaxKiB}
	l.count, l.errors = t.rec.counts()
	l.errors = max(l.errors, t.nonOK)
	l.p, l.fortioP = t.rec.percentiles(percentiles)
	if l.count > 0 {
		l.cpuPerReq = t.cpu / time.Duration(l.count)
	}
	if t.elapsed > 0 {
		l.actualQPS = float64(l.count) / t.elapsed.Seconds()
	}
	return l
}

func (l *latencies) summary() string {
	return fmt.Sprintf("%.0f/%.0f/%.0f µs (fortio histogram %.0f/%.0f/%.0f), %d requests at %.0f qps, %d errors, %.0f µs CPU per request",
		l.p[0], l.p[1], l.p[2], l.fortioP[0], l.fortioP[1], l.fortioP[2], l.count, l.actualQPS, l.errors, float64(l.cpuPerReq)/1e3)
}

// addLatencyRows adds a row of percentiles, requests and CPU per request for
// each target of a section; what qualifies the rows' load follows "µs".
func addLatencyRows(rep *report, section, load string, ls ...*latencies) {
	for _, l := range ls {
		rep.add(row{Section: section, Target: "p50/p90/p99 µs" + load + ": " + l.name,
			Measured: fmt.Sprintf("%.0f/%.0f/%.0f", l.p[0], l.p[1], l.p[2]),
			Ratio:    fmt.Sprintf("%d req, %d err", l.count, l.errors), CPU: cpuPer(l.cpuPerReq, 1, "req")})
	}
}

// fortioRun loads t for d and adds what it measured to t.
func fortioRun(ctx context.Context, cfg hopConfig, t *hopTarget, d time.Duration) error {
	opts := &fhttp.HTTPRunnerOptions{}
	opts.RunType = t.name
	opts.QPS = cfg.qps
	opts.Duration = d
	opts.NumThreads = cfg.conns
	opts.Percentiles = percentiles
	opts.RunnerOptions.Resolution = cfg.resolution.Seconds()
	opts.HTTPOptions.Resolution = cfg.resolution.Seconds() // the connection-time histogram
	opts.Uniform = cfg.uniform
	opts.Out = io.Discard
	opts.AccessLogger = t.rec
	opts.Stop = periodic.NewAborter()
	opts.URL = t.url
	opts.Payload = jsonPayload(cfg.payload)
	opts.ContentType = "application/json"
	opts.AllowInitialErrors = true
	opts.Init(t.url)

	stop := context.AfterFunc(ctx, func() { opts.Stop.Abort(false) })
	defer stop()
	procs := append([]*process{t.front}, t.behind...)
	cpuBefore := cpuOf(procs...)
	var wg sync.WaitGroup
	done := make(chan struct{})
	if t.sampleRSS {
		wg.Go(func() {
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for {
				if v, err := t.front.rssKiB(); err == nil {
					t.rssMaxKiB = max(t.rssMaxKiB, v)
				}
				if v, err := t.front.anonKiB(); err == nil {
					t.anonMaxKiB = max(t.anonMaxKiB, v)
				}
				select {
				case <-done:
					return
				case <-tick.C:
				}
			}
		})
	}
	res, err := fhttp.RunHTTPTest(opts)
	close(done)
	wg.Wait()
	t.cpu += cpuOf(procs...) - cpuBefore
	if err != nil {
		return fmt.Errorf("fortio %s: %w", t.name, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	t.elapsed += res.ActualDuration
	for code, n := range res.RetCodes {
		if code != 200 {
			t.nonOK += n
		}
	}
	return nil
}

// recorder is a fortio access logger that keeps every request's latency, so
// that percentiles are exact rather than read off histogram buckets, and
// pools the requests of several runs. It also feeds a fortio histogram at the
// run's resolution, as a cross-check.
type recorder struct {
	mu      sync.Mutex
	samples []float64 // µs
	errors  int64
	hist    *stats.Histogram
}

func newRecorder(resolution time.Duration) *recorder {
	return &recorder{hist: stats.NewHistogram(0, resolution.Seconds())}
}

func (r *recorder) Start(ctx context.Context, _ periodic.ThreadID, _ int64, _ time.Time) context.Context {
	return ctx
}

func (r *recorder) Report(_ context.Context, _ periodic.ThreadID, _ int64, _ time.Time, latency float64, ok bool, _ string) {
	r.mu.Lock()
	r.samples = append(r.samples, latency*1e6)
	r.hist.Record(latency)
	if !ok {
		r.errors++
	}
	r.mu.Unlock()
}

func (r *recorder) Info() string { return "exact latency recorder" }

func (r *recorder) counts() (int64, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int64(len(r.samples)), r.errors
}

// percentiles are exact (nearest rank) and from fortio's histogram, in µs.
func (r *recorder) percentiles(ps []float64) (exact, fortio [3]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := slices.Clone(r.samples)
	if len(s) == 0 {
		return exact, fortio
	}
	slices.Sort(s)
	h := r.hist.Export().CalcPercentiles(ps)
	for i, p := range ps[:3] {
		rank := int(math.Ceil(p/100*float64(len(s)))) - 1
		exact[i] = s[min(max(rank, 0), len(s)-1)]
		fortio[i] = h.Percentiles[i].Value * 1e6
	}
	return exact, fortio
}

// jsonPayload is a JSON object of exactly n bytes.
func jsonPayload(n int) []byte {
	const head, foot = `{"pad":"`, `"}`
	pad := max(n-len(head)-len(foot), 0)
	return []byte(head + string(bytes.Repeat([]byte("x"), pad)) + foot)
}

// startEchoApp runs the echo app (bench, run as self) on a free port and
// returns it with its base URL.
func startEchoApp(ctx context.Context, self string) (*process, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	url := "http://" + addr
	app, err := startProcess(ctx, "echo app", answers(url+"/"), self, roleEcho, "--listen", addr)
	return app, url, err
}

// measureInterleaved warms each target up, then loads them in turn for
// cfg.rounds slices of cfg.duration in all: interleaving spreads a change of
// the machine's load over every target.
func measureInterleaved(ctx context.Context, what string, cfg hopConfig, targets []*hopTarget) error {
	rounds := max(1, cfg.rounds)
	slice := cfg.duration / time.Duration(rounds)
	fmt.Printf("%s: %.0f qps, %d connections, %s per target in %d interleaved rounds, after %s warm-up each\n",
		what, cfg.qps, cfg.conns, cfg.duration, rounds, cfg.warmup)
	for _, t := range targets {
		t.rec = newRecorder(cfg.resolution)
		if cfg.warmup > 0 {
			warm := &hopTarget{name: t.name, url: t.url, rec: newRecorder(cfg.resolution)}
			if err := fortioRun(ctx, cfg, warm, cfg.warmup); err != nil {
				return err
			}
		}
	}
	for i := range rounds {
		for _, t := range targets {
			if err := fortioRun(ctx, cfg, t, slice); err != nil {
				return err
			}
			fmt.Printf("  round %d %-12s p50/p90/p99 so far %s\n", i+1, t.name, t.result().summary())
		}
	}
	return nil
}

// writePlan compiles the Workflow name (in namespace bench) with the spec
// (YAML as it stands under a manifest's spec:) and writes its plan to file as
// the runtime roles read it.
func writePlan(file, name, spec string) (*plan.Plan, error) {
	wf := v1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench"}}
	if err := yaml.UnmarshalStrict([]byte(spec), &wf.Spec); err != nil {
		return nil, err
	}
	p, err := topology.Compile(&wf)
	if err != nil {
		return nil, err
	}
	b, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	return p, os.WriteFile(file, b, 0o644)
}
