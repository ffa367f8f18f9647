package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-openapi/jsonpointer"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
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
	})
	if err != nil {
		return err
	}
	return g.consume(cons, "Projecting an event failed; it will be redelivered", g.project)
}

func (g *Gateway) project(m jetstream.Msg) error {
	rm := g.readModel
	var doc any
	if err := json.Unmarshal(m.Data(), &doc); err != nil {
		g.tel.Log.Warn("Skipping an event that is not JSON", "subject", m.Subject())
		return nil
	}
	v, _, err := rm.pointer.Get(doc)
	if err != nil || v == nil {
		g.tel.Log.Warn("Skipping an event without the read model's key", "subject", m.Subject(), "key", g.plan.ReadModel.Key)
		return nil
	}
	key, ok := keyString(v)
	if !ok {
		g.tel.Log.Warn("Skipping an event whose key is not a string or number", "subject", m.Subject(), "key", g.plan.ReadModel.Key)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rm.kv.Put(ctx, kvKey(key), m.Data()); err != nil {
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
		return k, k != ""
	case float64:
		return strconv.FormatFloat(k, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(k), true
	}
	return "", false
}

var plainKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// kvKey maps a key value to a valid KV key: as is when it can be, else
// base64url with a prefix no plain key of this form starts with.
func kvKey(k string) string {
	if plainKey.MatchString(k) && k[0] != '.' && k[len(k)-1] != '.' && !strings.HasPrefix(k, b64Prefix) {
		return k
	}
	return b64Prefix + base64.RawURLEncoding.EncodeToString([]byte(k))
}

const b64Prefix = "_b64_"

func (g *Gateway) serveQuery(w http.ResponseWriter, r *http.Request) {
	if g.readModel == nil {
		(&hop.Error{Code: http.StatusNotFound, Message: "workflow " + g.plan.Workflow + " has no read model"}).Write(w)
		return
	}
	key := r.PathValue("key")
	e, err := g.readModel.kv.Get(r.Context(), kvKey(key))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		(&hop.Error{Code: http.StatusNotFound, Message: "no projected event with key " + strconv.Quote(key) + " (yet: the read model is eventually consistent)"}).Write(w)
	case err != nil:
		(&hop.Error{Code: http.StatusServiceUnavailable, Message: "the read model is unavailable: " + err.Error()}).Write(w)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Patchbay-Revision", strconv.FormatUint(e.Revision(), 10))
		_, _ = w.Write(e.Value())
	}
}
