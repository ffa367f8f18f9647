package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// MaxIdempotencyKeyLen bounds an Idempotency-Key, like a run id.
const MaxIdempotencyKeyLen = MaxRunIDLen

// CheckIdempotencyKey checks an Idempotency-Key before it reaches the broker.
func CheckIdempotencyKey(field, key string) error {
	return CheckKey(field, key, MaxIdempotencyKeyLen)
}

// Claim is what an Idempotency-Key stands for: the run it started and the
// SHA-256 of that request's body, so that the key is not reused for
// another request.
type Claim struct {
	RunID string `json:"runId"`
	Body  string `json:"bodySha256"`
}

// Idempotency maps Idempotency-Keys to runs, for Entry.IdempotencyWindow
// (the bucket's TTL). Its Create is the lock among concurrent requests with
// one key, on every gateway replica.
type Idempotency struct {
	KV jetstream.KeyValue
}

// IdempotencyConfig is the bucket of Idempotency-Keys.
func IdempotencyConfig(p *plan.Plan, st Storage) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: p.Stream.IdempotencyBucket, Description: "patchbay idempotency keys of " + p.Namespace + "/" + p.Workflow,
		TTL: p.Entry.IdempotencyWindow.Duration, Storage: st.Type, Replicas: st.replicas(), MaxValueSize: 1024,
	}
}

// WaitIdempotency opens the bucket once the manager created it, read
// through its leader (a key claimed on one replica is seen at once by the
// others).
func WaitIdempotency(ctx context.Context, js jetstream.JetStream, p *plan.Plan) (*Idempotency, error) {
	kv, err := waitLeaderBucket(ctx, js, p.Stream.IdempotencyBucket)
	if err != nil {
		return nil, err
	}
	return &Idempotency{KV: kv}, nil
}

// Get returns the claim of key, nil when nobody holds it.
func (i *Idempotency) Get(ctx context.Context, key string) (*Claim, error) {
	if err := CheckIdempotencyKey("Idempotency-Key header", key); err != nil {
		return nil, err
	}
	e, err := i.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c Claim
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, fmt.Errorf("idempotency key %s: %w", key, err)
	}
	return &c, nil
}

// Claim takes key for c; when another request holds it already, it returns
// that request's claim instead.
func (i *Idempotency) Claim(ctx context.Context, key string, c Claim) (*Claim, error) {
	if err := CheckIdempotencyKey("Idempotency-Key header", key); err != nil {
		return nil, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	for {
		_, err := i.KV.Create(ctx, key, b)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		held, err := i.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if held != nil {
			return held, nil
		}
		// Expired between the two: try again.
	}
}

// Release gives up key when it still stands for runID (a run that could not
// be started), so that a retry with the key starts a new run.
func (i *Idempotency) Release(ctx context.Context, key, runID string) error {
	if err := CheckIdempotencyKey("Idempotency-Key header", key); err != nil {
		return err
	}
	e, err := i.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return err
	}
	var c Claim
	if err := json.Unmarshal(e.Value(), &c); err != nil || c.RunID != runID {
		return nil //nolint:nilerr // a claim that is not readably this run's is not its to give back
	}
	return i.KV.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
}

// Await returns the run once it has finished, or the last record seen (or
// ErrNoRun) when ctx ends first. It watches the run's key, so it sees the
// outcome whichever replica writes it.
func (s *Runs) Await(ctx context.Context, id string) (*Run, error) {
	if err := CheckRunID("run id", id); err != nil {
		return nil, err
	}
	w, err := s.KV.Watch(ctx, id)
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	var last *Run
	for {
		select {
		case <-ctx.Done():
			if last == nil {
				return nil, ErrNoRun
			}
			return last, nil
		case e, ok := <-w.Updates():
			if !ok {
				if last == nil {
					return nil, ErrNoRun
				}
				return last, nil
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // the end of the initial values, or a delete
			}
			var r Run
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				return nil, fmt.Errorf("run %s: %w", id, err)
			}
			if r.Done() {
				return &r, nil
			}
			last = &r
		}
	}
}

// Delete removes a run record that was never started (no message of it
// was published).
func (s *Runs) Delete(ctx context.Context, id string) error {
	if err := CheckRunID("run id", id); err != nil {
		return err
	}
	s.forget(id)
	return s.KV.Delete(ctx, id)
}
