package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// RunRequestedType is the CloudEvents type of the message that starts an
// orchestrated run.
const RunRequestedType = "dev.patchbay.run.requested"

// Config is what a gateway needs.
type Config struct {
	Plan *plan.Plan
	Conn *bus.Conn
	// Resolver finds the steps' sidecars for dual-support requests.
	Resolver contract.Resolver
	// Transport carries the dual-support requests; nil is
	// http.DefaultTransport. The runtime passes contract.NewTransport().
	Transport http.RoundTripper
	Telemetry *telemetry.Telemetry
}

// Gateway is the sync wrapper of an async workflow (docs/architecture.md). It keeps no
// state of its own: runs live in the runs bucket, and an outcome comes back on
// this replica's own NATS inbox, whose subject the run record names.
//
//	POST /                 start a run with the body as entry payload; a sync
//	                       entry holds the caller until the outcome or
//	                       entry.timeout, then answers 202 + Location. A caller
//	                       that sends "Prefer: respond-async" gets 202 at once.
//	                       With an Idempotency-Key, a repeated POST gets the
//	                       run the key started (Entry.IdempotencyWindow).
//	GET  /runs/{id}        the run: its result (200), its error (the run's
//	                       status), or 202 while pending; from any replica.
//	GET  /deadletters      the workflow's dead letters, oldest first.
//	GET  /deadletters/{id} one dead letter with its payload.
//	POST /deadletters/{id}/replay  run its message again (bus.DeadLetters.Replay).
//	GET  /query/{key}      the read model's document for key.
//	GET  /query?prefix=    the documents whose keys start with prefix.
//	GET  /readmodel        how far the read model is behind.
//	ANY  /steps/{step}/... dual support: proxied to the step's sidecar as
//	                       /..., for steps whose plan Callers name the gateway.
type Gateway struct {
	plan  *plan.Plan
	tel   *telemetry.Telemetry
	conn  *bus.Conn
	runs  *bus.Runs
	run   *telemetry.Run
	inbox string
	sub   *nats.Subscription
	// waiters are the requests waiting for a run's outcome on this replica:
	// held POST callers and GET /runs/{id} with Prefer: wait.
	waiters   waiters
	start     *contract.Contract
	entry     *contract.Contract
	mux       *http.ServeMux
	handler   http.Handler // mux behind the inbound bulkhead
	proxies   map[string]*httputil.ReverseProxy
	consumers []jetstream.ConsumeContext
	stopping  atomic.Bool
	inflight  sync.WaitGroup
	readModel *readModel
	dlq       *bus.DeadLetters
	idem      *bus.Idempotency
	// roots are the steps the orchestrator commands first (plan.Roots).
	roots []string
	// journaled is an orchestrated workflow whose runs start with no record:
	// the start, on a subject of the run's own, carries it
	// (startJournaled), and the record is written when the run ends. Not a
	// hybrid one, whose entry event the record must precede.
	journaled bool
	// finished are runs whose notification said they ended before their
	// deadline, so that their deadline check needs no read of the record.
	finished recent[struct{}]
	// open are runs this replica started and has not been told the end of:
	// a GET /runs/{id} with Prefer: wait of one waits for the notification
	// without a read. A notification that is lost only costs the wait,
	// which then reads the record.
	open recent[struct{}]
	// checks are the ack subjects of the deadline checks this replica handed
	// back to the broker until their run's deadline, by run: the run's end
	// acknowledges its check at once (ackCheck), so that the broker does not
	// deliver it again at the deadline. One forgotten only costs that
	// delivery.
	checks recent[string]
}

// recent is a bounded map of run ids: the last maxRecent to maxRecent*2
// added, a generation at a time.
type recent[V any] struct {
	mu        sync.Mutex
	cur, prev map[string]V
}

const maxRecent = 1 << 14

func (s *recent[V]) add(id string, v V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cur) >= maxRecent {
		s.prev, s.cur = s.cur, nil
	}
	if s.cur == nil {
		s.cur = make(map[string]V, 64)
	}
	s.cur[id] = v
}

