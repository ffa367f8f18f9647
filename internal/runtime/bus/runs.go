package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	// ReplyTo is the core NATS subject of the gateway replica holding the
	// caller; empty when nobody waits.
	ReplyTo  string     `json:"replyTo,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// Steps are the outputs of the finished steps (orchestrated styles) and
	// the steps whose command was sent.
	Steps map[string]*StepOutput `json:"steps,omitempty"`
	// Result is the run's result when it succeeded.
	Result      []byte `json:"result,omitempty"`
	ContentType string `json:"contentType,omitempty"`
	// Error is why the run failed, naming the step; Code is its HTTP status.
	Error *contract.Error `json:"error,omitempty"`
	Code  int             `json:"code,omitempty"`
}

// StepOutput is one step of an orchestrated run.
type StepOutput struct {
	// Dispatched is true once its command was published.
	Dispatched  bool   `json:"dispatched,omitempty"`
	Done        bool   `json:"done,omitempty"`
	Output      []byte `json:"output,omitempty"`
	ContentType string `json:"contentType,omitempty"`
}

// Done reports a finished run.
func (r *Run) Done() bool { return r.Status == RunSucceeded || r.Status == RunFailed }

// Succeed finishes the run with its result.
func (r *Run) Succeed(result []byte, contentType string) {
	now := time.Now()
	r.Status, r.Finished, r.Result, r.ContentType = RunSucceeded, &now, result, contentType
}

// Fail finishes the run with an error.
func (r *Run) Fail(e *contract.Error) {
	now := time.Now()
	r.Status, r.Finished, r.Error = RunFailed, &now, e
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

	// last holds the record and revision this process last wrote per run, so
	// that its next update of the run (the orchestrator records every result of
	// a run it started) goes straight to the compare-and-set instead of reading
	// first: one broker round trip less per message on the run's critical path.
	// A stale entry only costs the failed compare-and-set and a fresh read.
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
	if err := CheckRunID("run id", r.ID); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.KV.Create(ctx, r.ID, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrRunExists
		}
		return err
	}
	return nil
}

// Get reads a run.
func (s *Runs) Get(ctx context.Context, id string) (*Run, uint64, error) {
	if err := CheckRunID("run id", id); err != nil {
		return nil, 0, err
	}
	e, err := s.KV.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) || errors.Is(err, jetstream.ErrInvalidKey) {
			return nil, 0, ErrNoRun
		}
		return nil, 0, err
	}
	var r Run
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("run %s: %w", id, err)
	}
	return &r, e.Revision(), nil
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
		if !cached {
			var err error
			if r, rev, err = s.Get(ctx, id); err != nil {
				return nil, err
			}
		}
		if !change(r) {
			if cached {
				cached = false
				continue
			}
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
func Notify(nc *nats.Conn, r *Run) error {
	if r.ReplyTo == "" {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: r.ReplyTo, Data: b, Header: nats.Header{contract.HeaderRunID: {r.ID}}}
	return nc.PublishMsg(m)
}
