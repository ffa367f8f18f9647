package demostep

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
)

// barrier releases its parties together once all have arrived.
type barrier struct {
	parties int
	arrived int
	done    chan struct{}
}

// serveBarrier is /_demo/barrier?name=N&parties=P: it answers 200 when P calls
// with the same name are waiting, or 408 when the caller's wait runs out first.
func (s *Step) serveBarrier(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	parties, err := strconv.Atoi(r.URL.Query().Get("parties"))
	if err != nil || parties < 1 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "want ?name=...&parties=N"})
		return
	}
	s.barrierMu.Lock()
	b := s.barriers[name]
	if b == nil {
		b = &barrier{parties: parties, done: make(chan struct{})}
		s.barriers[name] = b
	}
	b.arrived++
	if b.arrived >= b.parties {
		close(b.done)
		delete(s.barriers, name) // the next round starts afresh
	}
	s.barrierMu.Unlock()
	select {
	case <-b.done:
		writeJSON(w, http.StatusOK, map[string]any{"parties": parties})
	case <-r.Context().Done():
		s.barrierMu.Lock()
		if s.barriers[name] == b {
			b.arrived--
		}
		s.barrierMu.Unlock()
		writeJSON(w, http.StatusRequestTimeout, map[string]any{"error": "the other parties did not arrive"})
	}
}

func (s *Step) joinBarrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BarrierTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.Barrier, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("the other parties did not arrive within %s", s.cfg.BarrierTimeout)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", s.cfg.Barrier, resp.StatusCode)
	}
	return nil
}
