package bus

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MsgID is the Nats-Msg-Id of a message a run produces: the same run, producer
// and trigger give the same ID, so a redelivered message that is processed
// again publishes nothing new within the stream's dedupe window.
func MsgID(runID string, parts ...string) string {
	return runID + ":" + strings.Join(parts, ":")
}

// HTTPHeader views a message's headers as an http.Header, for reading
// canonical keys and for extracting trace context.
func HTTPHeader(m jetstream.Msg) http.Header { return http.Header(m.Headers()) }

// NewMsg builds a message with the given headers (shared, not copied).
func NewMsg(subject string, h http.Header, data []byte) *nats.Msg {
	return &nats.Msg{Subject: subject, Header: nats.Header(h), Data: data}
}

// Publish publishes to the stream with a dedupe ID and waits for the ack.
func (c *Conn) Publish(ctx context.Context, m *nats.Msg, id string) error {
	_, err := c.JS.PublishMsg(ctx, m, jetstream.WithMsgID(id))
	return err
}

// PublishNew is Publish, and reports whether the stream stored the message:
// false when it already had a message with id (within DedupeWindow).
func (c *Conn) PublishNew(ctx context.Context, m *nats.Msg, id string) (bool, error) {
	ack, err := c.JS.PublishMsg(ctx, m, jetstream.WithMsgID(id))
	if err != nil {
		return false, err
	}
	return !ack.Duplicate, nil
}

// HeaderRecord is a run's record as it stands, carried by the messages that
// drive the run: "<revision> <JSON>", where the revision is the one it was
// stored at in the runs bucket, 0 when it never was. The gateway puts it on
// the start; the orchestrator on each command, with what the run has done so
// far; the step's sidecar copies it onto the result. The orchestrator so
// continues a run from the message in hand, and writes the record only when
// the run ends or a later message needs what it learned (a step that joins
// several): the stream is the run's journal, the record its outcome.
const HeaderRecord = "Patchbay-Run-Record"

// SetRecord writes a record and the revision it is stored at (0 for none)
// into h (HeaderRecord).
func SetRecord(h http.Header, value []byte, rev uint64) {
	h[HeaderRecord] = []string{strconv.FormatUint(rev, 10) + " " + string(value)}
}

// Record reads HeaderRecord: the record's value and revision; false when h
// has none, or an unreadable one.
func Record(h http.Header) ([]byte, uint64, bool) {
	rev, value, ok := strings.Cut(h.Get(HeaderRecord), " ")
	if !ok || value == "" {
		return nil, 0, false
	}
	n, err := strconv.ParseUint(rev, 10, 64)
	if err != nil {
		return nil, 0, false
	}
	return []byte(value), n, true
}

// HeaderDeadline is the run's deadline (RFC 3339) on the messages that start
// and drive it, so that a step does not wait past it for a retry.
const HeaderDeadline = "Patchbay-Deadline"

// SetDeadline writes a run's deadline into h (HeaderDeadline); nothing when
// the run has none.
func SetDeadline(h http.Header, deadline *time.Time) {
	if deadline != nil && !deadline.IsZero() {
		h[HeaderDeadline] = []string{deadline.UTC().Format(time.RFC3339Nano)}
	}
}

// Deadline reads HeaderDeadline; zero when absent or unreadable.
func Deadline(h http.Header) time.Time {
	t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderDeadline))
	if err != nil {
		return time.Time{}
	}
	return t
}
