package sidecar

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
)

// These benchmarks compare one sidecar hop with a bare httputil.ReverseProxy
// over loopback, 1 KiB payloads (make bench measures the same with fortio).

var payload = bytes.Repeat([]byte("x"), 1024)

func benchmarkHop(b *testing.B, front http.Handler) {
	srv := httptest.NewServer(front)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(srv.URL+"/", "application/json", bytes.NewReader(payload))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

func echoApp() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.Copy(w, r.Body)
	}))
}

func BenchmarkBareReverseProxy(b *testing.B) {
	app := echoApp()
	defer app.Close()
	u, _ := url.Parse(app.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = hop.NewTransport()
	benchmarkHop(b, rp)
}

func BenchmarkSidecarChainHop(b *testing.B) {
	app := echoApp()
	defer app.Close()
	p := chainPlan(plan.Step{Name: "only", App: plan.App{Path: "/"}})
	p.Steps[0].Policy.Bulkhead.MaxConcurrent = 1024
	sc, err := New(Config{Plan: p, Step: "only", AppURL: app.URL, Resolver: contract.StaticResolver{}, Telemetry: testTelemetry()})
	if err != nil {
		b.Fatal(err)
	}
	benchmarkHop(b, sc)
}

func BenchmarkSidecarOrchestratedHop(b *testing.B) {
	app := echoApp()
	defer app.Close()
	p := chainPlan(plan.Step{Name: "only", App: plan.App{Path: "/"}})
	p.Style, p.Steps[0].Mode = v1alpha1.StyleSyncOrchestrated, plan.ModeOrchestrated
	p.Steps[0].Policy.Bulkhead.MaxConcurrent = 1024
	sc, err := New(Config{Plan: p, Step: "only", AppURL: app.URL, Resolver: contract.StaticResolver{}, Telemetry: testTelemetry()})
	if err != nil {
		b.Fatal(err)
	}
	benchmarkHop(b, sc)
}
