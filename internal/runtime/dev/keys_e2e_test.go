package dev_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev/devtest"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
)

// A caller's id or key goes into a NATS subject. One over the broker's
// control-line limit (4096 bytes) used to make the server close the gateway's
// connection for good, and every later request answered 503. Every such key
// is now refused with a 400 naming the field and the rule, and the next run
// still completes.

// long is over the broker's 4096-byte control line on its own.
var long = strings.Repeat("a", 4100)

func TestBadRunIDsAreRefusedAndTheGatewayKeepsItsBroker(t *testing.T) {
	env := givenSample(t, "async-orchestrated")
	const done = `{"id":1,"valid":true,"picked":true,"packed":true,"shipped":true}`
	for name, path := range map[string]string{
		"long":     long,
		"space":    "a%20b",
		"star":     "a*",
		"gt":       "a%3E",
		"dot":      "a.b",
		"control":  "a%01b",
		"nonASCII": "%C3%BC",
	} {
		t.Run("GET /runs/ "+name, func(t *testing.T) {
			g := NewWithT(t)
			a := whenGet(t, env.EntryURL+"runs/"+path)
			expectKeyRefused(g, a, "run id", "128")
			expectRunsStillComplete(t, g, env, done)
		})
	}
	for name, id := range map[string]string{
		"long":     long,
		"space":    "a b",
		"star":     "a*",
		"gt":       "a>",
		"dot":      "a.b",
		"tab":      "a\tb",
		"nonASCII": "ü",
	} {
		t.Run("POST Patchbay-Run-Id "+name, func(t *testing.T) {
			g := NewWithT(t)
			a := whenPostWithHeader(t, env.EntryURL, `{"id":1}`, contract.HeaderRunID, id)
			expectKeyRefused(g, a, "Patchbay-Run-Id header", "128")
			expectRunsStillComplete(t, g, env, done)
		})
	}
}

func TestBadReadModelKeysAreRefusedAndTheGatewayKeepsItsBroker(t *testing.T) {
	env := givenSample(t, "choreography")
	const done = `{"id":1,"reserved":true,"charged":true}`
	for name, path := range map[string]string{
		"long":       long,
		"long coded": strings.Repeat("%C3%BC", 200), // 400 bytes, each one base64-encoded
		"not UTF-8":  "%FF",
	} {
		t.Run("GET /query/ "+name, func(t *testing.T) {
			g := NewWithT(t)
			a := whenGet(t, env.EntryURL+"query/"+path)
			expectKeyRefused(g, a, "read-model key", "256")
			expectRunsStillComplete(t, g, env, done)
		})
	}
	// Keys outside the KV charset are stored encoded, as before.
	g := NewWithT(t)
	g.Expect(whenGet(t, env.EntryURL+"query/with%20space").Code).To(Equal(http.StatusNotFound))
}

func TestAProjectedEventWithABadKeyIsSkippedNotRetried(t *testing.T) {
	g := NewWithT(t)
	env := givenSample(t, "choreography")
	// order.confirmed is projected, and its one subscriber emits nothing.
	subject := eventSubject(env, "order.confirmed")
	conn := connect(t, env)
	for i, key := range []string{long, strings.Repeat("b", 257)} {
		body, _ := json.Marshal(map[string]any{"orderId": key})
		_, err := conn.JS.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: body,
			Header: nats.Header{contract.HeaderRunID: {"bad-key-" + string(rune('0'+i))}, "Content-Type": {"application/json"}}})
		g.Expect(err).NotTo(HaveOccurred())
	}
	eventually(g, func(g Gomega) string {
		return metric(g, env, `patchbay_read_model_skipped_total{reason="invalid key",workflow="orders"}`)
	}).Should(Equal("2"))

	// The projector moved on (it projects one event at a time, so a bad one
	// retried for ever would hold back every later one), and the gateway
	// kept its broker.
	a := whenPostJSON(t, env.EntryURL, `{"orderId":"o-after","qty":1}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	eventually(g, func(g Gomega) {
		r := whenGet(t, env.EntryURL+"query/o-after")
		g.Expect(r.Code).To(Equal(http.StatusOK), "%s", r.Body)
		g.Expect(r.Body).To(MatchJSON(`{"orderId":"o-after","qty":1,"reserved":true,"charged":true}`))
	}).Should(Succeed())
	info, err := conn.JS.Consumer(context.Background(), env.Plan.Stream.Name, env.Plan.ReadModel.Durable)
	g.Expect(err).NotTo(HaveOccurred())
	ci, err := info.Info(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ci.NumRedelivered).To(BeZero(), "no event was redelivered")
}

// expectKeyRefused: a 400 that names the field and the rule.
func expectKeyRefused(g Gomega, a answer, field, maxLen string) {
	g.ExpectWithOffset(1, a.Code).To(Equal(http.StatusBadRequest), "%.300s", a.Body)
	var e contract.Error
	g.ExpectWithOffset(1, json.Unmarshal(a.Body, &e)).To(Succeed(), "%.300s", a.Body)
	g.ExpectWithOffset(1, e.Message).To(And(ContainSubstring(field), ContainSubstring(maxLen), ContainSubstring("characters")))
	g.ExpectWithOffset(1, len(a.Body)).To(BeNumerically("<", 1024), "the answer does not echo a long key")
}

// expectRunsStillComplete: the gateway's broker connection survived.
func expectRunsStillComplete(t *testing.T, g Gomega, env *dev.Env, want string) {
	t.Helper()
	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.ExpectWithOffset(1, a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	g.ExpectWithOffset(1, a.Body).To(MatchJSON(want))
	r := whenGet(t, env.AdminURL+"readyz")
	g.ExpectWithOffset(1, r.Code).To(Equal(http.StatusOK), "%s", r.Body)
}

func whenPostWithHeader(t *testing.T, url, body, key, value string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header[key] = []string{value}
	a, err := devtest.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// As a role exits for Kubernetes to restart it, the dev data plane stops
// with the error when a component's broker link fails for good (here: the
// read model's consumer is deleted, so the client stops consuming), instead
// of serving on, disconnected; /readyz says so until it stopped.
func TestDevStopsWhenABrokerLinkFailsForGood(t *testing.T) {
	g := NewWithT(t)
	tel := testTelemetry(t)
	env, err := dev.Start(context.Background(), dev.Options{
		File: filepath.Join("..", "..", "..", "config", "samples", "choreography.yaml"),
		Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Stderr: t.Output(), Telemetry: tel,
		Serve: serve.Options{DrainTimeout: 5 * time.Second},
	})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	g.Expect(whenGet(t, env.AdminURL+"readyz").Code).To(Equal(http.StatusOK))

	conn := connect(t, env)
	g.Expect(conn.JS.DeleteConsumer(context.Background(), env.Plan.Stream.Name, env.Plan.ReadModel.Durable)).To(Succeed())
	// The client learns of the deletion from the server's answer to its
	// pending pull or, when the deletion fell between two pulls, by asking
	// the server after two missed idle heartbeats (15 s each with nats.go's
	// defaults): allow for the latter on a busy machine.
	g.Eventually(env.Done()).WithTimeout(2 * time.Minute).Should(BeClosed())
	g.Expect(env.Err()).To(MatchError(ContainSubstring("consumer " + env.Plan.ReadModel.Durable + " stopped consuming")))
}
