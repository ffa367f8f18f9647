package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// Bounds of GET /deadletters.
const (
	defaultDeadLetterPage = 100
	maxDeadLetterPage     = 1000
)

// serveDeadLetters lists dead letters, oldest first, without payloads:
// GET /deadletters?after=ID&limit=N.
func (g *Gateway) serveDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" {
		seq, err := bus.CheckDeadLetterID("query parameter after", v)
		if err != nil {
			contract.BadRequest(http.StatusBadRequest, err.Error()).Write(w)
			return
		}
		after = seq
	}
	limit := defaultDeadLetterPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeadLetterPage {
			contract.BadRequest(http.StatusBadRequest, fmt.Sprintf("query parameter limit must be a number from 1 to %d", maxDeadLetterPage)).Write(w)
			return
		}
		limit = n
	}
	list, err := g.dlq.List(r.Context(), after, limit)
	if err != nil {
		(&contract.Error{Code: http.StatusServiceUnavailable, Message: "the dead letters are unavailable: " + err.Error()}).Write(w)
		return
	}
	page := struct {
		DeadLetters []*bus.DeadLetter `json:"deadLetters"`
		// Next is the after of the next page, empty on the last one.
		Next string `json:"next,omitempty"`
	}{DeadLetters: list}
	if len(list) == limit {
		page.Next = list[len(list)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
}

// serveDeadLetter shows one dead letter with its payload.
func (g *Gateway) serveDeadLetter(w http.ResponseWriter, r *http.Request) {
	dl, err := g.dlq.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		writeDeadLetterError(w, r.PathValue("id"), err)
		return
	}
	writeJSON(w, http.StatusOK, dl)
}

// serveReplay replays a dead letter (bus.DeadLetters.Replay) and answers 202
// with the run to follow.
func (g *Gateway) serveReplay(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	dl, run, err := g.dlq.Replay(r.Context(), id)
	if err != nil {
		writeDeadLetterError(w, id, err)
		return
	}
	g.tel.Log.Info("Replayed a dead letter", "workflow", g.plan.Workflow, "deadLetter", id, "run", dl.RunID, "step", dl.Step, "subject", dl.Subject)
	out := map[string]any{"deadLetter": id, "subject": dl.Subject}
	if run != nil {
		out["runId"], out["replays"], out["location"] = run.ID, run.Replays, "/runs/"+run.ID
		w.Header().Set("Location", "/runs/"+run.ID)
		w.Header().Set(contract.HeaderRunID, run.ID)
	}
	writeJSON(w, http.StatusAccepted, out)
}

func writeDeadLetterError(w http.ResponseWriter, id string, err error) {
	var key *bus.KeyError
	var refused *bus.ReplayError
	switch {
	case errors.As(err, &key):
		contract.BadRequest(http.StatusBadRequest, err.Error()).Write(w)
	case errors.Is(err, bus.ErrNoDeadLetter):
		(&contract.Error{Code: http.StatusNotFound, Message: "no dead letter " + id + " (dead letters are kept for spec.deadLetters.retention)"}).Write(w)
	case errors.As(err, &refused):
		(&contract.Error{Code: refused.Code, Message: refused.Message}).Write(w)
	default:
		(&contract.Error{Code: http.StatusServiceUnavailable, Message: "the dead letters are unavailable: " + err.Error()}).Write(w)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
