package bus

import (
	"encoding/json"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
)

// A dead letter carries the run's error with its HTTP status in the envelope,
// so that the gateway that fails a choreographed run with it answers that
// status; an envelope without one (an older sidecar's) stands for a 502.
func TestDeadLetterCarriesTheRunsError(t *testing.T) {
	g := NewWithT(t)
	b, err := json.Marshal(DeadLetter{Workflow: "wf", Step: "charge", RunID: "r1", Attempts: 1, Status: 409, Code: http.StatusConflict, Error: "step charge answered 409 Conflict"})
	g.Expect(err).NotTo(HaveOccurred())
	var dl DeadLetter
	g.Expect(json.Unmarshal(b, &dl)).To(Succeed())
	e := dl.RunError()
	g.Expect(e.Code).To(Equal(http.StatusConflict))
	g.Expect(e.Step).To(Equal("charge"))
	g.Expect(e.Status).To(Equal(409))
	g.Expect(e.RunID).To(Equal("r1"))
	g.Expect(e.Message).To(Equal("step charge answered 409 Conflict"))

	var old DeadLetter
	g.Expect(json.Unmarshal([]byte(`{"step":"charge","status":500,"error":"boom"}`), &old)).To(Succeed())
	g.Expect(old.RunError().Code).To(Equal(http.StatusBadGateway))
}
