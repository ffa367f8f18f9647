package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
)

// ResultEventType is the CloudEvents type of the results a sidecar publishes
// besides emitted events.
// A dead letter is the message that failed, with its own attributes.
const ResultEventType = "dev.patchbay.step.result"

// Async is the bus side of a sidecar (async-orchestrated, choreography,
// hybrid): it pulls the step's durable consumers, calls the app once per
// delivery under the step's timeout and breaker, and publishes the output as
// the step's result and as the event it chose to emit. The broker's redelivery is the retry:
// a retryable failure is nak'ed with the policy's backoff until MaxDeliver,
// then dead-lettered, as is a 4xx at once.
type Async struct {
	s         *Sidecar
	conn      *bus.Conn
	app       *hop.Target
	result    *contract.Contract
	emits     []emit
	consumers []*asyncConsumer
	// workers handle the messages in hand, limit (the step's bulkhead) at
	// most at once.
	workers  errgroup.Group
	limit    int
	stopping atomic.Bool
	stopOnce sync.Once
}

type emit struct {
	plan.Emit
	contract *contract.Contract
}

type asyncConsumer struct {
	plan.Consumer
	// trigger names what a message of this consumer is, in message IDs.
	trigger      string
	redeliveries prometheus.Counter
	consume      jetstream.ConsumeContext
}

// StartAsync waits for the stream (the manager creates it), ensures the
// step's consumers and starts consuming.
// It returns nil, nil for a step without consumers.
func (s *Sidecar) StartAsync(ctx context.Context, conn *bus.Conn) (*Async, error) {
	step, p := s.step, s.plan
	if p.Stream == nil || len(step.Consumers) == 0 {
		return nil, nil
	}
	if s.asyncApp == nil {
		// One attempt per delivery: the broker's redelivery is the retry.
		once := *step
		once.Policy.Retry.Attempts = 1
		app, err := hop.NewStepTarget("sidecar", &once, s.appURL, s.source, s.transport, s.tel)
		if err != nil {
			return nil, err
		}
		s.asyncApp = app
	}
	app := s.asyncApp
	var err error
	source := contract.SourceOf(p.Namespace, p.Workflow, step.Name)
	a := &Async{s: s, conn: conn, app: app, limit: int(max(1, step.Policy.Bulkhead.MaxConcurrent))}
	a.workers.SetLimit(a.limit)
	if a.result, err = contract.NewTypedContract(source, step.Name, ResultEventType, s.tel.Tracing.Inject); err != nil {
		return nil, err
	}
	for _, e := range step.Output.Emits {
		c, err := contract.NewTypedContract(source, step.Name, e.Type, s.tel.Tracing.Inject)
		if err != nil {
			return nil, err
		}
		a.emits = append(a.emits, emit{Emit: e, contract: c})
	}
	if err := bus.WaitStream(ctx, conn.JS, p); err != nil {
		return nil, err
	}
	for _, pc := range step.Consumers {
		c := &asyncConsumer{Consumer: pc, trigger: "cmd", redeliveries: s.tel.Metrics.Redeliveries(pc.Durable)}
		if pc.Event != "" {
			c.trigger = pc.Event
		}
		cons, err := bus.EnsureConsumer(ctx, conn.JS, p, bus.StepConsumerConfig(pc))
		if err != nil {
			a.Stop()
			return nil, err
		}
		// The client buffers no more than the pod works on at once.
		c.consume, err = conn.Consume(cons, func(m jetstream.Msg) { a.dispatch(c, m) }, &a.stopping, s.tel.Log,
			jetstream.PullMaxMessages(a.limit))
		if err != nil {
			a.Stop()
			return nil, fmt.Errorf("consume %s: %w", pc.Durable, err)
		}
		a.consumers = append(a.consumers, c)
		s.tel.Log.Info("Consuming", "step", step.Name, "consumer", pc.Durable, "subject", pc.FilterSubject)
	}
	return a, nil
}

// Stop stops pulling and waits for the messages in hand to be handled: the
// durable consumers stay on the broker, so that the step's other replicas
// (or this pod's replacement) take the messages this one no longer fetches.
// The messages the client had already buffered are handled too: Stop runs
// while the app is still up (the drain of the pod's preStop hook). It may be
// called more than once; every call waits for the work in hand.
func (a *Async) Stop() {
	a.stopOnce.Do(func() {
		a.stopping.Store(true)
		for _, c := range a.consumers {
			if c.consume != nil {
				c.consume.Drain()
				<-c.consume.Closed()
			}
		}
	})
	_ = a.workers.Wait()
}

// dispatch hands a message to a worker; it blocks the consumer's delivery
// while the step's bulkhead is full.
func (a *Async) dispatch(c *asyncConsumer, m jetstream.Msg) {
	a.workers.Go(func() error {
		a.handle(c, m)
		return nil
	})
}

