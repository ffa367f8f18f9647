package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// Settings of the orchestrators' shared consumer.
const (
	asyncMaxAckPending = 1024
	asyncAckWait       = 30 * time.Second
	asyncWorkers       = 64
	asyncRetryDelay    = 500 * time.Millisecond
)

// redeliveryDelay is bus.RedeliveryDelay; tests shorten it.
var redeliveryDelay = bus.RedeliveryDelay

// AsyncConfig is what an async orchestrator needs.
type AsyncConfig struct {
	Plan      *plan.Plan
	Conn      *bus.Conn
	Telemetry *telemetry.Telemetry
}

// Async runs the orchestrated core of async-orchestrated and hybrid over the
// bus. It keeps no state: a run's messages carry its record
// (bus.HeaderRecord), so any replica continues any run. It consumes run
// starts (Stream.StartSubject) and step results (ResultPrefix.>) from one
// shared durable, publishes the commands of the steps whose dependencies are
// complete, each carrying the record with what the run has done so far, and
// when every sink has finished writes the outcome to the runs bucket with
// compare-and-set and sends it to the gateway replica holding the caller. A
// result is written to the bucket before that only when a later step needs
// it (a step that joins several, or one of several sinks).
type Async struct {
	plan       *plan.Plan
	tel        *telemetry.Telemetry
	conn       *bus.Conn
	runs       *bus.Runs
	run        *telemetry.Run
	roots      []string
	dependents map[string][]string
	// keep are the steps whose result a later message needs from the runs
	// bucket: those with a dependent that joins several, and the sinks of a
	// workflow with several.
	keep      map[string]bool
	contracts map[string]*contract.Contract
	consume   jetstream.ConsumeContext
	// workers handle the messages in hand, asyncWorkers at most at once.
	workers  errgroup.Group
	stopping atomic.Bool
}

// StartAsync waits for the stream and the runs bucket (the manager creates
// them), ensures the orchestrators' consumer, and starts consuming.
func StartAsync(ctx context.Context, cfg AsyncConfig) (*Async, error) {
	p := cfg.Plan
	if p.Stream == nil || p.Stream.StartSubject == "" || p.Stream.OrchestratorDurable == "" {
		return nil, fmt.Errorf("plan of workflow %s (style %s) has no orchestrator stream subjects", p.Workflow, p.Style)
	}
	a := &Async{
		plan: p, tel: cfg.Telemetry, conn: cfg.Conn, run: cfg.Telemetry.Metrics.Run(p.Workflow),
		dependents: map[string][]string{}, contracts: map[string]*contract.Contract{}, keep: map[string]bool{},
	}
	a.workers.SetLimit(asyncWorkers)
	source := contract.SourceOf(p.Namespace, p.Workflow, plan.OrchestratorRole)
	for _, level := range p.Levels {
		for _, name := range level {
			st := p.Step(name)
			if st == nil || st.Mode != plan.ModeOrchestrated || len(st.Consumers) == 0 {
				return nil, fmt.Errorf("plan of workflow %s: level step %s is not an orchestrated step with a command subject", p.Workflow, name)
			}
			for _, d := range st.DependsOn {
				a.dependents[d] = append(a.dependents[d], name)
				if len(st.DependsOn) > 1 {
					a.keep[d] = true
				}
			}
			c, err := contract.NewContract(source, name, cfg.Telemetry.Tracing.Inject)
			if err != nil {
				return nil, err
			}
			a.contracts[name] = c
		}
	}
	a.roots = p.Roots()
	if len(p.Sinks) == 0 {
		return nil, fmt.Errorf("plan of workflow %s has no sinks", p.Workflow)
	}
	if len(p.Sinks) > 1 {
		for _, s := range p.Sinks {
			a.keep[s] = true
		}
	}
	if err := bus.WaitStream(ctx, cfg.Conn.JS, p); err != nil {
		return nil, err
	}
	runs, err := bus.WaitRuns(ctx, cfg.Conn.JS, p)
	if err != nil {
		return nil, err
	}
	a.runs = runs
	cons, err := bus.EnsureConsumer(ctx, cfg.Conn.JS, p, jetstream.ConsumerConfig{
		Durable:        p.Stream.OrchestratorDurable,
		Description:    "patchbay orchestrators: run starts and step results",
		FilterSubjects: []string{p.Stream.StartSubject, bus.StartOf(p.Stream, "*"), p.Stream.ResultPrefix + ".>"},
		MaxAckPending:  asyncMaxAckPending,
		AckWait:        asyncAckWait,
		MaxDeliver:     bus.RoleConsumerMaxDeliver,
	})
	if err != nil {
		return nil, err
	}
	a.consume, err = cfg.Conn.Consume(cons, a.dispatch, &a.stopping, cfg.Telemetry.Log, jetstream.PullMaxMessages(asyncWorkers))
	if err != nil {
		return nil, err
	}
	cfg.Telemetry.Log.Info("Orchestrating over the bus", "workflow", p.Workflow, "consumer", p.Stream.OrchestratorDurable)
	return a, nil
}

