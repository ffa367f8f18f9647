package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// chain is the sync-chain part of a sidecar.
type chain struct {
	s    *Sidecar
	app  *hop.Target
	next []nextHop
	// entry is true on the root step's sidecar, where callers start runs.
	entry bool
	// needsJSON: the chain merges outputs into JSON objects, so the entry refuses
	// a request that is not JSON before any step runs.
	needsJSON bool
	run       *telemetry.Run
}

// nextHop is a forward to one next step, and the shape of what comes back: the
// output of the one sink after it, or an object of its several sinks.
type nextHop struct {
	target *hop.Target
	// sink names the single sink reached through this step; empty when several are.
	sink string
}

func newChain(s *Sidecar, resolver contract.Resolver) (*chain, error) {
	p, step := s.plan, s.step
	if err := ValidateChain(p); err != nil {
		return nil, err
	}
	app, err := hop.NewStepTarget("sidecar", step, s.appURL, s.source, s.transport, s.tel)
	if err != nil {
		return nil, err
	}
	c := &chain{s: s, app: app, entry: p.Entry.Kind == plan.EntryStep && p.Entry.Step == step.Name}
	if c.entry {
		c.run = s.tel.Metrics.Run(p.Workflow)
		for _, st := range p.Steps {
			c.needsJSON = c.needsJSON || len(st.Output.Next) > 1
		}
	}
	for _, name := range step.Output.Next {
		next := p.Step(name)
		base, err := resolver.StepURL(next)
		if err != nil {
			return nil, fmt.Errorf("step %s forwards to %s: %w", step.Name, name, err)
		}
		nh := nextHop{target: hop.NewRelayTarget(step.Name, next, strings.TrimSuffix(base, "/")+"/", s.transport, s.tel)}
		if sinks := sinksAfter(p, name); len(sinks) == 1 {
			nh.sink = sinks[0]
		}
		c.next = append(c.next, nh)
	}
	return c, nil
}

// ValidateChain checks what a sync-chain plan must hold for sidecars to run it:
// every step in chain mode and no step joining several branches, since no single
// sidecar could wait for all of them.
func ValidateChain(p *plan.Plan) error {
	for _, st := range p.Steps {
		if st.Mode != plan.ModeChain {
			continue
		}
		if len(st.DependsOn) > 1 {
			return fmt.Errorf("sync-chain step %s depends on several steps (%s): a chain cannot join branches; use style sync-orchestrated", st.Name, strings.Join(st.DependsOn, ", "))
		}
		for _, n := range st.Output.Next {
			if p.Step(n) == nil {
				return fmt.Errorf("sync-chain step %s forwards to unknown step %s", st.Name, n)
			}
		}
	}
	return nil
}

// sinksAfter lists the sinks reachable from step (itself when it is one), in
// the chain's order.
func sinksAfter(p *plan.Plan, step string) []string {
	var out []string
	var walk func(string)
	walk = func(name string) {
		st := p.Step(name)
		if len(st.Output.Next) == 0 {
			out = append(out, name)
			return
		}
		for _, n := range st.Output.Next {
			walk(n)
		}
	}
	walk(step)
	return out
}

// serve runs this step of the chain and everything after it.
func (c *chain) serve(w http.ResponseWriter, r *http.Request) int {
	s := c.s
	ctx := r.Context()
	runID := r.Header.Get(contract.HeaderRunID)
	if runID == "" {
		runID = newRunID()
	}
	var start time.Time
	if c.entry {
		start = time.Now()
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.plan.Entry.Timeout.Duration)
		defer cancel()
	}
	ctx = s.tel.Tracing.Extract(ctx, r.Header)
	ctx, span := s.tel.Tracing.Start(ctx, s.spanName, trace.SpanKindServer)
	defer span.End()

	code := c.run1(ctx, w, r, runID)
	if c.entry {
		c.run.Done(code < 300, start)
		if code >= 300 && code != contract.StatusClientClosedRequest {
			s.tel.Log.Info("Run failed", "workflow", s.plan.Workflow, "run", runID, "code", code)
		}
	}
	return code
}

