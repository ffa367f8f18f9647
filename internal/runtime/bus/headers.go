package bus

import (
	"context"
	"net/http"
	"strings"

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