// Stop stops pulling and waits for the messages in hand.
func (a *Async) Stop() {
	a.stopping.Store(true)
	a.consume.Drain()
	<-a.consume.Closed()
	_ = a.workers.Wait()
}

func (a *Async) dispatch(m jetstream.Msg) {
	a.workers.Go(func() error {
		attempt := 1
		if md, err := m.Metadata(); err == nil {
			attempt = int(md.NumDelivered)
		}
		if attempt > bus.RoleMaxDeliver {
			a.giveUp(m, attempt-1, "the orchestrator did not finish its last attempt on this message (it stopped, or the attempt outlived the ack wait)", true)
			return nil
		}
		if err := a.handle(m); err != nil {
			if errors.Is(err, errPoison) || errors.Is(err, errForeign) {
				a.giveUp(m, attempt, err.Error(), !errors.Is(err, errForeign))
				return nil
			}
			if attempt >= bus.RoleMaxDeliver {
				a.giveUp(m, attempt, fmt.Sprintf("the orchestrator failed on this message %d times: %v", attempt, err), true)
				return nil
			}
			a.tel.Log.Warn("Handling a message failed; it will be redelivered", "subject", m.Subject(), "attempt", attempt, "err", err)
			_ = m.NakWithDelay(redeliveryDelay(attempt))
			return nil
		}
		_ = m.Ack()
		return nil
	})
}

// errPoison marks a message that no redelivery can make right, such as one
// whose run id is not a valid key: it is dead-lettered at once, with the
// reason.
var errPoison = errors.New("a message the orchestrator can never handle")

// errForeign marks a message that this orchestrator can never handle but
// that does not fail its run: the result of a step its plan does not have.
var errForeign = errors.New("a message of no step of this orchestrator")

// giveUp dead-letters a poison message, fails its run with the reason when
// it belongs to one and failRun says so, and terminates it: it is not
// delivered again.
func (a *Async) giveUp(m jetstream.Msg, attempts int, reason string, failRun bool) {
	ctx, cancel := context.WithTimeout(context.Background(), asyncAckWait)
	defer cancel()
	msg, id := bus.GiveUp(a.plan, plan.OrchestratorRole, m, attempts, reason)
	if err := a.conn.Publish(ctx, msg, id); err != nil {
		a.tel.Log.Warn("Dead-lettering failed; the message will be redelivered", "subject", m.Subject(), "err", err)
		_ = m.NakWithDelay(asyncRetryDelay)
		return
	}
	runID := bus.HTTPHeader(m).Get(contract.HeaderRunID)
	a.tel.Metrics.DeadLetter(plan.OrchestratorRole, 0)
	a.tel.Log.Warn("Dead-lettered a message the orchestrator could not handle", "subject", m.Subject(), "run", runID, "attempts", attempts, "err", reason)
	if failRun && runID != "" && bus.CheckRunID("run id", runID) == nil {
		herr := &contract.Error{Code: http.StatusBadGateway, RunID: runID, Attempts: attempts, Message: reason}
		if err := a.fail(ctx, runID, bus.HTTPHeader(m), false, herr); err != nil {
			a.tel.Log.Warn("Failing the run of a dead-lettered message failed", "run", runID, "err", err)
		}
	}
	if err := m.TermWithReason("dead-lettered"); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		a.tel.Log.Debug("Terminating a message failed", "err", err)
	}
}

