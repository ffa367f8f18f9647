package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/patchbay-dev/patchbay/internal/demostep"
)

func main() {
	cfg, err := demostep.Parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-step: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := demostep.NewServer(cfg.Addr, cfg)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("Serving", "name", cfg.Name, "addr", cfg.Addr, "mode", cfg.Mode)
	select {
	case err := <-errc:
		fmt.Fprintf(os.Stderr, "demo-step: %v\n", err)
		os.Exit(1) //nolint:gocritic // exitAfterDefer: the deferred stop only unregisters the signals
	case <-ctx.Done():
	}
	drain, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		log.Warn("Drain cut short", "err", err)
	}
	log.Info("Stopped", "name", cfg.Name)
}
