package contract

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// EventType is the CloudEvents type of a step invocation.
const EventType = "dev.patchbay.step.invoked"

// The binary-mode headers of CloudEvents attributes, named as the SDK names
// them: "ce-" and the attribute, canonicalized.
var (
	ceIDHeader     = ceHeader(spec.ID)
	CETypeHeader   = ceHeader(spec.Type)
	CESourceHeader = ceHeader(spec.Source)
)

func ceHeader(k spec.Kind) string {
	return textproto.CanonicalMIMEHeaderKey("ce-" + spec.V1.AttributeFromKind(k).Name())
}

// Invocation is one call of a step within a run.
type Invocation struct {
	RunID       string
	ContentType string
	Body        []byte
	// Event, when set, is the event that triggered the call: the step sees
	// its id, type and source rather than those of an invocation.
	Event *EventAttrs
}

// EventAttrs are the CloudEvents attributes of an event a step receives.
type EventAttrs struct {
	ID, Type, Source string
}

// EventAttrsOf reads the attributes of an event from its binary-mode headers;
// nil when it has no type.
func EventAttrsOf(h http.Header) *EventAttrs {
	typ := h.Get(CETypeHeader)
	if typ == "" {
		return nil
	}
	return &EventAttrs{ID: h.Get(ceIDHeader), Type: typ, Source: h.Get(CESourceHeader)}
}

// SetHeaders writes the attributes into h as binary-mode headers, so that the
// step sees the event rather than an invocation; a nil e writes nothing.
func (e *EventAttrs) SetHeaders(h http.Header) {
	if e == nil {
		return
	}
	h[CETypeHeader] = []string{e.Type}
	if e.ID != "" {
		h[ceIDHeader] = []string{e.ID}
	}
	if e.Source != "" {
		h[CESourceHeader] = []string{e.Source}
	}
}

// SourceOf is the CloudEvents source of calls made by caller in a workflow.
func SourceOf(namespace, workflow, caller string) string {
	return "/patchbay/" + namespace + "/" + workflow + "/" + caller
}

// Contract builds the step contract's request headers (docs/step-contract.md) for the
// calls of one caller to one step: CloudEvents binary mode, patchbay-run-id
// and traceparent. The SDK encodes the attributes that do not change from call
// to call once; a call adds its id, content type, run ID and trace context.
type Contract struct {
	step   string
	static http.Header
	inject func(context.Context, http.Header)
}

// NewContract encodes the constant attributes of calls from source to step.
func NewContract(source, step string, inject func(context.Context, http.Header)) (*Contract, error) {
	return NewTypedContract(source, step, EventType, inject)
}

// NewTypedContract is NewContract for messages of another CloudEvents type,
// such as the events a step emits on the bus: subject is the producing or
// receiving step.
func NewTypedContract(source, step, typ string, inject func(context.Context, http.Header)) (*Contract, error) {
	ev := event.New()
	ev.SetID("-")
	ev.SetType(typ)
	ev.SetSource(source)
	ev.SetSubject(step)
	req := http.Request{Header: make(http.Header, 8)}
	if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&ev), &req); err != nil {
		return nil, fmt.Errorf("encode CloudEvents attributes of calls to step %s: %w", step, err)
	}
	delete(req.Header, ceIDHeader)
	return &Contract{step: step, static: req.Header, inject: inject}, nil
}

// Header is the complete header of one call. Nothing may write to it: the
// constant values are shared by every call.
func (c *Contract) Header(ctx context.Context, runID, contentType string) http.Header {
	h := make(http.Header, len(c.static)+4)
	for k, v := range c.static {
		h[k] = v
	}
	h[ceIDHeader] = []string{runID + "." + c.step}
	if contentType == "" {
		contentType = "application/json"
	}
	h["Content-Type"] = []string{contentType}
	h[HeaderRunID] = []string{runID}
	c.inject(ctx, h)
	return h
}
