package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-openapi/jsonpointer"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// readModel is the CQRS projection: chosen events, keyed by a
// JSON pointer into their payload, in a KV bucket.
type readModel struct {
	kv      jetstream.KeyValue
	pointer jsonpointer.Pointer
	lag     prometheus.Gauge
}

// startReadModel runs the projector on the read model's durable consumer.
// MaxAckPending 1 keeps the projection in stream order across replicas, so a
// key always holds its latest event.
func (g *Gateway) startReadModel(ctx context.Context) error {
	p := g.plan
	ptr, err := jsonpointer.New(p.ReadModel.Key)
	if err != nil {
		return err
	}
	kv, err := bus.EnsureReadModel(ctx, g.conn.JS, p, g.conn.Storage)
	if err != nil {
		return err
	}
	g.readModel = &readModel{kv: kv, pointer: ptr, lag: g.tel.Metrics.ReadModelLag(p.Workflow)}
	var subjects []string
	for _, ev := range p.Events {
		if ev.Projected {
			subjects = append(subjects, ev.Subject)
		}
	}
	cons, err := bus.EnsureConsumer(ctx, g.conn.JS, p, jetstream.ConsumerConfig{
		Durable:        p.ReadModel.Durable,
		Description:    "patchbay read model projector",
		FilterSubjects: subjects,
		MaxAckPending:  1,
		AckWait:        30 * time.Second,
		MaxDeliver:     bus.RoleConsumerMaxDeliver,
	})
	if err != nil {
		return err
	}
	return g.consume(cons, "Projecting an event failed; it will be redelivered", g.project)
}

// project writes an event to the read model under its key. An event it
// cannot project is logged, counted by reason and acknowledged: retrying it
// would not change it, and would hold back every later event (one at a time).
func (g *Gateway) project(m jetstream.Msg) error {
	rm := g.readModel
	skip := func(reason string, args ...any) error {
		g.tel.Log.Warn("Skipping an event the read model cannot project: "+reason,
			append([]any{"subject", m.Subject(), "keyPointer", g.plan.ReadModel.Key}, args...)...)
		g.tel.Metrics.ReadModelSkipped(g.plan.Workflow, reason)
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rm.kv.Put(ctx, kvKey, m.Data()); err != nil {
		return err
	}
	if md, err := m.Metadata(); err == nil {
		rm.lag.Set(time.Since(md.Timestamp).Seconds())
	}
	return nil
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

func (g *Gateway) serveQuery(w http.ResponseWriter, r *http.Request) {
	if g.readModel == nil {
		(&contract.Error{Code: http.StatusNotFound, Message: "workflow " + g.plan.Workflow + " has no read model"}).Write(w)
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
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Patchbay-Revision", strconv.FormatUint(e.Revision(), 10))
		_, _ = w.Write(e.Value())
	}
}
