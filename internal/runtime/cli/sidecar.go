package cli

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/sidecar"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

func runSidecar(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("sidecar", stderr)
	var c common
	c.register(fs, "json")
	planFile := fs.String("plan", "/etc/patchbay/plan/plan.json", "the Plan JSON file (the <workflow>-plan ConfigMap as rendered)")
	step := fs.String("step", os.Getenv("PATCHBAY_STEP"), "the step this sidecar fronts (default $PATCHBAY_STEP)")
	listen := fs.String("listen", ":"+strconv.Itoa(plan.SidecarPort), "inbound HTTP address")
	admin := fs.String("admin-listen", ":"+strconv.Itoa(plan.SidecarAdminPort), "address of /metrics, /healthz, /readyz and /debug/breakers")
	var resolve stringList
	fs.Var(&resolve, "resolve", "NAME=URL: call step NAME's sidecar at URL instead of its Service (repeatable)")
	appURL := fs.String("app-url", "", "base URL of the app (default http://127.0.0.1:<the step's port>)")
	var nf natsFlags
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *step == "" {
		return errors.New("--step is required (or set PATCHBAY_STEP)")
	}
	p, err := plan.Load(*planFile)
	if err != nil {
		return err
	}
	resolver, err := stepResolver(p, resolve)
	if err != nil {
		return err
	}
	tel, err := c.telemetry(ctx, stderr, "patchbay-sidecar")
	if err != nil {
		return err
	}
	defer tel.Tracing.Shutdown(context.WithoutCancel(ctx))
	sc, err := sidecar.New(sidecar.Config{
		Plan: p, Step: *step, AppURL: *appURL,
		Resolver: resolver, Telemetry: tel,
	})
	if err != nil {
		return err
	}
	in, err := serve.Listen(*listen)
	if err != nil {
		return err
	}
	adm, err := serve.Listen(*admin)
	if err != nil {
		_ = in.Close()
		return err
	}
	// Async styles: the step also consumes its subjects; plain HTTP keeps
	// working beside it (dual support).
	wait := func() {}
	if p.Stream != nil && len(p.Step(*step).Consumers) > 0 {
		conn, err := nf.connect(p, tel, "sidecar "+*step)
		if err != nil {
			_, _ = in.Close(), adm.Close()
			return err
		}
		defer conn.Close()
		async, err := sc.StartAsync(ctx, conn)
		if err != nil {
			_, _ = in.Close(), adm.Close()
			return err
		}
		wait = stopOnDone(ctx, async.Stop)
	}
	defer wait()
	return serveWithAdmin(ctx, c, tel, serve.Server{Name: "inbound", Listener: in, Handler: sc}, adm)
}

func serveWithAdmin(ctx context.Context, c common, tel *telemetry.Telemetry, main serve.Server, adm net.Listener) error {
	health := &serve.Health{}
	mux := http.NewServeMux()
	serve.AdminRoutes(mux, tel, health)
	tel.Log.Info("Starting", "server", main.Name)
	return serve.Run(ctx, tel.Log, health, c.serveOptions(), main, serve.Server{Name: "admin", Listener: adm, Handler: mux})
}