func (s *recent[V]) del(id string) {
	s.take(id)
}

// take removes id and returns its value, if it was there.
func (s *recent[V]) take(id string) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.cur[id]
	if !ok {
		v, ok = s.prev[id]
	}
	delete(s.cur, id)
	delete(s.prev, id)
	return v, ok
}

func (s *recent[V]) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, a := s.cur[id]
	_, b := s.prev[id]
	return a || b
}

// Start connects the gateway's subscriptions and consumers.
func Start(ctx context.Context, cfg Config) (g *Gateway, err error) {
	p := cfg.Plan
	if !p.Style.IsAsync() {
		return nil, fmt.Errorf("workflow %s has style %s, which has no gateway", p.Workflow, p.Style)
	}
	g = &Gateway{plan: p, tel: cfg.Telemetry, conn: cfg.Conn, run: cfg.Telemetry.Metrics.Run(p.Workflow),
		mux: http.NewServeMux(), proxies: map[string]*httputil.ReverseProxy{}, roots: p.Roots(),
		journaled: p.Stream != nil && p.Stream.StartSubject != "" && p.Entry.EventSubject == ""}
	// The returns below set g to nil: stop what was started through a copy.
	started := g
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	source := contract.SourceOf(p.Namespace, p.Workflow, plan.GatewayRole)
	if g.start, err = contract.NewTypedContract(source, p.Workflow, RunRequestedType, cfg.Telemetry.Tracing.Inject); err != nil {
		return nil, err
	}
	if p.Entry.Event != "" {
		if g.entry, err = contract.NewTypedContract(source, p.Workflow, p.Entry.Event, cfg.Telemetry.Tracing.Inject); err != nil {
			return nil, err
		}
	}
	if err := bus.WaitStream(ctx, cfg.Conn.JS, p); err != nil {
		return nil, err
	}
	if g.runs, err = bus.WaitRuns(ctx, cfg.Conn.JS, p); err != nil {
		return nil, err
	}
	if g.idem, err = bus.WaitIdempotency(ctx, cfg.Conn.JS, p); err != nil {
		return nil, err
	}
	g.dlq = &bus.DeadLetters{Plan: p, Conn: cfg.Conn, Runs: g.runs}
	g.inbox = cfg.Conn.NC.NewInbox()
	if g.sub, err = cfg.Conn.NC.Subscribe(g.inbox, g.onOutcome); err != nil {
		return nil, fmt.Errorf("subscribe to the gateway's inbox: %w", err)
	}
	if p.Stream.CompletionDurable != "" {
		if err := g.startCompletion(ctx); err != nil {
			return nil, err
		}
	}
	if p.Stream.DeadlineDurable != "" {
		if err := g.startDeadlines(ctx); err != nil {
			return nil, err
		}
	}
	if p.ReadModel != nil {
		if err := g.startReadModel(ctx); err != nil {
			return nil, err
		}
	}
	for i := range p.Steps {
		st := &p.Steps[i]
		if !callableByGateway(st) || cfg.Resolver == nil {
			continue
		}
		base, err := cfg.Resolver.StepURL(st)
		if err != nil {
			return nil, err
		}
		u, err := url.Parse(base)
		if err != nil {
			return nil, fmt.Errorf("step %s: %w", st.Name, err)
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = cfg.Transport
		g.proxies[st.Name] = rp
	}
	g.mux.HandleFunc("POST /{$}", g.serveStart)
	g.mux.HandleFunc("GET /runs/{id}", g.serveRun)
	g.mux.HandleFunc("GET /query/{key...}", g.serveQuery)
	g.mux.HandleFunc("GET /deadletters", g.serveDeadLetters)
	g.mux.HandleFunc("GET /deadletters/{id}", g.serveDeadLetter)
	g.mux.HandleFunc("POST /deadletters/{id}/replay", g.serveReplay)
	g.mux.HandleFunc("GET /query", g.serveList)
	g.mux.HandleFunc("GET /readmodel", g.serveReadModelStatus)
	g.mux.HandleFunc("/steps/{step}/{path...}", g.serveStep)
	// Every request passes the inbound bulkhead: a sync caller holds a permit
	// until its outcome or entry.timeout, so a burst cannot pile up waiters.
	g.handler = serve.Bulkhead("the gateway of workflow "+p.Workflow, p.EntryMaxConcurrent(), g.mux,
		cfg.Telemetry.Metrics.BulkheadRejected("gateway"))
	cfg.Telemetry.Log.Info("Gateway is up", "workflow", p.Workflow, "style", p.Style, "inbox", g.inbox)
	return g, nil
}

func callableByGateway(st *plan.Step) bool {
	for _, c := range st.Callers {
		if c == plan.GatewayRole {
			return true
		}
	}
	return false
}

// Stop ends the consumers and the inbox subscription; held callers get their
// answer from the drain of the HTTP server first.
func (g *Gateway) Stop() {
	g.stopping.Store(true)
	for _, c := range g.consumers {
		c.Drain()
		<-c.Closed()
	}
	g.inflight.Wait()
	if g.sub != nil {
		_ = g.sub.Unsubscribe()
	}
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.handler.ServeHTTP(w, r) }

func (g *Gateway) onOutcome(m *nats.Msg) {
	var r bus.Run
	if err := json.Unmarshal(m.Data, &r); err != nil {
		g.tel.Log.Warn("Dropping an unreadable outcome", "err", err)
		return
	}
	if r.Done() && !r.Expired {
		g.finished.add(r.ID, struct{}{})
		g.ackCheck(r.ID)
	}
	if r.Done() {
		g.open.del(r.ID)
	}
	g.waiters.notify(&r)
}

// HeaderIdempotencyKey makes a POST / idempotent within the plan's
// Entry.IdempotencyWindow (docs/api.md, Runs).
const HeaderIdempotencyKey = "Idempotency-Key"

func (g *Gateway) serveStart(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	runID := r.Header.Get(contract.HeaderRunID)
	if runID == "" {
		runID = uuid.NewString()
	} else if err := bus.CheckRunID(contract.HeaderRunID+" header", runID); err != nil {
		contract.BadRequest(http.StatusBadRequest, err.Error()).Write(w)
		return
	}
	key := r.Header.Get(HeaderIdempotencyKey)
	if key != "" {
		if err := bus.CheckIdempotencyKey(HeaderIdempotencyKey+" header", key); err != nil {
			contract.BadRequest(http.StatusBadRequest, err.Error()).Write(w)
			return
		}
	}
	body := contract.GetBuffer()
	defer contract.PutBuffer(body)
	if err := contract.ReadBody(body, r.Body, r.ContentLength, g.plan.MaxBody()); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, contract.ErrTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		contract.BadRequest(code, "request body: "+err.Error()).Write(w)
		return
	}
	ctx := g.tel.Tracing.Extract(r.Context(), r.Header)
	ctx, span := g.tel.Tracing.Start(ctx, "run "+g.plan.Workflow, trace.SpanKindServer)
	defer span.End()

	wait := g.plan.Entry.Sync && !strings.Contains(r.Header.Get("Prefer"), "respond-async")
	var claim bus.Claim
	if key != "" {
		sum := sha256.Sum256(body.Bytes())
		claim = bus.Claim{RunID: runID, Body: hex.EncodeToString(sum[:])}
		held, err := g.idem.Get(ctx, key)
		if g.joined(ctx, w, key, held, err, claim, wait) {
			return
		}
	}
	rec := &bus.Run{ID: runID, Status: bus.RunPending, Started: start.UTC()}
	// The orchestrator's first act on the start is to command the steps
	// without dependencies: the record says so from the start, so that the
	// orchestrator reads it and need not write it then (one broker round
	// trip less per run).
	for _, root := range g.roots {
		rec.Step(root).Dispatched = true
	}
	if d := g.plan.RunTimeout.Duration; d > 0 {
		deadline := rec.Started.Add(d)
		rec.Deadline = &deadline
	}
	// Notified of the outcome whether a caller is held or not: a GET
	// /runs/{id} with Prefer: wait on this replica is answered from it.
	rec.ReplyTo = g.inbox
	if g.journaled {
		g.startJournaled(ctx, w, r, rec, key, claim, wait, body.Bytes())
		return
	}
	// The record first: a run id that is taken is refused before this
	// caller touches anything of the run that holds it.
	created, rev, err := g.runs.Created(ctx, rec)
	if err != nil {
		if errors.Is(err, bus.ErrRunExists) {
			if key != "" {
				if held, _ := g.idem.Get(ctx, key); held != nil && held.RunID == runID {
					g.join(ctx, w, key, held, claim, wait)
					return
				}
			}
			if g.resume(ctx, w, r, runID, body.Bytes(), wait) {
				return
			}
			(&contract.Error{Code: http.StatusConflict, RunID: runID, Message: "run " + runID + " exists; GET /runs/" + runID}).Write(w)
			return
		}
		(&contract.Error{Code: http.StatusServiceUnavailable, RunID: runID, Message: "the run store is unavailable: " + err.Error()}).Write(w)
		return
	}
	if key != "" {
		// The lock among concurrent requests with this key: the first to
		// create it starts its run; the others drop the record they made
		// (nothing of it was published) and join that run.
		held, err := g.idem.Claim(ctx, key, claim)
		if err != nil || held != nil {
			if derr := g.runs.Delete(context.WithoutCancel(ctx), runID); derr != nil {
				g.tel.Log.Warn("Deleting the record of a run that was not started failed", "run", runID, "err", derr)
			}
		}
		if g.joined(ctx, w, key, held, err, claim, wait) {
			return
		}
	}
	var ch chan *bus.Run
	if wait {
		var stop func()
		ch, stop, _ = g.waiters.add(runID, true)
		defer stop()
	}
	if _, err := g.publishStart(ctx, rec, r.Header.Get("Content-Type"), body.Bytes(), created, rev); err != nil {
		e := g.notAccepted(ctx, runID, err)
		g.release(ctx, key, runID)
		e.Write(w)
		return
	}
	if !wait {
		writePending(w, runID)
		return
	}
	g.hold(ctx, w, r, runID, ch)
}

