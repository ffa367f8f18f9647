package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

const (
	completionAckWait = 30 * time.Second
	completionPending = 1024
)

// startCompletion consumes, in choreography, the events that complete a run
// and the dead letters that fail one. The consumer is shared by the gateway
// replicas: whichever gets the message writes the outcome, and the record's
// ReplyTo brings it to the replica holding the caller.
func (g *Gateway) startCompletion(ctx context.Context) error {
	cons, err := g.sharedConsumer(ctx, jetstream.ConsumerConfig{
		Durable:        g.plan.Stream.CompletionDurable,
		Description:    "patchbay gateways: events that complete choreographed runs, and dead letters",
		FilterSubjects: []string{g.plan.Stream.DeadLetter},
		MaxAckPending:  completionPending,
		AckWait:        completionAckWait,
	}, func(ev plan.EventRoute) bool { return ev.Completes })
	if err != nil {
		return err
	}
	return g.consume(cons, "Completing a run failed; the message will be redelivered", g.complete)
}

// sharedConsumer ensures a durable consumer that the gateway replicas share:
// cfg over its FilterSubjects and the subjects of the plan's events that
// match, with the roles' delivery limit (consume gives a message up one
// delivery earlier).
func (g *Gateway) sharedConsumer(ctx context.Context, cfg jetstream.ConsumerConfig, events func(plan.EventRoute) bool) (jetstream.Consumer, error) {
	for _, ev := range g.plan.Events {
		if events(ev) {
			cfg.FilterSubjects = append(cfg.FilterSubjects, ev.Subject)
		}
	}
	cfg.MaxDeliver = bus.RoleConsumerMaxDeliver
	return bus.EnsureConsumer(ctx, g.conn.JS, g.plan, cfg)
}

// consume feeds a consumer's messages to handle, acking what it handled and
// redelivering the rest after a short delay; SIGTERM drains through g.inflight.
func (g *Gateway) consume(cons jetstream.Consumer, failed string, handle func(jetstream.Msg) error) error {
	cc, err := g.conn.Consume(cons, func(m jetstream.Msg) {
		g.inflight.Add(1)
		defer g.inflight.Done()
		attempt := 1
		if md, err := m.Metadata(); err == nil {
			attempt = int(md.NumDelivered)
		}
		if attempt > bus.RoleMaxDeliver {
			g.giveUp(m, attempt-1, "the gateway did not finish its last attempt on this message (it stopped, or the attempt outlived the ack wait)")
			return
		}
		if err := handle(m); err != nil {
			if errors.Is(err, errDeferred) {
				return
			}
			if attempt >= bus.RoleMaxDeliver {
				g.giveUp(m, attempt, fmt.Sprintf("the gateway failed on this message %d times: %v", attempt, err))
				return
			}
			g.tel.Log.Warn(failed, "subject", m.Subject(), "attempt", attempt, "err", err)
			_ = m.NakWithDelay(redeliveryDelay(attempt))
			return
		}
		_ = m.Ack()
	}, &g.stopping, g.tel.Log)
	if err != nil {
		return err
	}
	g.consumers = append(g.consumers, cc)
	return nil
}

// redeliveryDelay is bus.RedeliveryDelay; tests shorten it.
var redeliveryDelay = bus.RedeliveryDelay

// giveUp dead-letters a poison message and terminates it: it is not
// delivered again. A dead letter of a choreographed run fails that run when
// the completion consumer reads it. A dead letter the gateway itself cannot
// handle is only logged: dead-lettering it again would feed it back to the
// same consumer.
func (g *Gateway) giveUp(m jetstream.Msg, attempts int, reason string) {
	runID := bus.HTTPHeader(m).Get(contract.HeaderRunID)
	if m.Subject() != g.plan.Stream.DeadLetter {
		ctx, cancel := context.WithTimeout(context.Background(), completionAckWait)
		defer cancel()
		msg, id := bus.GiveUp(g.plan, "gateway", m, attempts, reason)
		if err := g.conn.Publish(ctx, msg, id); err != nil {
			g.tel.Log.Warn("Dead-lettering failed; the message will be redelivered", "subject", m.Subject(), "err", err)
			_ = m.NakWithDelay(redeliveryDelay(attempts))
			return
		}
		g.tel.Metrics.DeadLetter("gateway", 0)
		g.tel.Log.Warn("Dead-lettered a message the gateway could not handle", "subject", m.Subject(), "run", runID, "attempts", attempts, "err", reason)
	} else {
		g.tel.Log.Error("Giving up on a dead letter the gateway could not handle", "run", runID, "attempts", attempts, "err", reason)
	}
	if err := m.TermWithReason("dead-lettered"); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		g.tel.Log.Debug("Terminating a message failed", "err", err)
	}
}

// complete finishes a run on its first completion event or dead letter.
func (g *Gateway) complete(m jetstream.Msg) error {
	h := bus.HTTPHeader(m)
	runID := h.Get(contract.HeaderRunID)
	if runID == "" {
		return nil
	}
	if err := bus.CheckRunID("run id", runID); err != nil {
		// Not a run a gateway started, and retrying would not change it.
		g.tel.Log.Warn("Dropping a message with an invalid run id", "subject", m.Subject(), "err", err)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), completionAckWait)
	defer cancel()
	var herr *contract.Error
	var ref *bus.Ref
	if m.Subject() == g.plan.Stream.DeadLetter {
		herr = bus.ParseDeadLetter(g.plan.Workflow, "", m.Headers(), m.Data()).RunError()
	} else {
		var err error
		if ref, err = bus.RefOf(m); err != nil {
			return err
		}
	}
	var finished bool
	r, err := g.runs.Update(ctx, runID, func(r *bus.Run) bool {
		finished = false
		if r.Done() {
			return false
		}
		if herr != nil {
			r.Fail(herr)
		} else {
			r.Succeed(ref, h.Get("Content-Type"))
		}
		finished = true
		return true
	})
	if errors.Is(err, bus.ErrNoRun) {
		return nil // not a run a gateway started
	}
	if err != nil {
		return err
	}
	if finished {
		g.run.Observe(r.Status == bus.RunSucceeded, r.Finished.Sub(r.Started))
	}
	return bus.Notify(g.conn.NC, r, ref, m.Data())
}
