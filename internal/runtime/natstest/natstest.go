package natstest

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/patchbay-dev/patchbay/internal/freeport"
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
	return run(t, &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
}

// FreePort is a loopback port free at the time of the call, for a server a
// test starts on a port it names (one it stops and starts again, say); see
// freeport.Port for why it is below the ephemeral range.
func FreePort(t TB) int {
	t.Helper()
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// run starts a server of opts until the test ends and returns its URL.
func run(t TB, opts *server.Options) string {
	t.Helper()
	srv, err := server.NewServer(opts)
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

// T is what StartConfig needs of a test: a testing.TB or a GinkgoT().
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Setenv(key, value string)
	TempDir() string
	Cleanup(func())
}

// StartConfig runs a NATS server from conf, a nats.conf as a Broker renders
// it (ConfigOptions), until the test ends, and returns its URL.
func StartConfig(t T, conf, dataDir string, env map[string]string) string {
	t.Helper()
	opts := ConfigOptions(t, conf, dataDir, t.TempDir(), env)
	opts.Port = server.RANDOM_PORT
	return run(t, opts)
}

// ConfigOptions are the options of a server run from conf, a nats.conf as a
// Broker renders it. Only where it runs changes: it listens on loopback (on
// the port the caller sets), monitoring and the cluster are off, and its
// files (store, resolver) are under dir instead of dataDir. env are the
// variables nats.conf reads, as the pod would have them.
func ConfigOptions(t T, conf, dataDir, dir string, env map[string]string) *server.Options {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	conf = strings.ReplaceAll(conf, `"`+dataDir, `"`+filepath.Join(dir, "data"))
	file := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats.conf as rendered: %v", err)
	}
	opts.Host = "127.0.0.1"
	opts.HTTPPort, opts.HTTPHost = 0, ""
	opts.Cluster = server.ClusterOpts{}
	opts.Routes = nil
	opts.PidFile = ""
	opts.NoSigs, opts.NoLog = true, true
	return opts
}