// release frees the Idempotency-Key (if any) of a run whose start the
// broker did not take: nothing of it runs, so a retry with the key starts a
// run afresh.
func (g *Gateway) release(ctx context.Context, key, runID string) {
	if key == "" {
		return
	}
	if err := g.idem.Release(context.WithoutCancel(ctx), key, runID); err != nil {
		g.tel.Log.Warn("Releasing an idempotency key failed", "key", key, "run", runID, "err", err)
	}
}

// startJournaled starts a run of a journaled workflow: the run's record is
// not written first but carried by its start (bus.HeaderRecord), which is
// published on the run's own subject only if that holds no start yet, so
// that a run id that is taken is refused by the stream (409). The record is
// written when the run ends, by whoever ends it.
func (g *Gateway) startJournaled(ctx context.Context, w http.ResponseWriter, r *http.Request, rec *bus.Run, key string, claim bus.Claim, wait bool, body []byte) {
	runID := rec.ID
	if key != "" {
		// The lock among concurrent requests with this key: the first to
		// claim it starts its run; the others join that run.
		held, err := g.idem.Claim(ctx, key, claim)
		if g.joined(ctx, w, key, held, err, claim, wait) {
			return
		}
	}
	record, err := json.Marshal(rec)
	if err != nil {
		(&contract.Error{Code: http.StatusInternalServerError, RunID: runID, Message: err.Error()}).Write(w)
		return
	}
	var ch chan *bus.Run
	if wait {
		var stop func()
		ch, stop, _ = g.waiters.add(runID, true)
		defer stop()
	}
	// Before the start, so that the run's end, which is told after it,
	// closes it.
	g.open.add(runID, struct{}{})
	if _, err := g.publishStart(ctx, rec, r.Header.Get("Content-Type"), body, record, 0); err != nil {
		// An unconfirmed start may have been stored all the same (its ack
		// was lost): the stream says.
		if !errors.Is(err, bus.ErrRunExists) {
			if _, serr := g.conn.Started(context.WithoutCancel(ctx), g.plan, runID); serr == nil {
				err = nil
			}
		}
		if err != nil {
			g.open.del(runID)
			g.release(ctx, key, runID)
			if errors.Is(err, bus.ErrRunExists) {
				(&contract.Error{Code: http.StatusConflict, RunID: runID, Message: "run " + runID + " exists; GET /runs/" + runID}).Write(w)
				return
			}
			(&contract.Error{Code: http.StatusServiceUnavailable, RunID: runID, Message: "the broker did not accept the run: " + err.Error()}).Write(w)
			return
		}
	}
	if !wait {
		writePending(w, runID)
		return
	}
	g.hold(ctx, w, r, runID, ch)
}

