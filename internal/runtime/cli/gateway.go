package cli

import (
	"context"
	"io"
	"net/http"
	"strconv"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/gateway"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
)

func runGateway(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("gateway", stderr)
	var c common
	c.register(fs, "json")
	planFile := fs.String("plan", "/etc/patchbay/plan/plan.json", "the Plan JSON file (the <workflow>-plan ConfigMap as rendered)")
	listen := fs.String("listen", ":"+strconv.Itoa(plan.ComponentPort), "HTTP address of runs (POST /, GET /runs/{id}), the read model (GET /query/{key}), dual-support step requests (/steps/{step}/...) and /metrics, /healthz, /readyz, /debug/breakers")
	var resolve stringList
	fs.Var(&resolve, "resolve", "NAME=URL: reach step NAME's sidecar at URL instead of its Service (repeatable)")
	var nf natsFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := plan.Load(*planFile)
	if err != nil {
		return err
	}
	resolver, err := stepResolver(p, resolve)
	if err != nil {
		return err
	}
	tel, err := c.telemetry(ctx, stderr, "patchbay-gateway")
	if err != nil {
		return err
	}
	defer tel.Tracing.Shutdown(context.WithoutCancel(ctx))
	conn, err := nf.connect(p, tel, "gateway")
	if err != nil {
		return err
	}
	defer conn.Close()
	l, err := serve.Listen(*listen)
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
	return serve.Run(ctx, tel.Log, health, c.serveOptions(), serve.Server{Name: "gateway", Listener: l, Handler: mux})
}
