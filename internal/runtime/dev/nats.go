package dev

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// broker is an embedded nats-server with JetStream for the async styles: on
// loopback, on a free port, with its store in a temporary directory.
type broker struct {
	srv *server.Server
	dir string
}

func startBroker() (*broker, error) {
	dir, err := os.MkdirTemp("", "patchbay-dev-nats-")
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "patchbay-dev",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
		// The same limit as a Broker's servers.
		MaxPayload: plan.MaxMessageLen,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		_ = os.RemoveAll(dir)
		return nil, errors.New("embedded NATS did not become ready within 30s")
	}
	return &broker{srv: srv, dir: dir}, nil
}

// URL is the broker's client URL.
func (b *broker) URL() string { return b.srv.ClientURL() }

func (b *broker) stop() {
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	_ = os.RemoveAll(b.dir)
}
