package bus

import "time"

// DeadLetter is the envelope a step's sidecar publishes on the workflow's
// dead-letter subject when it gives up on a message (docs/operations.md, Dead letters).
type DeadLetter struct {
	Workflow string `json:"workflow"`
	Step     string `json:"step"`
	RunID    string `json:"runId,omitempty"`
	// Subject and Event say what the step was consuming.
	Subject string `json:"subject"`
	Event   string `json:"event,omitempty"`
	// Attempts is how often the message was delivered.
	Attempts int `json:"attempts"`
	// Status is the app's last HTTP status, 0 when it never answered.
	Status int    `json:"status"`
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
	// Payload is the message that failed.
	Payload     []byte    `json:"payload,omitempty"`
	ContentType string    `json:"contentType,omitempty"`
	Time        time.Time `json:"time"`
}
