package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestNotHereWritesValidJSON checks that a message with quotes, backslashes
// and newlines still makes a JSON body that holds it exactly.
func TestNotHereWritesValidJSON(t *testing.T) {
	const msg = "runs of workflow \"a\\b\"\nstart at its gateway"
	rec := httptest.NewRecorder()
	notHere(msg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", http.NoBody))
	if rec.Code != http.StatusNotFound {
		t.Errorf("status %d, want 404", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var body struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if body.Error != msg {
		t.Errorf("error %q, want %q", body.Error, msg)
	}
}