// notAccepted fails a run whose start the broker did not accept, and returns
// its error: nothing of it runs.
func (g *Gateway) notAccepted(ctx context.Context, runID string, err error) *contract.Error {
	e := &contract.Error{Code: http.StatusServiceUnavailable, RunID: runID, Message: "the broker did not accept the run: " + err.Error()}
	_, _ = g.runs.Update(context.WithoutCancel(ctx), runID, func(r *bus.Run) bool { r.Fail(e); return true })
	return e
}

// resumeMargin keeps a resumed start well inside the stream's dedupe window.
const resumeMargin = 30 * time.Second

// resume starts a run whose record a POST with its id created but whose start
// was never published (that gateway was killed in between, or the broker went
// away and the record could not be failed either): the caller's retry with
// the same Patchbay-Run-Id publishes the start, under the message ids of the
// first attempt, so that the stream stores it once (bus.DedupeWindow). When
// the stream had it already, the run was started and resume leaves the 409 to
// the caller (false), having touched nothing. Otherwise it answers as the
// first POST would: this caller is held for the outcome, whose notification
// now comes to this replica.
func (g *Gateway) resume(ctx context.Context, w http.ResponseWriter, r *http.Request, runID string, body []byte, wait bool) bool {
	rec, _, err := g.runs.Get(ctx, runID)
	if err != nil && !errors.Is(err, bus.ErrNoRun) {
		// Not a 409: the run may be one to resume.
		(&contract.Error{Code: http.StatusServiceUnavailable, RunID: runID, Message: "the run store is unavailable: " + err.Error()}).Write(w)
		return true
	}
	if err != nil || rec.Status != bus.RunPending || rec.Replays > 0 || time.Since(rec.Started) >= bus.DedupeWindow-resumeMargin {
		return false
	}
	var ch chan *bus.Run
	if wait {
		var stop func()
		var first bool
		ch, stop, first = g.waiters.add(runID, true)
		defer stop()
		if !first {
			return false // its first caller is here
		}
	}
	published, err := g.publishStart(ctx, rec, r.Header.Get("Content-Type"), body, nil, 0)
	if err != nil {
		g.notAccepted(ctx, runID, err).Write(w)
		return true
	}
	if !published {
		return false
	}
	g.tel.Log.Warn("Started a run whose start was never published, on a retry with its id", "run", runID)
	if !wait {
		writePending(w, runID)
		return true
	}
	out, err := g.runs.Update(ctx, runID, func(r *bus.Run) bool {
		if r.Done() || r.ReplyTo == g.inbox {
			return false
		}
		r.ReplyTo = g.inbox
		return true
	})
	if err == nil && out.Done() {
		g.writeRun(ctx, w, out)
		return true
	}
	g.hold(ctx, w, r, runID, ch)
	return true
}

