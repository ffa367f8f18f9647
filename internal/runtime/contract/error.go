package contract

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
)

// Error is a failed run as the caller sees it: the HTTP status of the answer and
// a JSON body naming the step, the step's last status and the attempts made.
type Error struct {
	// Code is the HTTP status the run answers with. It is part of the JSON, so
	// the error carries it wherever it goes: a failure result on the bus, a run
	// record in the runs bucket.
	Code    int    `json:"code"`
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
