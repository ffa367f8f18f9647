package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", stderr)
	var c common
	c.register(fs, "text")
	var file string
	fs.StringVar(&file, "f", "", "the Workflow YAML to run (required)")
	fs.StringVar(&file, "file", "", "same as -f")
	var steps stringList
	fs.Var(&steps, "step", "NAME=cmd:COMMAND (started with sh -c, $PORT set to the port to listen on) or NAME=url:URL; other steps run an in-process demo-step configured by their args (repeatable)")
	addr := fs.String("addr", "127.0.0.1:0", "entry listen address; port 0 picks a free port")
	admin := fs.String("admin-addr", "127.0.0.1:0", "listen address of /metrics, /healthz, /readyz and /debug/breakers")
	if err := parse(fs, args); err != nil {
		return err
	}
	if file == "" {
		return errors.New("dev: -f WORKFLOW.yaml is required")
	}
	tel, err := c.telemetry(ctx, stderr, "patchbay-dev")
	if err != nil {
		return err
	}
	defer tel.Close(context.WithoutCancel(ctx))
	env, err := dev.Start(ctx, dev.Options{
		File: file, Steps: steps, Addr: *addr, AdminAddr: *admin,
		Stderr: stderr, Telemetry: tel, Serve: c.serveOptions(),
	})
	if err != nil {
		return err
	}
	// The entry URL is the one line on stdout, for scripts to read.
	fmt.Fprintln(stdout, env.EntryURL)
	<-env.Done()
	return env.Err()
}
