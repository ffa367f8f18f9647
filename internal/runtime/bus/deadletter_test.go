package bus

import (
	"net/http"
	"testing"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// A dead letter carries its run's error in its headers, beside the message
// as it was; one without a code fails its run with 502.
func TestDeadLetterCarriesTheRunsError(t *testing.T) {
	g := NewWithT(t)
	h := nats.Header{
		contract.HeaderRunID: {"r1"}, "Content-Type": {"text/plain"}, HeaderDLQStep: {"charge"},
		HeaderDLQAttempts: {"1"}, HeaderDLQStatus: {"409"}, HeaderDLQCode: {"409"}, HeaderDLQError: {"step charge answered 409 Conflict"},
		HeaderDLQSubject: {"pb.ns.wf.cmd.charge"},
	}
	dl := ParseDeadLetter("wf", "7", h, []byte("not json"))
	e := dl.RunError()
	g.Expect(e.Code).To(Equal(http.StatusConflict))
	g.Expect(e.Step).To(Equal("charge"))
	g.Expect(e.Status).To(Equal(409))
	g.Expect(e.RunID).To(Equal("r1"))
	g.Expect(e.Message).To(Equal("step charge answered 409 Conflict"))
	g.Expect(dl.Payload).To(BeNil())
	g.Expect(dl.PayloadBase64).To(Equal([]byte("not json")), "a payload that is not JSON shows as base64")
	g.Expect(dl.Subject).To(Equal("pb.ns.wf.cmd.charge"))

	old := ParseDeadLetter("wf", "8", nats.Header{HeaderDLQStep: {"charge"}, HeaderDLQStatus: {"500"}, HeaderDLQError: {"boom"}}, []byte(`{}`))
	g.Expect(old.RunError().Code).To(Equal(http.StatusBadGateway))
	g.Expect(old.Payload).To(MatchJSON(`{}`))
}
