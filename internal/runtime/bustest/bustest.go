// Package bustest gives the runtime roles' tests an embedded broker with a
// workflow's stream and buckets, as the manager makes them on a Broker.
package bustest

import (
	"context"
	"log/slog"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// Env is an embedded broker (at URL) with the resources of a workflow's
// Plan, and a connection for the test to play the other roles with.
type Env struct {
	Plan *plan.Plan
	URL  string
	Test *bus.Conn
}

// Given compiles the Workflow manifest, starts a broker until the test ends
// and creates the workflow's stream and buckets on it.
func Given(t *testing.T, manifest string) *Env {
	t.Helper()
	e := &Env{Plan: Compile(t, manifest), URL: natstest.Start(t)}
	e.Test = Connect(t, e.URL)
	if err := bus.EnsureResources(context.Background(), e.Test.JS, e.Plan, e.Test.Storage); err != nil {
		t.Fatal(err)
	}
	return e
}

// Compile is the plan of the Workflow manifest.
func Compile(t *testing.T, manifest string) *plan.Plan {
	t.Helper()
	var wf v1alpha1.Workflow
	if err := yaml.UnmarshalStrict([]byte(manifest), &wf); err != nil {
		t.Fatal(err)
	}
	p, err := topology.Compile(&wf)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Connect is a new connection to the broker at url, closed when the test
// ends.
func Connect(t *testing.T, url string) *bus.Conn {
	t.Helper()
	c, err := bus.Connect(bus.Options{URL: url, Name: "test"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Telemetry logs nowhere and traces nowhere.
func Telemetry() *telemetry.Telemetry {
	tracing, _ := telemetry.NewTracing(context.Background(), "", "test")
	return telemetry.New(slog.New(slog.DiscardHandler), tracing)
}
