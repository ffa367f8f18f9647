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
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := plan.Load(*planFile)
	if err != nil {
		return err
	}
	if p.Style != plan.StyleSyncOrchestrated {
		return fmt.Errorf("plan of workflow %s has style %s: this orchestrator runs sync-orchestrated (the async styles come later)", p.Workflow, p.Style)
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
