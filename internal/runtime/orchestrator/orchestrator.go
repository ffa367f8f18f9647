package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// Config is what an orchestrator needs besides the plan.
type Config struct {
	Plan *plan.Plan
	// Resolver finds the steps' sidecars.
	Resolver  contract.Resolver
	Transport http.RoundTripper
	Telemetry *telemetry.Telemetry
}

// Orchestrator serves runs: POST / with the entry payload answers with the
// output of the sink step, or the object {sink: output} of several.
type Orchestrator struct {
	plan     *plan.Plan
	tel      *telemetry.Telemetry
	steps    []step // in plan order
	order    []int  // the steps in an order where each follows its dependencies
	sinks    []int
	run      *telemetry.Run
	source   string
	mergesJ  bool // some input or the result merges outputs, so the entry must be JSON
	spanName string
	handler  http.Handler // serveHTTP behind the inbound bulkhead
}

type step struct {
	name   string
	input  string // plan.Input* kind
	from   []int
	target *hop.Target
}

// New builds an orchestrator and the edge (policy, breaker) to every step, once.
func New(cfg Config) (*Orchestrator, error) {
	p := cfg.Plan
	if cfg.Transport == nil {
		cfg.Transport = hop.NewTransport()
	}
	index := make(map[string]int, len(p.Steps))
	for i, s := range p.Steps {
		index[s.Name] = i
	}
	o := &Orchestrator{
		plan:     p,
		tel:      cfg.Telemetry,
		steps:    make([]step, len(p.Steps)),
		run:      cfg.Telemetry.Metrics.Run(p.Workflow),
		source:   contract.SourceOf(p.Namespace, p.Workflow, plan.OrchestratorRole),
		spanName: "run " + p.Workflow,
	}
	lookup := func(name, what string) (int, error) {
		i, ok := index[name]
		if !ok {
			return 0, fmt.Errorf("plan of workflow %s: %s names unknown step %q", p.Workflow, what, name)
		}
		return i, nil
	}
	done := make([]bool, len(p.Steps))
	for li, level := range p.Levels {
		var idx []int
		for _, name := range level {
			i, err := lookup(name, fmt.Sprintf("level %d", li))
			if err != nil {
				return nil, err
			}
			ps := &p.Steps[i]
			if ps.Mode != plan.ModeOrchestrated {
				return nil, fmt.Errorf("plan of workflow %s: step %s is in mode %q; the sync orchestrator runs only orchestrated steps", p.Workflow, name, ps.Mode)
			}
			base, err := cfg.Resolver.StepURL(ps)
			if err != nil {
				return nil, err
			}
			target, err := hop.NewStepTarget(plan.OrchestratorRole, ps, strings.TrimSuffix(base, "/")+"/", o.source, cfg.Transport, cfg.Telemetry)
			if err != nil {
				return nil, err
			}
			st := step{name: name, input: ps.Input.Kind, target: target}
			for _, from := range ps.Input.From {
				j, err := lookup(from, "input of step "+name)
				if err != nil {
					return nil, err
				}
				if !done[j] {
					return nil, fmt.Errorf("plan of workflow %s: step %s takes the output of %s, which does not run in an earlier level", p.Workflow, name, from)
				}
				st.from = append(st.from, j)
			}
			if st.input == plan.InputMerge {
				o.mergesJ = true
			}
			o.steps[i] = st
			idx = append(idx, i)
		}
		for _, i := range idx {
			done[i] = true
		}
		o.order = append(o.order, idx...)
	}
	if len(p.Sinks) == 0 {
		return nil, fmt.Errorf("plan of workflow %s has no sinks", p.Workflow)
	}
	for _, name := range p.Sinks {
		i, err := lookup(name, "sinks")
		if err != nil {
			return nil, err
		}
		if !done[i] {
			return nil, fmt.Errorf("plan of workflow %s: sink %s is in no level", p.Workflow, name)
		}
		o.sinks = append(o.sinks, i)
	}
	o.mergesJ = o.mergesJ || len(o.sinks) > 1
	o.handler = serve.Bulkhead("the orchestrator of workflow "+p.Workflow, p.EntryMaxConcurrent(), http.HandlerFunc(o.serveHTTP),
		cfg.Telemetry.Metrics.BulkheadRejected("orchestrator"))
	return o, nil
}

// ServeHTTP runs the workflow for a POST to /, within the inbound bulkhead
// (the workflow's bulkhead maxConcurrent runs at once per replica).
func (o *Orchestrator) ServeHTTP(w http.ResponseWriter, r *http.Request) { o.handler.ServeHTTP(w, r) }

func (o *Orchestrator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		(&contract.Error{Code: http.StatusNotFound, Message: "runs start with POST /"}).Write(w)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		(&contract.Error{Code: http.StatusMethodNotAllowed, Message: "runs start with POST /"}).Write(w)
		return
	}
	start := time.Now()
	runID := r.Header.Get(contract.HeaderRunID)
	if runID == "" {
		runID = uuid.NewString()
	}
	ctx, cancel := context.WithTimeout(r.Context(), o.plan.Entry.Timeout.Duration)
	defer cancel()
	ctx = o.tel.Tracing.Extract(ctx, r.Header)
	ctx, span := o.tel.Tracing.Start(ctx, o.spanName, trace.SpanKindServer)
	defer span.End()

	herr := o.serveRun(ctx, w, r, runID)
	o.run.Done(herr == nil, start)
	if herr != nil {
		herr.RunID = runID
		herr.Write(w)
		if herr.Code != contract.StatusClientClosedRequest {
			o.tel.Log.Info("Run failed", "workflow", o.plan.Workflow, "run", runID, "step", herr.Step,
				"status", herr.Status, "attempts", herr.Attempts, "code", herr.Code, "err", herr.Message)
		}
	}
}

