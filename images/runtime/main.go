package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchbay-dev/patchbay/internal/runtime/cli"
	"github.com/patchbay-dev/patchbay/internal/runtime/cli/devcli"
)

// program has every role; the sidecar's own binary (./sidecar) has one.
var program = cli.Program{Name: "patchbay-runtime", Roles: []cli.Role{
	cli.Sidecar, cli.Orchestrator, cli.Gateway, devcli.Dev, devcli.Graph, cli.DLQ,
}}

func main() {
	// SIGTERM (the kubelet) and SIGINT (a developer's ^C) start a graceful drain.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := program.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
