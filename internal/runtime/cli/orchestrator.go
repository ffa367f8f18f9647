package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/orchestrator"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
)

func runOrchestrator(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("orchestrator", stderr)
	var c common
	c.register(fs, "json")
	planFile := fs.String("plan", "/etc/patchbay/plan/plan.json", "the Plan JSON file (the <workflow>-plan ConfigMap as rendered)")
	listen := fs.String("listen", ":"+strconv.Itoa(plan.ComponentPort), "HTTP address of runs (POST /) and of /metrics, /healthz, /readyz, /debug/breakers")
	var resolve stringList
	fs.Var(&resolve, "resolve", "NAME=URL: call step NAME's sidecar at URL instead of its Service (repeatable)")
	var nf natsFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := plan.Load(*planFile)
	if err != nil {
		return err
	}
	switch p.Style {
	case plan.StyleSyncOrchestrated:
	case plan.StyleAsyncOrchestrated, plan.StyleHybrid:
		return runAsyncOrchestrator(ctx, c, nf, p, *listen, stderr)
	default:
		return fmt.Errorf("plan of workflow %s has style %s, which has no orchestrator", p.Workflow, p.Style)
	}
	resolver, err := stepResolver(p, resolve)
	if err != nil {
		return err
	}
	tel, err := c.telemetry(ctx, stderr, "patchbay-orchestrator")
	if err != nil {
		return err
	}
	defer tel.Tracing.Shutdown(context.WithoutCancel(ctx))
	o, err := orchestrator.New(orchestrator.Config{Plan: p, Resolver: resolver, Telemetry: tel})
	if err != nil {
		return err
	}
	l, err := serve.Listen(*listen)
	if err != nil {
		return err
	}
	health := &serve.Health{}
	mux := http.NewServeMux()
	serve.AdminRoutes(mux, tel, health)
	mux.Handle("/", o)
	return serve.Run(ctx, tel.Log, health, c.serveOptions(), serve.Server{Name: "orchestrator", Listener: l, Handler: mux})
}

// runAsyncOrchestrator drives runs over the bus; its HTTP port serves only the
// admin endpoints, since runs start at the gateway.
func runAsyncOrchestrator(ctx context.Context, c common, nf natsFlags, p *plan.Plan, listen string, stderr io.Writer) error {
	tel, err := c.telemetry(ctx, stderr, "patchbay-orchestrator")
	if err != nil {
		return err
	}
	defer tel.Tracing.Shutdown(context.WithoutCancel(ctx))
	conn, err := nf.connect(p, tel, "orchestrator")
	if err != nil {
		return err
	}
	defer conn.Close()
	l, err := serve.Listen(listen)
	if err != nil {
		return err
	}
	o, err := orchestrator.StartAsync(ctx, orchestrator.AsyncConfig{Plan: p, Conn: conn, Telemetry: tel})
	if err != nil {
		_ = l.Close()
		return err
	}
	defer stopOnDone(ctx, o.Stop)()
	health := &serve.Health{}
	mux := http.NewServeMux()
	serve.AdminRoutes(mux, tel, health)
	mux.Handle("/", notHere("runs of workflow "+p.Workflow+" start at its gateway"))
	return serve.Run(ctx, tel.Log, health, c.serveOptions(), serve.Server{Name: "orchestrator", Listener: l, Handler: mux})
}
