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
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
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
	runtimeBin string // patchbay-runtime; built into a temporary directory when empty
	self       string // this binary, re-executed as the echo app and the ReverseProxy
}

// hopWorkflow is one sync-chain step with every policy on: its sidecar calls
// the app under a timeout, retries and a circuit breaker, behind a bulkhead
// wide enough that the load never fills it.
const hopWorkflow = `
apiVersion: patchbay.dev/v1alpha1
kind: Workflow
metadata: {name: bench, namespace: bench}
spec:
  style: sync-chain
  resilience:
    timeout: 2s
    retry: {attempts: 3, backoff: exponential, initialDelay: 50ms, maxDelay: 1s}
    circuitBreaker: {consecutiveFailures: 5, openDuration: 30s, halfOpenRequests: 1}
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
}

var percentiles = []float64{50, 90, 99}

// runHop measures one hop three ways: straight to the app, through a bare
// httputil.ReverseProxy, and through the patchbay-runtime sidecar.
func runHop(ctx context.Context, cfg hopConfig, rep *report) error {
	dir, err := os.MkdirTemp("", "patchbay-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.runtimeBin == "" {
		cfg.runtimeBin = filepath.Join(dir, "patchbay-runtime")
		fmt.Println("Building patchbay-runtime")
		if err := goBuild(ctx, cfg.runtimeBin, "./images/runtime"); err != nil {
			return err
		}
	}
	planFile := filepath.Join(dir, "plan.json")
	if err := writeHopPlan(planFile); err != nil {
		return err
	}

	appAddr, err := freeAddr()
	if err != nil {
		return err
	}
	appURL := "http://" + appAddr
	app, err := startProcess(ctx, "echo app", answers(appURL+"/"), cfg.self, roleEcho, "--listen", appAddr)
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
	sc, err := startProcess(ctx, "sidecar", answers("http://"+adminAddr+"/readyz"), cfg.runtimeBin, "sidecar",
		"--plan", planFile, "--step", "echo", "--app-url", appURL,
		"--listen", scAddr, "--admin-listen", adminAddr, "--log-level", "warn")
	if err != nil {
		return err
	}
	defer sc.stop()

	runs := []struct {
		name string
		url  string
		proc *process
	}{
		{"direct", appURL + "/", nil},
		{"reverseproxy", "http://" + rpAddr + "/", nil},
		{"sidecar", "http://" + scAddr + "/", sc},
	}
	results := map[string]*latencies{}
	for _, r := range runs {
		fmt.Printf("Hop: %s, %.0f qps, %d connections, %s (after %s warm-up)\n", r.name, cfg.qps, cfg.conns, cfg.duration, cfg.warmup)
		if cfg.warmup > 0 {
			if _, err := fortioRun(ctx, cfg, r.name, r.url, cfg.warmup, nil); err != nil {
				return err
			}
		}
		res, err := fortioRun(ctx, cfg, r.name, r.url, cfg.duration, r.proc)
		if err != nil {
			return err
		}
		results[r.name] = res
		fmt.Printf("  p50/p90/p99 %.0f/%.0f/%.0f µs (fortio histogram %.0f/%.0f/%.0f), %d requests at %.0f qps, %d errors\n",
			res.p[0], res.p[1], res.p[2], res.fortioP[0], res.fortioP[1], res.fortioP[2], res.count, res.actualQPS, res.errors)
	}
	if p, _ := sc.rssKiB(); p > 0 {
		results["sidecar"].rssLastKiB = p
	}
	addHopRows(rep, cfg, results)
	return nil
}

func addHopRows(rep *report, cfg hopConfig, res map[string]*latencies) {
	direct, rp, sc := res["direct"], res["reverseproxy"], res["sidecar"]
	for _, l := range []*latencies{direct, rp, sc} {
		rep.add(row{section: "hop", target: "p50/p90/p99 µs: " + l.name,
			measured: fmt.Sprintf("%.0f/%.0f/%.0f", l.p[0], l.p[1], l.p[2]),
			ratio:    fmt.Sprintf("%d req, %d err", l.count, l.errors)})
	}
	for i, name := range []string{"p50", "p99"} {
		idx := []int{0, 2}[i]
		rpAdded := rp.p[idx] - direct.p[idx]
		scAdded := sc.p[idx] - direct.p[idx]
		ratio := scAdded / rpAdded
		rep.check("hop", "sidecar added latency "+name+" ≤ 1.2× ReverseProxy's",
			fmt.Sprintf("RP +%.0f µs", rpAdded), fmt.Sprintf("sidecar +%.0f µs", scAdded),
			fmt.Sprintf("%.2f", ratio), rpAdded > 0 && ratio <= 1.2)
	}
	rep.check("hop", fmt.Sprintf("sidecar RSS ≤ 30 MiB at %.0f rps", cfg.qps), "30 MiB",
		fmt.Sprintf("max %.1f, end %.1f MiB", float64(sc.rssMaxKiB)/1024, float64(sc.rssLastKiB)/1024),
		fmt.Sprintf("%.2f", float64(sc.rssMaxKiB)/1024/30), sc.rssMaxKiB > 0 && sc.rssMaxKiB <= 30*1024)
	rep.note("hop: fortio open loop, %.0f qps, %d connections, %d-byte JSON POST, %s per run after %s warm-up; percentiles are exact over every request (fortio's histogram at %s resolution printed above); added = through - direct",
		cfg.qps, cfg.conns, cfg.payload, cfg.duration, cfg.warmup, cfg.resolution)
	for _, l := range []*latencies{direct, rp, sc} {
		if l.errors > 0 {
			rep.note("hop: %s had %d failed requests of %d", l.name, l.errors, l.count)
		}
	}
}

// fortioRun loads url for d; when sample is set its RSS is read every 250 ms.
func fortioRun(ctx context.Context, cfg hopConfig, name, url string, d time.Duration, sample *process) (*latencies, error) {
	rec := &recorder{}
	opts := &fhttp.HTTPRunnerOptions{}
	opts.RunType = name
	opts.QPS = cfg.qps
	opts.Duration = d
	opts.NumThreads = cfg.conns
	opts.Percentiles = percentiles
	opts.RunnerOptions.Resolution = cfg.resolution.Seconds()
	opts.HTTPOptions.Resolution = cfg.resolution.Seconds() // the connection-time histogram
	opts.Uniform = cfg.uniform
	opts.Out = io.Discard
	opts.AccessLogger = rec
	opts.Stop = periodic.NewAborter()
	opts.URL = url
	opts.Payload = jsonPayload(cfg.payload)
	opts.ContentType = "application/json"
	opts.AllowInitialErrors = true
	opts.Init(url)

	stop := context.AfterFunc(ctx, func() { opts.Stop.Abort(false) })
	defer stop()
	var rssMax int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	if sample != nil {
		wg.Go(func() {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				if v, err := sample.rssKiB(); err == nil {
					rssMax = max(rssMax, v)
				}
				select {
				case <-done:
					return
				case <-t.C:
				}
			}
		})
	}
	res, err := fhttp.RunHTTPTest(opts)
	close(done)
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("fortio %s: %w", name, err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	l := &latencies{name: name, actualQPS: res.ActualQPS, rssMaxKiB: rssMax}
	l.count, l.errors = rec.counts()
	for code, n := range res.RetCodes {
		if code != 200 {
			l.errors = max(l.errors, n)
		}
	}
	l.p = rec.percentiles(percentiles)
	for i, p := range res.DurationHistogram.Percentiles {
		if i < len(l.fortioP) {
			l.fortioP[i] = p.Value * 1e6
		}
	}
	if sample != nil {
		l.rssLastKiB, _ = sample.rssKiB()
	}
	return l, nil
}

// recorder is a fortio access logger that keeps every request's latency, so
// that percentiles are exact rather than read off histogram buckets.
type recorder struct {
	mu      sync.Mutex
	samples []float64 // µs
	errors  int64
}

func (r *recorder) Start(ctx context.Context, _ periodic.ThreadID, _ int64, _ time.Time) context.Context {
	return ctx
}

func (r *recorder) Report(_ context.Context, _ periodic.ThreadID, _ int64, _ time.Time, latency float64, ok bool, _ string) {
	r.mu.Lock()
	r.samples = append(r.samples, latency*1e6)
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

// percentiles uses the nearest-rank method.
func (r *recorder) percentiles(ps []float64) [3]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [3]float64
	s := slices.Clone(r.samples)
	if len(s) == 0 {
		return out
	}
	slices.Sort(s)
	for i, p := range ps[:3] {
		rank := int(math.Ceil(p/100*float64(len(s)))) - 1
		out[i] = s[min(max(rank, 0), len(s)-1)]
	}
	return out
}

// jsonPayload is a JSON object of exactly n bytes.
func jsonPayload(n int) []byte {
	const head, foot = `{"pad":"`, `"}`
	pad := max(n-len(head)-len(foot), 0)
	return []byte(head + string(bytes.Repeat([]byte("x"), pad)) + foot)
}

// writeHopPlan compiles hopWorkflow and writes its plan as the sidecar reads it.
func writeHopPlan(file string) error {
	var wf v1alpha1.Workflow
	if err := yaml.UnmarshalStrict([]byte(hopWorkflow), &wf); err != nil {
		return err
	}
	p, err := topology.Compile(&wf)
	if err != nil {
		return err
	}
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}
