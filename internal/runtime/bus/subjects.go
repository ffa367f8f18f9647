package bus

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// A run's start and its steps' results each have a subject of their own,
// the run id as its last token: <StartSubject>.<run> and
// <ResultSubject>.<run>. The stream then answers, without a run record,
// whether a run was started (its start is the last message of its start
// subject; publishing one with an expected last sequence of 0 refuses a
// second run with the same id) and which of its steps have answered. The
// consumers' filters (<StartSubject>.*, <ResultPrefix>.>) take them in;
// the bare subjects are still read, for a start or result published by an
// earlier version.

// StartOf is the subject of run runID's start.
func StartOf(s *plan.Stream, runID string) string { return s.StartSubject + "." + runID }

// IsStart reports whether subject is a run's start: StartSubject itself or
// one run's (StartOf).
func IsStart(s *plan.Stream, subject string) bool {
	if s == nil || s.StartSubject == "" {
		return false
	}
	rest, ok := strings.CutPrefix(subject, s.StartSubject)
	return ok && (rest == "" || rest[0] == '.' && !strings.Contains(rest[1:], "."))
}

// ResultOf is the subject of run runID's result of the step whose result
// subject is resultSubject (plan.Output.ResultSubject).
func ResultOf(resultSubject, runID string) string { return resultSubject + "." + runID }

// ResultStep is the step whose result subject is subject, under the
// stream's ResultPrefix: <ResultPrefix>.<step>[.<run>]; false for another
// subject.
func ResultStep(s *plan.Stream, subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, s.ResultPrefix+".")
	if !ok || rest == "" {
		return "", false
	}
	step, _, _ := strings.Cut(rest, ".")
	return step, step != ""
}

// PublishStart publishes run runID's start m on its own subject (StartOf)
// with dedupe id id, only if that subject holds no message yet: the
// stream's own check, which refuses a second run with a taken id for as
// long as the stream keeps the first one's start (the runs' 24h). It
// returns ErrRunExists when the subject had a start already, this one
// included (a start published again within DedupeWindow).
func (c *Conn) PublishStart(ctx context.Context, m *nats.Msg, id string) error {
	ack, err := c.JS.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return ErrRunExists
	}
	if err != nil {
		return err
	}
	if ack.Duplicate {
		return ErrRunExists
	}
	return nil
}

// LastMsg is the last message of the workflow's stream on subject;
// jetstream.ErrMsgNotFound when it has none.
func (c *Conn) LastMsg(ctx context.Context, p *plan.Plan, subject string) (*jetstream.RawStreamMsg, error) {
	s, err := c.stream(ctx, p)
	if err != nil {
		return nil, err
	}
	return s.GetLastMsgForSubject(ctx, subject)
}

// Started is run runID's start, from the stream (StartOf): the record it
// carries, pending; ErrNoRun when the stream has no start of the run.
func (c *Conn) Started(ctx context.Context, p *plan.Plan, runID string) (*Run, error) {
	if err := CheckRunID("run id", runID); err != nil {
		return nil, err
	}
	m, err := c.LastMsg(ctx, p, StartOf(p.Stream, runID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrNoRun
	}
	if err != nil {
		return nil, err
	}
	r, _, ok := Carried(http.Header(m.Header), runID)
	if !ok {
		r = &Run{ID: runID, Started: m.Time.UTC()}
		if d := Deadline(http.Header(m.Header)); !d.IsZero() {
			r.Deadline = &d
		}
	}
	r.Status = RunPending
	return r, nil
}
