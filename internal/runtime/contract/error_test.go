package contract

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// The run's error carries its HTTP status in its JSON, so that a failure
// result on the bus and a run record answer with the status the step's failure
// was classified as, not a default.
func TestErrorKeepsItsCodeThroughJSON(t *testing.T) {
	g := NewWithT(t)
	in := &Error{Code: http.StatusConflict, Message: "step charge answered 409 Conflict", Step: "charge", Status: 409, Attempts: 1, RunID: "r1"}
	b, err := json.Marshal(in)
	g.Expect(err).NotTo(HaveOccurred())
	var out Error
	g.Expect(json.Unmarshal(b, &out)).To(Succeed())
	g.Expect(out).To(Equal(*in))
}

func TestErrorWriteAnswersWithItsCodeAndHeaders(t *testing.T) {
	g := NewWithT(t)
	rec := httptest.NewRecorder()
	(&Error{Code: http.StatusServiceUnavailable, Message: "full", RunID: "r1", Rejected: true, RetryAfter: 2 * time.Second}).Write(rec)
	g.Expect(rec.Code).To(Equal(http.StatusServiceUnavailable))
	g.Expect(rec.Header().Get(HeaderRunID)).To(Equal("r1"))
	g.Expect(rec.Header().Get(HeaderRejected)).NotTo(BeEmpty())
	g.Expect(rec.Header().Get("Retry-After")).To(Equal("2"))
	g.Expect(rec.Body.String()).To(MatchJSON(`{"code":503,"error":"full","status":0,"attempts":0,"runId":"r1"}`))
}
