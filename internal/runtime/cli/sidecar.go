package cli

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/sidecar"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// sidecarFlags is the sidecar's command line.
type sidecarFlags struct {
	Common
	planFile, step, listen, admin, appURL string
	resolve                               StringList
	nats                                  natsFlags
	drainedRestartAfter                   time.Duration
}

// parseSidecar reads and checks the sidecar's flags.
func parseSidecar(args []string, stderr io.Writer) (*sidecarFlags, error) {
	f := &sidecarFlags{}
	fs := NewFlagSet("sidecar", stderr)
	f.Register(fs, "json")
	fs.StringVar(&f.planFile, "plan", "/etc/patchbay/plan/plan.json", "the Plan JSON file (the <workflow>-<style code>-plan ConfigMap as rendered)")
	fs.StringVar(&f.step, "step", os.Getenv("PATCHBAY_STEP"), "the step this sidecar fronts (default $PATCHBAY_STEP)")
	fs.StringVar(&f.listen, "listen", ":"+strconv.Itoa(plan.SidecarPort), "inbound HTTP address")
	fs.StringVar(&f.admin, "admin-listen", ":"+strconv.Itoa(plan.SidecarAdminPort), "address of /metrics, /healthz, /readyz and /debug/breakers")
	fs.Var(&f.resolve, "resolve", "NAME=URL: call step NAME's sidecar at URL instead of its Service (repeatable)")
	fs.StringVar(&f.appURL, "app-url", "", "base URL of the app (default http://127.0.0.1:<the step's port>)")
	fs.DurationVar(&f.drainedRestartAfter, "drained-restart-after", 90*time.Second, "after GET /drain, exit (for the kubelet to start the sidecar afresh) if the pod is still running this much later, as when only its app was restarted; longer than the pod's grace period; 0 never")
	f.nats.register(fs)
	if err := Parse(fs, args); err != nil {
		return nil, err
	}
	if f.step == "" {
		return nil, errors.New("--step is required (or set PATCHBAY_STEP)")
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	if err := f.nats.check(); err != nil {
		return nil, err
	}
	return f, nil
}

func runSidecar(ctx context.Context, args []string, stderr io.Writer) error {
	f, err := parseSidecar(args, stderr)
	if err != nil {
		return err
	}
	p, resolver, tel, err := f.roleSetup(ctx, stderr, "patchbay-sidecar", f.planFile, f.resolve)
	if err != nil {
		return err
	}
	defer tel.Close(context.WithoutCancel(ctx))
	sc, err := sidecar.New(sidecar.Config{
		Plan: p, Step: f.step, AppURL: f.appURL,
		Resolver: resolver, Telemetry: tel,
	})
	if err != nil {
		return err
	}
	in, err := serve.Listen(f.listen)
	if err != nil {
		return err
	}
	adm, err := serve.Listen(f.admin)
	if err != nil {
		_ = in.Close()
		return err
	}
	// Async styles: the step also consumes its subjects, once connected to
	// the broker; plain HTTP works beside it from the start (dual support).
	health := &serve.Health{}
	opts := f.ServeOptions()
	// GET /drain is the app container's preStop hook: the sidecar stops
	// taking work and finishes what it has while the app is still up.
	drainer := &serve.Drainer{Log: tel.Log, Health: health, ShutdownDelay: opts.ShutdownDelay, DrainTimeout: opts.DrainTimeout, RestartAfter: f.drainedRestartAfter}
	opts.Fatal = drainer.Expired()
	// Ready, in every style, only once the app listens: the kubelet starts
	// the app after this native sidecar, and the endpoints must not send
	// requests before the app can take them.
	health.AddCheck(func() error { return sc.AppListening(ctx) })
	if p.Stream != nil && len(p.Step(f.step).Consumers) > 0 {
		link, err := f.nats.link(ctx, p, tel, "sidecar "+f.step, health, func(ctx context.Context, conn *bus.Conn) (func(), error) {
			// Consume only once the app listens: the link retries this
			// set-up with backoff until it does.
			if err := sc.AppListening(ctx); err != nil {
				return nil, err
			}
			async, err := sc.StartAsync(ctx, conn)
			if err != nil {
				return nil, err
			}
			return async.Stop, nil
		})
		if err != nil {
			_, _ = in.Close(), adm.Close()
			return err
		}
		defer link.Close()
		// On SIGTERM the consumers stop pulling while the HTTP servers drain.
		defer context.AfterFunc(ctx, link.Close)()
		opts.Fatal = firstOf(link.Fatal(), drainer.Expired())
		drainer.Stop = link.Drain
	}
	return serveWithAdmin(ctx, opts, tel, health, serve.Server{Name: "inbound", Listener: in, Handler: drainer.Track(sc), CloseOnDrain: true}, adm, drainer)
}

// firstOf yields the first error either channel yields.
func firstOf(a, b <-chan error) <-chan error {
	out := make(chan error, 1)
	go func() {
		select {
		case err := <-a:
			out <- err
		case err := <-b:
			out <- err
		}
	}()
	return out
}

// serveWithAdmin serves main, and the admin endpoints on adm; with a
// drainer, GET /drain too.
func serveWithAdmin(ctx context.Context, opts serve.Options, tel *telemetry.Telemetry, health *serve.Health, main serve.Server, adm net.Listener, drainer *serve.Drainer) error {
	mux := http.NewServeMux()
	serve.AdminRoutes(mux, tel, health)
	if drainer != nil {
		mux.Handle("GET "+serve.DrainPath, drainer)
		opts.Drainer = drainer
	}
	tel.Log.Info("Starting", "server", main.Name)
	return serve.Run(ctx, tel.Log, health, opts, main, serve.Server{Name: "admin", Listener: adm, Handler: mux})
}
