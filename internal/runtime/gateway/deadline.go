package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// deadlineAckPending bounds the runs whose deadline the gateways watch at
// once: every pending run holds one message of the deadline consumer until
// its deadline. A run past the bound is watched once an earlier one ends.
const deadlineAckPending = 1 << 16

// deadlineAckWait is the ack wait of the deadline consumer. A deadline
// message spends its life handed back with a delay (NakWithDelay), which
// the ack wait does not bound; but when the broker restarts before it has
// stored that delay, or the gateway holding the message dies, the message
// comes back one ack wait after it was delivered, and the run could end that
// much past its deadline. The check takes a few broker calls, so a short
// wait costs at most a second check that changes nothing.
const deadlineAckWait = 2 * time.Second

// deadlineMargin is how long after a run's deadline the check runs, so that
// an outcome written right at the deadline wins over the 504.
const deadlineMargin = 100 * time.Millisecond

// waitingLookup bounds the reads that tell which steps an expiring run
// waits on (waiting).
const waitingLookup = 500 * time.Millisecond

// errDeferred is a message handled for now and handed back to the broker
// with a delay: neither acked nor a failure.
var errDeferred = errors.New("deferred")

// startDeadlines enforces the run deadline (plan.RunTimeout). The deadline
// lives in the broker, not in a process: a shared durable of the gateways
// reads every message that starts a run (and the deadline check that a
// replay publishes on DeadlineSubject); while the run is pending before its
// deadline, the message goes back to the broker with a delay that ends at the
// deadline (NakWithDelay), and whichever gateway replica gets it then fails
// a run that is still pending with 504, naming the steps it waits on, and
// dead-letters it with the message (the entry payload). A replica that dies
// holding the message loses nothing: the broker redelivers it after the ack
// wait to another replica.
func (g *Gateway) startDeadlines(ctx context.Context) error {
	cons, err := bus.EnsureConsumer(ctx, g.conn.JS, g.plan, deadlineConsumer(g.plan))
	if err != nil {
		return err
	}
	return g.consume(cons, "Checking a run's deadline failed; the message will be redelivered", g.checkDeadline)
}

// deadlineConsumer is the gateways' shared durable of the run deadlines.
func deadlineConsumer(p *plan.Plan) jetstream.ConsumerConfig {
	subjects := []string{p.Stream.StartSubject, bus.StartOf(p.Stream, "*")}
	if p.Stream.StartSubject == "" {
		subjects = []string{p.Entry.EventSubject}
	}
	return jetstream.ConsumerConfig{
		Durable:        p.Stream.DeadlineDurable,
		Description:    "patchbay gateways: the deadlines of runs (spec.runTimeout)",
		FilterSubjects: append(subjects, p.Stream.DeadlineSubject),
		MaxAckPending:  deadlineAckPending,
		AckWait:        deadlineAckWait,
		MaxDeliver:     bus.RoleConsumerMaxDeliver,
	}
}

// checkDeadline fails the run of a start message once it is past its
// deadline, or hands the message back until then.
func (g *Gateway) checkDeadline(m jetstream.Msg) error {
	h := bus.HTTPHeader(m)
	runID := h.Get(contract.HeaderRunID)
	if runID == "" || bus.CheckRunID("run id", runID) != nil {
		return nil // no run a gateway started
	}
	// A run this replica was told had ended by its deadline needs no check,
	// unless the message is a replay's: the run may have failed, then been
	// replayed after the notification.
	replay := h.Get(bus.HeaderReplay) != ""
	if !replay && g.finished.has(runID) {
		return nil
	}
	// A start (or a replay's check) carries its run's deadline: until then
	// there is nothing to check, and the run record need not be read. This
	// is every run's first delivery, so it saves a read of the record per
	// run; the record decides at the deadline, unless this replica is told
	// of the run's end before: that acknowledges the check (ackCheck), and
	// the broker does not deliver it again.
	if wait := time.Until(bus.Deadline(h)); wait > 0 {
		if err := m.NakWithDelay(wait + deadlineMargin); err != nil {
			return err
		}
		if !replay {
			g.checks.add(runID, m.Reply())
			if g.finished.has(runID) { // told meanwhile
				g.ackCheck(runID)
			}
		}
		return errDeferred
	}
	ctx, cancel := context.WithTimeout(context.Background(), completionAckWait)
	defer cancel()
	r, _, err := g.runs.Get(ctx, runID)
	stored := err == nil
	switch {
	case errors.Is(err, bus.ErrNoRun) && g.journaled && bus.IsStart(g.plan.Stream, m.Subject()):
		// A journaled run has no record until it ends: its start is the run.
		if r, _, stored = bus.Carried(h, runID); !stored {
			r = &bus.Run{ID: runID, Status: bus.RunPending, Started: time.Now().UTC()}
		}
		r.Status, stored = bus.RunPending, false
		if d := bus.Deadline(h); !d.IsZero() {
			r.Deadline = &d
		}
	case errors.Is(err, bus.ErrNoRun):
		// Its record is written before the message: not visible yet.
		return fmt.Errorf("the record of run %s is not visible yet: %w", runID, err)
	case err != nil:
		return err
	}
	if r.Done() && !r.Expired {
		return nil
	}
	if gen, _ := strconv.Atoi(h.Get(bus.HeaderReplay)); gen < r.Replays {
		return nil // the run was replayed: the replay's own check watches it
	}
	if !r.Done() {
		deadline := r.DeadlineOf(g.plan.RunTimeout.Duration)
		if deadline.IsZero() {
			return nil
		}
		if wait := time.Until(deadline); wait > 0 {
			if err := m.NakWithDelay(wait + deadlineMargin); err != nil {
				return err
			}
			return errDeferred
		}
	}
	waiting := g.waiting(ctx, r)
	var finished bool
	expire := func(r *bus.Run) bool {
		finished = false
		if r.Done() {
			return false
		}
		// Replayed meanwhile: a later deadline.
		if d := r.DeadlineOf(g.plan.RunTimeout.Duration); time.Now().Before(d) {
			return false
		}
		r.Fail(g.expired(r, waiting))
		r.Expired, finished = true, true
		return true
	}
	if !stored && expire(r) {
		// The run's first record: unless its outcome was written meanwhile.
		_, err = g.runs.Store(ctx, r, 0)
	}
	if stored || errors.Is(err, bus.ErrStale) {
		r, err = g.runs.Update(ctx, runID, expire)
	}
	if err != nil {
		return err
	}
	if !r.Done() {
		return fmt.Errorf("run %s got a later deadline: check it again", runID)
	}
	if !r.Expired {
		return nil // it finished just before its deadline
	}
	// Also when the record was failed by an earlier attempt that did not get
	// to dead-letter it: the message ID deduplicates.
	if err := g.deadLetterExpired(ctx, m, r); err != nil {
		return err
	}
	if finished {
		g.run.Observe(false, r.Finished.Sub(r.Started))
		g.tel.Log.Info("Run failed", "workflow", g.plan.Workflow, "run", r.ID, "step", r.Error.Step, "code", r.Code, "err", r.Error.Message)
	}
	return bus.Notify(g.conn.NC, r, nil, nil)
}

