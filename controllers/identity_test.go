package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/controllers"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/natsauth/natsauthtest"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// givenRunningBroker creates a Broker and runs a NATS server from the
// nats.conf its controller rendered, as its pod would; the manager reaches
// the Broker there. It returns the Broker's keys and the server's URL.
func givenRunningBroker(ctx context.Context, ns, name string) (*natsauth.Broker, string) {
	Expect(k8s.Create(ctx, &v1alpha1.Broker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
	cm := &corev1.ConfigMap{}
	Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: render.NATSConfigName(name)}, cm)
	}).Should(Succeed())
	auth := brokerAuth(ctx, ns, name)
	url := natstest.StartConfig(GinkgoT(), cm.Data["nats.conf"], render.NATSDataDir, map[string]string{render.NATSServerNameEnv: name + "-nats-0"})
	brokerServers.Store(ns+"/"+name, url)
	DeferCleanup(func() { brokerServers.Delete(ns + "/" + name) })
	return auth, url
}

// brokerAuth reads a Broker's auth Secret.
func brokerAuth(ctx context.Context, ns, name string) *natsauth.Broker {
	var auth *natsauth.Broker
	Eventually(func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: render.NATSAuthSecretName(name)}, s)).To(Succeed())
		a, ok := natsauth.FromData(s.Data)
		g.Expect(ok).To(BeTrue())
		auth = a
	}).Should(Succeed())
	return auth
}

// credentials polls the credentials in a Workflow's Secret.
func credentials(ctx context.Context, ns, workflow string) func() []byte {
	return func() []byte {
		s := &corev1.Secret{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: render.WorkflowCredentialsSecretName(workflow)}, s); err != nil {
			return nil
		}
		return s.Data[natsauth.CredentialsKey]
	}
}

// podCredentialsHash polls the credentials hash on a Deployment's pod template.
func podCredentialsHash(ctx context.Context, ns, name string) func() string {
	return func() string {
		d := &appsv1.Deployment{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, d); err != nil {
			return err.Error()
		}
		return d.Spec.Template.Annotations[render.AnnotationNATSCredentialsHash]
	}
}

// connectAs connects to url with a workflow's credentials and inbox prefix,
// as its pods do.
func connectAs(url string, creds []byte, p *plan.Plan) (*nats.Conn, error) {
	return nats.Connect(url, natsauthtest.As(GinkgoT(), creds), nats.CustomInboxPrefix(bus.InboxPrefix(p)), nats.Timeout(5*time.Second))
}

// compiled is the plan of a Workflow as it stands.
func compiled(ctx context.Context, ns, name string) *plan.Plan {
	p, err := topology.Compile(getWorkflow(ctx, ns, name))
	Expect(err).NotTo(HaveOccurred())
	return p
}

// setUpOnBroker opens a workflow's stream and runs bucket, which the
// manager creates, and creates its consumers with its own credentials, as its
// roles do at start.
func setUpOnBroker(ctx context.Context, url string, creds []byte, p *plan.Plan) {
	nc, err := connectAs(url, creds, p)
	Expect(err).NotTo(HaveOccurred())
	defer nc.Close()
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	Expect(bus.WaitStream(ctx, js, p)).To(Succeed())
	_, err = bus.WaitRuns(ctx, js, p)
	Expect(err).NotTo(HaveOccurred())
	_, err = bus.WaitIdempotency(ctx, js, p)
	Expect(err).NotTo(HaveOccurred())
	for _, st := range p.Steps {
		for _, c := range st.Consumers {
			_, err := bus.EnsureConsumer(ctx, js, p, bus.StepConsumerConfig(c))
			Expect(err).NotTo(HaveOccurred())
		}
	}
}

// adminJS is a JetStream client of the Broker's workflows account with no
// limits, as the manager's.
func adminJS(auth *natsauth.Broker, url string) jetstream.JetStream {
	js, err := jetstream.New(natsauthtest.Admin(GinkgoT(), auth, url))
	Expect(err).NotTo(HaveOccurred())
	return js
}