// hold waits for a started run's outcome on ch until entry.timeout, then
// answers with it, or with 202 while the run is pending.
func (g *Gateway) hold(ctx context.Context, w http.ResponseWriter, r *http.Request, runID string, ch chan *bus.Run) {
	timer := time.NewTimer(g.plan.Entry.Timeout.Duration)
	defer timer.Stop()
	select {
	case out := <-ch:
		g.writeRun(ctx, w, out)
	case <-timer.C:
		// The outcome may have landed just now; the record is the truth.
		if out, _, err := g.runs.Get(context.WithoutCancel(ctx), runID); err == nil && out.Done() {
			g.writeRun(ctx, w, out)
			return
		}
		writePending(w, runID)
	case <-r.Context().Done():
	}
}

// joined answers the request when the idempotency store failed (err) or
// key is held by a run (held), which the request then joins, and reports
// whether it did; else the request goes on to start its own run.
func (g *Gateway) joined(ctx context.Context, w http.ResponseWriter, key string, held *bus.Claim, err error, mine bus.Claim, wait bool) bool {
	if err != nil {
		(&contract.Error{Code: http.StatusServiceUnavailable, Message: "the idempotency store is unavailable: " + err.Error()}).Write(w)
		return true
	}
	if held == nil {
		return false
	}
	g.join(ctx, w, key, held, mine, wait)
	return true
}

