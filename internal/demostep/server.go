package demostep

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Step serves a demo step. Calls go to any path but /_demo/, which holds the
// endpoints tests use to observe and steer it.
type Step struct {
	cfg *Config
	mux *http.ServeMux

	calls, failures, inFlight, maxInFlight, barrierMet atomic.Int64

	gateMu sync.Mutex
	gate   chan struct{} // closed when released

	barrierMu sync.Mutex
	barriers  map[string]*barrier

	last   atomic.Pointer[map[string]string]
	timing atomic.Pointer[Timing]

	// deliveries counts the calls per Ce-Id: how often the step saw each
	// message, redeliveries included.
	deliveriesMu sync.Mutex
	deliveries   map[string]int64
}

// Timing is when a call arrived and when its answer was written, as the
// step itself saw it: tests compare the steps' own times to tell what ran
// concurrently, rather than timing a run from outside.
type Timing struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Stats is what GET /_demo/stats reports.
type Stats struct {
	Name        string `json:"name"`
	Calls       int64  `json:"calls"`
	Failures    int64  `json:"failures"`
	InFlight    int64  `json:"inFlight"`
	MaxInFlight int64  `json:"maxInFlight"`
	// BarrierMet counts calls that met every other party at --barrier.
	BarrierMet int64 `json:"barrierMet"`
	// LastHeaders are the step-contract headers of the last call.
	LastHeaders map[string]string `json:"lastHeaders,omitempty"`
	// Last is when the last call that was answered arrived and was answered.
	Last *Timing `json:"last,omitempty"`
}

var lastHeaderNames = []string{"Ce-Id", "Ce-Type", "Ce-Source", "Ce-Specversion", "Ce-Subject", "Content-Type", "Patchbay-Run-Id", "Traceparent"}

// ReadTimeout bounds how long a request, headers and body, may take to
// arrive, so that a caller trickling its body cannot hold a handler for ever.
// A minute lets the largest body a step takes (--max-body, 4 MiB by default)
// arrive at well under 1 Mbit/s; it bounds only the reading (net/http clears
// the deadline once the body is read), not how long --hold or --delay keep the
// answer back.
const ReadTimeout = time.Minute

// NewServer is the HTTP server of a demo step on addr, with read timeouts.
func NewServer(addr string, cfg *Config) *http.Server {
	return &http.Server{Addr: addr, Handler: New(cfg), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: ReadTimeout}
}

// New makes a demo step.
func New(cfg *Config) *Step {
	s := &Step{cfg: cfg, gate: make(chan struct{}), barriers: map[string]*barrier{}, deliveries: map[string]int64{}}
	if !cfg.Hold {
		close(s.gate)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /_demo/stats", s.serveStats)
	s.mux.HandleFunc("GET /_demo/deliveries", s.serveDeliveries)
	s.mux.HandleFunc("POST /_demo/release", s.serveRelease)
	s.mux.HandleFunc("POST /_demo/reset", s.serveReset)
	s.mux.HandleFunc("/_demo/barrier", s.serveBarrier)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("/", s.serveCall)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Step) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Stats returns the step's counters.
func (s *Step) Stats() Stats {
	st := Stats{
		Name: s.cfg.Name, Calls: s.calls.Load(), Failures: s.failures.Load(),
		InFlight: s.inFlight.Load(), MaxInFlight: s.maxInFlight.Load(), BarrierMet: s.barrierMet.Load(),
	}
	if h := s.last.Load(); h != nil {
		st.LastHeaders = *h
	}
	st.Last = s.timing.Load()
	return st
}

func (s *Step) serveCall(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	n := s.calls.Add(1)
	cur := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFlight.Load()
		if cur <= m || s.maxInFlight.CompareAndSwap(m, cur) {
			break
		}
	}
	s.recordHeaders(r.Header)
	if id := r.Header.Get("Ce-Id"); id != "" {
		s.deliveriesMu.Lock()
		s.deliveries[id]++
		s.deliveriesMu.Unlock()
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"error": "request body over the limit"})
			return
		}
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "read body: " + err.Error()})
		return
	}
	ctx := r.Context()
	s.gateMu.Lock()
	gate := s.gate
	s.gateMu.Unlock()
	select {
	case <-gate:
	case <-ctx.Done():
		return
	}
	if s.cfg.Barrier != "" {
		if err := s.joinBarrier(ctx); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "barrier: " + err.Error()})
			return
		}
		s.barrierMet.Add(1)
	}
	if s.cfg.Latency > 0 {
		t := time.NewTimer(s.cfg.Latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	if int(n) <= s.cfg.FailFirst || (s.cfg.FailureRate > 0 && rand.Float64() < s.cfg.FailureRate) {
		s.failures.Add(1)
		if s.cfg.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter/time.Second)))
		}
		writeJSON(w, s.cfg.FailStatus, map[string]any{"error": "injected failure", "step": s.cfg.Name, "call": n})
		return
	}

	defer func() { s.timing.Store(&Timing{Start: start, End: time.Now()}) }()
	if typ, matched := s.emitType(body); matched {
		w.Header().Set("Ce-Type", typ)
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(s.cfg.Status)
		_, _ = w.Write(body)
		return
	} else if typ != "" {
		w.Header().Set("Ce-Type", typ)
	}
	switch s.cfg.Mode {
	case ModeTransform:
		out, err := s.transform(body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error(), "step": s.cfg.Name})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.cfg.Status)
		_, _ = w.Write(out)
	default:
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(s.cfg.Status)
		_, _ = w.Write(body)
	}
}

// emitType is the event type to answer with: the first --emit-when rule
// the input matches (matched), else --emit.
func (s *Step) emitType(body []byte) (typ string, matched bool) {
	if len(s.cfg.EmitWhen) > 0 {
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) == nil {
			for _, r := range s.cfg.EmitWhen {
				if v, ok := obj[r.Key]; ok && jsonEqual(v, r.Value) {
					return r.Type, true
				}
			}
		}
	}
	return s.cfg.Emit, false
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// transform merges the --set values into the input object; an empty input is {}.
func (s *Step) transform(body []byte) ([]byte, error) {
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, fmt.Errorf("transform needs a JSON object as input: %w", err)
		}
		if obj == nil { // the input was null
			obj = map[string]json.RawMessage{}
		}
	}
	for _, kv := range s.cfg.Set {
		obj[kv.Key] = kv.Value
	}
	return json.Marshal(obj)
}

func (s *Step) recordHeaders(h http.Header) {
	m := make(map[string]string, len(lastHeaderNames))
	for _, k := range lastHeaderNames {
		if v := h.Get(k); v != "" {
			m[k] = v
		}
	}
	s.last.Store(&m)
}

// Deliveries returns how often the step was called with each Ce-Id.
func (s *Step) Deliveries() map[string]int64 {
	s.deliveriesMu.Lock()
	defer s.deliveriesMu.Unlock()
	return maps.Clone(s.deliveries)
}

func (s *Step) serveDeliveries(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Deliveries())
}

func (s *Step) serveStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Step) serveRelease(w http.ResponseWriter, _ *http.Request) {
	s.gateMu.Lock()
	select {
	case <-s.gate:
	default:
		close(s.gate)
	}
	s.gateMu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Step) serveReset(w http.ResponseWriter, _ *http.Request) {
	s.calls.Store(0)
	s.failures.Store(0)
	s.maxInFlight.Store(s.inFlight.Load())
	s.barrierMet.Store(0)
	s.deliveriesMu.Lock()
	clear(s.deliveries)
	s.deliveriesMu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
