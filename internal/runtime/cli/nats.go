package cli

import (
	"context"
	"flag"
	"net/http"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// natsFlags are the broker flags the operator renders for the async styles.
type natsFlags struct{ url, credentials string }

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.url, "nats-url", "", "the Broker's client URL, such as nats://default-nats.shop.svc:4222 (async styles)")
	fs.StringVar(&n.credentials, "nats-credentials", "", "directory with the files user and password (the Broker's client Secret)")
}

func (n *natsFlags) connect(p *plan.Plan, tel *telemetry.Telemetry, name string) (*bus.Conn, error) {
	return bus.Connect(bus.Options{URL: n.url, Credentials: n.credentials, Name: "patchbay " + p.Namespace + "/" + p.Workflow + " " + name}, tel.Log)
}

// stopOnDone runs stop once ctx is done, and returns a wait for it.
func stopOnDone(ctx context.Context, stop func()) func() {
	done := make(chan struct{})
	go func() {
		<-ctx.Done()
		stop()
		close(done)
	}()
	return func() { <-done }
}

func notHere(msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"` + msg + `"}` + "\n"))
	})
}
