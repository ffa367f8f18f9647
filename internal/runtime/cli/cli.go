package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

const usage = `patchbay-runtime runs patchbay's data plane.

Usage:
  patchbay-runtime sidecar      --plan FILE --step NAME [--nats-url URL --nats-credentials DIR] [flags]
  patchbay-runtime orchestrator --plan FILE [--nats-url URL --nats-credentials DIR] [flags]
  patchbay-runtime gateway      --plan FILE --nats-url URL [--nats-credentials DIR] [flags]
  patchbay-runtime dev          -f WORKFLOW.yaml [--step NAME=cmd:COMMAND | NAME=url:URL]...
  patchbay-runtime graph        -f WORKFLOW.yaml [--format mermaid|dot]
  patchbay-runtime dlq          list|show|replay --plan FILE --nats-url URL [--nats-credentials DIR] [ID]

Run "patchbay-runtime ROLE -h" for the flags of a role.
`

// errUsage is a command-line mistake whose message flag already printed.
var errUsage = errors.New("usage")

// Main runs patchbay-runtime with args (without the program name) until ctx is
// done, and returns the exit code. Errors are printed as one line to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch role, rest := args[0], args[1:]; role {
	case "sidecar":
		err = runSidecar(ctx, rest, stderr)
	case "orchestrator":
		err = runOrchestrator(ctx, rest, stderr)
	case "gateway":
		err = runGateway(ctx, rest, stderr)
	case "dev":
		err = runDev(ctx, rest, stdout, stderr)
	case "graph":
		err = runGraph(ctx, rest, os.Stdin, stdout, stderr)
	case "dlq":
		err = runDLQ(ctx, rest, stdout, stderr)
	default:
		err = fmt.Errorf("unknown role %q: want sidecar, orchestrator, gateway, dev, graph or dlq", role)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "patchbay-runtime: %s\n", oneLine(err.Error()))
		return 1
	}
}

// common are the flags every role has.
type common struct {
	logFormat, logLevel string
	otlpEndpoint        string
	drainTimeout        time.Duration
	shutdownDelay       time.Duration
}

func (c *common) register(fs *flag.FlagSet, defaultLogFormat string) {
	fs.StringVar(&c.logFormat, "log-format", defaultLogFormat, "log format: json or text")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.otlpEndpoint, "otlp-endpoint", otlpFromEnv(), "OTLP/HTTP collector URL for spans, such as http://otel-collector:4318 (default $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else $OTEL_EXPORTER_OTLP_ENDPOINT; empty: no spans, traceparent still propagated)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM (and, for the sidecar, on GET /drain after the shutdown delay), how long in-flight requests and messages may finish")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 0, "on SIGTERM (or, for the sidecar, on GET /drain), how long to keep serving with /readyz failing before closing the listeners (before answering /drain)")
}

// check validates the flags after parsing, so a typo fails at start.
func (c *common) check() error {
	_, err := telemetry.NewLogger(io.Discard, c.logFormat, c.logLevel)
	return err
}

func (c *common) telemetry(ctx context.Context, stderr io.Writer, service string) (*telemetry.Telemetry, error) {
	log, err := telemetry.NewLogger(stderr, c.logFormat, c.logLevel)
	if err != nil {
		return nil, err
	}
	tracing, err := telemetry.NewTracing(ctx, c.otlpEndpoint, service)
	if err != nil {
		return nil, err
	}
	return telemetry.New(log, tracing), nil
}

func (c *common) serveOptions() serve.Options {
	return serve.Options{ShutdownDelay: c.shutdownDelay, DrainTimeout: c.drainTimeout}
}

func otlpFromEnv() string {
	if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		return v
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("patchbay-runtime "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags; a parse error was already printed with the usage.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// stepResolver reaches steps through their Services, except those --resolve names.
func stepResolver(p *plan.Plan, values []string) (contract.Resolver, error) {
	urls := map[string]string{}
	for _, v := range values {
		name, u, ok := strings.Cut(v, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("--resolve %q: want NAME=URL", v)
		}
		if p.Step(name) == nil {
			return nil, fmt.Errorf("--resolve %s: the plan of workflow %s has no step %s", v, p.Workflow, name)
		}
		urls[name] = u
	}
	return contract.OverrideResolver{URLs: urls, Next: contract.ClusterResolver{Namespace: p.Namespace}}, nil
}

// roleSetup loads the plan, then builds what a role that calls steps starts
// with (stepsAndTelemetry). The caller closes the telemetry.
func (c *common) roleSetup(ctx context.Context, stderr io.Writer, service, planFile string, resolve []string) (*plan.Plan, contract.Resolver, *telemetry.Telemetry, error) {
	p, err := plan.Load(planFile)
	if err != nil {
		return nil, nil, nil, err
	}
	resolver, tel, err := c.stepsAndTelemetry(ctx, stderr, service, p, resolve)
	return p, resolver, tel, err
}

// stepsAndTelemetry builds the resolver of the plan's steps (--resolve) and
// starts the process's telemetry. The caller closes the telemetry.
func (c *common) stepsAndTelemetry(ctx context.Context, stderr io.Writer, service string, p *plan.Plan, resolve []string) (contract.Resolver, *telemetry.Telemetry, error) {
	resolver, err := stepResolver(p, resolve)
	if err != nil {
		return nil, nil, err
	}
	tel, err := c.telemetry(ctx, stderr, service)
	if err != nil {
		return nil, nil, err
	}
	return resolver, tel, nil
}