// join answers a request whose Idempotency-Key started a run already: with
// that run, as GET /runs/{id} would, holding a sync caller until it finishes
// or entry.timeout. The same key with another body is refused (422).
func (g *Gateway) join(ctx context.Context, w http.ResponseWriter, key string, held *bus.Claim, mine bus.Claim, wait bool) {
	if held.Body != mine.Body {
		(&contract.Error{Code: http.StatusUnprocessableEntity, RunID: held.RunID, Message: fmt.Sprintf(
			"%s %s was used for run %s with another request body: use a new key for a new request", HeaderIdempotencyKey, key, held.RunID)}).Write(w)
		return
	}
	w.Header().Set("Idempotent-Replayed", "true")
	out, err := g.lookup(ctx, held.RunID)
	// A journaled run's start follows its key's claim: a request that
	// finds the key claimed may be a round trip ahead of the start.
	for delay := 20 * time.Millisecond; g.journaled && errors.Is(err, bus.ErrNoRun) && delay <= time.Second; delay *= 2 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		out, err = g.lookup(ctx, held.RunID)
	}
	switch {
	case errors.Is(err, bus.ErrNoRun):
		(&contract.Error{Code: http.StatusNotFound, RunID: held.RunID, Message: fmt.Sprintf("%s %s names run %s, which is no longer kept", HeaderIdempotencyKey, key, held.RunID)}).Write(w)
		return
	case err != nil:
		(&contract.Error{Code: http.StatusServiceUnavailable, RunID: held.RunID, Message: "the run store is unavailable: " + err.Error()}).Write(w)
		return
	}
	if out.Done() || !wait {
		g.writeRun(ctx, w, out)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, g.plan.Entry.Timeout.Duration)
	defer cancel()
	if done, err := g.runs.Await(wctx, held.RunID); err == nil {
		out = done
	}
	if ctx.Err() == nil {
		g.writeRun(ctx, w, out)
	}
}

// publishStart publishes the messages that start a run, and reports whether
// the stream stored any of them: false when it had them all already (a
// start published again within bus.DedupeWindow). The start carries the
// run's record (stored at revision rev, 0 when it is not), if the caller has
// it. A journaled run's start is refused with bus.ErrRunExists when its
// subject holds one already.
func (g *Gateway) publishStart(ctx context.Context, rec *bus.Run, contentType string, body, record []byte, rev uint64) (bool, error) {
	runID := rec.ID
	stored := false
	if g.plan.Stream.StartSubject != "" {
		id := bus.MsgID(runID, "start")
		h := g.start.Header(ctx, runID, contentType)
		h["Ce-Id"] = []string{id}
		bus.SetDeadline(h, rec.Deadline)
		if record != nil {
			bus.SetRecord(h, record, rev)
		}
		m := bus.NewMsg(bus.StartOf(g.plan.Stream, runID), h, body)
		if g.journaled {
			if err := g.conn.PublishStart(ctx, m, id); err != nil {
				return false, err
			}
			return true, nil
		}
		isNew, err := g.conn.PublishNew(ctx, m, id)
		if err != nil {
			return stored, err
		}
		stored = stored || isNew
	}
	if s := g.plan.Entry.EventSubject; s != "" {
		id := bus.MsgID(runID, plan.EntryEmitter, g.plan.Entry.Event)
		h := g.entry.Header(ctx, runID, contentType)
		h["Ce-Id"] = []string{id}
		h[contract.HeaderStep] = []string{plan.EntryEmitter}
		bus.SetDeadline(h, rec.Deadline)
		isNew, err := g.conn.PublishNew(ctx, bus.NewMsg(s, h, body), id)
		if err != nil {
			return stored, err
		}
		stored = stored || isNew
	}
	return stored, nil
}