// ackCheck acknowledges the deadline check of run id that this replica
// handed back until the deadline, if it holds its ack subject: the run ended
// before its deadline, which is all the check would find. The broker keeps a
// message handed back with a delay among those awaiting an ack, so an ack
// still ends it.
func (g *Gateway) ackCheck(id string) {
	reply, ok := g.checks.take(id)
	if !ok {
		return
	}
	if err := g.conn.NC.Publish(reply, ackCheckBody); err != nil {
		g.tel.Log.Debug("Acknowledging a deadline check early failed; the broker delivers it at the deadline", "run", id, "err", err)
	}
}

// ackCheckBody is a JetStream acknowledgement.
var ackCheckBody = []byte("+ACK")

// waiting are the steps a pending orchestrated run waits on: those whose
// dependencies have answered and that have not. A run's record says which
// steps have answered only when a later step needs it, so their results in
// the stream, each on a subject of the run's own (bus.ResultOf), are asked;
// the record's own view is the fallback when the stream does not answer.
func (g *Gateway) waiting(ctx context.Context, r *bus.Run) []string {
	p := g.plan
	if p.Stream.StartSubject == "" || r.Done() {
		return r.Waiting()
	}
	// What the run waits on only shapes the 504's message: it must not hold the
	// check up when the broker is slow to answer, or gone.
	ctx, cancel := context.WithTimeout(ctx, waitingLookup)
	defer cancel()
	done := map[string]bool{}
	for _, level := range p.Levels {
		for _, name := range level {
			st := p.Step(name)
			if s := r.Steps[name]; s != nil && s.Done {
				done[name] = true
				continue
			}
			m, err := g.conn.LastMsg(ctx, p, bus.ResultOf(st.Output.ResultSubject, r.ID))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return r.Waiting()
			}
			h := http.Header(m.Header)
			gen, _ := strconv.Atoi(h.Get(bus.HeaderReplay))
			done[name] = h.Get(contract.HeaderStatus) == contract.ResultOK && gen >= r.Replays
		}
	}
	var out []string
	for _, level := range p.Levels {
		for _, name := range level {
			if done[name] {
				continue
			}
			ready := true
			for _, d := range p.Step(name).DependsOn {
				ready = ready && done[d]
			}
			if ready {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// expired is the error of a run past its deadline, naming what it waits on
// (waiting, the steps).
func (g *Gateway) expired(r *bus.Run, waiting []string) *contract.Error {
	p := g.plan
	herr := &contract.Error{Code: http.StatusGatewayTimeout, RunID: r.ID}
	what := "the orchestrator, which has not started it"
	if steps := waiting; len(steps) > 0 {
		herr.Step = steps[0]
		what = "step " + strings.Join(steps, ", ")
	} else if p.Stream.StartSubject == "" && len(p.Entry.CompletesOn) > 0 {
		what = "event " + strings.Join(p.Entry.CompletesOn, " or ")
	}
	herr.Message = fmt.Sprintf("run %s did not finish by its deadline (runTimeout %s): it waits on %s", r.ID, p.RunTimeout.Duration, what)
	return herr
}

// deadLetterExpired publishes the dead letter of an expired run: the message
// that started it (or that replayed it), with the 504.
func (g *Gateway) deadLetterExpired(ctx context.Context, m jetstream.Msg, r *bus.Run) error {
	step := r.Error.Step
	if step == "" {
		step = plan.GatewayRole
	}
	msg, _ := bus.NewDeadLetter(g.plan, m, bus.Failure{Step: step, Code: http.StatusGatewayTimeout, Message: r.Error.Message})
	id := bus.MsgID(r.ID, "deadline", strconv.Itoa(r.Replays), "dlq")
	if err := g.conn.Publish(ctx, msg, id); err != nil {
		return err
	}
	g.tel.Metrics.DeadLetter(plan.GatewayRole, 0)
	return nil
}
