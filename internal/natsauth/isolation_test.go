package natsauth_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/natsauth/natsauthtest"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev/devtest"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// givenWorkflow is a sample renamed, its plan, and the directory of its
// credentials as its pods mount them.
func givenWorkflow(t *testing.T, auth *natsauth.Broker, sample, name string) (file string, p *plan.Plan, creds string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", sample+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file = filepath.Join(dir, "workflow.yaml")
	if err := os.WriteFile(file, []byte(regexp.MustCompile(`(?m)^  name: .*$`).ReplaceAllString(string(b), "  name: "+name)), 0o600); err != nil {
		t.Fatal(err)
	}
	wf, err := dev.LoadWorkflow(file)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = topology.Compile(wf); err != nil {
		t.Fatal(err)
	}
	u, err := auth.NewWorkflowUser(p)
	if err != nil {
		t.Fatal(err)
	}
	creds = filepath.Join(dir, "creds")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, natsauth.CredentialsKey), u.Creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, p, creds
}

// givenDataPlane runs the workflow's gateway, orchestrator and sidecars (dev)
// on the broker at url with its own credentials.
func givenDataPlane(t *testing.T, file, url, creds string) *dev.Env {
	t.Helper()
	return devtest.Start(t, dev.Options{File: file, NATSURL: url, NATSCredentials: creds})
}

// connectAs connects to url with a workflow's credentials, as its pods do.
// expectRefused waits for the server's permissions violation naming subject:
// the server answers each refused publish or subscription so.
func connectAs(t *testing.T, g Gomega, url, creds string, p *plan.Plan) (nc *nats.Conn, js jetstream.JetStream, expectRefused func(what, subject string)) {
	t.Helper()
	refused := make(chan error, 64)
	nc, err := nats.Connect(url, nats.UserCredentials(filepath.Join(creds, natsauth.CredentialsKey)),
		nats.CustomInboxPrefix(bus.InboxPrefix(p)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refused <- err }))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(nc.Close)
	js, err = jetstream.New(nc)
	g.Expect(err).NotTo(HaveOccurred())
	return nc, js, func(what, subject string) {
		t.Helper()
		g.Eventually(refused).Should(Receive(MatchError(And(ContainSubstring("Permissions Violation"), ContainSubstring(`"`+subject+`"`)))), what)
	}
}

// expectRefusedCall expects the JetStream call try to fail and the server to
// name subject in its permissions violation.
func expectRefusedCall(g Gomega, expectRefused func(what, subject string), what, subject string, try func(ctx context.Context) error) {
	ctx, cancel := call()
	err := try(ctx)
	cancel()
	g.Expect(err).To(HaveOccurred(), what)
	expectRefused(what, subject)
}

func call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Second)
}

func run(g Gomega, env *dev.Env, body string) {
	resp, err := http.Post(env.EntryURL, "application/json", strings.NewReader(body))
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
}

