package bus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// MaxDeadLetterIDLen bounds a dead-letter id: a stream sequence (uint64).
const MaxDeadLetterIDLen = 20

// CheckDeadLetterID checks a dead-letter id before it reaches the broker:
// the decimal sequence of a dead letter in its stream. field names it.
func CheckDeadLetterID(field, id string) (uint64, error) {
	rule := fmt.Sprintf("must be a dead letter's id, a positive decimal number of at most %d digits", MaxDeadLetterIDLen)
	if len(id) > MaxDeadLetterIDLen {
		return 0, &KeyError{Field: field, Rule: rule, Problem: fmt.Sprintf("it has %d bytes", len(id))}
	}
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 10) != id {
		return 0, &KeyError{Field: field, Rule: rule, Problem: "it is not one"}
	}
	return seq, nil
}

// ErrNoDeadLetter is returned for an unknown (or expired) dead letter.
var ErrNoDeadLetter = errors.New("no such dead letter")

// ReplayError is a replay that is refused: Code is the HTTP status.
type ReplayError struct {
	Code    int
	Message string
}

func (e *ReplayError) Error() string { return e.Message }

// DeadLetters lists, reads and replays the dead letters of a workflow, from
// its dead-letter stream.
type DeadLetters struct {
	Plan *plan.Plan
	Conn *Conn
	Runs *Runs
}

func (d *DeadLetters) stream(ctx context.Context) (jetstream.Stream, error) {
	return d.Conn.JS.Stream(ctx, d.Plan.Stream.DeadLetterStream)
}

// List returns up to limit dead letters after the one with id after (0 for
// the oldest), oldest first, without their payloads.
func (d *DeadLetters) List(ctx context.Context, after uint64, limit int) ([]*DeadLetter, error) {
	s, err := d.stream(ctx)
	if err != nil {
		return nil, err
	}
	out := []*DeadLetter{}
	for seq := after + 1; len(out) < limit; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(d.Plan.Stream.DeadLetter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d.parse(m).Summary())
		seq = m.Sequence + 1
	}
	return out, nil
}

// Get reads one dead letter.
func (d *DeadLetters) Get(ctx context.Context, id string) (*DeadLetter, error) {
	seq, err := CheckDeadLetterID("dead letter id", id)
	if err != nil {
		return nil, err
	}
	s, err := d.stream(ctx)
	if err != nil {
		return nil, err
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrNoDeadLetter
	}
	if err != nil {
		return nil, err
	}
	return d.parse(m), nil
}

func (d *DeadLetters) parse(m *jetstream.RawStreamMsg) *DeadLetter {
	return ParseDeadLetter(d.Plan.Workflow, strconv.FormatUint(m.Sequence, 10), m.Header, m.Data)
}

