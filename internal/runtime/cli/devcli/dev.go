package devcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/patchbay-dev/patchbay/internal/runtime/cli"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
)

// The roles of this package.
var (
	Dev = cli.Role{Name: "dev", Usage: "-f WORKFLOW.yaml [--step NAME=cmd:COMMAND | NAME=url:URL]...", Run: runDev}
	// Graph reads the Workflow from stdin with -f -.
	Graph = cli.Role{Name: "graph", Usage: "-f WORKFLOW.yaml [--format mermaid|dot]",
		Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runGraph(ctx, args, os.Stdin, stdout, stderr)
		}}
)

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("dev", stderr)
	var c cli.Common
	c.Register(fs, "text")
	var file string
	fs.StringVar(&file, "f", "", "the Workflow YAML to run (required)")
	fs.StringVar(&file, "file", "", "same as -f")
	var steps cli.StringList
	fs.Var(&steps, "step", "NAME=cmd:COMMAND (started with sh -c, $PORT set to the port to listen on) or NAME=url:URL; other steps run an in-process demo-step configured by their args (repeatable)")
	addr := fs.String("addr", "127.0.0.1:0", "entry listen address; port 0 picks a free port")
	admin := fs.String("admin-addr", "127.0.0.1:0", "listen address of /metrics, /healthz, /readyz and /debug/breakers")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if file == "" {
		return errors.New("dev: -f WORKFLOW.yaml is required")
	}
	tel, err := c.Telemetry(ctx, stderr, "patchbay-dev")
	if err != nil {
		return err
	}
	defer tel.Close(context.WithoutCancel(ctx))
	env, err := dev.Start(ctx, dev.Options{
		File: file, Steps: steps, Addr: *addr, AdminAddr: *admin,
		Stderr: stderr, Telemetry: tel, Serve: c.ServeOptions(),
	})
	if err != nil {
		return err
	}
	// The entry URL is the one line on stdout, for scripts to read.
	fmt.Fprintln(stdout, env.EntryURL)
	<-env.Done()
	return env.Err()
}
