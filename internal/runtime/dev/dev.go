package dev

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/gateway"
	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
	"github.com/patchbay-dev/patchbay/internal/runtime/orchestrator"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/sidecar"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// Options configure a dev data plane.
type Options struct {
	// File is the Workflow YAML.
	File string
	// Steps are --step values: NAME=cmd:COMMAND or NAME=url:URL.
	Steps []string
	// Addr is the entry's listen address; AdminAddr serves /metrics, /healthz,
	// /readyz and /debug/breakers of every component. Port 0 picks a free port.
	Addr, AdminAddr string
	// Stderr receives the output of started commands.
	Stderr    io.Writer
	Telemetry *telemetry.Telemetry
	Serve     serve.Options
	// NATSURL is a broker to use instead of an embedded one (async styles),
	// and NATSCredentials the directory of the workflow's credentials on it
	// (bus.Options.Credentials).
	NATSURL, NATSCredentials string
}

// Env is a running dev data plane.
type Env struct {
	Plan     *plan.Plan
	Workflow *v1alpha1.Workflow
	// EntryURL is where runs start: POST to it.
	EntryURL string
	// AdminURL serves the admin endpoints.
	AdminURL string

	// NATSURL is the embedded broker's URL (async styles).
	NATSURL string

	apps     map[string]*app
	sidecars map[string]string
	broker   *broker
	// natsCredentials is Options.NATSCredentials.
	natsCredentials string
	// conns are the components' broker connections.
	conns []*bus.Conn
	// closers stop the bus side (consumers, connections) after HTTP drained,
	// latest first.
	closers  []func()
	tel      *telemetry.Telemetry
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	stopOnce sync.Once
}

// AppURL is the base URL of a step's app.
func (e *Env) AppURL(step string) string { return e.apps[step].url }

// SidecarURL is the base URL of a step's sidecar.
func (e *Env) SidecarURL(step string) string { return e.sidecars[step] }

// Start brings up the data plane of the Workflow in o.File and serves it until
// ctx is done or Stop is called. For the async styles it starts an embedded
// NATS server with JetStream first; the entry is then the gateway.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	wf, err := LoadWorkflow(o.File)
	if err != nil {
		return nil, err
	}
	p, err := topology.Compile(wf)
	if err != nil {
		return nil, fmt.Errorf("compile workflow %s: %w", wf.Name, err)
	}
	sources, err := ParseSteps(o.Steps, wf)
	if err != nil {
		return nil, err
	}

	var listeners []net.Listener
	defer func() {
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
		}
	}()
	listen := func(addr string) (net.Listener, error) {
		l, err := serve.Listen(addr)
		if err == nil {
			listeners = append(listeners, l)
		}
		return l, err
	}
	entryL, err := listen(o.Addr)
	if err != nil {
		return nil, err
	}
	adminL, err := listen(o.AdminAddr)
	if err != nil {
		return nil, err
	}
	sidecarL := map[string]net.Listener{}
	resolver := contract.StaticResolver{}
	for _, st := range p.Steps {
		l := entryL
		if p.Entry.Kind != plan.EntryStep || p.Entry.Step != st.Name {
			if l, err = listen("127.0.0.1:0"); err != nil {
				return nil, err
			}
		}
		sidecarL[st.Name] = l
		resolver[st.Name] = urlOf(l)
	}

	// env is built up in a local, never in the named result: an early return
	// must still find it to stop whatever was started so far.
	env := &Env{Plan: p, Workflow: wf, EntryURL: urlOf(entryL) + "/", AdminURL: urlOf(adminL) + "/",
		apps: map[string]*app{}, sidecars: map[string]string(resolver), tel: o.Telemetry, done: make(chan struct{})}
	defer func() {
		if err != nil {
			env.stopBus()
			env.stopApps()
			env.stopBroker()
		}
	}()
	env.natsCredentials = o.NATSCredentials
	switch {
	case p.Style.IsAsync() && o.NATSURL != "":
		env.NATSURL = o.NATSURL
	case p.Style.IsAsync():
		if env.broker, err = startBroker(); err != nil {
			return nil, err
		}
		env.NATSURL = env.broker.URL()
	}
	// A workflow's own user on a Broker may not create its stream and
	// buckets: there the manager has (docs/architecture.md, Broker
	// identities). Anywhere else dev does the manager's part itself.
	if p.Style.IsAsync() && o.NATSCredentials == "" {
		if err := env.ensureResources(ctx, p); err != nil {
			return nil, err
		}
	}
	for i := range wf.Spec.Steps {
		st := &wf.Spec.Steps[i]
		a, err := startApp(ctx, st, sources[st.Name], o.Stderr, o.Telemetry.Log)
		if err != nil {
			return nil, err
		}
		env.apps[st.Name] = a
	}

	transport := hop.NewTransport()
	var servers []serve.Server
	for _, st := range p.Steps {
		sc, err := sidecar.New(sidecar.Config{Plan: p, Step: st.Name, AppURL: env.apps[st.Name].url,
			Resolver: resolver, Transport: transport, Telemetry: o.Telemetry})
		if err != nil {
			return nil, err
		}
		servers = append(servers, serve.Server{Name: "sidecar " + st.Name, Listener: sidecarL[st.Name], Handler: sc})
		if p.Style.IsAsync() {
			conn, err := env.connect(p, "sidecar "+st.Name)
			if err != nil {
				return nil, err
			}
			async, err := sc.StartAsync(ctx, conn)
			if err != nil {
				return nil, err
			}
			if async != nil {
				env.closers = append(env.closers, async.Stop)
			}
		}
	}
	if p.Style.IsAsync() && p.Roles.Orchestrator {
		conn, err := env.connect(p, "orchestrator")
		if err != nil {
			return nil, err
		}
		orch, err := orchestrator.StartAsync(ctx, orchestrator.AsyncConfig{Plan: p, Conn: conn, Telemetry: o.Telemetry})
		if err != nil {
			return nil, err
		}
		env.closers = append(env.closers, orch.Stop)
	}
	if p.Entry.Kind == plan.EntryGateway {
		conn, err := env.connect(p, "gateway")
		if err != nil {
			return nil, err
		}
		gw, err := gateway.Start(ctx, gateway.Config{Plan: p, Conn: conn, Resolver: resolver, Transport: transport, Telemetry: o.Telemetry})
		if err != nil {
			return nil, err
		}
		env.closers = append(env.closers, gw.Stop)
		servers = append(servers, serve.Server{Name: "gateway", Listener: entryL, Handler: gw})
	}
	if p.Entry.Kind == plan.EntryOrchestrator {
		orch, err := orchestrator.New(orchestrator.Config{Plan: p, Resolver: resolver, Transport: transport, Telemetry: o.Telemetry})
		if err != nil {
			return nil, err
		}
		servers = append(servers, serve.Server{Name: "orchestrator", Listener: entryL, Handler: orch})
	}
	health := &serve.Health{}
	health.AddCheck(env.brokerReady)
	mux := http.NewServeMux()
	serve.AdminRoutes(mux, o.Telemetry, health)
	servers = append(servers, serve.Server{Name: "admin", Listener: adminL, Handler: mux})

	runCtx, cancel := context.WithCancel(ctx)
	env.cancel = cancel
	// As in the roles: a connection closed for good (or a consumer stopped on
	// its own) ends the data plane with its error instead of leaving it up
	// and disconnected.
	runOpts := o.Serve
	runOpts.Fatal = env.fatal(runCtx)
	go func() {
		defer close(env.done)
		env.err = serve.Run(runCtx, o.Telemetry.Log, health, runOpts, servers...)
		// Apps stop after the sidecars drained, so in-flight runs can finish.
		env.stopBus()
		env.stopApps()
		env.stopBroker()
	}()
	o.Telemetry.Log.Info("Dev data plane is up", "workflow", wf.Name, "style", p.Style, "entry", env.EntryURL, "admin", env.AdminURL)
	return env, nil
}