func (g *Gateway) serveRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := bus.CheckRunID("run id", id); err != nil {
		contract.BadRequest(http.StatusBadRequest, err.Error()).Write(w)
		return
	}
	wait := preferWait(r.Header)
	var outcome chan *bus.Run
	if wait > 0 {
		// Before the read, so that an outcome that lands right after it is
		// not missed.
		var stop func()
		outcome, stop, _ = g.waiters.add(id, false)
		defer stop()
	}
	var (
		out *bus.Run
		err error
	)
	if wait > 0 && g.journaled && g.open.has(id) {
		// Started here and not seen to end: this replica is told of the
		// end (its inbox is the record's ReplyTo), so it waits for that;
		// a lost notification only costs the wait, which then reads the
		// record. A GET that does not wait reads, so that it never answers
		// 202 for a run whose end this replica missed.
		out = &bus.Run{ID: id, Status: bus.RunPending, ReplyTo: g.inbox}
	} else {
		out, err = g.lookup(r.Context(), id)
	}
	if err == nil && !out.Done() && wait > 0 {
		w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
		out = g.awaitRun(r.Context(), out, outcome, wait)
	}
	switch {
	case errors.Is(err, bus.ErrNoRun):
		(&contract.Error{Code: http.StatusNotFound, RunID: id, Message: "no run " + id + " (runs are kept for 24h)"}).Write(w)
	case err != nil:
		(&contract.Error{Code: http.StatusServiceUnavailable, RunID: id, Message: "the run store is unavailable: " + err.Error()}).Write(w)
	default:
		g.writeRun(r.Context(), w, out)
	}
}

// lookup reads a run: its record, or for a journaled run that has not
// ended and has none, its start.
func (g *Gateway) lookup(ctx context.Context, id string) (*bus.Run, error) {
	r, _, err := g.runs.Get(ctx, id)
	if errors.Is(err, bus.ErrNoRun) && g.journaled {
		return g.conn.Started(ctx, g.plan, id)
	}
	return r, err
}

// maxPreferWait bounds how long GET /runs/{id} holds a caller that sends
// Prefer: wait.
const maxPreferWait = 60 * time.Second

// preferWait is the wait preference of a request (RFC 7240 "Prefer:
// wait=<seconds>"), at most maxPreferWait; 0 when it has none.
func preferWait(h http.Header) time.Duration {
	for _, v := range h.Values("Prefer") {
		for pref := range strings.SplitSeq(v, ",") {
			name, value, ok := strings.Cut(strings.TrimSpace(pref), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(value), `"`))
			if err != nil || n <= 0 {
				return 0
			}
			return min(time.Duration(n)*time.Second, maxPreferWait)
		}
	}
	return 0
}

// awaitRun waits up to wait for pending run r to end and returns it as it
// stands then. The replica that started the run is notified of its outcome
// (outcome); any other watches its record.
func (g *Gateway) awaitRun(ctx context.Context, r *bus.Run, outcome chan *bus.Run, wait time.Duration) *bus.Run {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if r.ReplyTo != g.inbox {
		if done, err := g.runs.Await(ctx, r.ID); err == nil {
			return done
		}
		return r
	}
	select {
	case out := <-outcome:
		return out
	case <-ctx.Done():
		// The outcome may have landed just now; the record is the truth.
		if out, _, err := g.runs.Get(context.WithoutCancel(ctx), r.ID); err == nil {
			return out
		}
		return r
	}
}

