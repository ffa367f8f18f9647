package sidecar

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/google/uuid"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// Config is what a sidecar needs besides the plan.
type Config struct {
	Plan *plan.Plan
	// Step is the step this sidecar fronts.
	Step string
	// AppURL is the app's base URL; default http://127.0.0.1:<app port>.
	AppURL string
	// Resolver finds the next steps' sidecars (sync-chain).
	Resolver  contract.Resolver
	Transport http.RoundTripper
	Telemetry *telemetry.Telemetry
}

// Sidecar serves a step's inbound traffic (port 15080 in a pod).
//
// A POST to / is a hop of a run. In sync-chain the sidecar calls its app under
// the step's policy (so a retry replays the app alone, never the steps after it)
// and relays the output to the next steps; in the orchestrated styles the
// orchestrator applies the policy and the sidecar proxies to the app. Any other
// request is proxied to the app unchanged, so plain reads keep working (dual
// support). Every path passes the step's bulkhead.
type Sidecar struct {
	plan      *plan.Plan
	step      *plan.Step
	tel       *telemetry.Telemetry
	transport http.RoundTripper
	appBase   string
	appURL    string // appBase + step's path
	bulkhead  bulkhead.Bulkhead[any]
	inbound   *telemetry.Inbound
	source    string // CloudEvents source of this sidecar's app calls
	contract  *contract.Contract
	spanName  string

	// invokeProxy streams a run's hop to the app's path; passProxy any other
	// request to its own path.
	invokeProxy, passProxy *httputil.ReverseProxy

	chain *chain // nil unless the step is a sync-chain step
	// asyncApp is the async side's app target, built by the first StartAsync
	// so that a retried start does not register its breaker twice.
	asyncApp *hop.Target
}

// New builds a sidecar; edges and their breakers are built here, once.
func New(cfg Config) (s *Sidecar, err error) {
	step := cfg.Plan.Step(cfg.Step)
	if step == nil {
		return nil, fmt.Errorf("the plan of workflow %s has no step %q (steps: %s)", cfg.Plan.Workflow, cfg.Step, stepNames(cfg.Plan))
	}
	if cfg.Transport == nil {
		cfg.Transport = hop.NewTransport()
	}
	appBase := strings.TrimSuffix(cfg.AppURL, "/")
	if appBase == "" {
		appBase = "http://127.0.0.1:" + strconv.Itoa(int(step.App.Port))
	}
	path := step.App.Path
	if path == "" {
		path = "/"
	}
	caller := "entry"
	if len(step.DependsOn) == 1 {
		caller = step.DependsOn[0]
	}
	s = &Sidecar{
		plan:      cfg.Plan,
		step:      step,
		tel:       cfg.Telemetry,
		transport: cfg.Transport,
		appBase:   appBase,
		appURL:    appBase + path,
		bulkhead:  bulkhead.New[any](uint(max(1, step.Policy.Bulkhead.MaxConcurrent))),
		inbound:   cfg.Telemetry.Metrics.Inbound(step.Name),
		source:    contract.SourceOf(cfg.Plan.Namespace, cfg.Plan.Workflow, caller),
		spanName:  "step " + step.Name,
	}
	s.invokeProxy, s.passProxy = s.newProxy(path), s.newProxy("")
	if s.contract, err = contract.NewContract(s.source, step.Name, s.tel.Tracing.Inject); err != nil {
		return nil, err
	}
	if step.Mode == plan.ModeChain {
		c, err := newChain(s, cfg.Resolver)
		if err != nil {
			return nil, err
		}
		s.chain = c
	}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Sidecar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.inbound.Start()
	var code int
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/":
		code = s.proxy(w, r, false)
	case s.chain != nil:
		code = s.chain.serve(w, r)
	default:
		code = s.proxy(w, r, true)
	}
	s.inbound.Done(code, start)
}

// reject answers a request over the bulkhead without calling the app, with
// the Retry-After of the gateway's and the orchestrator's inbound bulkheads.
func (s *Sidecar) reject(w http.ResponseWriter, runID string) int {
	s.inbound.Rejected()
	e := &contract.Error{
		Code: http.StatusServiceUnavailable, Step: s.step.Name, RunID: runID, Rejected: true,
		RetryAfter: serve.BulkheadRetryAfter,
		Message:    fmt.Sprintf("step %s is at its concurrency limit (bulkhead maxConcurrent %d)", s.step.Name, s.step.Policy.Bulkhead.MaxConcurrent),
	}
	e.Write(w)
	return e.Code
}

func newRunID() string { return uuid.NewString() }

func stepNames(p *plan.Plan) string {
	names := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// AppListening reports whether the app accepts connections. The kubelet
// starts the app only once the native sidecar has started, so a sidecar that
// consumed at once would call an app that is not listening yet: its failed
// calls would open the breaker and dead-letter the runs. The sidecar is ready,
// and consumes, only once the app listens.
func (s *Sidecar) AppListening(ctx context.Context) error {
	u, err := url.Parse(s.appBase)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("the app at %s is not listening: %w", host, err)
	}
	return c.Close()
}
