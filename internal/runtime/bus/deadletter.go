package bus

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

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
	Status int `json:"status"`
	// Code is the HTTP status of the run's error (docs/step-contract.md).
	Code   int    `json:"code"`
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
	// Payload is the message that failed.
	Payload     []byte    `json:"payload,omitempty"`
	ContentType string    `json:"contentType,omitempty"`
	Time        time.Time `json:"time"`
}

// RoleMaxDeliver is how often the gateway's and the orchestrators' consumers
// (run starts and step results, completions, the read model) try a message:
// a message that still fails then is a poison message. With RedeliveryDelay
// the attempts span about two minutes, long enough for a broker or bucket
// hiccup to pass. The consumers deliver once more than this (see
// RoleConsumerMaxDeliver), so that a message whose last attempt was cut short
// is dead-lettered rather than dropped.
const RoleMaxDeliver = 10

// RoleConsumerMaxDeliver is the MaxDeliver of the roles' consumers.
const RoleConsumerMaxDeliver = RoleMaxDeliver + 1

// RedeliveryDelay is how long a message a role failed to handle for the
// attempt-th time waits: 500ms, doubling up to 30s.
func RedeliveryDelay(attempt int) time.Duration {
	d := 500 * time.Millisecond
	for i := 1; i < attempt && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// RunError is the run's error a dead letter stands for.
func (d *DeadLetter) RunError() *contract.Error {
	code := d.Code
	if code == 0 {
		code = http.StatusBadGateway
	}
	return &contract.Error{Code: code, Step: d.Step, Status: d.Status, Attempts: d.Attempts, RunID: d.RunID, Message: d.Error, Detail: d.Detail}
}

// GiveUp is the dead letter of a message that role (gateway, orchestrator)
// could not handle in attempts deliveries, with the reason; the envelope is
// the one the step sidecars publish, with role as its step. The message ID
// deduplicates repeated attempts to publish it.
func GiveUp(p *plan.Plan, role string, m jetstream.Msg, attempts int, reason string) (msg *nats.Msg, id string) {
	h := HTTPHeader(m)
	runID := h.Get(contract.HeaderRunID)
	env := DeadLetter{
		Workflow: p.Workflow, Step: role, RunID: runID, Subject: m.Subject(),
		Attempts: attempts, Code: http.StatusBadGateway, Error: reason, Payload: m.Data(), ContentType: h.Get("Content-Type"), Time: time.Now().UTC(),
	}
	b, _ := json.Marshal(env)
	seq := "0"
	if md, err := m.Metadata(); err == nil {
		seq = strconv.FormatUint(md.Sequence.Stream, 10)
	}
	id = MsgID(runID, role, "dlq", seq)
	dh := http.Header{"Content-Type": {"application/json"}, contract.HeaderStep: {role}, "Ce-Id": {id}}
	if runID != "" {
		dh[contract.HeaderRunID] = []string{runID}
	}
	return NewMsg(p.Stream.DeadLetter, dh, b), id
}
