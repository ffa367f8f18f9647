package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-openapi/jsonpointer"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// Bounds of GET /query?prefix=...&limit=...
const (
	defaultListLimit = 100
	maxListLimit     = 1000
	listTimeout      = 10 * time.Second
)

// Headers of GET /query/{key}: the document's revision in the read-model
// bucket and when the event that wrote it was projected.
const (
	HeaderRevision    = "Patchbay-Revision"
	HeaderProjectedAt = "Patchbay-Projected-At"
)

// readModel is the CQRS projection (docs/api.md, spec.readModel): one JSON
// document per key, which each chosen event, keyed by a JSON pointer into
// its payload, updates by merge patch or replaces.
type readModel struct {
	kv      jetstream.KeyValue
	cons    jetstream.Consumer
	pointer jsonpointer.Pointer
	merge   bool
	// fields are the selected pointers per event subject: an event's
	// subject says its type even when a publisher outside patchbay sent no
	// ce-type.
	fields  map[string][]selected
	lag     prometheus.Gauge
	pending prometheus.Gauge
}

type selected struct {
	pointer jsonpointer.Pointer
	tokens  []string
}

// startReadModel runs the projector on the read model's durable consumer.
// MaxAckPending 1 keeps the projection in stream order across replicas, so
// the events of a key apply in the order they were published.
func (g *Gateway) startReadModel(ctx context.Context) error {
	p := g.plan
	ptr, err := jsonpointer.New(p.ReadModel.Key)
	if err != nil {
		return err
	}
	kv, err := bus.WaitReadModel(ctx, g.conn.JS, p)
	if err != nil {
		return err
	}
	rm := &readModel{kv: kv, pointer: ptr, merge: p.ReadModel.Mode != plan.ReadModelReplace,
		fields: map[string][]selected{},
		lag:    g.tel.Metrics.ReadModelLag(p.Workflow), pending: g.tel.Metrics.ReadModelPending(p.Workflow)}
	subjectOf := map[string]string{}
	for _, ev := range p.Events {
		subjectOf[ev.Type] = ev.Subject
	}
	for typ, ptrs := range p.ReadModel.Fields {
		subject, ok := subjectOf[typ]
		if !ok {
			return fmt.Errorf("the plan's read model selects fields of event %s, which has no route", typ)
		}
		for _, s := range ptrs {
			sp, err := jsonpointer.New(s)
			if err != nil {
				return fmt.Errorf("read model fields of %s: %w", typ, err)
			}
			rm.fields[subject] = append(rm.fields[subject], selected{pointer: sp, tokens: sp.DecodedTokens()})
		}
	}
	g.readModel = rm
	cons, err := g.sharedConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       p.ReadModel.Durable,
		Description:   "patchbay read model projector",
		MaxAckPending: 1,
		AckWait:       30 * time.Second,
	}, func(ev plan.EventRoute) bool { return ev.Projected })
	if err != nil {
		return err
	}
	rm.cons = cons
	return g.consume(cons, "Projecting an event failed; it will be redelivered", g.project)
}

// ReadModelStatus is the answer of GET /readmodel: how far the projection
// is behind, read from the projector's consumer, which every gateway replica
// shares, so that any replica answers the same.
type ReadModelStatus struct {
	// Pending are the events not projected yet: waiting, or in hand.
	Pending uint64 `json:"pending"`
	// Current is true when no event is pending: GET /query answers with
	// every event published so far.
	Current bool `json:"current"`
	// LastProjectedAt is when the projector last finished an event.
	LastProjectedAt *time.Time `json:"lastProjectedAt,omitempty"`
}

func (g *Gateway) serveReadModelStatus(w http.ResponseWriter, r *http.Request) {
	if g.noReadModel(w) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	ci, err := g.readModel.cons.Info(ctx)
	if err != nil {
		(&contract.Error{Code: http.StatusServiceUnavailable, Message: "the read model's projector is unavailable: " + err.Error()}).Write(w)
		return
	}
	st := ReadModelStatus{Pending: ci.NumPending + uint64(ci.NumAckPending), LastProjectedAt: ci.AckFloor.Last}
	st.Current = st.Pending == 0
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(st)
	_, _ = w.Write(append(b, '\n'))
}