func (a *Async) handle(m jetstream.Msg) error {
	h := bus.HTTPHeader(m)
	runID := h.Get(contract.HeaderRunID)
	if runID == "" {
		return fmt.Errorf("%w: the message has no %s header", errPoison, contract.HeaderRunID)
	}
	if err := bus.CheckRunID("run id", runID); err != nil {
		// No gateway starts such a run, and retrying would not change it.
		return fmt.Errorf("%w: %s %w", errPoison, contract.HeaderRunID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), asyncAckWait)
	defer cancel()
	ctx = a.tel.Tracing.Extract(ctx, h)
	first := false
	if md, err := m.Metadata(); err == nil {
		first = md.NumDelivered == 1
	}
	if bus.IsStart(a.plan.Stream, m.Subject()) {
		return a.start(ctx, runID, h, m.Data(), first)
	}
	step, ok := bus.ResultStep(a.plan.Stream, m.Subject())
	if !ok || a.contracts[step] == nil {
		// Kept, but the run is not failed: during a switch that also
		// changed the steps, the other style's orchestrator knows the step.
		return fmt.Errorf("%w: %s is the result of no step of workflow %s as this orchestrator runs it", errForeign, m.Subject(), a.plan.Workflow)
	}
	if h.Get(contract.HeaderStatus) == contract.ResultFailed {
		return a.failed(ctx, runID, h, first, m.Data())
	}
	return a.succeeded(ctx, runID, step, h, first, m)
}

// advance applies change to the run of a message with headers h, and
// returns the run and the revision its record is stored at (0: it is not).
// On the message's first delivery before the run's deadline it starts from
// the record the message carries (bus.HeaderRecord) and reads nothing. A
// redelivered message, a replay's, one past the deadline or one carrying no
// record starts from the stored record, with what the carried one adds
// (bus.Run.Merge), so that a run that has finished meanwhile is not
// continued. The run is written when change finished it, or when keep says
// a later message needs the change from the bucket; with compare-and-set,
// applying change again to a fresh read when another process wrote it
// meanwhile. change reports whether it changed anything; it is only told
// that it did not from a fresh read.
func (a *Async) advance(ctx context.Context, runID string, h http.Header, first, keep bool, change func(*bus.Run) bool) (*bus.Run, uint64, error) {
	r, rev, ok := a.carried(runID, h, first)
	if !ok {
		var err error
		if r, rev, err = a.load(ctx, runID, h); err != nil {
			return nil, 0, err
		}
	}
	return a.store(ctx, runID, h, r, rev, keep, change)
}

