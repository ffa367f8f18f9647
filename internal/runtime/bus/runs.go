package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// Run statuses.
const (
	RunPending   = "pending"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
)

// Run is a run's record in the runs bucket, keyed by run ID. The gateway
// creates it (pending, with the reply subject of the replica that holds the
// caller); the orchestrator adds step outputs as they arrive; whoever finishes
// the run writes the outcome and sends the record to ReplyTo.
type Run struct {
	ID      string    `json:"id"`
	Status  string    `json:"status"`
	Started time.Time `json:"started"`
	// ReplyTo is the core NATS subject of the gateway replica that started
	// the run (or holds its caller now), told of the outcome: it answers the
	// held caller and any GET /runs/{id} with Prefer: wait that it serves.
	// Empty for a run no gateway started.
	ReplyTo  string     `json:"replyTo,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// Steps are the outputs of the finished steps (orchestrated styles) and
	// the steps whose command was sent.
	Steps map[string]*StepOutput `json:"steps,omitempty"`
	// Result is where the run's result is when it succeeded: the message of
	// the workflow's stream that holds it (a sink's result, the merged
	// result of several, or the completing event), not a copy, so that a
	// record stays small whatever the payloads.
	Result      *Ref   `json:"result,omitempty"`
	ContentType string `json:"contentType,omitempty"`
	// Error is why the run failed, naming the step; Code is its HTTP status.
	Error *contract.Error `json:"error,omitempty"`
	Code  int             `json:"code,omitempty"`
	// Deadline is when the run fails with 504 if it has not finished
	// (plan.RunTimeout after Started, or after its last replay).
	Deadline *time.Time `json:"deadline,omitempty"`
	// Expired marks a run failed by its deadline.
	Expired bool `json:"expired,omitempty"`
	// Replays counts the replays of the run's dead letters (HeaderReplay).
	Replays int `json:"replays,omitempty"`
	// History is what happened to the run before its replays: each failure
	// and the dead letter that was replayed, oldest first.
	History []RunEvent `json:"history,omitempty"`
	// Inline is the result itself, in a notification only (Notify); never
	// stored.
	Inline []byte `json:"inline,omitempty"`
}

// RunEvent is one replay of a run, with how the run stood before it.
type RunEvent struct {
	Time time.Time `json:"time"`
	// DeadLetter is the id of the replayed dead letter, Step its step.
	DeadLetter string `json:"deadLetter"`
	Step       string `json:"step,omitempty"`
	// Status is the run's status before the replay, Error and Code its
	// failure if it had failed.
	Status string          `json:"status"`
	Error  *contract.Error `json:"error,omitempty"`
	Code   int             `json:"code,omitempty"`
}

// DeadlineOf is the run's deadline: its own, else timeout after it started;
// zero when neither is known.
func (r *Run) DeadlineOf(timeout time.Duration) time.Time {
	if r.Deadline != nil {
		return *r.Deadline
	}
	if timeout <= 0 {
		return time.Time{}
	}
	return r.Started.Add(timeout)
}

// Waiting are the steps whose command was sent and that have not finished,
// sorted: what a pending run waits on.
func (r *Run) Waiting() []string {
	var out []string
	for name, s := range r.Steps {
		if s.Dispatched && !s.Done {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// StepOutput is one step of an orchestrated run.
type StepOutput struct {
	// Dispatched is true once its command was published.
	Dispatched bool `json:"dispatched,omitempty"`
	Done       bool `json:"done,omitempty"`
	// Output is the step's result message in the workflow's stream.
	Output      *Ref   `json:"output,omitempty"`
	ContentType string `json:"contentType,omitempty"`
}

// Ref is a message of the workflow's stream: its sequence, and the size of
// its payload.
type Ref struct {
	Seq  uint64 `json:"seq"`
	Size int    `json:"size"`
}

// Done reports a finished run.
func (r *Run) Done() bool { return r.Status == RunSucceeded || r.Status == RunFailed }

// Succeed finishes the run with its result, the message at result.
func (r *Run) Succeed(result *Ref, contentType string) {
	now := time.Now()
	r.Status, r.Finished, r.Result, r.ContentType = RunSucceeded, &now, result, contentType
}

// Fail finishes the run with an error.
func (r *Run) Fail(e *contract.Error) {
	now := time.Now()
	r.Status, r.Finished, r.Error, r.Code = RunFailed, &now, e, e.Code
	r.Error.RunID = r.ID
}

// Step returns the state of a step, creating it.
func (r *Run) Step(name string) *StepOutput {
	if r.Steps == nil {
		r.Steps = map[string]*StepOutput{}
	}
	s := r.Steps[name]
	if s == nil {
		s = &StepOutput{}
		r.Steps[name] = s
	}
	return s
}

// ErrRunExists is returned when a run ID is already taken.
var ErrRunExists = errors.New("run exists")

// ErrNoRun is returned for an unknown run ID.
var ErrNoRun = errors.New("no such run")

// Runs is the run store: JetStream KV, so every replica of every role sees
// every run, and updates are compare-and-set on the key's revision.
type Runs struct {
	KV jetstream.KeyValue

	// last holds the record and revision this process last wrote (or read
	// in an update that changed nothing) per run, so that its next update of
	// the run (the orchestrator records every result of a run it started)
	// goes straight to the compare-and-set instead of reading first: one
	// broker round trip less per message on the run's critical path. A stale
	// entry only costs the failed compare-and-set and a fresh read.
	mu   sync.Mutex
	last map[string]written
}

type written struct {
	value []byte
	rev   uint64
}

// maxWritten bounds the records kept for the next update.
const maxWritten = 4096

// Create stores a new run. Like Get and Update, it refuses a run id that is
// not a valid one (CheckRunID) with a *KeyError before reaching the broker.
func (s *Runs) Create(ctx context.Context, r *Run) error {
	_, _, err := s.Created(ctx, r)
	return err
}

// Created is Create, returning the record as stored and its revision.
func (s *Runs) Created(ctx context.Context, r *Run) ([]byte, uint64, error) {
	if err := CheckRunID("run id", r.ID); err != nil {
		return nil, 0, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, 0, err
	}
	rev, err := s.KV.Create(ctx, r.ID, b)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, 0, ErrRunExists
		}
		return nil, 0, err
	}
	// The creator may be the one to finish the run (a gateway completing a
	// choreographed run): its update goes straight to the compare-and-set.
	s.remember(r.ID, r, b, rev)
	return b, rev, nil
}

// ErrStale is returned by Store when the record is not at the revision
// the caller started from: another process wrote it meanwhile.
var ErrStale = errors.New("the run's record changed meanwhile")

// Store writes r with compare-and-set: as a new record when rev is 0 (the
// run was never stored), else over the one at revision rev. It returns the
// new revision, or ErrStale when the stored record is not the one the
// caller started from; the caller then reads it and applies its change
// again.
func (s *Runs) Store(ctx context.Context, r *Run, rev uint64) (uint64, error) {
	if err := CheckRunID("run id", r.ID); err != nil {
		return 0, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	var next uint64
	if rev == 0 {
		next, err = s.KV.Create(ctx, r.ID, b)
	} else {
		next, err = s.KV.Update(ctx, r.ID, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("run %s: %w", r.ID, ErrStale)
	}
	if err != nil {
		return 0, err
	}
	s.forget(r.ID)
	return next, nil
}

// Carried is the record a message of run id carries (HeaderRecord) and the
// revision it was stored at; false when it carries none, or that of
// another run.
func Carried(h http.Header, id string) (*Run, uint64, bool) {
	value, rev, ok := Record(h)
	if !ok {
		return nil, 0, false
	}
	var r Run
	if err := json.Unmarshal(value, &r); err != nil || r.ID != id {
		return nil, 0, false
	}
	return &r, rev, true
}

// Merge adds to r what carried, a record a message of the run carries,
// knows and r does not: the steps it has seen finish. A step's result is
// recorded in the runs bucket only when a later message needs it, so the
// stored record can lag behind the carried one; a carried record of an
// earlier replay of the run is not merged (a replay starts from the stored
// record, which held everything when the run failed).
func (r *Run) Merge(carried *Run) {
	if carried == nil || carried.Replays != r.Replays || r.Done() {
		return
	}
	for name, c := range carried.Steps {
		if s := r.Step(name); c.Done && !s.Done {
			*s = *c
		} else if c.Dispatched {
			s.Dispatched = true
		}
	}
}

// Get reads a run.
func (s *Runs) Get(ctx context.Context, id string) (*Run, uint64, error) {
	r, _, rev, err := s.get(ctx, id)
	return r, rev, err
}

// get reads a run, with the record as stored.
func (s *Runs) get(ctx context.Context, id string) (*Run, []byte, uint64, error) {
	if err := CheckRunID("run id", id); err != nil {
		return nil, nil, 0, err
	}
	e, err := s.KV.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) || errors.Is(err, jetstream.ErrInvalidKey) {
			return nil, nil, 0, ErrNoRun
		}
		return nil, nil, 0, err
	}
	var r Run
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, nil, 0, fmt.Errorf("run %s: %w", id, err)
	}
	return &r, e.Value(), e.Revision(), nil
}

// Update applies change to the run and stores it if change reports a change,
// retrying from a fresh read when another replica updated the run meanwhile.
// It returns the run as stored (or as read when nothing changed). The first
// attempt may start from the record this process last wrote; a decision not
// to change anything is only taken on a fresh read.
func (s *Runs) Update(ctx context.Context, id string, change func(*Run) bool) (*Run, error) {
	if err := CheckRunID("run id", id); err != nil {
		return nil, err
	}
	r, rev, cached := s.written(id)
	for {
		var read []byte
		if !cached {
			var err error
			if r, read, rev, err = s.get(ctx, id); err != nil {
				return nil, err
			}
		}
		if !change(r) {
			if cached {
				cached = false
				continue
			}
			// Kept like a write: the next update of the run starts from it.
			s.remember(id, r, read, rev)
			return r, nil
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		next, err := s.KV.Update(ctx, id, b, rev)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
				s.forget(id)
				cached = false
				continue
			}
			return nil, err
		}
		s.remember(id, r, b, next)
		return r, nil
	}
}

// written returns the record this process last wrote for id, if it has one.
func (s *Runs) written(id string) (*Run, uint64, bool) {
	s.mu.Lock()
	w, ok := s.last[id]
	s.mu.Unlock()
	if !ok {
		return nil, 0, false
	}
	var r Run
	if err := json.Unmarshal(w.value, &r); err != nil {
		return nil, 0, false
	}
	return &r, w.rev, true
}

// remember keeps a written record for the run's next update; a finished run
// is not updated again, so it is dropped instead.
func (s *Runs) remember(id string, r *Run, value []byte, rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Done() {
		delete(s.last, id)
		return
	}
	if s.last == nil {
		s.last = map[string]written{}
	}
	if len(s.last) >= maxWritten {
		for k := range s.last { // evict one at random
			delete(s.last, k)
			break
		}
	}
	s.last[id] = written{value: value, rev: rev}
}

func (s *Runs) forget(id string) {
	s.mu.Lock()
	delete(s.last, id)
	s.mu.Unlock()
}

// Notify sends a finished run to the gateway replica holding its caller.
// Core NATS: if nobody listens any more, the record in the bucket still answers
// GET /runs/{id}.
//
// result is the run's result when the caller has it in hand: the data of
// the message r.Result refers to, with ref where it read it (nil when it
// has none). Up to maxInlineResult it travels with the notification, so
// that the gateway answers without reading it back from the stream (one
// broker round trip less on a sync caller's path); the record never holds it.
func Notify(nc *nats.Conn, r *Run, ref *Ref, result []byte) error {
	if r.ReplyTo == "" {
		return nil
	}
	n := *r
	if r.Status == RunSucceeded && ref != nil && r.Result != nil && r.Result.Seq == ref.Seq && len(result) <= maxInlineResult {
		n.Inline = result
	}
	b, err := json.Marshal(&n)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: r.ReplyTo, Data: b, Header: nats.Header{contract.HeaderRunID: {r.ID}}}
	return nc.PublishMsg(m)
}

// maxInlineResult bounds a result sent with its run's notification.
const maxInlineResult = 64 << 10

// ErrPayloadGone is returned for a payload the stream no longer keeps.
var ErrPayloadGone = errors.New("the payload is no longer kept")

// payloadCatchUp bounds how long Payload waits for the stream's leader to
// store a message that a consumer has delivered already.
const payloadCatchUp = 5 * time.Second

// Payload reads the message at ref from the workflow's stream: its data
// and content type. Reads go to the stream's leader, which has every
// acknowledged message, but not necessarily every delivered one: a
// consumer whose leader is another replica delivers a message once that
// replica has stored it, which may be before the stream's leader has (it
// stores what the replicas agreed on in its own time, and on a busy node
// that can be a while). A ref beyond the leader's last message is therefore
// waited for, up to payloadCatchUp, and one the leader reports within its
// range after the read failed is read again; one that is missing then, or
// before the range, is gone.
func (c *Conn) Payload(ctx context.Context, p *plan.Plan, ref *Ref) ([]byte, string, error) {
	if ref == nil {
		return nil, "", ErrPayloadGone
	}
	s, err := c.stream(ctx, p)
	if err != nil {
		return nil, "", err
	}
	var (
		deadline = time.Now().Add(payloadCatchUp)
		inRange  bool
	)
	for {
		m, err := s.GetMsg(ctx, ref.Seq)
		if err == nil {
			return m.Data, m.Header.Get("Content-Type"), nil
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, "", err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("message %d of stream %s is not found, and the stream's state is unavailable: %w", ref.Seq, p.Stream.Name, err)
		}
		st := info.State
		switch {
		case ref.Seq <= st.LastSeq && !inRange:
			// The leader has it now (the state is newer than the read): read
			// again once. Missing then, it was deleted.
			inRange = true
			continue
		case ref.Seq <= st.LastSeq, time.Now().After(deadline):
			return nil, "", fmt.Errorf("message %d of stream %s, which holds messages %d to %d since %s: %w",
				ref.Seq, p.Stream.Name, st.FirstSeq, st.LastSeq, info.Created.UTC().Format(time.RFC3339), ErrPayloadGone)
		}
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// RefOf is where a consumed message is in its stream.
func RefOf(m jetstream.Msg) (*Ref, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	return &Ref{Seq: md.Sequence.Stream, Size: len(m.Data())}, nil
}
