package hop

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/patchbay-dev/patchbay/internal/resilience"
)

// Headers of the data plane besides the step contract's.
const (
	HeaderRunID = "Patchbay-Run-Id"
	// HeaderRejected marks an answer given without calling the app (a full
	// bulkhead), so that a caller knows a retry cannot run the step twice.
	HeaderRejected = "Patchbay-Rejected"
	// HeaderFrom names the step whose sidecar forwards a sync-chain hop.
	HeaderFrom = "Patchbay-From"
)

// StatusClientClosedRequest is the code of a run whose caller went away before
// the answer (nginx's 499): nobody reads the answer, so it is neither logged
// as a failure nor retried, and an async sidecar that gets it is stopping and
// hands the message back to the broker.
const StatusClientClosedRequest = 499

// Error is a failed run as the caller sees it: the HTTP status of the answer and
// a JSON body naming the step, the step's last status and the attempts made.
type Error struct {
	// Code is the HTTP status of the answer.
	Code    int    `json:"-"`
	Message string `json:"error"`
	// Step is the step that failed; empty when the request itself was refused.
	Step string `json:"step,omitempty"`
	// Status is the step's last HTTP status, 0 when it never answered.
	Status   int    `json:"status"`
	Attempts int    `json:"attempts"`
	RunID    string `json:"runId,omitempty"`
	// Detail is the start of the step's own error body, if it sent one.
	Detail string `json:"detail,omitempty"`
	// RetryAfter is sent as Retry-After when positive.
	RetryAfter time.Duration `json:"-"`
	// Rejected marks a bulkhead rejection (see HeaderRejected).
	Rejected bool `json:"-"`
}

func (e *Error) Error() string {
	if e.Step == "" {
		return e.Message
	}
	return fmt.Sprintf("step %s: %s (status %d, %d attempts)", e.Step, e.Message, e.Status, e.Attempts)
}

// Write answers w with the error.
func (e *Error) Write(w http.ResponseWriter) {
	b, _ := json.Marshal(e)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	if e.RetryAfter > 0 {
		h.Set("Retry-After", resilience.FormatRetryAfter(e.RetryAfter))
	}
	if e.Rejected {
		h.Set(HeaderRejected, "bulkhead")
	}
	if e.RunID != "" {
		h.Set(HeaderRunID, e.RunID)
	}
	w.WriteHeader(e.Code)
	_, _ = w.Write(append(b, '\n'))
}

// BadRequest is a request refused before any step ran.
func BadRequest(code int, msg string) *Error { return &Error{Code: code, Message: msg} }
