package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// Role is one role of the data plane: its name (the first argument), its
// usage line and how it runs with the rest of the arguments until ctx is done.
type Role struct {
	Name  string
	Usage string
	Run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// The roles this package implements. The roles that need more of the module
// (dev and graph: the embedded NATS server, the compiler) live in package
// devcli, so that a binary of these roles alone, such as the sidecar's
// (images/runtime/sidecar), links none of it.
var (
	Sidecar = Role{Name: "sidecar", Usage: "--plan FILE --step NAME [--nats-url URL --nats-credentials DIR] [flags]",
		Run: func(ctx context.Context, args []string, _, stderr io.Writer) error {
			return runSidecar(ctx, args, stderr)
		}}
	Orchestrator = Role{Name: "orchestrator", Usage: "--plan FILE [--nats-url URL --nats-credentials DIR] [flags]",
		Run: func(ctx context.Context, args []string, _, stderr io.Writer) error {
			return runOrchestrator(ctx, args, stderr)
		}}
	Gateway = Role{Name: "gateway", Usage: "--plan FILE --nats-url URL [--nats-credentials DIR] [flags]",
		Run: func(ctx context.Context, args []string, _, stderr io.Writer) error {
			return runGateway(ctx, args, stderr)
		}}
	DLQ = Role{Name: "dlq", Usage: "list|show|replay --plan FILE --nats-url URL [--nats-credentials DIR] [ID]", Run: runDLQ}
)

// Program is a data-plane binary: the roles it runs, the first argument
// naming one.
type Program struct {
	// Name starts the usage and the error line.
	Name  string
	Roles []Role
}

// errUsage is a command-line mistake whose message flag already printed.
var errUsage = errors.New("usage")

// Main runs the role args[0] names with the rest of args (args is without the
// program name) until ctx is done, and returns the exit code. Errors are
// printed as one line to stderr.
func (p Program) Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, p.usage())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	if i := slices.IndexFunc(p.Roles, func(r Role) bool { return r.Name == args[0] }); i >= 0 {
		err = p.Roles[i].Run(ctx, args[1:], stdout, stderr)
	} else {
		err = fmt.Errorf("unknown role %q: want %s", args[0], p.names())
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %s\n", p.Name, oneLine(err.Error()))
		return 1
	}
}

func (p Program) usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s runs patchbay's data plane.\n\nUsage:\n", p.Name)
	width := 0
	for _, r := range p.Roles {
		width = max(width, len(r.Name))
	}
	for _, r := range p.Roles {
		fmt.Fprintf(&b, "  %s %-*s %s\n", p.Name, width, r.Name, r.Usage)
	}
	fmt.Fprintf(&b, "\nRun \"%s ROLE -h\" for the flags of a role.\n", p.Name)
	return b.String()
}

// names lists the roles for an error: "a, b or c".
func (p Program) names() string {
	var n []string
	for _, r := range p.Roles {
		n = append(n, r.Name)
	}
	if len(n) < 2 {
		return strings.Join(n, "")
	}
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}

// Common are the flags every role has.
type Common struct {
	logFormat, logLevel string
	otlpEndpoint        string
	drainTimeout        time.Duration
	shutdownDelay       time.Duration
}

// Register adds the flags to fs; defaultLogFormat is json in a cluster, text
// on a developer's machine.
func (c *Common) Register(fs *flag.FlagSet, defaultLogFormat string) {
	fs.StringVar(&c.logFormat, "log-format", defaultLogFormat, "log format: json or text")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.otlpEndpoint, "otlp-endpoint", otlpFromEnv(), "OTLP/HTTP collector URL for spans, such as http://otel-collector:4318 (default $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else $OTEL_EXPORTER_OTLP_ENDPOINT; empty: no spans, traceparent still propagated)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM (and, for the sidecar, on GET /drain after the shutdown delay), how long in-flight requests and messages may finish")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 0, "on SIGTERM (or, for the sidecar, on GET /drain), how long to keep serving with /readyz failing before closing the listeners (before answering /drain)")
}

// check validates the flags after parsing, so a typo fails at start.
func (c *Common) check() error {
	_, err := telemetry.NewLogger(io.Discard, c.logFormat, c.logLevel)
	return err
}

// Telemetry starts the process's logging and tracing; the caller closes it.
func (c *Common) Telemetry(ctx context.Context, stderr io.Writer, service string) (*telemetry.Telemetry, error) {
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

// ServeOptions are the drain settings of the flags.
func (c *Common) ServeOptions() serve.Options {
	return serve.Options{ShutdownDelay: c.shutdownDelay, DrainTimeout: c.drainTimeout}
}

func otlpFromEnv() string {
	if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		return v
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
}

// NewFlagSet is the flag set of a role, printing its errors to stderr.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("patchbay-runtime "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// Parse parses flags; a parse error was already printed with the usage.
func Parse(fs *flag.FlagSet, args []string) error {
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
func (c *Common) roleSetup(ctx context.Context, stderr io.Writer, service, planFile string, resolve []string) (*plan.Plan, contract.Resolver, *telemetry.Telemetry, error) {
	p, err := plan.Load(planFile)
	if err != nil {
		return nil, nil, nil, err
	}
	resolver, tel, err := c.stepsAndTelemetry(ctx, stderr, service, p, resolve)
	return p, resolver, tel, err
}

// stepsAndTelemetry builds the resolver of the plan's steps (--resolve) and
// starts the process's telemetry. The caller closes the telemetry.
func (c *Common) stepsAndTelemetry(ctx context.Context, stderr io.Writer, service string, p *plan.Plan, resolve []string) (contract.Resolver, *telemetry.Telemetry, error) {
	resolver, err := stepResolver(p, resolve)
	if err != nil {
		return nil, nil, err
	}
	tel, err := c.Telemetry(ctx, stderr, service)
	if err != nil {
		return nil, nil, err
	}
	return resolver, tel, nil
}

// StringList is a repeatable flag.
type StringList []string

func (s *StringList) String() string { return strings.Join(*s, ",") }

// Set adds v.
func (s *StringList) Set(v string) error { *s = append(*s, v); return nil }