// project applies an event to its key's document. An event it cannot
// project is logged, counted by reason and acknowledged: retrying it would
// not change it, and would hold back every later event (one at a time).
func (g *Gateway) project(m jetstream.Msg) error {
	rm := g.readModel
	skip := func(reason string, args ...any) error {
		g.tel.Log.Warn("Skipping an event the read model cannot project: "+reason,
			append([]any{"subject", m.Subject(), "keyPointer", g.plan.ReadModel.Key}, args...)...)
		g.tel.Metrics.ReadModelSkipped(g.plan.Workflow, reason)
		rm.observe(m)
		return nil
	}
	var doc any
	if err := json.Unmarshal(m.Data(), &doc); err != nil {
		return skip("not JSON")
	}
	v, _, err := rm.pointer.Get(doc)
	if err != nil || v == nil {
		return skip("no key")
	}
	key, ok := keyString(v)
	if !ok {
		return skip("key not a string or number")
	}
	kvKey, err := bus.ReadModelKey("read-model key", key)
	if err != nil {
		return skip("invalid key", "err", err)
	}
	patch := m.Data()
	if sel, ok := rm.fields[m.Subject()]; ok {
		if patch, err = json.Marshal(selectFields(doc, sel)); err != nil {
			return skip("not JSON")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rm.apply(ctx, kvKey, patch); err != nil {
		return err
	}
	rm.observe(m)
	return nil
}

// apply writes patch to the document of kvKey: as the document (replace, or
// a key's first event) or merged into it (RFC 7386). The write is a
// compare-and-set on the revision read, so that a second projector (a
// replica taking over) never loses an update.
func (rm *readModel) apply(ctx context.Context, kvKey string, patch []byte) error {
	if !rm.merge {
		_, err := rm.kv.Put(ctx, kvKey, patch)
		return err
	}
	e, err := rm.kv.Get(ctx, kvKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		doc, err := jsonpatch.MergePatch([]byte("{}"), patch)
		if err != nil {
			return err
		}
		_, err = rm.kv.Create(ctx, kvKey, doc)
		return err
	case err != nil:
		return err
	}
	doc, err := jsonpatch.MergePatch(e.Value(), patch)
	if err != nil {
		// The stored document is not JSON (written before merge mode): the
		// event starts it anew.
		if doc, err = jsonpatch.MergePatch([]byte("{}"), patch); err != nil {
			return err
		}
	}
	_, err = rm.kv.Update(ctx, kvKey, doc, e.Revision())
	return err
}

// observe records how far behind the projection is: the age of the event it
// just handled, and how many events wait behind it.
func (rm *readModel) observe(m jetstream.Msg) {
	if md, err := m.Metadata(); err == nil {
		rm.lag.Set(time.Since(md.Timestamp).Seconds())
		rm.pending.Set(float64(md.NumPending))
	}
}

// selectFields is the object holding only the selected parts of doc, at the
// same places; a part doc lacks is left out.
func selectFields(doc any, sel []selected) map[string]any {
	out := map[string]any{}
	for _, s := range sel {
		v, _, err := s.pointer.Get(doc)
		if err != nil || len(s.tokens) == 0 {
			continue
		}
		at := out
		for _, t := range s.tokens[:len(s.tokens)-1] {
			next, ok := at[t].(map[string]any)
			if !ok {
				next = map[string]any{}
				at[t] = next
			}
			at = next
		}
		at[s.tokens[len(s.tokens)-1]] = v
	}
	return out
}

func keyString(v any) (string, bool) {
	switch k := v.(type) {
	case string:
		return k, true
	case float64:
		return strconv.FormatFloat(k, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(k), true
	}
	return "", false
}

func (g *Gateway) noReadModel(w http.ResponseWriter) bool {
	if g.readModel != nil {
		return false
	}
	(&contract.Error{Code: http.StatusNotFound, Message: "workflow " + g.plan.Workflow + " has no read model"}).Write(w)
	return true
}

// serveQuery answers GET /query/{key} with the key's document; its
// revision and projection time are in headers.
func (g *Gateway) serveQuery(w http.ResponseWriter, r *http.Request) {
	if g.noReadModel(w) {
		return
	}
	key := r.PathValue("key")
	kvKey, err := bus.ReadModelKey("read-model key", key)
	if err != nil {
		contract.BadRequest(http.StatusBadRequest, err.Error()).Write(w)
		return
	}
	e, err := g.readModel.kv.Get(r.Context(), kvKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		(&contract.Error{Code: http.StatusNotFound, Message: "no projected event with key " + strconv.Quote(key) + " (yet: the read model is eventually consistent)"}).Write(w)
	case err != nil:
		(&contract.Error{Code: http.StatusServiceUnavailable, Message: "the read model is unavailable: " + err.Error()}).Write(w)
	default:
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set(HeaderRevision, strconv.FormatUint(e.Revision(), 10))
		h.Set(HeaderProjectedAt, e.Created().UTC().Format(time.RFC3339Nano))
		h.Set("Last-Modified", e.Created().UTC().Format(http.TimeFormat))
		h.Set("ETag", `"`+strconv.FormatUint(e.Revision(), 10)+`"`)
		_, _ = w.Write(e.Value())
	}
}

// Document is one entry of GET /query?prefix=...: a key's document with its
// revision and when it was projected.
type Document struct {
	Key         string          `json:"key"`
	Revision    uint64          `json:"revision"`
	ProjectedAt time.Time       `json:"projectedAt"`
	Document    json.RawMessage `json:"document"`
}

// DocumentList is the answer of GET /query?prefix=...&limit=...&after=...
type DocumentList struct {
	Items []Document `json:"items"`
	// Next is the after= of the next page; empty on the last one.
	Next string `json:"next,omitempty"`
}

// serveList answers GET /query?prefix=&limit=&after= with the documents
// whose keys start with prefix, in key order, at most limit of them, after
// the key after. It reads the bucket's key list, so its cost grows with the
// number of keys.
func (g *Gateway) serveList(w http.ResponseWriter, r *http.Request) {
	if g.noReadModel(w) {
		return
	}
	q := r.URL.Query()
	prefix, after := q.Get("prefix"), q.Get("after")
	for field, v := range map[string]string{"prefix query parameter": prefix, "after query parameter": after} {
		if v == "" {
			continue
		}
		if _, err := bus.ReadModelKey(field, v); err != nil {
			contract.BadRequest(http.StatusBadRequest, err.Error()).Write(w)
			return
		}
	}
	limit := defaultListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListLimit {
			contract.BadRequest(http.StatusBadRequest, fmt.Sprintf("limit query parameter must be a whole number from 1 to %d, got %q", maxListLimit, s)).Write(w)
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	unavailable := func(err error) {
		(&contract.Error{Code: http.StatusServiceUnavailable, Message: "the read model is unavailable: " + err.Error()}).Write(w)
	}
	lister, err := g.readModel.kv.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		unavailable(err)
		return
	}
	byKey := map[string]string{} // key -> KV key
	if lister != nil {
		for kvKey := range lister.Keys() {
			key, ok := bus.ReadModelKeyOf(kvKey)
			if ok && strings.HasPrefix(key, prefix) && key > after {
				byKey[key] = kvKey
			}
		}
		if err := ctx.Err(); err != nil {
			unavailable(err)
			return
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	list := DocumentList{Items: []Document{}}
	if len(keys) > limit {
		keys = keys[:limit]
		list.Next = keys[limit-1]
	}
	for _, k := range keys {
		e, err := g.readModel.kv.Get(ctx, byKey[k])
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			unavailable(err)
			return
		}
		list.Items = append(list.Items, Document{Key: k, Revision: e.Revision(), ProjectedAt: e.Created().UTC(), Document: e.Value()})
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(list)
	_, _ = w.Write(append(b, '\n'))
}