// waiters are the requests that wait for runs' outcomes on this replica,
// which the runs' records name (ReplyTo): the POST that holds a run's
// caller, one at most, and any GET /runs/{id} with Prefer: wait.
type waiters struct {
	mu   sync.Mutex
	byID map[string][]waiter
}

type waiter struct {
	ch     chan *bus.Run
	caller bool // the POST holding the run's caller
}

// add registers a waiter for run id, a held caller or not; stop ends the
// wait. first is false for a caller when another caller waits already
// (the caller is registered all the same).
func (w *waiters) add(id string, caller bool) (ch chan *bus.Run, stop func(), first bool) {
	ch = make(chan *bus.Run, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byID == nil {
		w.byID = map[string][]waiter{}
	}
	first = !caller || !slices.ContainsFunc(w.byID[id], func(o waiter) bool { return o.caller })
	w.byID[id] = append(w.byID[id], waiter{ch: ch, caller: caller})
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		left := slices.DeleteFunc(w.byID[id], func(o waiter) bool { return o.ch == ch })
		if len(left) == 0 {
			delete(w.byID, id)
		} else {
			w.byID[id] = left
		}
	}, first
}

// notify hands a finished run to its waiters.
func (w *waiters) notify(r *bus.Run) {
	if !r.Done() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range w.byID[r.ID] {
		select {
		case o.ch <- r:
		default:
		}
	}
}

func (g *Gateway) serveStep(w http.ResponseWriter, r *http.Request) {
	step := r.PathValue("step")
	rp, ok := g.proxies[step]
	if !ok {
		(&contract.Error{Code: http.StatusNotFound, Message: fmt.Sprintf("workflow %s has no step %s that the gateway may call", g.plan.Workflow, step)}).Write(w)
		return
	}
	r.URL.Path = "/" + r.PathValue("path")
	r.URL.RawPath = ""
	rp.ServeHTTP(w, r)
}

// writeRun answers with a run: its result (sent with its notification, or
// read from the stream where the record says it is), its error, or 202
// while pending.
func (g *Gateway) writeRun(ctx context.Context, w http.ResponseWriter, r *bus.Run) {
	switch r.Status {
	case bus.RunSucceeded:
		result, err := r.Inline, error(nil)
		if result == nil {
			result, _, err = g.conn.Payload(context.WithoutCancel(ctx), g.plan, r.Result)
		}
		if errors.Is(err, bus.ErrPayloadGone) {
			(&contract.Error{Code: http.StatusGone, RunID: r.ID, Message: fmt.Sprintf("run %s succeeded, but the broker no longer keeps its result: %v", r.ID, err)}).Write(w)
			return
		}
		if err != nil {
			(&contract.Error{Code: http.StatusServiceUnavailable, RunID: r.ID, Message: "the result of run " + r.ID + " is unavailable: " + err.Error()}).Write(w)
			return
		}
		h := w.Header()
		h.Set(contract.HeaderRunID, r.ID)
		if r.ContentType != "" {
			h.Set("Content-Type", r.ContentType)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(result)
	case bus.RunFailed:
		e := *r.Error
		e.RunID = r.ID
		if e.Code == 0 {
			e.Code = http.StatusBadGateway
		}
		e.Write(w)
	default:
		writePending(w, r.ID)
	}
}

func writePending(w http.ResponseWriter, runID string) {
	h := w.Header()
	h.Set("Location", "/runs/"+runID)
	h.Set(contract.HeaderRunID, runID)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	b, _ := json.Marshal(map[string]string{"runId": runID, "status": bus.RunPending, "location": "/runs/" + runID})
	_, _ = w.Write(append(b, '\n'))
}
