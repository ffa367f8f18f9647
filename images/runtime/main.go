package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchbay-dev/patchbay/internal/runtime/cli"
)

func main() {
	// SIGTERM (the kubelet) and SIGINT (a developer's ^C) start a graceful drain.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
