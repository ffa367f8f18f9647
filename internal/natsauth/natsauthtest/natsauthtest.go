// Package natsauthtest runs, for tests, a NATS server as a one-server Broker
// renders it (with its own keys) and connects to it as the users those keys
// mint.
package natsauthtest

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/utils/ptr"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"
)

// RoutePassword is the route password of the test Brokers.
const RoutePassword = "pbtestroutepassword"

// T is what the helpers need of a test: a testing.TB or a GinkgoT().
type T = natstest.T

// Keys are fresh keys for the Broker "default".
func Keys(t T) *natsauth.Broker {
	t.Helper()
	auth, err := natsauth.NewBroker("default", RoutePassword)
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

// Rendered is fresh keys and the nats.conf a one-server Broker "default" in
// the namespace "default" renders with them.
func Rendered(t T) (*natsauth.Broker, string) {
	t.Helper()
	auth := Keys(t)
	b := &v1alpha1.Broker{Spec: v1alpha1.BrokerSpec{Replicas: ptr.To(int32(1))}}
	b.Name, b.Namespace = "default", "default"
	return auth, render.NATSConfig(b, auth)
}

// Start runs a NATS server from the nats.conf of Rendered until the test
// ends, and returns its keys and URL.
func Start(t T) (*natsauth.Broker, string) {
	t.Helper()
	auth, conf := Rendered(t)
	url := natstest.StartConfig(t, conf, render.NATSDataDir, map[string]string{render.NATSServerNameEnv: "nats-0"})
	return auth, url
}

// As is the option that connects as the user of creds (a .creds file's
// content).
func As(t T, creds []byte) nats.Option {
	t.Helper()
	token, seed, err := natsauth.JWTAndSeed(creds)
	if err != nil {
		t.Fatal(err)
	}
	return nats.UserJWTAndSeed(token, seed)
}

// Admin connects to the server at url as a new admin user of the workflows
// account (as the manager does), until the test ends.
func Admin(t T, auth *natsauth.Broker, url string) *nats.Conn {
	t.Helper()
	return connectAs(t, auth, url, "test admin", false)
}

// System connects to the server at url as a new user of the system account
// (to send $SYS requests), until the test ends.
func System(t T, auth *natsauth.Broker, url string) *nats.Conn {
	t.Helper()
	return connectAs(t, auth, url, "test", true)
}

func connectAs(t T, auth *natsauth.Broker, url, name string, system bool) *nats.Conn {
	t.Helper()
	u, err := auth.NewUser(name, nil, system)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, As(t, u.Creds), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Manage creates the workflow's stream and buckets on the server at url as
// the manager does: as an admin of the workflows account.
func Manage(t T, auth *natsauth.Broker, url string, p *plan.Plan) {
	t.Helper()
	nc := Admin(t, auth, url)
	defer nc.Close()
	EnsureResources(t, nc, p)
}

// EnsureResources creates the workflow's stream and buckets over nc, waiting
// a minute at the most.
func EnsureResources(t T, nc *nats.Conn, p *plan.Plan) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := bus.EnsureResources(ctx, js, p, bus.DefaultStorage); err != nil {
		t.Fatal(err)
	}
}