func TestAWorkflowsCredentialsReachOnlyItsOwnResources(t *testing.T) {
	g := NewWithT(t)
	auth, url := natsauthtest.Start(t)
	fileA, pA, credsA := givenWorkflow(t, auth, "async-orchestrated", "alpha")
	fileB, pB, credsB := givenWorkflow(t, auth, "hybrid", "beta")
	g.Expect(pB.ReadModel).NotTo(BeNil())
	natsauthtest.Manage(t, auth, url, pA)
	natsauthtest.Manage(t, auth, url, pB)
	// Both run end to end, each with its own credentials only, B's read
	// model included.
	run(g, givenDataPlane(t, fileA, url, credsA), `{"id":7}`)
	envB := givenDataPlane(t, fileB, url, credsB)
	run(g, envB, `{"id":7,"orderId":"o-7"}`)
	g.Eventually(func() int {
		resp, err := http.Get(envB.EntryURL + "query/o-7")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}, 20*time.Second).Should(Equal(http.StatusOK))

	// Workflow A's credentials, as A's pods use them.
	nc, js, expectRefused := connectAs(t, g, url, credsA, pA)

	// A's own stream is there for A.
	ctx, cancel := call()
	_, err := js.Stream(ctx, pA.Stream.Name)
	cancel()
	g.Expect(err).NotTo(HaveOccurred())

	// Each of these JetStream calls fails, and the server says why.
	directGet := func(bucket, key string) string {
		return "$JS.API.DIRECT.GET.KV_" + bucket + ".$KV." + bucket + "." + key
	}
	for _, tc := range []struct {
		what, subject string
		try           func(ctx context.Context) error
	}{
		{"delete B's stream", "$JS.API.STREAM.DELETE." + pB.Stream.Name, func(ctx context.Context) error {
			return js.DeleteStream(ctx, pB.Stream.Name)
		}},
		{"create a consumer on B's stream", "$JS.API.CONSUMER.CREATE." + pB.Stream.Name + ".spy." + pB.Stream.StartSubject, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateConsumer(ctx, pB.Stream.Name, jetstream.ConsumerConfig{Durable: "spy", FilterSubject: pB.Stream.StartSubject})
			return err
		}},
		{"bind B's runs bucket", "$JS.API.STREAM.INFO.KV_" + pB.Stream.RunsBucket, func(ctx context.Context) error {
			_, err := js.KeyValue(ctx, pB.Stream.RunsBucket)
			return err
		}},
		{"get from B's runs bucket", directGet(pB.Stream.RunsBucket, "some-run"), func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, directGet(pB.Stream.RunsBucket, "some-run"), nil)
			return err
		}},
		{"put into B's runs bucket", "$KV." + pB.Stream.RunsBucket + ".some-run", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "$KV."+pB.Stream.RunsBucket+".some-run", []byte(`{"status":"succeeded"}`))
			return err
		}},
		{"get from B's read model", directGet(pB.ReadModel.Bucket, "o-7"), func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, directGet(pB.ReadModel.Bucket, "o-7"), nil)
			return err
		}},
		{"delete B's read model", "$JS.API.STREAM.DELETE.KV_" + pB.ReadModel.Bucket, func(ctx context.Context) error {
			return js.DeleteKeyValue(ctx, pB.ReadModel.Bucket)
		}},
	} {
		expectRefusedCall(g, expectRefused, tc.what, tc.subject, tc.try)
	}

	// Core NATS publishes and subscribes fail only on the server.
	g.Expect(nc.Publish(pB.Stream.StartSubject, []byte(`{"id":7}`))).To(Succeed())
	expectRefused("publish on B's start subject", pB.Stream.StartSubject)
	_, err = nc.SubscribeSync(pB.Stream.Subjects[0])
	g.Expect(err).NotTo(HaveOccurred())
	expectRefused("subscribe to B's subjects", pB.Stream.Subjects[0])
	_, err = nc.SubscribeSync(bus.InboxPrefix(pB) + ".>")
	g.Expect(err).NotTo(HaveOccurred())
	expectRefused("subscribe to B's inbox", bus.InboxPrefix(pB)+".>")

	// Nothing of B changed: its stream is there with its messages, and B
	// still runs.
	ncB, err := nats.Connect(url, nats.UserCredentials(filepath.Join(credsB, natsauth.CredentialsKey)), nats.CustomInboxPrefix(bus.InboxPrefix(pB)))
	g.Expect(err).NotTo(HaveOccurred())
	defer ncB.Close()
	jsB, err := jetstream.New(ncB)
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel = call()
	defer cancel()
	s, err := jsB.Stream(ctx, pB.Stream.Name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.CachedInfo().State.Msgs).To(BeNumerically(">", 0))
	_, err = s.Consumer(ctx, "spy")
	g.Expect(err).To(MatchError(jetstream.ErrConsumerNotFound))
	kv, err := jsB.KeyValue(ctx, pB.ReadModel.Bucket)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = kv.Get(ctx, "o-7")
	g.Expect(err).NotTo(HaveOccurred(), "B's read model is intact")
}