// streamNames lists the streams js sees.
func streamNames(ctx context.Context, js jetstream.JetStream) func() []string {
	return func() []string {
		var names []string
		l := js.StreamNames(ctx)
		for n := range l.Name() {
			names = append(names, n)
		}
		Expect(l.Err()).NotTo(HaveOccurred())
		return names
	}
}

// streamConfig polls the configuration of a stream, nil while it does not exist.
func streamConfig(ctx context.Context, js jetstream.JetStream, name string) func() *jetstream.StreamConfig {
	return func() *jetstream.StreamConfig {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil
		}
		c := s.CachedInfo().Config
		return &c
	}
}

var _ = Describe("Workflow identities on a Broker", Ordered, func() {
	ctx := context.Background()
	var (
		ns   string
		auth *natsauth.Broker
		url  string
		// betaReadModel is the read model beta gains later.
		betaReadModel *v1alpha1.ReadModel
	)
	BeforeAll(func() {
		ns = newNamespace("identity", nil)
		auth, url = givenRunningBroker(ctx, ns, "default")
		for _, sample := range []struct{ file, name string }{{"async-orchestrated.yaml", "alpha"}, {"choreography.yaml", "beta"}} {
			wf := &v1alpha1.Workflow{}
			readSample(sample.file, wf)
			wf.Namespace, wf.Name = ns, sample.name
			wf.Spec.Broker = &v1alpha1.BrokerRef{Name: "default"}
			if sample.name == "beta" {
				betaReadModel, wf.Spec.ReadModel = wf.Spec.ReadModel, nil
			}
			Expect(k8s.Create(ctx, wf)).To(Succeed())
		}
	})

	It("creates each Workflow's stream and runs bucket on the Broker with the Plan's settings, and the read-model bucket once the Plan has one", func() {
		js := adminJS(auth, url)
		for _, name := range []string{"alpha", "beta"} {
			p := compiled(ctx, ns, name)
			Eventually(streamConfig(ctx, js, p.Stream.Name)).Should(PointTo(MatchFields(IgnoreExtras, Fields{
				"Subjects": Equal(p.Stream.Subjects),
				"MaxAge":   Equal(bus.StreamConfig(p, bus.DefaultStorage).MaxAge),
				"Replicas": Equal(1),
				"Storage":  Equal(jetstream.FileStorage),
			})), name)
			Eventually(streamConfig(ctx, js, "KV_"+p.Stream.RunsBucket)).Should(PointTo(MatchFields(IgnoreExtras, Fields{
				"AllowDirect": BeFalse(),
				"MaxAge":      Equal(bus.RunsConfig(p, bus.DefaultStorage).TTL),
			})), name)
		}
		beta := compiled(ctx, ns, "beta")
		Expect(beta.ReadModel).To(BeNil())

		updateWorkflow(ctx, ns, "beta", func(wf *v1alpha1.Workflow) { wf.Spec.ReadModel = betaReadModel })
		Eventually(func() *plan.ReadModel { return compiled(ctx, ns, "beta").ReadModel }).ShouldNot(BeNil())
		beta = compiled(ctx, ns, "beta")
		Eventually(streamConfig(ctx, js, "KV_"+beta.ReadModel.Bucket)).ShouldNot(BeNil())
		// The new user, with the permissions of the new plan, opens it.
		Eventually(func(g Gomega) {
			uc, err := auth.UserOf(credentials(ctx, ns, "beta")())
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(uc.Permissions.Pub.Allow).To(Equal(natsauth.WorkflowPermissions(beta).Pub.Allow))
		}).Should(Succeed())
		nc, err := connectAs(url, credentials(ctx, ns, "beta")(), beta)
		Expect(err).NotTo(HaveOccurred())
		defer nc.Close()
		bjs, err := jetstream.New(nc)
		Expect(err).NotTo(HaveOccurred())
		_, err = bus.WaitReadModel(ctx, bjs, beta)
		Expect(err).NotTo(HaveOccurred())
	})

	It("gives each Workflow its own user, with permissions for its own resources only, mounted by its own pods only", func() {
		for _, name := range []string{"alpha", "beta"} {
			Eventually(credentials(ctx, ns, name)).ShouldNot(BeEmpty(), name)
			creds := credentials(ctx, ns, name)()
			uc, err := auth.UserOf(creds)
			Expect(err).NotTo(HaveOccurred(), name)
			want := natsauth.WorkflowPermissions(compiled(ctx, ns, name))
			Expect(uc.Permissions.Pub.Allow).To(Equal(want.Pub.Allow), name)
			Expect(uc.Permissions.Sub.Allow).To(Equal(want.Sub.Allow), name)
			Expect(uc.Permissions.Pub.Allow).To(ContainElement("pb." + ns + "." + name + ".>"))
			Expect(uc.Permissions.Sub.Allow).To(ConsistOf("pb."+ns+"."+name+".>", bus.InboxPrefix(compiled(ctx, ns, name))+".>"))

			var deps appsv1.DeploymentList
			Expect(k8s.List(ctx, &deps, client.InNamespace(ns), client.MatchingLabels{render.LabelWorkflow: name})).To(Succeed())
			Expect(deps.Items).NotTo(BeEmpty())
			for _, d := range deps.Items {
				Eventually(podCredentialsHash(ctx, ns, d.Name)).Should(Equal(render.CredentialsHash(creds)), d.Name)
				var secrets []string
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.Secret != nil {
						secrets = append(secrets, v.Secret.SecretName)
					}
				}
				Expect(secrets).To(ConsistOf(render.WorkflowCredentialsSecretName(name)), d.Name)
			}
		}
		Expect(credentials(ctx, ns, "alpha")()).NotTo(Equal(credentials(ctx, ns, "beta")()))

		By("letting each set up its own stream, buckets and consumers on the server run from the rendered nats.conf")
		setUpOnBroker(ctx, url, credentials(ctx, ns, "alpha")(), compiled(ctx, ns, "alpha"))
		setUpOnBroker(ctx, url, credentials(ctx, ns, "beta")(), compiled(ctx, ns, "beta"))
	})

	It("mints new credentials and rolls the pods when the credentials Secret is deleted", func() {
		old := credentials(ctx, ns, "beta")()
		oldHash := podCredentialsHash(ctx, ns, "beta-ch-gateway")()
		Expect(oldHash).To(Equal(render.CredentialsHash(old)))
		Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.WorkflowCredentialsSecretName("beta")}})).To(Succeed())
		Eventually(credentials(ctx, ns, "beta")).ShouldNot(Or(BeEmpty(), Equal(old)))
		creds := credentials(ctx, ns, "beta")()
		Eventually(podCredentialsHash(ctx, ns, "beta-ch-gateway")).Should(Equal(render.CredentialsHash(creds)))
		Expect(render.CredentialsHash(creds)).NotTo(Equal(oldHash))
		nc, err := connectAs(url, creds, compiled(ctx, ns, "beta"))
		Expect(err).NotTo(HaveOccurred(), "the new credentials work")
		nc.Close()
		Eventually(func() error {
			nc, err := connectAs(url, old, compiled(ctx, ns, "beta"))
			if err == nil {
				nc.Close()
			}
			return err
		}).Should(MatchError(nats.ErrAuthorization), "the deleted Secret's user is revoked")
	})

	It("deletes an async style's stream, buckets and user once a switch to a sync style has drained it", func() {
		wf := &v1alpha1.Workflow{}
		readSample("async-orchestrated.yaml", wf)
		wf.Namespace, wf.Name = ns, "gamma"
		wf.Spec.Broker = &v1alpha1.BrokerRef{Name: "default"}
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Eventually(credentials(ctx, ns, "gamma")).ShouldNot(BeEmpty())
		creds := credentials(ctx, ns, "gamma")()
		p := compiled(ctx, ns, "gamma")
		setUpOnBroker(ctx, url, creds, p)
		streams := streamNames(ctx, adminJS(auth, url))
		Expect(streams()).To(ContainElement(p.Stream.Name))
		markWorkloadsReady(ctx, ns)

		updateWorkflow(ctx, ns, "gamma", func(wf *v1alpha1.Workflow) { wf.Spec.Style = v1alpha1.StyleSyncOrchestrated })
		Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gamma-so-orchestrator"}, &appsv1.Deployment{})
		}).Should(Succeed())
		markWorkloadsReady(ctx, ns)
		var until *metav1.Time
		Eventually(func(g Gomega) {
			r := getWorkflow(ctx, ns, "gamma").Status.Retiring
			g.Expect(r).To(HaveLen(1))
			g.Expect(r[0].DrainUntil).NotTo(BeNil())
			until = r[0].DrainUntil
		}).Should(Succeed())
		Consistently(streams, "1s").Should(ContainElement(p.Stream.Name), "a draining style keeps its stream")

		By("once the drain period is over, its stream, buckets and user go with its children")
		advanceClock(until.Sub(testNow()) + time.Second)
		Expect(k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gamma-so-orchestrator"}})).To(Succeed())
		Eventually(streams).ShouldNot(ContainElement(p.Stream.Name))
		Expect(streams()).NotTo(ContainElement("KV_" + p.Stream.RunsBucket))
		Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "gamma-ao-gateway"}, &appsv1.Deployment{})
		}).Should(Satisfy(apierrors.IsNotFound))
		Eventually(func() error {
			nc, err := connectAs(url, creds, p)
			if err == nil {
				nc.Close()
			}
			return err
		}).Should(MatchError(nats.ErrAuthorization), "gamma's user is revoked")
		Expect(k8s.Delete(ctx, getWorkflow(ctx, ns, "gamma"))).To(Succeed())
	})

	It("deletes a deleted Workflow's stream, consumers, buckets and user from the Broker", func() {
		p := compiled(ctx, ns, "alpha")
		creds := credentials(ctx, ns, "alpha")()
		Expect(getWorkflow(ctx, ns, "alpha").Finalizers).To(ContainElement(controllers.BrokerCleanupFinalizer))
		streams := streamNames(ctx, adminJS(auth, url))
		beta := compiled(ctx, ns, "beta")
		held := func(p *plan.Plan) []string {
			names := []string{p.Stream.Name, p.Stream.DeadLetterStream, "KV_" + p.Stream.RunsBucket, "KV_" + p.Stream.IdempotencyBucket}
			if p.ReadModel != nil {
				names = append(names, "KV_"+p.ReadModel.Bucket)
			}
			return names
		}
		Expect(streams()).To(ConsistOf(append(held(p), held(beta)...)))

		Expect(k8s.Delete(ctx, getWorkflow(ctx, ns, "alpha"))).To(Succeed())
		Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "alpha"}, &v1alpha1.Workflow{})
		}).Should(Satisfy(apierrors.IsNotFound))
		Expect(streams()).To(ConsistOf(held(beta)), "beta's are left as they are")
		_, err := connectAs(url, creds, p)
		Expect(err).To(MatchError(nats.ErrAuthorization), "alpha's user is revoked")
		creds = credentials(ctx, ns, "beta")()
		nc, err := connectAs(url, creds, beta)
		Expect(err).NotTo(HaveOccurred(), "beta's user is not")
		nc.Close()
	})
})

