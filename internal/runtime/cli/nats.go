package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// natsFlags are the broker flags the operator renders for the async styles.
type natsFlags struct {
	url, credentials string
	// streamReplicas and streamStorage come from the Broker the workflow
	// uses. The roles only check them: the manager creates the stream and
	// buckets with these settings (docs/architecture.md, Broker identities).
	streamReplicas, streamStorage string
	storage                       bus.Storage
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.url, "nats-url", "", "the Broker's client URL, such as nats://default-nats.shop.svc:4222 (async styles)")
	fs.StringVar(&n.credentials, "nats-credentials", "", "directory with the file nats.creds, the workflow's NATS user (its credentials Secret), or the files user and password")
	fs.StringVar(&n.streamReplicas, "stream-replicas", "1", "replicas of the workflow's stream and buckets: 1, 3 or 5 (the Broker's servers)")
	fs.StringVar(&n.streamStorage, "stream-storage", "file", "where the broker keeps the workflow's stream and buckets: file or memory")
}

// check validates the flags after parsing.
func (n *natsFlags) check() error {
	switch n.streamReplicas {
	case "1", "3", "5":
		n.storage.Replicas = int(n.streamReplicas[0] - '0')
	default:
		return fmt.Errorf("--stream-replicas=%s: want 1, 3 or 5", n.streamReplicas)
	}
	switch n.streamStorage {
	case "file":
		n.storage.Type = jetstream.FileStorage
	case "memory":
		n.storage.Type = jetstream.MemoryStorage
	default:
		return fmt.Errorf("--stream-storage=%s: want file or memory", n.streamStorage)
	}
	return nil
}

func (n *natsFlags) connect(p *plan.Plan, tel *telemetry.Telemetry, name string) (*bus.Conn, error) {
	return bus.Connect(bus.Options{
		URL: n.url, Credentials: n.credentials, Storage: n.storage, InboxPrefix: bus.InboxPrefix(p),
		Name: "patchbay " + p.Namespace + "/" + p.Workflow + " " + name,
	}, tel.Log)
}

// notReady answers a request for a route the role serves only once set up
// on the broker.
func notReady(w http.ResponseWriter, health *serve.Health) {
	msg := "not ready"
	if err := health.Check(); err != nil {
		msg += ": " + err.Error()
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, msg)
}

// notHere answers every request with a 404 that says where to go instead.
func notHere(msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, msg)
	})
}

// writeError answers with status and the JSON object {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