// A user's JWT travels in the CONNECT line, which a server bounds: the user
// of a Workflow with the longest names and every bucket still connects to a
// server run from the rendered nats.conf, and may use its stream.
func TestTheLongestWorkflowUserConnects(t *testing.T) {
	g := NewWithT(t)
	auth, url := natsauthtest.Start(t)
	wf, err := dev.LoadWorkflow(filepath.Join("..", "..", "config", "samples", "hybrid.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	wf.Namespace = strings.Repeat("n", 63)
	wf.Name = strings.Repeat("w", 63-len("-hy-orchestrator"))
	p, err := topology.Compile(wf)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.ReadModel).NotTo(BeNil())
	u, err := auth.NewWorkflowUser(p)
	g.Expect(err).NotTo(HaveOccurred())
	token, seed, err := natsauth.JWTAndSeed(u.Creds)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("the longest user's JWT has %d bytes", len(token))
	natsauthtest.Manage(t, auth, url, p)
	g.Expect(err).NotTo(HaveOccurred())
	nc, err := nats.Connect(url, nats.UserJWTAndSeed(token, seed), nats.CustomInboxPrefix(bus.InboxPrefix(p)))
	g.Expect(err).NotTo(HaveOccurred())
	defer nc.Close()
	js, err := jetstream.New(nc)
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g.Expect(bus.WaitStream(ctx, js, p)).To(Succeed())
	_, err = bus.WaitRuns(ctx, js, p)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = bus.WaitReadModel(ctx, js, p)
	g.Expect(err).NotTo(HaveOccurred())
}

// The subjects of a stream are in its create or update request, which no
// permission can check: a workflow's user may create or change no stream and
// no bucket, so it cannot capture another workflow's subjects, even before
// that workflow's stream exists. Its own runs work on what the manager made.
func TestAWorkflowCannotCreateOrChangeAStream(t *testing.T) {
	g := NewWithT(t)
	auth, url := natsauthtest.Start(t)
	fileA, pA, credsA := givenWorkflow(t, auth, "async-orchestrated", "alpha")
	fileB, pB, credsB := givenWorkflow(t, auth, "hybrid", "beta")
	natsauthtest.Manage(t, auth, url, pA)
	_, js, expectRefused := connectAs(t, g, url, credsA, pA)

	// B has no stream yet.
	capture := jetstream.StreamConfig{Name: "CAPTURE", Subjects: []string{pB.Stream.Subjects[0]}}
	createStream := func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, capture)
		return err
	}
	createBucket := func(name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name})
			return err
		}
	}
	expectRefusedCall(g, expectRefused, "a stream on B's subjects", "$JS.API.STREAM.CREATE.CAPTURE", createStream)
	capture.Name = pB.Stream.Name
	expectRefusedCall(g, expectRefused, "B's stream", "$JS.API.STREAM.CREATE."+pB.Stream.Name, createStream)
	expectRefusedCall(g, expectRefused, "B's read-model bucket", "$JS.API.STREAM.CREATE.KV_"+pB.ReadModel.Bucket, createBucket(pB.ReadModel.Bucket))

	// Its own stream and buckets, with any subjects, neither.
	ctx, cancel := call()
	s, err := js.Stream(ctx, pA.Stream.Name)
	cancel()
	g.Expect(err).NotTo(HaveOccurred())
	widened := s.CachedInfo().Config
	widened.Subjects = append(widened.Subjects, pB.Stream.Subjects[0])
	expectRefusedCall(g, expectRefused, "A's stream widened to B's subjects", "$JS.API.STREAM.UPDATE."+pA.Stream.Name, func(ctx context.Context) error {
		_, err := js.UpdateStream(ctx, widened)
		return err
	})
	expectRefusedCall(g, expectRefused, "a bucket of A's own", "$JS.API.STREAM.CREATE.KV_pb_alpha_extra", createBucket("pb_alpha_extra"))
	expectRefusedCall(g, expectRefused, "delete A's own stream", "$JS.API.STREAM.DELETE."+pA.Stream.Name, func(ctx context.Context) error {
		return js.DeleteStream(ctx, pA.Stream.Name)
	})

	// The manager then makes B's, which nothing captured, and both run.
	natsauthtest.Manage(t, auth, url, pB)
	run(g, givenDataPlane(t, fileA, url, credsA), `{"id":7}`)
	run(g, givenDataPlane(t, fileB, url, credsB), `{"id":7,"orderId":"o-7"}`)
}
