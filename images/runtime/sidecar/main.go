package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchbay-dev/patchbay/internal/runtime/cli"
)

// program is patchbay-runtime with the sidecar role alone: the same flags and
// behaviour (cli.Sidecar), so the rendered args run either binary.
var program = cli.Program{Name: "patchbay-sidecar", Roles: []cli.Role{cli.Sidecar}}

func main() {
	// SIGTERM (the kubelet) starts a graceful drain.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := program.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