// Replay publishes a dead letter again on the subject it was consumed from,
// with its own headers (the run id, the trace, the CloudEvents attributes),
// so that its step runs it once more:
//
//   - a failed run becomes pending again, with a new deadline; its history
//     keeps the failure and the dead letter replayed; the step of the dead
//     letter is waited on again (a run start starts the run over);
//   - a run that succeeded is replayed only for a step outside its result
//     (an event-driven step), and stays as it is;
//   - a pending run is not replayed (409): it is still running, or replayed;
//   - a dead letter is replayed once (409 after that);
//   - a dead letter whose run record has expired starts the run anew.
//
// The replay generation (Run.Replays, header Patchbay-Replay) keeps the
// messages of the replay apart from those of the first try within the
// stream's dedupe window.
func (d *DeadLetters) Replay(ctx context.Context, id string) (*DeadLetter, *Run, error) {
	dl, err := d.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	p := d.Plan
	if dl.Subject == "" || dl.Subject == p.Stream.DeadLetter {
		return dl, nil, &ReplayError{Code: http.StatusConflict, Message: fmt.Sprintf("dead letter %s names no subject to replay it on", id)}
	}
	if CheckRunID("run id", dl.RunID) != nil {
		// An event from outside patchbay: no run to track.
		return dl, nil, d.publish(ctx, dl, nil)
	}
	now := time.Now().UTC()
	var deadline *time.Time
	if t := p.RunTimeout.Duration; t > 0 {
		dt := now.Add(t)
		deadline = &dt
	}
	event := RunEvent{Time: now, DeadLetter: id, Step: dl.Step}
	var refused *ReplayError
	r, err := d.Runs.Update(ctx, dl.RunID, func(r *Run) bool {
		refused = nil
		for _, e := range r.History {
			if e.DeadLetter == id {
				refused = &ReplayError{Code: http.StatusConflict, Message: fmt.Sprintf("dead letter %s of run %s was replayed already (%s); a replay that fails again is a new dead letter", id, r.ID, e.Time.Format(time.RFC3339))}
				return false
			}
		}
		switch r.Status {
		case RunPending:
			refused = &ReplayError{Code: http.StatusConflict, Message: fmt.Sprintf("run %s is pending (still running, or replayed already): replay its dead letters once it has finished", r.ID)}
			return false
		case RunSucceeded:
			if st := p.Step(dl.Step); st == nil || st.Mode != plan.ModeEvent {
				refused = &ReplayError{Code: http.StatusConflict, Message: fmt.Sprintf("run %s succeeded; its step %s has nothing left to run", r.ID, dl.Step)}
				return false
			}
			e := event
			e.Status = r.Status
			r.History = append(r.History, e)
			r.Replays++
			return true
		}
		e := event
		e.Status, e.Error = r.Status, r.Error
		if r.Error != nil {
			e.Code = r.Error.Code
		}
		r.History = append(r.History, e)
		r.Replays++
		r.Status, r.Finished, r.Error, r.Code, r.Result, r.ContentType, r.Expired = RunPending, nil, nil, 0, nil, "", false
		r.ReplyTo, r.Deadline = "", deadline
		switch {
		case IsStart(p.Stream, dl.Subject):
			r.Steps = nil // started over
		case r.Steps[dl.Step] != nil:
			s := r.Steps[dl.Step]
			s.Done, s.Output, s.ContentType, s.Dispatched = false, nil, "", true
		}
		return true
	})
	if errors.Is(err, ErrNoRun) {
		r = &Run{ID: dl.RunID, Status: RunPending, Started: now, Deadline: deadline, Replays: 1, History: []RunEvent{event}}
		if err = d.Runs.Create(ctx, r); errors.Is(err, ErrRunExists) {
			return dl, nil, &ReplayError{Code: http.StatusConflict, Message: fmt.Sprintf("run %s was created meanwhile: try again", dl.RunID)}
		}
	}
	if err != nil {
		return dl, nil, err
	}
	if refused != nil {
		return dl, r, refused
	}
	return dl, r, d.publish(ctx, dl, r)
}

// publish sends the dead letter's message again, and for a pending run the
// check of its new deadline.
func (d *DeadLetters) publish(ctx context.Context, dl *DeadLetter, r *Run) error {
	h := nats.Header{}
	for k, v := range dl.header {
		if replayed(k) {
			h[k] = v
		}
	}
	gen := 0
	if r != nil {
		gen = r.Replays
		h.Set(HeaderReplay, strconv.Itoa(gen))
		h.Del(HeaderDeadline)
		SetDeadline(http.Header(h), r.Deadline)
	}
	id := MsgID(dl.RunID, "replay", dl.ID, strconv.Itoa(gen))
	if err := d.Conn.Publish(ctx, &nats.Msg{Subject: dl.Subject, Header: h, Data: dl.body}, id); err != nil {
		return err
	}
	s := d.Plan.Stream
	if r == nil || r.Done() || s.DeadlineSubject == "" || IsStart(s, dl.Subject) || (s.StartSubject == "" && dl.Subject == d.Plan.Entry.EventSubject) {
		return nil // the deadline consumer reads the replayed message itself
	}
	check := nats.Header{}
	for k, v := range h {
		check[k] = v
	}
	check.Set(HeaderDLQSubject, dl.Subject)
	return d.Conn.Publish(ctx, &nats.Msg{Subject: s.DeadlineSubject, Header: check, Data: dl.body}, id+":deadline")
}

// ReplaySuffix is what the replay generation of a message (HeaderReplay)
// adds to the message IDs it causes; empty for a first try.
func ReplaySuffix(h http.Header) string {
	if g := h.Get(HeaderReplay); g != "" && g != "0" {
		return ".r" + g
	}
	return ""
}

// SetReplay carries the run's replay generation on h.
func SetReplay(h http.Header, r *Run) {
	if r != nil && r.Replays > 0 {
		h[HeaderReplay] = []string{strconv.Itoa(r.Replays)}
	}
}
