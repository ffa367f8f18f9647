package natstest

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TB is the part of a test that Start uses: a *testing.T, or Ginkgo's GinkgoT().
type TB interface {
	Helper()
	TempDir() string
	Fatal(args ...any)
	Cleanup(func())
}

// Start runs a NATS server with JetStream on a free loopback port, storing
// under a temporary directory, until the test ends, and returns its URL.
func Start(t TB) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		t.Fatal("embedded NATS is not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.ClientURL()
}