func (o *Orchestrator) serveRun(ctx context.Context, w http.ResponseWriter, r *http.Request, runID string) *contract.Error {
	in := contract.GetBuffer()
	defer contract.PutBuffer(in)
	if err := contract.ReadBody(in, r.Body, r.ContentLength, o.plan.MaxBody()); err != nil {
		if errors.Is(err, contract.ErrTooLarge) {
			return contract.BadRequest(http.StatusRequestEntityTooLarge, "request body: "+err.Error())
		}
		return contract.BadRequest(http.StatusBadRequest, "request body: "+err.Error())
	}
	if o.mergesJ && !json.Valid(in.Bytes()) {
		return contract.BadRequest(http.StatusBadRequest, fmt.Sprintf("request body is not valid JSON, and workflow %s merges step outputs into JSON objects", o.plan.Workflow))
	}
	entry := &hop.Response{Status: http.StatusOK, ContentType: r.Header.Get("Content-Type"), Body: in}
	outputs := make([]*hop.Response, len(o.steps))
	defer func() {
		for _, out := range outputs {
			out.Release()
		}
	}()
	if herr := o.runSteps(ctx, runID, entry, outputs); herr != nil {
		return herr
	}

	h := w.Header()
	h.Set(contract.HeaderRunID, runID)
	if len(o.sinks) == 1 {
		out := outputs[o.sinks[0]]
		if out.ContentType != "" {
			h.Set("Content-Type", out.ContentType)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out.Body.Bytes())
		return nil
	}
	parts := make([]contract.Part, len(o.sinks))
	for k, i := range o.sinks {
		parts[k] = contract.Part{Name: o.steps[i].name, Producer: o.steps[i].name, Body: outputs[i].Body.Bytes()}
	}
	merged := contract.GetBuffer()
	defer contract.PutBuffer(merged)
	if herr := contract.Merge(merged, "the run's result", parts); herr != nil {
		return herr
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(merged.Bytes())
	return nil
}

// runSteps calls every step as soon as its own dependencies have answered, so
// that a run takes the time of its critical path rather than the sum of its
// levels' slowest steps. Each call passes its step's policy and bulkhead (its
// Target). The first failure cancels the calls in flight and those not yet
// started, and fails the run.
func (o *Orchestrator) runSteps(ctx context.Context, runID string, entry *hop.Response, outputs []*hop.Response) *contract.Error {
	if len(o.order) == 1 {
		out, herr := o.call(ctx, runID, o.order[0], entry, outputs)
		outputs[o.order[0]] = out
		return herr
	}
	g, gctx := errgroup.WithContext(ctx)
	// answered[i] is closed once outputs[i] is written: the close orders that
	// write before the reads of the steps that wait for it.
	answered := make([]chan struct{}, len(o.steps))
	for _, i := range o.order {
		answered[i] = make(chan struct{})
	}
	for _, i := range o.order {
		g.Go(func() error {
			for _, j := range o.steps[i].from {
				select {
				case <-answered[j]:
				case <-gctx.Done():
					return nil // another step failed, or the run ended: the error is theirs
				}
			}
			out, herr := o.call(gctx, runID, i, entry, outputs)
			if herr != nil {
				return herr
			}
			outputs[i] = out
			close(answered[i])
			return nil
		})
	}
	var first *contract.Error
	if errors.As(g.Wait(), &first) {
		return first
	}
	for _, i := range o.order {
		if outputs[i] == nil {
			// The run ended between one step's answer and the next's start.
			return runEnded(ctx, o.steps[i].name)
		}
	}
	return nil
}

// runEnded is the error of a run whose context ended before step could start.
func runEnded(ctx context.Context, step string) *contract.Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &contract.Error{Code: http.StatusGatewayTimeout, Step: step, Message: fmt.Sprintf("the run's deadline passed before step %s could start", step)}
	}
	return &contract.Error{Code: contract.StatusClientClosedRequest, Step: step, Message: "the caller canceled the run"}
}

// call invokes step i with its input: the entry payload, its one
// dependency's output, or the object of its dependencies' outputs.
func (o *Orchestrator) call(ctx context.Context, runID string, i int, entry *hop.Response, outputs []*hop.Response) (*hop.Response, *contract.Error) {
	st := &o.steps[i]
	inv := &contract.Invocation{RunID: runID}
	switch {
	case st.input == plan.InputMerge || len(st.from) > 1:
		buf := contract.GetBuffer()
		defer contract.PutBuffer(buf)
		parts := make([]contract.Part, len(st.from))
		for k, j := range st.from {
			parts[k] = contract.Part{Name: o.steps[j].name, Producer: o.steps[j].name, Body: outputs[j].Body.Bytes()}
		}
		if herr := contract.Merge(buf, "step "+st.name, parts); herr != nil {
			return nil, herr
		}
		inv.ContentType, inv.Body = "application/json", buf.Bytes()
	case len(st.from) == 1:
		dep := outputs[st.from[0]]
		inv.ContentType, inv.Body = dep.ContentType, dep.Body.Bytes()
	default:
		inv.ContentType, inv.Body = entry.ContentType, entry.Body.Bytes()
	}
	return st.target.Invoke(ctx, inv)
}