var _ = Describe("A Workflow whose Broker does not answer", func() {
	ctx := context.Background()

	It("waits, saying so, until its Broker is deleted, then goes; a Workflow that stays says its Broker is gone", func() {
		ns := newNamespace("gone", nil)
		Expect(k8s.Create(ctx, &v1alpha1.Broker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "silent"}})).To(Succeed())
		for _, name := range []string{"leaving", "staying"} {
			wf := &v1alpha1.Workflow{}
			readSample("choreography.yaml", wf)
			wf.Namespace, wf.Name = ns, name
			wf.Spec.Broker = &v1alpha1.BrokerRef{Name: "silent"}
			Expect(k8s.Create(ctx, wf)).To(Succeed())
			Eventually(credentials(ctx, ns, name)).ShouldNot(BeEmpty())
			Eventually(func() []string { return getWorkflow(ctx, ns, name).Finalizers }).Should(ContainElement(controllers.BrokerCleanupFinalizer))
		}

		Expect(k8s.Delete(ctx, getWorkflow(ctx, ns, "leaving"))).To(Succeed())
		Eventually(workflowCondition(ctx, ns, "leaving", v1alpha1.ConditionBrokerReady)).Should(
			HavePrefix("False/BrokerCleanupPending: Deleting the stream, buckets and user of this Workflow from Broker silent failed"))
		Eventually(events(ctx, ns, "leaving")).Should(ContainElement(HavePrefix("Warning BrokerCleanupPending:")))

		Expect(k8s.Delete(ctx, &v1alpha1.Broker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "silent"}})).To(Succeed())
		Eventually(func() error {
			err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "leaving"}, &v1alpha1.Workflow{})
			if err == nil {
				return errors.New("still there")
			}
			return client.IgnoreNotFound(err)
		}).Should(Succeed())
		Eventually(workflowCondition(ctx, ns, "staying", v1alpha1.ConditionBrokerReady)).Should(
			Equal("False/BrokerNotFound: Broker silent does not exist in namespace " + ns + ": create it, or name another in spec.broker"))
		Expect(k8s.Delete(ctx, getWorkflow(ctx, ns, "staying"))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "staying"}, &v1alpha1.Workflow{}))
		}).Should(BeTrue())
	})
})