// store is advance from the run r, stored at revision rev.
func (a *Async) store(ctx context.Context, runID string, h http.Header, r *bus.Run, rev uint64, keep bool, change func(*bus.Run) bool) (*bus.Run, uint64, error) {
	for {
		if !change(r) || !keep && !r.Done() {
			return r, rev, nil
		}
		next, err := a.runs.Store(ctx, r, rev)
		if errors.Is(err, bus.ErrStale) {
			if r, rev, err = a.load(ctx, runID, h); err != nil {
				return nil, 0, err
			}
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		return r, next, nil
	}
}

// carried is the record a message carries, when the orchestrator may go on
// from it without reading the stored one: on its first delivery, not a
// replay's, before the run's deadline.
func (a *Async) carried(runID string, h http.Header, first bool) (*bus.Run, uint64, bool) {
	if !first || h.Get(bus.HeaderReplay) != "" {
		return nil, 0, false
	}
	r, rev, ok := bus.Carried(h, runID)
	if !ok || r.Done() {
		return nil, 0, false
	}
	if d := r.DeadlineOf(a.plan.RunTimeout.Duration); !d.IsZero() && !time.Now().Before(d) {
		return nil, 0, false
	}
	return r, rev, true
}

// load reads the stored record of the run of a message with headers h, with
// what the record the message carries adds. A run with no stored record is
// the carried one (its record is written when it ends), or a new one for a
// message that carries none (a start published by something other than a
// gateway).
func (a *Async) load(ctx context.Context, runID string, h http.Header) (*bus.Run, uint64, error) {
	carried, crev, ok := bus.Carried(h, runID)
	r, rev, err := a.runs.Get(ctx, runID)
	switch {
	case err == nil:
		r.Merge(carried)
		return r, rev, nil
	case !errors.Is(err, bus.ErrNoRun):
		return nil, 0, err
	case ok && crev > 0:
		// The message says it was stored: this replica of the bucket has
		// not caught up yet.
		return nil, 0, errRecordNotVisible(runID, err)
	case ok:
		return carried, 0, nil
	}
	// A message with no record (a result of a sidecar of an earlier
	// version): the run's start may have it.
	if r, err := a.conn.Started(ctx, a.plan, runID); err == nil {
		return r, 0, nil
	} else if !errors.Is(err, bus.ErrNoRun) {
		return nil, 0, err
	}
	// A start published by something other than a gateway.
	r = &bus.Run{ID: runID, Status: bus.RunPending, Started: time.Now().UTC()}
	if d := bus.Deadline(h); !d.IsZero() {
		r.Deadline = &d
	}
	return r, 0, nil
}

// start dispatches the steps without dependencies with the entry payload.
// The record a gateway's start carries says they are dispatched already, so
// on its first delivery the start costs no access to the runs bucket; a
// redelivered one reads the record, and does not command a run that has
// finished meanwhile.
func (a *Async) start(ctx context.Context, runID string, h http.Header, payload []byte, first bool) error {
	r, rev, err := a.advance(ctx, runID, h, first, false, func(r *bus.Run) bool {
		changed := false
		for _, n := range a.roots {
			if s := r.Step(n); !s.Dispatched && !r.Done() {
				s.Dispatched, changed = true, true
			}
		}
		return changed
	})
	if err != nil || r.Done() {
		return err
	}
	return a.commandRoots(ctx, r, rev, h, payload)
}

// commandRoots publishes the commands of the steps without dependencies.
func (a *Async) commandRoots(ctx context.Context, r *bus.Run, rev uint64, h http.Header, payload []byte) error {
	ctx, span := a.tel.Tracing.Start(ctx, "run "+a.plan.Workflow, trace.SpanKindConsumer)
	defer span.End()
	for _, n := range a.roots {
		if err := a.command(ctx, r, rev, n, h.Get("Content-Type"), payload); err != nil {
			return err
		}
	}
	return nil
}

// succeeded takes a step's output (where its result message is, not a
// copy) into the run, dispatches what became ready and finishes the run
// when every sink is done. A redelivered result changes nothing but
// publishes the ready commands (and a merged result) again, deduplicated by
// the broker, so a crash between the record and the publish loses nothing.
func (a *Async) succeeded(ctx context.Context, runID, step string, h http.Header, first bool, m jetstream.Msg) error {
	ref, err := bus.RefOf(m)
	if err != nil {
		return err
	}
	var finished bool
	r, rev, err := a.advance(ctx, runID, h, first, a.keep[step], func(r *bus.Run) bool {
		finished = false
		s := r.Step(step)
		if r.Done() || s.Done {
			return false
		}
		s.Done, s.Output, s.ContentType = true, ref, h.Get("Content-Type")
		for _, d := range a.dependents[step] {
			if a.depsDone(r, d) {
				r.Step(d).Dispatched = true
			}
		}
		if a.sinksDone(r) && len(a.plan.Sinks) == 1 {
			sink := r.Steps[a.plan.Sinks[0]]
			r.Succeed(sink.Output, sink.ContentType)
			finished = true
		}
		return true
	})
	if err != nil {
		return updateErr(runID, err)
	}
	if r.Done() {
		return a.done(r, finished, ref, m.Data())
	}
	have := output{step: step, data: m.Data()}
	if a.sinksDone(r) {
		return a.finishMerged(ctx, r, rev, h, have)
	}
	for _, d := range a.dependents[step] {
		if !a.depsDone(r, d) || r.Step(d).Done {
			continue
		}
		ct, in, herr, err := a.input(ctx, r, d, have)
		if err != nil {
			return err
		}
		if herr != nil {
			return a.fail(ctx, runID, h, false, herr)
		}
		if err := a.command(ctx, r, rev, d, ct, in); err != nil {
			return err
		}
	}
	return nil
}

// output is a step's output in hand, so that it is not read back.
type output struct {
	step string
	data []byte
}

// payload is the output of step name: the one in hand, or read from the
// stream where the run record says it is.
func (a *Async) payload(ctx context.Context, r *bus.Run, name string, have output) ([]byte, *contract.Error, error) {
	if name == have.step {
		return have.data, nil, nil
	}
	b, _, err := a.conn.Payload(ctx, a.plan, r.Steps[name].Output)
	if errors.Is(err, bus.ErrPayloadGone) {
		return nil, &contract.Error{Code: http.StatusBadGateway, Step: name, Message: fmt.Sprintf("the output of step %s is no longer kept by the broker: %v", name, err)}, nil
	}
	return b, nil, err
}

// finishMerged finishes a run with several sinks: their outputs merged into
// {sink: output}, published on the output subject for the record to refer
// to; a result over the size budget fails the run with 413.
func (a *Async) finishMerged(ctx context.Context, r *bus.Run, rev uint64, in http.Header, have output) error {
	ct, out, herr, err := a.merge(ctx, r, a.plan.Sinks, "the run's result", have)
	if err != nil {
		return err
	}
	if herr != nil {
		return a.fail(ctx, r.ID, in, false, herr)
	}
	h := http.Header{"Content-Type": {ct}, contract.HeaderRunID: {r.ID}}
	bus.SetReplay(h, r)
	ack, err := a.conn.JS.PublishMsg(ctx, bus.NewMsg(a.plan.Stream.OutputSubject, h, out), jetstream.WithMsgID(bus.MsgID(r.ID, "out"+bus.ReplaySuffix(h))))
	if err != nil {
		return err
	}
	ref := &bus.Ref{Seq: ack.Sequence, Size: len(out)}
	var finished bool
	r, _, err = a.store(ctx, r.ID, in, r, rev, true, func(r *bus.Run) bool {
		finished = false
		if r.Done() {
			return false
		}
		r.Succeed(ref, ct)
		finished = true
		return true
	})
	if err != nil {
		return err
	}
	return a.done(r, finished, ref, out)
}

// failed fails the run with the error a step's sidecar dead-lettered: the
// result's body is the run's contract.Error.
func (a *Async) failed(ctx context.Context, runID string, h http.Header, first bool, body []byte) error {
	var e contract.Error
	if err := json.Unmarshal(body, &e); err != nil {
		e = contract.Error{Step: h.Get(contract.HeaderStep), Message: "step failed: " + string(body)}
	}
	if e.Code == 0 {
		e.Code = http.StatusBadGateway
	}
	return a.fail(ctx, runID, h, first, &e)
}

// fail fails the run of a message with headers h (on its first delivery
// when first) with e.
func (a *Async) fail(ctx context.Context, runID string, h http.Header, first bool, e *contract.Error) error {
	var finished bool
	r, _, err := a.advance(ctx, runID, h, first, true, func(r *bus.Run) bool {
		finished = false
		if r.Done() {
			return false
		}
		r.Fail(e)
		finished = true
		return true
	})
	if err != nil {
		return updateErr(runID, err)
	}
	return a.done(r, finished, nil, nil)
}

// errRecordNotVisible is a result, or a failure, of a run whose record this
// process cannot read. Every run's record is written before its start
// message, so the read came from a replica of the runs bucket that has not
// caught up (seen on the local cluster right after a NATS server restarted):
// the message is retried, bounded by the consumer's delivery limit, instead
// of being dropped and leaving the run pending for good.
func errRecordNotVisible(runID string, err error) error {
	return fmt.Errorf("the record of run %s is not visible yet: %w", runID, err)
}

// updateErr is the error of an update of run runID's record: one not found is
// not visible yet.
func updateErr(runID string, err error) error {
	if errors.Is(err, bus.ErrNoRun) {
		return errRecordNotVisible(runID, err)
	}
	return err
}

// done reports a finished run to its waiting gateway (again, on a redelivery).
// done reports a finished run: its metric and log when this call finished
// it, and its notification, with the result when it is in hand (at ref).
func (a *Async) done(r *bus.Run, finishedNow bool, ref *bus.Ref, result []byte) error {
	if finishedNow {
		a.run.Observe(r.Status == bus.RunSucceeded, r.Finished.Sub(r.Started))
		if r.Status == bus.RunFailed {
			a.tel.Log.Info("Run failed", "workflow", a.plan.Workflow, "run", r.ID, "step", r.Error.Step,
				"status", r.Error.Status, "attempts", r.Error.Attempts, "code", r.Error.Code, "err", r.Error.Message)
		}
	}
	return bus.Notify(a.conn.NC, r, ref, result)
}

func (a *Async) depsDone(r *bus.Run, step string) bool {
	for _, d := range a.plan.Step(step).DependsOn {
		if s := r.Steps[d]; s == nil || !s.Done {
			return false
		}
	}
	return true
}

func (a *Async) sinksDone(r *bus.Run) bool {
	for _, s := range a.plan.Sinks {
		if o := r.Steps[s]; o == nil || !o.Done {
			return false
		}
	}
	return true
}

// input is a step's input: its one dependency's output or {dep: output}.
func (a *Async) input(ctx context.Context, r *bus.Run, step string, have output) (string, []byte, *contract.Error, error) {
	deps := a.plan.Step(step).DependsOn
	if len(deps) == 1 {
		b, herr, err := a.payload(ctx, r, deps[0], have)
		return r.Steps[deps[0]].ContentType, b, herr, err
	}
	return a.merge(ctx, r, deps, "step "+step, have)
}

func (a *Async) merge(ctx context.Context, r *bus.Run, names []string, into string, have output) (string, []byte, *contract.Error, error) {
	parts := make([]contract.Part, len(names))
	for i, n := range names {
		b, herr, err := a.payload(ctx, r, n, have)
		if herr != nil || err != nil {
			return "", nil, herr, err
		}
		parts[i] = contract.Part{Name: n, Producer: n, Body: b}
	}
	buf := contract.GetBuffer()
	defer contract.PutBuffer(buf)
	if herr := contract.Merge(buf, into, parts); herr != nil {
		return "", nil, herr, nil
	}
	return "application/json", append([]byte(nil), buf.Bytes()...), nil, nil
}

// command publishes a step's command, once per run, step and replay, with
// the run's deadline, past which the step does not wait for a retry, and
// the run's record as it stands (stored at revision rev, 0 for none), which
// the step's result carries back.
func (a *Async) command(ctx context.Context, r *bus.Run, rev uint64, step, contentType string, body []byte) error {
	st := a.plan.Step(step)
	h := a.contracts[step].Header(ctx, r.ID, contentType)
	if d := r.DeadlineOf(a.plan.RunTimeout.Duration); !d.IsZero() {
		bus.SetDeadline(h, &d)
	}
	bus.SetReplay(h, r)
	record, err := json.Marshal(r)
	if err != nil {
		return err
	}
	bus.SetRecord(h, record, rev)
	id := bus.MsgID(r.ID, "cmd", step+bus.ReplaySuffix(h))
	return a.conn.Publish(ctx, bus.NewMsg(st.Consumers[0].FilterSubject, h, body), id)
}
