package hop

import (
	"bytes"
	"time"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// Response is a fully read answer of a step or of a sidecar.
type Response struct {
	Status      int
	ContentType string
	RetryAfter  time.Duration
	// Rejected is true when the answer came from a full bulkhead (contract.HeaderRejected).
	Rejected bool
	// EventType is the answer's Ce-Type header: which of its declared events
	// a step emits (docs/step-contract.md, Events).
	EventType string
	// Body is pooled; call Release when done with it.
	Body *bytes.Buffer
}

// StatusCode implements resilience.Outcome.
func (r *Response) StatusCode() int { return r.Status }

// RetryAfterDelay implements resilience.Outcome.
func (r *Response) RetryAfterDelay() time.Duration { return r.RetryAfter }

// OK reports a 2xx answer.
func (r *Response) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Release returns the body to the pool.
func (r *Response) Release() {
	if r != nil && r.Body != nil {
		contract.PutBuffer(r.Body)
		r.Body = nil
	}
}
