// Package managertest makes and observes a controller manager for its tests
// and benchmarks: the requests it sends the API server, and how far its
// controllers got.
package managertest

import (
	"net/http"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Requests records the requests a client sends the API server: every one
// that may change its state (writes), and every GET with its query (reads,
// watches included).
type Requests struct {
	mu     sync.Mutex
	writes []string
	reads  []string
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Wrap records what goes through rt; it fits rest.Config.Wrap.
func (q *Requests) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		switch r.Method {
		case http.MethodGet:
			q.mu.Lock()
			q.reads = append(q.reads, r.URL.Path+"?"+r.URL.RawQuery)
			q.mu.Unlock()
		case http.MethodHead, http.MethodOptions:
		default:
			q.mu.Lock()
			q.writes = append(q.writes, r.Method+" "+r.URL.Path)
			q.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

// Writes are the requests that may have changed the API server's state, as
// "METHOD path", in order.
func (q *Requests) Writes() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.writes...)
}

// Reads are the GETs, watches included, as "path?query", in order.
func (q *Requests) Reads() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.reads...)
}

// Reconciles is how many reconciles the named controller has finished in
// this process, and whether its queue is drained with no worker busy.
func Reconciles(controller string) (total float64, idle bool, err error) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return 0, false, err
	}
	idle = true
	for _, f := range families {
		for _, m := range f.GetMetric() {
			named := false
			for _, l := range m.GetLabel() {
				if (l.GetName() == "controller" || l.GetName() == "name") && l.GetValue() == controller {
					named = true
				}
			}
			if !named {
				continue
			}
			switch f.GetName() {
			case "controller_runtime_reconcile_total":
				total += m.GetCounter().GetValue()
			case "workqueue_depth", "controller_runtime_active_workers":
				idle = idle && m.GetGauge().GetValue() == 0
			}
		}
	}
	return total, idle, nil
}

// NewManager is a manager as main.go makes one, on a copy of cfg whose
// requests the returned Requests record, with no metrics or probe listener
// and controllers that may be set up again in the same process (a test
// restarts the manager). workers bounds each controller's concurrent
// reconciles (0: controller-runtime's default).
func NewManager(cfg *rest.Config, scheme *runtime.Scheme, cacheOpts cache.Options, workers int) (manager.Manager, *Requests, error) {
	requests := &Requests{}
	recorded := rest.CopyConfig(cfg)
	recorded.Wrap(requests.Wrap)
	mgr, err := ctrl.NewManager(recorded, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cacheOpts,
		Controller:             config.Controller{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: workers},
	})
	return mgr, requests, err
}
