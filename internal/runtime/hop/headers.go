package hop

import (
	"context"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// EventType is the CloudEvents type of a step invocation.
const EventType = "dev.patchbay.step.invoked"

// Invocation is one call of a step within a run.
type Invocation struct {
	RunID string
	// Source is the CloudEvents source: /patchbay/<namespace>/<workflow>/<caller>.
	Source      string
	Step        string
	ContentType string
	Body        []byte
}

// SourceOf is the CloudEvents source of calls made by caller in a workflow.
func SourceOf(namespace, workflow, caller string) string {
	return "/patchbay/" + namespace + "/" + workflow + "/" + caller
}

// StepHeaders builds the step contract's request headers (DESIGN §3):
// CloudEvents binary mode, patchbay-run-id, and traceparent from ctx.
func StepHeaders(ctx context.Context, inv *Invocation, inject func(context.Context, http.Header)) (http.Header, error) {
	ev := event.New()
	ev.SetID(inv.RunID + "." + inv.Step)
	ev.SetType(EventType)
	ev.SetSource(inv.Source)
	ev.SetSubject(inv.Step)
	ct := inv.ContentType
	if ct == "" {
		ct = "application/json"
	}
	ev.SetDataContentType(ct)
	req := http.Request{Header: make(http.Header, 10)}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(&ev), &req); err != nil {
		return nil, err
	}
	req.Header[HeaderRunID] = []string{inv.RunID}
	inject(ctx, req.Header)
	return req.Header, nil
}
