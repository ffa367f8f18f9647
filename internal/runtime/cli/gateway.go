package cli

import (
	"context"
	"io"
	"net/http"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/gateway"
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
	p, err := plan.Load(f.planFile)
	if err != nil {
		return err
	}
	resolver, err := stepResolver(p, f.resolve)
	if err != nil {
		return err
	}
	tel, err := f.telemetry(ctx, stderr, "patchbay-gateway")
	if err != nil {
		return err
	}
	defer tel.Tracing.Shutdown(context.WithoutCancel(ctx))
	conn, err := f.nats.connect(p, tel, "gateway")
	if err != nil {
		return err
	}
	defer conn.Close()
	l, err := serve.Listen(f.listen)
	if err != nil {
		return err
	}
	g, err := gateway.Start(ctx, gateway.Config{Plan: p, Conn: conn, Resolver: resolver, Telemetry: tel})
	if err != nil {
		_ = l.Close()
		return err
	}
	defer g.Stop()
	health := &serve.Health{}
	mux := http.NewServeMux()
	serve.AdminRoutes(mux, tel, health)
	mux.Handle("/", g)
	return serve.Run(ctx, tel.Log, health, f.serveOptions(), serve.Server{Name: "gateway", Listener: l, Handler: mux})
}