// Stop drains the data plane and stops the apps it started.
func (e *Env) Stop() error {
	e.stopOnce.Do(e.cancel)
	<-e.done
	return e.err
}

// Done is closed once the data plane has stopped.
func (e *Env) Done() <-chan struct{} { return e.done }

// Err is why the data plane stopped; read it after Done.
func (e *Env) Err() error { return e.err }

// connect opens a component's own connection to the embedded broker.
func (e *Env) connect(p *plan.Plan, name string) (*bus.Conn, error) {
	conn, err := bus.Connect(bus.Options{
		URL: e.NATSURL, Credentials: e.natsCredentials, InboxPrefix: bus.InboxPrefix(p),
		Name: "patchbay-dev " + p.Workflow + " " + name, Storage: bus.DefaultStorage,
	}, e.tel.Log)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, conn.Close)
	e.conns = append(e.conns, conn)
	return conn, nil
}

// ensureResources creates the workflow's stream and buckets on the broker,
// as the manager does on a Broker.
func (e *Env) ensureResources(ctx context.Context, p *plan.Plan) error {
	conn, err := e.connect(p, "setup")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, resourcesTimeout)
	defer cancel()
	if err := bus.EnsureResources(ctx, conn.JS, p, bus.DefaultStorage); err != nil {
		return fmt.Errorf("create the stream and buckets of %s on %s: %w", p.Workflow, e.NATSURL, err)
	}
	return nil
}

// resourcesTimeout bounds dev's creation of a workflow's stream and buckets.
const resourcesTimeout = 30 * time.Second

// brokerReady is nil while every component is connected to the broker.
func (e *Env) brokerReady() error {
	for _, c := range e.conns {
		if err := c.Err(); err != nil {
			return err
		}
		if err := c.Ready(); err != nil {
			return err
		}
	}
	return nil
}

// fatal yields the first error of a connection that failed for good.
func (e *Env) fatal(ctx context.Context) <-chan error {
	ch := make(chan error, len(e.conns))
	for _, c := range e.conns {
		go func() {
			select {
			case <-c.Failed():
				ch <- c.Err()
			case <-ctx.Done():
			}
		}()
	}
	return ch
}

func (e *Env) stopBus() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

func (e *Env) stopBroker() {
	if e.broker != nil {
		e.broker.stop()
		e.broker = nil
	}
}

func (e *Env) stopApps() {
	var wg sync.WaitGroup
	for _, a := range e.apps {
		wg.Go(func() { a.stop(e.tel.Log) })
	}
	wg.Wait()
}

// urlOf is the http URL of a listener, with a wildcard address shown as 127.0.0.1.
func urlOf(l net.Listener) string {
	host, port, _ := net.SplitHostPort(l.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "http://" + host + ":" + port
}
