package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/orchestrator"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
)

// componentFlags is the command line of the orchestrator and the gateway.
type componentFlags struct {
	Common
	planFile, listen string
	resolve          StringList
	nats             natsFlags
}

// parseComponent reads and checks the flags of the orchestrator or the
// gateway; they differ only in what their listen address serves.
func parseComponent(role, listenUsage string, args []string, stderr io.Writer) (*componentFlags, error) {
	f := &componentFlags{}
	fs := NewFlagSet(role, stderr)
	f.Register(fs, "json")
	fs.StringVar(&f.planFile, "plan", "/etc/patchbay/plan/plan.json", "the Plan JSON file (the <workflow>-<style code>-plan ConfigMap as rendered)")
	fs.StringVar(&f.listen, "listen", ":"+strconv.Itoa(plan.ComponentPort), listenUsage)
	fs.Var(&f.resolve, "resolve", "NAME=URL: call step NAME's sidecar at URL instead of its Service (repeatable)")
	f.nats.register(fs)
	if err := Parse(fs, args); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	if err := f.nats.check(); err != nil {
		return nil, err
	}
	return f, nil
}

func parseOrchestrator(args []string, stderr io.Writer) (*componentFlags, error) {
	return parseComponent("orchestrator", "HTTP address of runs (POST /) and of /metrics, /healthz, /readyz, /debug/breakers", args, stderr)
}

func runOrchestrator(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parseOrchestrator(args, stderr)
	if err != nil {
		return err
	}
	p, err := plan.Load(f.planFile)
	if err != nil {
		return err
	}
	switch {
	case !p.Roles.Orchestrator:
		return fmt.Errorf("plan of workflow %s has style %s, which has no orchestrator", p.Workflow, p.Style)
	case p.Style.IsAsync():
		return runAsyncOrchestrator(ctx, f, p, stderr)
	}
	resolver, tel, err := f.stepsAndTelemetry(ctx, stderr, "patchbay-orchestrator", p, f.resolve)
	if err != nil {
		return err
	}
	defer tel.Close(context.WithoutCancel(ctx))
	o, err := orchestrator.New(orchestrator.Config{Plan: p, Resolver: resolver, Telemetry: tel})
	if err != nil {
		return err
	}
	l, err := serve.Listen(f.listen)
	if err != nil {
		return err
	}
	health := &serve.Health{}
	mux := http.NewServeMux()
	serve.AdminRoutes(mux, tel, health)
	mux.Handle("/", o)
	return serve.Run(ctx, tel.Log, health, f.ServeOptions(), serve.Server{Name: "orchestrator", Listener: l, Handler: mux})
}

// runAsyncOrchestrator drives runs over the bus; its HTTP port serves only the
// admin endpoints, since runs start at the gateway.
func runAsyncOrchestrator(ctx context.Context, f *componentFlags, p *plan.Plan, stderr io.Writer) error {
	tel, err := f.Telemetry(ctx, stderr, "patchbay-orchestrator")
	if err != nil {
		return err
	}
	defer tel.Close(context.WithoutCancel(ctx))
	l, err := serve.Listen(f.listen)
	if err != nil {
		return err
	}
	health := &serve.Health{}
	link, err := f.nats.link(ctx, p, tel, "orchestrator", health, func(ctx context.Context, conn *bus.Conn) (func(), error) {
		o, err := orchestrator.StartAsync(ctx, orchestrator.AsyncConfig{Plan: p, Conn: conn, Telemetry: tel})
		if err != nil {
			return nil, err
		}
		return o.Stop, nil
	})
	if err != nil {
		_ = l.Close()
		return err
	}
	defer link.Close()
	// On SIGTERM the consumer stops pulling while the HTTP server drains.
	defer context.AfterFunc(ctx, link.Close)()
	mux := http.NewServeMux()
	serve.AdminRoutes(mux, tel, health)
	mux.Handle("/", notHere("runs of workflow "+p.Workflow+" start at its gateway"))
	opts := f.ServeOptions()
	opts.Fatal = link.Fatal()
	return serve.Run(ctx, tel.Log, health, opts, serve.Server{Name: "orchestrator", Listener: l, Handler: mux})
}
