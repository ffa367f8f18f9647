package cli

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/gateway"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
)

func parseGateway(args []string, stderr io.Writer) (*componentFlags, error) {
	return parseComponent("gateway", "HTTP address of runs (POST /, GET /runs/{id}), the read model (GET /query/{key}), dual-support step requests (/steps/{step}/...) and /metrics, /healthz, /readyz, /debug/breakers", args, stderr)
}

func runGateway(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parseGateway(args, stderr)
	if err != nil {
		return err
	}
	p, resolver, tel, err := f.roleSetup(ctx, stderr, "patchbay-gateway", f.planFile, f.resolve)
	if err != nil {
		return err
	}
	defer tel.Close(context.WithoutCancel(ctx))
	l, err := serve.Listen(f.listen)
	if err != nil {
		return err
	}
	// The gateway serves /healthz and /readyz at once; its own routes answer
	// 503 until it is set up on the broker.
	var gw atomic.Pointer[gateway.Gateway]
	health := &serve.Health{}
	link, err := f.nats.link(ctx, p, tel, "gateway", health, func(ctx context.Context, conn *bus.Conn) (func(), error) {
		g, err := gateway.Start(ctx, gateway.Config{Plan: p, Conn: conn, Resolver: resolver, Transport: hop.NewTransport(), Telemetry: tel})
		if err != nil {
			return nil, err
		}
		gw.Store(g)
		return g.Stop, nil
	})
	if err != nil {
		_ = l.Close()
		return err
	}
	// After the drain: held callers have their answers before the consumers
	// and the connection stop.
	defer link.Close()
	mux := http.NewServeMux()
	serve.AdminRoutes(mux, tel, health)
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g := gw.Load(); g != nil {
			g.ServeHTTP(w, r)
			return
		}
		notReady(w, health)
	}))
	opts := f.ServeOptions()
	opts.Fatal = link.Fatal()
	return serve.Run(ctx, tel.Log, health, opts, serve.Server{Name: "gateway", Listener: l, Handler: mux})
}