func (c *chain) run1(ctx context.Context, w http.ResponseWriter, r *http.Request, runID string) int {
	s := c.s
	// The bulkhead decides before the body is read: a request over it costs
	// neither the read nor a buffer, and a full step sheds load at once.
	if !s.bulkhead.TryAcquirePermit() {
		return s.reject(w, runID)
	}
	permit := true
	release := func() {
		if permit {
			permit = false
			s.bulkhead.ReleasePermit()
		}
	}
	defer release()
	in := contract.GetBuffer()
	defer contract.PutBuffer(in)
	if err := contract.ReadBody(in, r.Body, r.ContentLength, s.plan.MaxBody()); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, contract.ErrTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		return c.write(w, &contract.Error{Code: code, RunID: runID, Message: "request body: " + err.Error()})
	}
	if c.entry && c.needsJSON && !json.Valid(in.Bytes()) {
		return c.write(w, &contract.Error{Code: http.StatusBadRequest, RunID: runID,
			Message: fmt.Sprintf("request body is not valid JSON, and workflow %s merges step outputs into JSON objects", s.plan.Workflow)})
	}

	out, herr := c.app.Invoke(ctx, &contract.Invocation{RunID: runID, ContentType: r.Header.Get("Content-Type"), Body: in.Bytes()})
	release() // the app is done; the steps after it have their own bulkheads
	if herr != nil {
		if herr.Code != contract.StatusClientClosedRequest {
			s.tel.Log.Info("Step failed", "step", herr.Step, "run", runID, "status", herr.Status, "attempts", herr.Attempts, "err", herr.Message)
		}
		return c.write(w, herr)
	}
	defer out.Release()

	switch len(c.next) {
	case 0:
		return writeOutput(w, runID, out.Status, out.ContentType, out.Body.Bytes())
	case 1:
		resp, herr := c.next[0].target.Relay(ctx, c.relayHeader(ctx, runID, out.ContentType), out.Body.Bytes())
		if herr != nil {
			herr.RunID = runID
			return c.write(w, herr)
		}
		defer resp.Release()
		return writeRelayed(w, runID, resp)
	default:
		return c.fanOut(ctx, w, runID, out)
	}
}

// fanOut forwards the output to every next step at once and merges what they
// return; the first failure cancels the other branches and answers the run.
func (c *chain) fanOut(ctx context.Context, w http.ResponseWriter, runID string, out *hop.Response) int {
	h := c.relayHeader(ctx, runID, out.ContentType)
	type result struct {
		resp *hop.Response
		err  *contract.Error
	}
	results := make([]result, len(c.next))
	g, gctx := errgroup.WithContext(ctx)
	for i := range c.next {
		g.Go(func() error {
			resp, herr := c.next[i].target.Relay(gctx, h, out.Body.Bytes())
			results[i] = result{resp, herr}
			if herr != nil || !resp.OK() {
				return branchFailed(i)
			}
			return nil
		})
	}
	failed := -1
	if first := branchFailed(-1); errors.As(g.Wait(), &first) {
		failed = int(first)
	}
	defer func() {
		for _, r := range results {
			r.resp.Release()
		}
	}()
	if failed >= 0 {
		if r := results[failed]; r.err != nil {
			r.err.RunID = runID
			return c.write(w, r.err)
		}
		return writeRelayed(w, runID, results[failed].resp)
	}
	parts := make([]contract.Part, len(c.next))
	for i, n := range c.next {
		parts[i] = contract.Part{Name: n.sink, Producer: n.sink, Body: results[i].resp.Body.Bytes(), Object: n.sink == ""}
		if n.sink == "" {
			parts[i].Producer = n.target.Name.To
		}
	}
	merged := contract.GetBuffer()
	defer contract.PutBuffer(merged)
	if herr := contract.Merge(merged, c.s.step.Name, parts); herr != nil {
		herr.RunID = runID
		return c.write(w, herr)
	}
	return writeOutput(w, runID, http.StatusOK, "application/json", merged.Bytes())
}

// branchFailed is the index of the first branch of a fan-out that failed.
type branchFailed int

func (b branchFailed) Error() string { return "branch " + strconv.Itoa(int(b)) + " failed" }

// relayHeader carries the run to the next sidecar; the step contract's headers
// are added there, for that step's app.
func (c *chain) relayHeader(ctx context.Context, runID, contentType string) http.Header {
	h := make(http.Header, 4)
	h[contract.HeaderRunID] = []string{runID}
	h[contract.HeaderFrom] = []string{c.s.step.Name}
	if contentType != "" {
		h["Content-Type"] = []string{contentType}
	}
	c.s.tel.Tracing.Inject(ctx, h)
	return h
}

func (c *chain) write(w http.ResponseWriter, e *contract.Error) int {
	e.Write(w)
	return e.Code
}

func writeOutput(w http.ResponseWriter, runID string, status int, contentType string, body []byte) int {
	h := w.Header()
	if contentType != "" {
		h["Content-Type"] = []string{contentType}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h[contract.HeaderRunID] = []string{runID}
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

// writeRelayed passes on the next sidecar's answer. Its Rejected mark stays
// behind: this sidecar did call its app, so a caller must not retry as if not.
func writeRelayed(w http.ResponseWriter, runID string, resp *hop.Response) int {
	if resp.RetryAfter > 0 {
		w.Header().Set("Retry-After", resilience.FormatRetryAfter(resp.RetryAfter))
	}
	return writeOutput(w, runID, resp.Status, resp.ContentType, resp.Body.Bytes())
}
