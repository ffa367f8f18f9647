// Package bustest gives the runtime roles' tests an embedded broker with a
// workflow's stream and buckets, as the manager makes them on a Broker.
package bustest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
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

// Given compiles the Workflow name (in namespace default) with the spec,
// starts a broker until the test ends and creates the workflow's stream and
// buckets on it.
func Given(t *testing.T, name, spec string) *Env {
	t.Helper()
	e := &Env{Plan: Compile(t, name, spec), URL: natstest.Start(t)}
	e.Test = Connect(t, e.URL)
	if err := bus.EnsureResources(context.Background(), e.Test.JS, e.Plan, e.Test.Storage); err != nil {
		t.Fatal(err)
	}
	return e
}

// Runs is the workflow's runs bucket.
func (e *Env) Runs(t *testing.T) *bus.Runs {
	t.Helper()
	runs, err := bus.WaitRuns(context.Background(), e.Test.JS, e.Plan)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// Command is the subject the step's commands are published on.
func (e *Env) Command(step string) string { return e.Plan.Step(step).Consumers[0].FilterSubject }

// Subscribe is a channel that receives what is published on the subjects
// from now on.
func (e *Env) Subscribe(t *testing.T, subjects ...string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	for _, s := range subjects {
		if _, err := e.Test.NC.ChanSubscribe(s, ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Test.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// Reads is a channel that receives every request to read a message of the
// stream by sequence or by subject (a KV bucket's stream is KV_<bucket>),
// from now on: what a role reads of it shows there.
func (e *Env) Reads(t *testing.T, stream string) chan *nats.Msg {
	t.Helper()
	return e.Subscribe(t, "$JS.API.STREAM.MSG.GET."+stream, "$JS.API.DIRECT.GET."+stream+".>")
}

// Sync returns once every message the broker has routed to the test's
// subscriptions so far is in their channels: the broker answers the flush
// after what it queued for the connection before it. Check a Subscribe
// channel for what a role did after Sync, not before.
func (e *Env) Sync(t *testing.T) {
	t.Helper()
	if err := e.Test.NC.Flush(); err != nil {
		t.Fatal(err)
	}
}

// Publish publishes a JSON body of the run to the stream on subject, with
// the headers h (nil for none) and the run's id, as a role would; its
// message id is subject/runID.
func (e *Env) Publish(t *testing.T, subject, runID string, h nats.Header, body string) {
	t.Helper()
	m := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: []byte(body)}
	for k, v := range h {
		m.Header[k] = v
	}
	m.Header[contract.HeaderRunID] = []string{runID}
	m.Header["Content-Type"] = []string{"application/json"}
	if err := e.Test.Publish(context.Background(), m, subject+"/"+runID); err != nil {
		t.Fatal(err)
	}
}

// Result publishes the step's result of the run with the status
// (contract.ResultOK or contract.ResultFailed) on the run's result subject,
// as the step's sidecar does, but without the record a command carries
// (Answer has it).
func (e *Env) Result(t *testing.T, step, runID, status, body string) {
	t.Helper()
	e.Publish(t, bus.ResultOf(e.Plan.Step(step).Output.ResultSubject, runID), runID, nats.Header{contract.HeaderStatus: {status}}, body)
}

// Answer publishes the result of the command cmd of step with the status
// and body, as the step's sidecar does: with the run's deadline, replay and
// record that the command carries.
func (e *Env) Answer(t *testing.T, step string, cmd *nats.Msg, status, body string) {
	t.Helper()
	h := nats.Header{contract.HeaderStatus: {status}}
	for _, k := range []string{bus.HeaderDeadline, bus.HeaderReplay, bus.HeaderRecord} {
		if v := cmd.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	runID := cmd.Header.Get(contract.HeaderRunID)
	e.Publish(t, bus.ResultOf(e.Plan.Step(step).Output.ResultSubject, runID), runID, h, body)
}

// ExpectSettled expects the role's durable consumer to have the roles'
// delivery limit and, in the end, nothing pending or awaiting an ack: a
// message the role failed on was terminated, not left to be redelivered.
func (e *Env) ExpectSettled(g gomega.Gomega, durable string) {
	ctx := context.Background()
	cons, err := e.Test.JS.Consumer(ctx, e.Plan.Stream.Name, durable)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(cons.CachedInfo().Config.MaxDeliver).To(gomega.Equal(bus.RoleConsumerMaxDeliver))
	g.Eventually(func(g gomega.Gomega) {
		info, err := cons.Info(ctx)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(info.NumPending).To(gomega.BeZero())
		g.Expect(info.NumAckPending).To(gomega.BeZero())
	}).WithTimeout(10 * time.Second).Should(gomega.Succeed())
}

// Compile is the plan of the Workflow name (in namespace default) with the
// spec, YAML as it stands under a manifest's spec:.
func Compile(t *testing.T, name, spec string) *plan.Plan {
	t.Helper()
	wf := v1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if err := yaml.UnmarshalStrict([]byte(spec), &wf.Spec); err != nil {
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
