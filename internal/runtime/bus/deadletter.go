package bus

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// Headers of a dead letter besides the original message's. A dead letter is
// the message that failed, as it was (its body and its headers: the run, the
// trace, the CloudEvents attributes), with these headers added: so any
// message the stream accepted can be dead-lettered, and replayed as it was
// (docs/operations.md, Dead letters).
const (
	// HeaderDLQSubject is the subject the message was consumed from.
	HeaderDLQSubject = "Patchbay-Dlq-Subject"
	// HeaderDLQEvent is the event type a step consumed it as.
	HeaderDLQEvent = "Patchbay-Dlq-Event"
	// HeaderDLQAttempts is how often it was delivered.
	HeaderDLQAttempts = "Patchbay-Dlq-Attempts"
	// HeaderDLQStatus is the app's last HTTP status, 0 when it never answered.
	HeaderDLQStatus = "Patchbay-Dlq-Status"
	// HeaderDLQError is why it was given up on; HeaderDLQDetail the start of
	// the step's own error body.
	HeaderDLQError  = "Patchbay-Dlq-Error"
	HeaderDLQDetail = "Patchbay-Dlq-Detail"
	// HeaderDLQTime is when it was dead-lettered (RFC 3339).
	HeaderDLQTime = "Patchbay-Dlq-Time"
	// HeaderDLQStep is the step (or role) that gave up on it, HeaderDLQCode
	// the HTTP status its run fails with.
	HeaderDLQStep = "Patchbay-Dlq-Step"
	HeaderDLQCode = "Patchbay-Dlq-Code"
	// HeaderReplay is the replay generation of a run (1 for the first
	// replay): it goes into the message IDs of what the run publishes, so
	// that a replay within the stream's dedupe window is not taken for a
	// duplicate of the first try.
	HeaderReplay = "Patchbay-Replay"
)

// DeadLetter is a message a step's sidecar, an orchestrator or a gateway gave
// up on, as GET /deadletters/{id} shows it.
type DeadLetter struct {
	// ID is its sequence in the workflow's dead-letter stream.
	ID       string `json:"id,omitempty"`
	Workflow string `json:"workflow"`
	// Step is the step that gave up: a step, "orchestrator" or "gateway".
	Step  string `json:"step"`
	RunID string `json:"runId,omitempty"`
	// Subject and Event say what the step was consuming.
	Subject string `json:"subject"`
	Event   string `json:"event,omitempty"`
	// Attempts is how often the message was delivered.
	Attempts int `json:"attempts"`
	// Status is the app's last HTTP status, 0 when it never answered; Code
	// the status the run failed with.
	Status int    `json:"status"`
	Code   int    `json:"code,omitempty"`
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
	// Payload is the message that failed when it is JSON; PayloadBase64
	// otherwise. Size is its length in bytes.
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 []byte          `json:"payloadBase64,omitempty"`
	Size          int             `json:"size"`
	ContentType   string          `json:"contentType,omitempty"`
	Time          time.Time       `json:"time"`

	// body and header are the message as it was consumed.
	body   []byte
	header nats.Header
}

// Body is the message that failed, as it was.
func (d *DeadLetter) Body() []byte { return d.body }

// Summary is the dead letter without its payload, for listings.
func (d *DeadLetter) Summary() *DeadLetter {
	s := *d
	s.Payload, s.PayloadBase64 = nil, nil
	return &s
}

// Failure says why a message is dead-lettered.
type Failure struct {
	Step     string
	Event    string
	Attempts int
	Status   int
	// Code is the HTTP status its run fails with.
	Code    int
	Message string
	Detail  string
}

// NewDeadLetter is the dead letter of m: its body and headers as they were,
// with the failure added. It goes to the workflow's dead-letter subject with
// a message ID made of the run, the step and the message's stream sequence,
// so that repeated attempts to publish it store it once.
func NewDeadLetter(p *plan.Plan, m jetstream.Msg, f Failure) (msg *nats.Msg, id string) {
	seq := "0"
	if md, err := m.Metadata(); err == nil {
		seq = strconv.FormatUint(md.Sequence.Stream, 10)
	}
	h := nats.Header{}
	for k, v := range m.Headers() {
		if !replayed(k) {
			continue
		}
		h[k] = v
	}
	runID := h.Get(contract.HeaderRunID)
	id = MsgID(runID, f.Step, "dlq", seq)
	subject := m.Subject()
	if subject == p.Stream.DeadlineSubject && m.Headers().Get(HeaderDLQSubject) != "" {
		// The deadline check of a replay names the replayed message's subject.
		subject = m.Headers().Get(HeaderDLQSubject)
	}
	h.Set(HeaderDLQSubject, subject)
	if f.Event != "" {
		h.Set(HeaderDLQEvent, f.Event)
	}
	h.Set(HeaderDLQStep, f.Step)
	h.Set(HeaderDLQCode, strconv.Itoa(f.Code))
	h.Set(HeaderDLQAttempts, strconv.Itoa(f.Attempts))
	h.Set(HeaderDLQStatus, strconv.Itoa(f.Status))
	h.Set(HeaderDLQError, headerValue(f.Message))
	if f.Detail != "" {
		h.Set(HeaderDLQDetail, headerValue(f.Detail))
	}
	h.Set(HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	return &nats.Msg{Subject: p.Stream.DeadLetter, Header: h, Data: m.Data()}, id
}

// replayed reports whether a header of a message goes into its dead letter
// and back out in a replay: all but the broker's own and the dead letter's.
func replayed(key string) bool {
	return !strings.HasPrefix(key, "Nats-") && !strings.HasPrefix(key, "Patchbay-Dlq-")
}

// headerValue makes s one line, as a header value must be.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// ParseDeadLetter reads a dead letter; id is its sequence in the dead-letter
// stream, empty when read elsewhere.
func ParseDeadLetter(workflow, id string, h nats.Header, body []byte) *DeadLetter {
	atoi := func(k string) int { n, _ := strconv.Atoi(h.Get(k)); return n }
	d := &DeadLetter{
		ID: id, Workflow: workflow, Step: h.Get(HeaderDLQStep), RunID: h.Get(contract.HeaderRunID),
		Subject: h.Get(HeaderDLQSubject), Event: h.Get(HeaderDLQEvent),
		Attempts: atoi(HeaderDLQAttempts), Status: atoi(HeaderDLQStatus), Code: atoi(HeaderDLQCode),
		Error: h.Get(HeaderDLQError), Detail: h.Get(HeaderDLQDetail),
		Size: len(body), ContentType: h.Get("Content-Type"), body: body, header: h,
	}
	if d.Code == 0 {
		d.Code = http.StatusBadGateway
	}
	d.Time, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderDLQTime))
	if json.Valid(body) {
		d.Payload = body
	} else if len(body) > 0 {
		d.PayloadBase64 = body
	}
	return d
}

// RunError is the error a dead letter fails its run with.
func (d *DeadLetter) RunError() *contract.Error {
	return &contract.Error{Code: d.Code, Step: d.Step, Status: d.Status, Attempts: d.Attempts, Message: d.Error, Detail: d.Detail, RunID: d.RunID}
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

// GiveUp is the dead letter of a message that role (gateway, orchestrator)
// could not handle in attempts deliveries, with the reason.
func GiveUp(p *plan.Plan, role string, m jetstream.Msg, attempts int, reason string) (msg *nats.Msg, id string) {
	return NewDeadLetter(p, m, Failure{Step: role, Attempts: attempts, Code: http.StatusBadGateway, Message: reason})
}