func (a *Async) handle(c *asyncConsumer, m jetstream.Msg) {
	s := a.s
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	h := bus.HTTPHeader(m)
	runID := h.Get(contract.HeaderRunID)
	if runID == "" {
		// An event from outside patchbay: its stream sequence identifies it.
		runID = "seq-" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	attempt := int(md.NumDelivered)
	if attempt > 1 {
		c.redeliveries.Inc()
	}
	ctx := s.tel.Tracing.Extract(context.Background(), h)
	ctx, span := s.tel.Tracing.Start(ctx, s.spanName, trace.SpanKindConsumer)
	defer span.End()

	if attempt > int(c.MaxDeliver) {
		a.deadLetter(ctx, c, m, runID, &contract.Error{
			Code: http.StatusBadGateway, Step: s.step.Name, Attempts: attempt - 1,
			Message: fmt.Sprintf("step %s did not finish its last attempt (its sidecar stopped or the attempt outlived ackWait %s)", s.step.Name, c.AckWait),
		})
		return
	}
	inv := &contract.Invocation{RunID: runID, ContentType: h.Get("Content-Type"), Body: m.Data()}
	if c.Event != "" {
		// The step sees the event it reacts to: its type (a step may
		// subscribe to several), its emitter as source, and its id.
		inv.Event = contract.EventAttrsOf(h)
	}
	out, herr := a.app.Invoke(ctx, inv)
	if herr == nil {
		defer out.Release()
		ev, cerr := a.chooseEmit(out)
		if cerr != nil {
			cerr.Attempts, cerr.RunID = attempt, runID
			a.deadLetter(ctx, c, m, runID, cerr)
			return
		}
		if err := a.publishOutput(ctx, c, runID, h, out, ev); err != nil {
			s.tel.Log.Warn("Publishing a step's output failed; the message will be redelivered", "step", s.step.Name, "run", runID, "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
		return
	}
	herr.Attempts = attempt
	herr.RunID = runID
	if herr.Code == contract.StatusClientClosedRequest {
		_ = m.Nak() // this process is stopping
		return
	}
	if herr.Status == 0 && a.stopping.Load() {
		// The app never answered and this sidecar is stopping: most likely
		// the app is gone already (Kubernetes stops it before its native
		// sidecar). That is no failure of the step: hand the message back
		// at once for another replica, and never dead-letter it here.
		s.tel.Log.Info("The app did not answer while the sidecar stops; handing the message back", "step", s.step.Name, "run", runID, "attempt", attempt, "err", herr.Message)
		_ = m.Nak()
		return
	}
	// A Retry-After past the step's maxDelay, or past the run's deadline,
	// ends the retries, as in the sync styles: the message is dead-lettered
	// with the step's answer rather than parked in the broker for as long as
	// the step asked.
	var remaining time.Duration
	if d := bus.Deadline(h); !d.IsZero() {
		remaining = max(time.Until(d), time.Nanosecond)
	}
	if retryable(herr) && attempt < int(c.MaxDeliver) && !resilience.RetryAfterTooLong(s.step.Policy.Retry, herr.RetryAfter, remaining) {
		delay := resilience.RetryDelay(s.step.Policy.Retry, attempt, herr.RetryAfter)
		s.tel.Log.Debug("Step attempt failed, retrying by redelivery", "step", s.step.Name, "run", runID, "attempt", attempt, "status", herr.Status, "delay", delay)
		_ = m.NakWithDelay(delay)
		return
	}
	a.deadLetter(ctx, c, m, runID, herr)
}

// retryable: everything but a 4xx other than 408 and 429 (docs/step-contract.md), and
// answers the step cannot have meant (a body over the limit).
func retryable(e *contract.Error) bool {
	return e.Status < 200 || e.Status >= 500 || resilience.RetryableStatus(e.Status)
}

// header is the common part of what a step publishes: the run, the trace, the
// producing step and the content type, with the CloudEvents attributes of c.
// The run's deadline and replay generation (of the message in) go on too.
func (a *Async) header(ctx context.Context, c *contract.Contract, in http.Header, runID, id, contentType string) http.Header {
	h := c.Header(ctx, runID, contentType)
	h["Ce-Id"] = []string{id}
	h[contract.HeaderStep] = []string{a.s.step.Name}
	for _, k := range []string{bus.HeaderDeadline, bus.HeaderReplay} {
		if v := in.Get(k); v != "" {
			h[k] = []string{v}
		}
	}
	return h
}

// resultHeader is the header of a step's result: header's, and the run's
// record that its command carried (bus.HeaderRecord), which the
// orchestrator goes on from.
func (a *Async) resultHeader(ctx context.Context, in http.Header, runID, id, contentType string) http.Header {
	h := a.header(ctx, a.result, in, runID, id, contentType)
	if v := in.Get(bus.HeaderRecord); v != "" {
		h[bus.HeaderRecord] = []string{v}
	}
	return h
}

// chooseEmit is the event a step's answer emits (docs/step-contract.md,
// Events): the declared type its Ce-Type header names, else its one
// declared type; none for 204 No Content. An undeclared type, or no choice
// among several, is a contract error, which is dead-lettered: the step
// answered, so asking it again would not change the answer. A step that
// emits nothing and reacts to no event (an async-orchestrated step) is not
// held to this: its answer is a result only.
func (a *Async) chooseEmit(out *hop.Response) (*emit, *contract.Error) {
	step := a.s.step
	if len(a.emits) == 0 && step.Mode != plan.ModeEvent {
		return nil, nil
	}
	if out.Status == http.StatusNoContent {
		return nil, nil
	}
	contractErr := func(format string, args ...any) *contract.Error {
		return &contract.Error{Code: http.StatusBadGateway, Step: step.Name, Status: out.Status,
			Message: fmt.Sprintf("step %s broke the step contract: ", step.Name) + fmt.Sprintf(format, args...)}
	}
	if out.EventType != "" {
		for i := range a.emits {
			if a.emits[i].Type == out.EventType {
				return &a.emits[i], nil
			}
		}
		if len(a.emits) == 0 {
			return nil, contractErr("it answered %s: %s, but it declares no emits; add the type to spec.steps[].emits or answer without %s", contract.CETypeHeader, out.EventType, contract.CETypeHeader)
		}
		return nil, contractErr("it answered %s: %s, which is not among its emits (%s); add the type to spec.steps[].emits or fix the app", contract.CETypeHeader, out.EventType, a.emitTypes())
	}
	switch len(a.emits) {
	case 0:
		return nil, nil
	case 1:
		return &a.emits[0], nil
	}
	return nil, contractErr("it declares several emits (%s) and answered without %s: name the event in %s, or answer 204 to emit none", a.emitTypes(), contract.CETypeHeader, contract.CETypeHeader)
}

func (a *Async) emitTypes() string {
	types := make([]string, len(a.emits))
	for i, e := range a.emits {
		types[i] = e.Type
	}
	return strings.Join(types, ", ")
}

// publishOutput publishes the step's result, when it has one, and the event
// ev it chose, when it chose one.
func (a *Async) publishOutput(ctx context.Context, c *asyncConsumer, runID string, in http.Header, out *hop.Response, ev *emit) error {
	step := a.s.step
	body := out.Body.Bytes()
	if step.Output.ResultSubject != "" {
		id := bus.MsgID(runID, step.Name, c.trigger+bus.ReplaySuffix(in), "res")
		h := a.resultHeader(ctx, in, runID, id, out.ContentType)
		h[contract.HeaderStatus] = []string{contract.ResultOK}
		if err := a.conn.Publish(ctx, bus.NewMsg(bus.ResultOf(step.Output.ResultSubject, runID), h, body), id); err != nil {
			return err
		}
	}
	if ev != nil {
		id := bus.MsgID(runID, step.Name, c.trigger+bus.ReplaySuffix(in), ev.Type)
		if err := a.conn.Publish(ctx, bus.NewMsg(ev.Subject, a.header(ctx, ev.contract, in, runID, id, out.ContentType), body), id); err != nil {
			return err
		}
	}
	return nil
}

// deadLetter publishes the message as a dead letter, fails an orchestrated
// run at once with a failure result, and terminates the message.
func (a *Async) deadLetter(ctx context.Context, c *asyncConsumer, m jetstream.Msg, runID string, herr *contract.Error) {
	s, step := a.s, a.s.step
	in := bus.HTTPHeader(m)
	dlq, id := bus.NewDeadLetter(s.plan, m, bus.Failure{
		Step: step.Name, Event: c.Event, Attempts: herr.Attempts, Status: herr.Status,
		Code: herr.Code, Message: herr.Message, Detail: herr.Detail,
	})
	err := a.conn.Publish(ctx, dlq, id)
	if err == nil && step.Output.ResultSubject != "" {
		b, _ := json.Marshal(herr)
		id := bus.MsgID(runID, step.Name, c.trigger+bus.ReplaySuffix(in), "res")
		h := a.resultHeader(ctx, in, runID, id, "application/json")
		h[contract.HeaderStatus] = []string{contract.ResultFailed}
		err = a.conn.Publish(ctx, bus.NewMsg(bus.ResultOf(step.Output.ResultSubject, runID), h, b), id)
	}
	if err != nil {
		s.tel.Log.Warn("Dead-lettering failed; the message will be redelivered", "step", step.Name, "run", runID, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	s.tel.Metrics.DeadLetter(step.Name, herr.Status)
	s.tel.Log.Warn("Dead-lettered a message", "step", step.Name, "run", runID, "subject", m.Subject(),
		"attempts", herr.Attempts, "status", herr.Status, "err", herr.Message)
	if err := m.TermWithReason("dead-lettered"); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		s.tel.Log.Debug("Terminating a message failed", "err", err)
	}
}