var _ = Describe("A Workflow whose Broker runs but does not answer", func() {
	ctx := context.Background()

	It("says so in a Warning event, then gets its stream and buckets once the Broker answers", func() {
		ns := newNamespace("unanswered", nil)
		Expect(k8s.Create(ctx, &v1alpha1.Broker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
			Spec: v1alpha1.BrokerSpec{Replicas: ptr.To(int32(1))}})).To(Succeed())
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		port := l.Addr().(*net.TCPAddr).Port
		Expect(l.Close()).To(Succeed())
		url := fmt.Sprintf("nats://127.0.0.1:%d", port)
		brokerServers.Store(ns+"/default", url)
		DeferCleanup(func() { brokerServers.Delete(ns + "/default") })
		wf := &v1alpha1.Workflow{}
		readSample("choreography.yaml", wf)
		wf.Namespace, wf.Name = ns, "orders"
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: render.NATSName("default")}, &appsv1.StatefulSet{})
		}).Should(Succeed())
		markWorkloadsReady(ctx, ns)
		Eventually(events(ctx, ns, "orders")).Should(ContainElement(HavePrefix(
			"Warning BrokerResourcesPending: Creating or updating this Workflow's stream and buckets on Broker default failed; retrying every 10s: connect to Broker default at " + url)))

		By("starting the Broker's server from its rendered nats.conf")
		cm := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: render.NATSConfigName("default")}, cm)).To(Succeed())
		opts := natstest.ConfigOptions(GinkgoT(), cm.Data["nats.conf"], render.NATSDataDir, GinkgoT().TempDir(), map[string]string{render.NATSServerNameEnv: "default-nats-0"})
		opts.Port = port
		srv, err := server.NewServer(opts)
		Expect(err).NotTo(HaveOccurred())
		go srv.Start()
		Expect(srv.ReadyForConnections(20 * time.Second)).To(BeTrue())
		DeferCleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })

		p := compiled(ctx, ns, "orders")
		js := adminJS(brokerAuth(ctx, ns, "default"), url)
		Eventually(streamConfig(ctx, js, p.Stream.Name)).ShouldNot(BeNil())
		Eventually(streamConfig(ctx, js, "KV_"+p.Stream.RunsBucket)).ShouldNot(BeNil())
		Eventually(streamConfig(ctx, js, "KV_"+p.ReadModel.Bucket)).ShouldNot(BeNil())
	})
})
