package controllers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/render"
)

// samples are the Workflow samples by file, with the name of their golden directory.
var samples = []struct{ file, golden string }{
	{"sync-chain.yaml", "sync-chain"},
	{"sync-orchestrated.yaml", "sync-orchestrated"},
	{"async-orchestrated.yaml", "async-orchestrated"},
	{"choreography.yaml", "choreography"},
	{"hybrid.yaml", "hybrid"},
}

func getWorkflow(ctx context.Context, ns, name string) *v1alpha1.Workflow {
	wf := &v1alpha1.Workflow{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, wf)).To(Succeed())
	return wf
}

// updateWorkflow changes a Workflow's spec as a user would, retrying on conflicts.
func updateWorkflow(ctx context.Context, ns, name string, change func(*v1alpha1.Workflow)) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wf := getWorkflow(ctx, ns, name)
		change(wf)
		return k8s.Update(ctx, wf)
	})).To(Succeed())
}

func step(name string, replicas int32, dependsOn ...string) v1alpha1.Step {
	return v1alpha1.Step{Name: name, Image: "registry.test/" + name + ":1", Replicas: ptr.To(replicas), DependsOn: dependsOn}
}

func newWorkflow(ns, name string, style v1alpha1.Style, steps ...v1alpha1.Step) *v1alpha1.Workflow {
	return &v1alpha1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.WorkflowSpec{Style: style, Steps: steps},
	}
}

// events returns "Type Reason: note" of the Events about a Workflow.
func events(ctx context.Context, ns, name string) func() []string {
	return func() []string {
		var list eventsv1.EventList
		Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "Workflow" && e.Regarding.Name == name {
				out = append(out, e.Type+" "+e.Reason+": "+e.Note)
			}
		}
		return out
	}
}

// printedColumns reads Workflows as kubectl get prints them: the cells of
// each row by column name.
func printedColumns(ctx context.Context, ns string) map[string]map[string]string {
	hc, err := rest.HTTPClientFor(cfg)
	Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(cfg.Host, "/")+"/apis/patchbay.dev/v1alpha1/namespaces/"+ns+"/workflows", http.NoBody)
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
	var table metav1.Table
	Expect(json.Unmarshal(body, &table)).To(Succeed())
	rows := map[string]map[string]string{}
	for _, r := range table.Rows {
		cells := map[string]string{}
		for i, c := range table.ColumnDefinitions {
			cells[c.Name] = fmt.Sprint(r.Cells[i])
		}
		rows[cells["Name"]] = cells
	}
	return rows
}

var _ = Describe("The samples", Ordered, func() {
	// The golden files are rendered for namespace default.
	const ns = "default"
	ctx := context.Background()
	var broker *v1alpha1.Broker

	BeforeAll(func() {
		broker = &v1alpha1.Broker{}
		readSample("broker.yaml", broker)
		broker.Namespace = ns
		Expect(k8s.Create(ctx, broker)).To(Succeed())
		for _, s := range samples {
			wf := &v1alpha1.Workflow{}
			readSample(s.file, wf)
			wf.Namespace = ns
			Expect(k8s.Create(ctx, wf)).To(Succeed())
		}
	})

	It("get every child in the shape of the golden files, and no other", func() {
		for _, s := range samples {
			wf := &v1alpha1.Workflow{}
			readSample(s.file, wf)
			wf = getWorkflow(ctx, ns, wf.Name)
			goldens := readGolden(s.golden, wf.UID)
			for _, golden := range goldens {
				// The credentials are generated, and the pods' hash of them too.
				ignore := []string{"spec.template.metadata.annotations.patchbay.dev/nats-credentials-hash", "metadata.annotations.patchbay.dev/nats-user"}
				if golden.GetKind() == "Secret" {
					ignore = append(ignore, "data")
				}
				Eventually(func() error { return matchesGolden(ctx, golden, ignore...) }).Should(Succeed())
			}
			Expect(childNames(ctx, ns, wf.Name)).To(ConsistOf(goldenNames(goldens)), s.file)
		}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(broker), broker)).To(Succeed())
		goldens := readGolden("broker", broker.UID)
		// The keys are generated: nats.conf is the golden one with the
		// Broker's own JWTs and account keys, and the servers' config hash
		// covers them.
		var goldenAuth *natsauth.Broker
		for _, golden := range goldens {
			if golden.GetKind() == "Secret" {
				data := map[string][]byte{}
				for k, v := range golden.Object["data"].(map[string]any) {
					b, err := base64.StdEncoding.DecodeString(v.(string))
					Expect(err).NotTo(HaveOccurred())
					data[k] = b
				}
				var ok bool
				goldenAuth, ok = natsauth.FromData(data)
				Expect(ok).To(BeTrue())
			}
		}
		Expect(goldenAuth).NotTo(BeNil())
		live := brokerAuth(ctx, ns, broker.Name)
		for _, golden := range goldens {
			if golden.GetKind() == "ConfigMap" {
				data := golden.Object["data"].(map[string]any)
				data["nats.conf"] = strings.NewReplacer(
					goldenAuth.OperatorJWT, live.OperatorJWT, goldenAuth.SystemJWT, live.SystemJWT, goldenAuth.AccountJWT, live.AccountJWT,
					goldenAuth.SystemAccount(), live.SystemAccount(), goldenAuth.Account(), live.Account(),
				).Replace(data["nats.conf"].(string))
			}
			Eventually(func() error {
				return matchesGolden(ctx, golden, "data."+natsauth.KeyOperatorSeed, "data."+natsauth.KeySystemSeed, "data."+natsauth.KeyAccountSeed,
					"data."+natsauth.KeyOperatorJWT, "data."+natsauth.KeySystemJWT, "data."+natsauth.KeyAccountJWT, "data."+natsauth.KeyRoutePassword,
					"spec.template.metadata.annotations.patchbay.dev/config-hash")
			}).Should(Succeed())
		}
		Expect(slices.Collect(maps.Keys(labelledObjects(ctx, ns, client.MatchingLabels{"patchbay.dev/broker": broker.Name})))).To(ConsistOf(goldenNames(goldens)))
	})

	// envtest runs no garbage collector, so this is how deleting a Workflow or
	// a Broker is shown to leave nothing behind: the collector deletes every
	// object whose owner is gone, and blocks the owner's foreground deletion on it.
	It("give every child one controller reference, to its owner, that blocks its deletion", func() {
		type owned struct {
			kind, label string
			owner       client.Object
		}
		owners := []owned{{"Broker", "patchbay.dev/broker", broker}}
		for _, s := range samples {
			wf := &v1alpha1.Workflow{}
			readSample(s.file, wf)
			owners = append(owners, owned{"Workflow", "patchbay.dev/workflow", getWorkflow(ctx, ns, wf.Name)})
		}
		for _, o := range owners {
			key, owner := o.label+"="+o.owner.GetName(), o.owner
			children := labelledObjects(ctx, ns, client.MatchingLabels{o.label: owner.GetName()})
			Expect(children).NotTo(BeEmpty(), key)
			for child, obj := range children {
				refs := obj.GetOwnerReferences()
				Expect(refs).To(HaveLen(1), child)
				ref := refs[0]
				Expect(ref.UID).To(Equal(owner.GetUID()), child)
				Expect(ref.Kind+"/"+ref.Name).To(Equal(o.kind+"/"+owner.GetName()), child)
				Expect(ref.APIVersion).To(Equal("patchbay.dev/v1alpha1"), child)
				Expect(ptr.Deref(ref.Controller, false)).To(BeTrue(), child+" has no controller reference")
				Expect(ptr.Deref(ref.BlockOwnerDeletion, false)).To(BeTrue(), child+" does not block its owner's deletion")
			}
		}
	})

	It("read ready, with their printer columns, once their pods are", func() {
		markWorkloadsReady(ctx, ns)
		for _, s := range samples {
			wf := &v1alpha1.Workflow{}
			readSample(s.file, wf)
			Eventually(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionReady)).Should(HavePrefix("True/Ready: Serving at http://"))
			Expect(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionStyleAdvised)()).To(HavePrefix("True/StyleFits"))

			wf = getWorkflow(ctx, ns, wf.Name)
			Expect(wf.Status.ObservedGeneration).To(Equal(wf.Generation))
			n := len(wf.Spec.Steps)
			Expect(wf.Status.ReadySteps).To(Equal(fmt.Sprintf("%d/%d", n, n)))
			Expect(wf.Status.Steps).To(HaveLen(n))
			for i, st := range wf.Status.Steps {
				Expect(st.Name).To(Equal(wf.Spec.Steps[i].Name))
				Expect(st.ReadyReplicas).To(Equal(wf.Spec.Steps[i].DesiredReplicas()))
			}
		}
		Eventually(func() string {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(broker), broker)).To(Succeed())
			return condition(broker.Status.Conditions, v1alpha1.ConditionBrokerAvailable)
		}).Should(HavePrefix("True/ReplicasReady"))
		Expect(broker.Status.ReadyReplicas).To(Equal(int32(3)))
		Expect(broker.Status.URL).To(Equal("nats://default-nats.default.svc:4222"))

		columns := printedColumns(ctx, ns)
		Expect(columns["quote"]).To(Equal(map[string]string{
			"Name": "quote", "Style": "sync-chain", "Ready": "True", "Steps": "3/3",
			"Endpoint": "http://quote.default.svc", "Age": columns["quote"]["Age"],
		}))
		Expect(columns["shop"]).To(HaveKeyWithValue("Endpoint", "http://shop.default.svc"))
		Expect(columns["shop"]).To(HaveKeyWithValue("Steps", "5/5"))
		Expect(columns["checkout"]).To(HaveKeyWithValue("Endpoint", "http://checkout.default.svc"))
		for name, row := range columns {
			Expect(row["Age"]).NotTo(BeEmpty(), name)
		}
	})

	It("get no write from a restarted manager", func() {
		idle := func() bool {
			_, w := reconciles("workflow")
			_, b := reconciles("broker")
			return w && b
		}
		Eventually(idle).Should(BeTrue())
		manager.stop()
		workflowsBefore, _ := reconciles("workflow")
		brokersBefore, _ := reconciles("broker")

		var workflows v1alpha1.WorkflowList
		Expect(k8s.List(ctx, &workflows)).To(Succeed())
		var brokers v1alpha1.BrokerList
		Expect(k8s.List(ctx, &brokers)).To(Succeed())

		manager = startManager()
		By("waiting until the new manager has reconciled every Workflow and Broker")
		Eventually(func() bool {
			w, _ := reconciles("workflow")
			b, _ := reconciles("broker")
			return w-workflowsBefore >= float64(len(workflows.Items)) && b-brokersBefore >= float64(len(brokers.Items)) && idle()
		}).Should(BeTrue())
		Consistently(manager.requests.Writes).Should(BeEmpty())
	})

	It("create pods that the restricted Pod Security Standard admits", func() {
		restricted := newNamespace("restricted", map[string]string{
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
		})
		By("checking that the API server enforces Pod Security at all")
		privileged := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: "privileged"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}},
		}
		err := k8s.Create(ctx, privileged)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a privileged pod was admitted: %v", err)
		Expect(err.Error()).To(ContainSubstring("violates PodSecurity \"restricted:latest\""))

		By("creating a pod from every pod template the operator rendered")
		pods := map[string]corev1.PodTemplateSpec{}
		var deps appsv1.DeploymentList
		Expect(k8s.List(ctx, &deps, client.InNamespace(ns), client.HasLabels{"patchbay.dev/workflow"})).To(Succeed())
		for _, d := range deps.Items {
			pods[d.Name] = d.Spec.Template
		}
		var sets appsv1.StatefulSetList
		Expect(k8s.List(ctx, &sets, client.InNamespace(ns), client.HasLabels{"patchbay.dev/broker"})).To(Succeed())
		for _, s := range sets.Items {
			tpl := s.Spec.Template
			// The StatefulSet controller adds a volume per claim template.
			for _, claim := range s.Spec.VolumeClaimTemplates {
				tpl.Spec.Volumes = append(tpl.Spec.Volumes, corev1.Volume{Name: claim.Name, VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim.Name + "-" + s.Name + "-0"},
				}})
			}
			pods[s.Name] = tpl
		}
		Expect(len(pods)).To(BeNumerically(">=", 22))
		for name, tpl := range pods {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: name, Labels: tpl.Labels}, Spec: tpl.Spec}
			Expect(k8s.Create(ctx, pod)).To(Succeed(), name)
		}
	})
})

var _ = Describe("A Workflow the compiler refuses", func() {
	ctx := context.Background()

	It("reports the cycle in Compiled and gets no children", func() {
		ns := newNamespace("cycle", nil)
		wf := newWorkflow(ns, "loop", v1alpha1.StyleSyncOrchestrated, step("a", 1, "b"), step("b", 1, "a"))
		Expect(k8s.Create(ctx, wf)).To(Succeed())

		Eventually(workflowCondition(ctx, ns, "loop", v1alpha1.ConditionCompiled)).Should(
			Equal("False/CompileFailed: dependency cycle: a → b → a (each step lists the next in dependsOn)"))
		Expect(workflowCondition(ctx, ns, "loop", v1alpha1.ConditionReady)()).To(HavePrefix("False/CompileFailed: Compiled is False: dependency cycle"))
		Eventually(events(ctx, ns, "loop")).Should(ContainElement(HavePrefix("Warning CompileFailed: dependency cycle: a → b → a")))
		Consistently(func() []string { return childNames(ctx, ns, "loop") }).Should(BeEmpty())
		Expect(getWorkflow(ctx, ns, "loop").Status.ObservedGeneration).To(BeZero())
	})

	It("says, after a good plan, that the status and the children are of that plan", func() {
		ns := newNamespace("recycle", nil)
		wf := newWorkflow(ns, "loop", v1alpha1.StyleSyncOrchestrated, step("a", 1), step("b", 1, "a"))
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Eventually(func() int64 { return getWorkflow(ctx, ns, "loop").Status.ObservedGeneration }).Should(Equal(int64(1)))
		good := getWorkflow(ctx, ns, "loop").Status

		updateWorkflow(ctx, ns, "loop", func(wf *v1alpha1.Workflow) { wf.Spec.Steps[0].DependsOn = []string{"b"} })
		Eventually(workflowCondition(ctx, ns, "loop", v1alpha1.ConditionReady)).Should(And(
			HavePrefix("False/CompileFailed: Compiled is False: dependency cycle"),
			HaveSuffix("the children still run the last plan that compiled ("+good.PlanHash+"), which status.steps and status.endpoint describe"),
		))
		status := getWorkflow(ctx, ns, "loop").Status
		Expect(status.Endpoint).To(Equal(good.Endpoint))
		Expect(status.Steps).To(Equal(good.Steps))
		Expect(status.ObservedGeneration).To(Equal(int64(1)))
	})

	It("reports a child name longer than 63 characters", func() {
		ns := newNamespace("long", nil)
		name := strings.Repeat("w", 47)
		wf := newWorkflow(ns, name, v1alpha1.StyleSyncChain, step("a-rather-long-step", 1))
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Eventually(workflowCondition(ctx, ns, name, v1alpha1.ConditionReady)).Should(HavePrefix("False/NameTooLong"))
		Consistently(func() []string { return childNames(ctx, ns, name) }).Should(BeEmpty())
	})
})

var _ = Describe("A Workflow whose Broker is missing", func() {
	ctx := context.Background()

	It("reports BrokerNotFound, then becomes ready once the Broker exists, with no edit", func() {
		ns := newNamespace("late-broker", nil)
		wf := &v1alpha1.Workflow{}
		readSample("choreography.yaml", wf)
		wf.Namespace = ns
		wf.Spec.Broker = &v1alpha1.BrokerRef{Name: "late"}
		Expect(k8s.Create(ctx, wf)).To(Succeed())

		Eventually(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionBrokerReady)).Should(
			Equal("False/BrokerNotFound: Broker late does not exist in namespace " + ns + ": create it, or name another in spec.broker"))
		Expect(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionReady)()).To(HavePrefix("False/BrokerNotFound"))
		By("running the rest of the topology meanwhile")
		Eventually(func() []string { return childNames(ctx, ns, wf.Name) }).Should(ContainElement("Deployment/orders-ch-gateway"))
		generation := getWorkflow(ctx, ns, wf.Name).Generation
		gatewayStreamArgs := func() []string {
			d := &appsv1.Deployment{}
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "orders-ch-gateway"}, d)).To(Succeed())
			var args []string
			for _, a := range d.Spec.Template.Spec.Containers[0].Args {
				if strings.HasPrefix(a, "--stream-") {
					args = append(args, a)
				}
			}
			return args
		}
		By("leaving the stream settings to the runtime while there is no Broker to take them from")
		Expect(gatewayStreamArgs()).To(BeEmpty())

		b := &v1alpha1.Broker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"}}
		Expect(k8s.Create(ctx, b)).To(Succeed())
		Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "late-nats"}, &appsv1.StatefulSet{})
		}).Should(Succeed())
		Eventually(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionBrokerReady)).Should(HavePrefix("False/BrokerNotReady"))
		By("giving the Workflow its credentials on the new Broker, which rolls its pods")
		Eventually(credentials(ctx, ns, wf.Name)).ShouldNot(BeEmpty())
		for _, name := range []string{"orders-ch-gateway", "orders-ch-reserve", "orders-ch-charge", "orders-ch-notify"} {
			Eventually(podCredentialsHash(ctx, ns, name)).Should(Equal(render.CredentialsHash(credentials(ctx, ns, wf.Name)())), name)
		}
		markWorkloadsReady(ctx, ns)

		Eventually(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionReady)).Should(HavePrefix("True/Ready"))
		Expect(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionBrokerReady)()).To(
			Equal("True/BrokerReady: Broker late is ready at nats://late-nats." + ns + ".svc:4222"))
		Expect(getWorkflow(ctx, ns, wf.Name).Generation).To(Equal(generation))
		Expect(gatewayStreamArgs()).To(Equal([]string{"--stream-replicas=1", "--stream-storage=file"}))

		By("rolling the pods onto streams with three replicas when the Broker grows to three servers")
		updateBroker(ctx, ns, "late", func(b *v1alpha1.Broker) { b.Spec.Replicas = ptr.To(int32(3)) })
		Eventually(gatewayStreamArgs).Should(Equal([]string{"--stream-replicas=3", "--stream-storage=file"}))
		for _, name := range []string{"orders-ch-reserve", "orders-ch-charge", "orders-ch-notify"} {
			d := &appsv1.Deployment{}
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, d)).To(Succeed())
			Expect(d.Spec.Template.Spec.InitContainers[0].Args).To(ContainElements("--stream-replicas=3", "--stream-storage=file"), name)
		}
	})
})

var _ = Describe("Drift", Ordered, func() {
	ctx := context.Background()
	var ns string
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }

	BeforeAll(func() {
		ns = newNamespace("drift", nil)
		wf := &v1alpha1.Workflow{}
		readSample("sync-chain.yaml", wf)
		wf.Namespace = ns
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Eventually(func() int64 { return getWorkflow(ctx, ns, "quote").Status.ObservedGeneration }).Should(Equal(int64(1)))
	})

	It("is undone when a child Deployment is deleted", func() {
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, key("quote-sc-pricing"), d)).To(Succeed())
		Expect(k8s.Delete(ctx, d)).To(Succeed())
		Eventually(func() types.UID {
			restored := &appsv1.Deployment{}
			if err := k8s.Get(ctx, key("quote-sc-pricing"), restored); err != nil {
				return ""
			}
			return restored.UID
		}).ShouldNot(Or(BeEmpty(), Equal(d.UID)))
	})

	It("is undone when a child's replicas are edited", func() {
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			d := &appsv1.Deployment{}
			Expect(k8s.Get(ctx, key("quote-sc-pricing"), d)).To(Succeed())
			d.Spec.Replicas = ptr.To(int32(7))
			return k8s.Update(ctx, d)
		})).To(Succeed())
		Eventually(func() int32 {
			d := &appsv1.Deployment{}
			Expect(k8s.Get(ctx, key("quote-sc-pricing"), d)).To(Succeed())
			return *d.Spec.Replicas
		}).Should(Equal(int32(2)))
	})

	It("is undone when a child Service is edited", func() {
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			s := &corev1.Service{}
			Expect(k8s.Get(ctx, key("quote-sc-tax"), s)).To(Succeed())
			s.Spec.Ports[0].TargetPort.IntVal = 9999
			return k8s.Update(ctx, s)
		})).To(Succeed())
		Eventually(func() int32 {
			s := &corev1.Service{}
			Expect(k8s.Get(ctx, key("quote-sc-tax"), s)).To(Succeed())
			return s.Spec.Ports[0].TargetPort.IntVal
		}).Should(Equal(int32(15080)))
	})
})

var _ = Describe("Two Workflows whose children would share a name", func() {
	ctx := context.Background()

	It("leave the first untouched and the second reporting why", func() {
		ns := newNamespace("conflict", nil)
		first := newWorkflow(ns, "a-sc-b", v1alpha1.StyleSyncChain, step("c", 1))
		Expect(k8s.Create(ctx, first)).To(Succeed())
		Eventually(func() int64 { return getWorkflow(ctx, ns, "a-sc-b").Status.ObservedGeneration }).Should(Equal(int64(1)))
		held := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "a-sc-b-sc-c"}, held)).To(Succeed())
		heldService := &corev1.Service{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "a-sc-b-sc-c"}, heldService)).To(Succeed())

		second := newWorkflow(ns, "a", v1alpha1.StyleSyncChain, step("b-sc-c", 1))
		Expect(k8s.Create(ctx, second)).To(Succeed())
		Eventually(workflowCondition(ctx, ns, "a", v1alpha1.ConditionStepsReady)).Should(And(
			HavePrefix("False/NameConflict: "),
			ContainSubstring("Deployment a-sc-b-sc-c already exists and belongs to Workflow a-sc-b; it is left alone"),
			ContainSubstring("Service a-sc-b-sc-c already exists and belongs to Workflow a-sc-b"),
		))
		Expect(workflowCondition(ctx, ns, "a", v1alpha1.ConditionReady)()).To(HavePrefix("False/NameConflict"))
		Eventually(events(ctx, ns, "a")).Should(ContainElement(HavePrefix("Warning NameConflict: Deployment a-sc-b-sc-c already exists")))
		Expect(getWorkflow(ctx, ns, "a").Status.ObservedGeneration).To(BeZero())
		By("still applying the children whose names are free")
		Expect(childNames(ctx, ns, "a")).To(ContainElement("ConfigMap/a-sc-plan"))

		Consistently(func() string {
			d := &appsv1.Deployment{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(held), d)).To(Succeed())
			s := &corev1.Service{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(heldService), s)).To(Succeed())
			return d.ResourceVersion + " " + string(metav1.GetControllerOf(d).UID) + " " + s.ResourceVersion
		}).Should(Equal(held.ResourceVersion + " " + string(first.UID) + " " + heldService.ResourceVersion))
		Expect(workflowCondition(ctx, ns, "a-sc-b", v1alpha1.ConditionCompiled)()).To(HavePrefix("True/"))
		Expect(workflowCondition(ctx, ns, "a-sc-b", v1alpha1.ConditionStepsReady)()).NotTo(ContainSubstring("NameConflict"))
	})
})

var _ = Describe("A child name held by an object patchbay does not manage", func() {
	ctx := context.Background()

	It("leaves the object untouched, though the cache never sees it", func() {
		ns := newNamespace("foreign", nil)
		held := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x-sc-plan"},
			Data:       map[string]string{"owner": "someone else"},
		}
		Expect(k8s.Create(ctx, held)).To(Succeed())

		wf := newWorkflow(ns, "x", v1alpha1.StyleSyncChain, step("c", 1))
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		// Unconverged, it retries its create, refused, on every start of a manager.
		DeferCleanup(func() { Expect(k8s.Delete(ctx, wf)).To(Succeed()) })
		Eventually(workflowCondition(ctx, ns, "x", v1alpha1.ConditionStepsReady)).Should(And(
			HavePrefix("False/NameConflict: "),
			ContainSubstring("ConfigMap x-sc-plan already exists and belongs to no patchbay object; it is left alone"),
		))
		Expect(childNames(ctx, ns, "x")).To(ContainElement("Deployment/x-sc-c"))
		Consistently(func() string {
			cm := &corev1.ConfigMap{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(held), cm)).To(Succeed())
			return cm.ResourceVersion
		}).Should(Equal(held.ResourceVersion))
	})
})

var _ = Describe("Switching style", func() {
	ctx := context.Background()

	// children lists the Workflow's children; expect is what one style needs:
	// the plan, the workloads with their Services and policies, the budgets.
	children := func(ns, wf string) func() []string {
		return func() []string { return childNames(ctx, ns, wf) }
	}
	expect := func(wf, code string, workloads, budgets []string) []string {
		named := func(names []string) []string {
			out := make([]string, len(names))
			for i, n := range names {
				out[i] = wf + "-" + code + "-" + n
			}
			return out
		}
		out := []string{"ConfigMap/" + wf + "-" + code + "-plan"}
		out = append(out, prefixed("Deployment", named(workloads)...)...)
		out = append(out, prefixed("Service", named(workloads)...)...)
		out = append(out, prefixed("NetworkPolicy", named(workloads)...)...)
		return append(out, prefixed("PodDisruptionBudget", named(budgets)...)...)
	}
	entrySelector := func(ns, wf string) func() map[string]string {
		return func() map[string]string {
			svc := &corev1.Service{}
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: wf}, svc)).To(Succeed())
			return svc.Spec.Selector
		}
	}
	switching := func(ns, wf string) func() string {
		return workflowCondition(ctx, ns, wf, v1alpha1.ConditionSwitching)
	}
	retiring := func(ns, wf string) []v1alpha1.RetiringStyle { return getWorkflow(ctx, ns, wf).Status.Retiring }
	// pastDrain moves the manager's clock past a drain's end and has the
	// Workflow reconciled: a deleted child Service brings an event, and comes
	// back (a Deployment status that is already ready changes nothing).
	pastDrain := func(ns string, until *metav1.Time, child string) {
		advanceClock(until.Sub(testNow()) + time.Second)
		Expect(k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: child}})).To(Succeed())
	}

	It("starts the new style, moves the entry once it is ready, drains the old one and only then prunes it", func() {
		ns := newNamespace("switch", nil)
		Expect(k8s.Create(ctx, newWorkflow(ns, "flip", v1alpha1.StyleSyncOrchestrated, step("x", 2), step("y", 1, "x")))).To(Succeed())
		orchestrated := expect("flip", "so", []string{"x", "y", "orchestrator"}, []string{"x", "orchestrator"})
		async := expect("flip", "ao", []string{"x", "y", "orchestrator", "gateway"}, []string{"x", "orchestrator", "gateway"})
		Eventually(children(ns, "flip")).Should(ConsistOf(append(orchestrated, "Service/flip")))
		markWorkloadsReady(ctx, ns)
		Eventually(switching(ns, "flip")).Should(HavePrefix("False/NoSwitch"))
		endpoint := getWorkflow(ctx, ns, "flip").Status.Endpoint
		Expect(endpoint).To(Equal("http://flip." + ns + ".svc"))
		Expect(entrySelector(ns, "flip")()).To(Equal(map[string]string{
			"patchbay.dev/workflow": "flip", "patchbay.dev/component": "orchestrator", "patchbay.dev/style": "so",
		}))

		By("NewStyleStarting: the new children run beside the old, the entry stays")
		updateWorkflow(ctx, ns, "flip", func(wf *v1alpha1.Workflow) { wf.Spec.Style = v1alpha1.StyleAsyncOrchestrated })
		Eventually(children(ns, "flip")).Should(ConsistOf(slices.Concat(orchestrated, async, []string{"Service/flip"})))
		Eventually(switching(ns, "flip")).Should(And(HavePrefix("True/NewStyleStarting"),
			ContainSubstring("flip-ao-gateway"), ContainSubstring("the entry stays on sync-orchestrated")))
		Expect(entrySelector(ns, "flip")()).To(HaveKeyWithValue("patchbay.dev/style", "so"))
		Expect(retiring(ns, "flip")).To(Equal([]v1alpha1.RetiringStyle{{Style: v1alpha1.StyleSyncOrchestrated}}))
		Expect(getWorkflow(ctx, ns, "flip").Status.Endpoint).To(Equal(endpoint))

		By("EntryMoved: once the new style is ready, the entry selects it and the old entry restarts")
		markWorkloadsReady(ctx, ns)
		Eventually(entrySelector(ns, "flip")).Should(HaveKeyWithValue("patchbay.dev/component", "gateway"))
		Expect(entrySelector(ns, "flip")()).To(HaveKeyWithValue("patchbay.dev/style", "ao"))
		Eventually(events(ctx, ns, "flip")).Should(ContainElement(HavePrefix("Normal EntryMoved")))
		old := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "flip-so-orchestrator"}, old)).To(Succeed())
		Expect(old.Spec.Template.Annotations).To(HaveKey("patchbay.dev/retired-at"))

		By("DrainingOldStyle: the old children stay until their drain period ends")
		Eventually(switching(ns, "flip")).Should(And(HavePrefix("True/DrainingOldStyle"), ContainSubstring("sync-orchestrated until")))
		r := retiring(ns, "flip")
		Expect(r).To(HaveLen(1))
		Expect(r[0].DrainUntil).NotTo(BeNil())
		Expect(r[0].DrainUntil.Time).To(BeTemporally(">", testNow()))
		Consistently(children(ns, "flip"), "2s").Should(ConsistOf(slices.Concat(orchestrated, async, []string{"Service/flip"})))
		Expect(getWorkflow(ctx, ns, "flip").Status.Endpoint).To(Equal(endpoint))

		By("once the drain period is over, the old children go")
		pastDrain(ns, r[0].DrainUntil, "flip-ao-x")
		Eventually(children(ns, "flip")).Should(ConsistOf(append(async, "Service/flip")))
		Eventually(switching(ns, "flip")).Should(HavePrefix("False/NoSwitch"))
		Expect(retiring(ns, "flip")).To(BeEmpty())
		Expect(getWorkflow(ctx, ns, "flip").Status.Endpoint).To(Equal(endpoint))
	})

	It("drains a style the entry never reached while the next one starts, and keeps the one the entry serves", func() {
		ns := newNamespace("switch-twice", nil)
		Expect(k8s.Create(ctx, newWorkflow(ns, "hop", v1alpha1.StyleSyncOrchestrated, step("x", 1), step("y", 1, "x")))).To(Succeed())
		orchestrated := expect("hop", "so", []string{"x", "y", "orchestrator"}, []string{"orchestrator"})
		async := expect("hop", "ao", []string{"x", "y", "orchestrator", "gateway"}, []string{"orchestrator", "gateway"})
		hybrid := expect("hop", "hy", []string{"x", "y", "orchestrator", "gateway"}, []string{"orchestrator", "gateway"})
		Eventually(children(ns, "hop")).Should(ConsistOf(append(orchestrated, "Service/hop")))
		markWorkloadsReady(ctx, ns)
		Eventually(switching(ns, "hop")).Should(HavePrefix("False/NoSwitch"))

		updateWorkflow(ctx, ns, "hop", func(wf *v1alpha1.Workflow) { wf.Spec.Style = v1alpha1.StyleAsyncOrchestrated })
		Eventually(children(ns, "hop")).Should(ConsistOf(slices.Concat(orchestrated, async, []string{"Service/hop"})))
		updateWorkflow(ctx, ns, "hop", func(wf *v1alpha1.Workflow) { wf.Spec.Style = v1alpha1.StyleHybrid })
		Eventually(children(ns, "hop")).Should(ConsistOf(slices.Concat(orchestrated, async, hybrid, []string{"Service/hop"})))
		Eventually(switching(ns, "hop")).Should(And(HavePrefix("True/NewStyleStarting"),
			ContainSubstring("async-orchestrated until"), ContainSubstring("the entry stays on sync-orchestrated")))
		var abandoned v1alpha1.RetiringStyle
		for _, r := range retiring(ns, "hop") {
			if r.Style == v1alpha1.StyleAsyncOrchestrated {
				abandoned = r
			} else {
				Expect(r).To(Equal(v1alpha1.RetiringStyle{Style: v1alpha1.StyleSyncOrchestrated}), "the style the entry serves does not drain")
			}
		}
		Expect(abandoned.DrainUntil).NotTo(BeNil())

		By("the abandoned style goes once drained, though the newest is not ready; the entry's stays")
		pastDrain(ns, abandoned.DrainUntil, "hop-hy-x")
		Eventually(children(ns, "hop")).Should(ConsistOf(slices.Concat(orchestrated, hybrid, []string{"Service/hop"})))
		Expect(entrySelector(ns, "hop")()).To(HaveKeyWithValue("patchbay.dev/style", "so"))
		Expect(switching(ns, "hop")()).To(HavePrefix("True/NewStyleStarting"))
	})

	It("converges on a switch back, before or after the entry moved, and leaves no orphan", func() {
		ns := newNamespace("switch-back", nil)
		Expect(k8s.Create(ctx, newWorkflow(ns, "flop", v1alpha1.StyleSyncChain, step("x", 1), step("y", 1, "x")))).To(Succeed())
		chain := expect("flop", "sc", []string{"x", "y"}, nil)
		orchestrated := expect("flop", "so", []string{"x", "y", "orchestrator"}, []string{"orchestrator"})
		Eventually(children(ns, "flop")).Should(ConsistOf(append(chain, "Service/flop")))
		markWorkloadsReady(ctx, ns)
		Eventually(switching(ns, "flop")).Should(HavePrefix("False/NoSwitch"))

		By("back before the new style is ready: the entry never left, the new children drain and go")
		updateWorkflow(ctx, ns, "flop", func(wf *v1alpha1.Workflow) { wf.Spec.Style = v1alpha1.StyleSyncOrchestrated })
		Eventually(switching(ns, "flop")).Should(HavePrefix("True/NewStyleStarting"))
		updateWorkflow(ctx, ns, "flop", func(wf *v1alpha1.Workflow) { wf.Spec.Style = v1alpha1.StyleSyncChain })
		Eventually(switching(ns, "flop")).Should(And(HavePrefix("True/DrainingOldStyle"), ContainSubstring("sync-orchestrated until")))
		Expect(entrySelector(ns, "flop")()).To(HaveKeyWithValue("patchbay.dev/style", "sc"))
		Expect(children(ns, "flop")()).To(ConsistOf(slices.Concat(chain, orchestrated, []string{"Service/flop"})))
		pastDrain(ns, retiring(ns, "flop")[0].DrainUntil, "flop-sc-x")
		Eventually(children(ns, "flop")).Should(ConsistOf(append(chain, "Service/flop")))
		Eventually(switching(ns, "flop")).Should(HavePrefix("False/NoSwitch"))

		By("back after the entry moved: the entry returns once the first style is ready again")
		updateWorkflow(ctx, ns, "flop", func(wf *v1alpha1.Workflow) { wf.Spec.Style = v1alpha1.StyleSyncOrchestrated })
		Eventually(children(ns, "flop")).Should(ConsistOf(slices.Concat(chain, orchestrated, []string{"Service/flop"})))
		markWorkloadsReady(ctx, ns)
		Eventually(entrySelector(ns, "flop")).Should(HaveKeyWithValue("patchbay.dev/style", "so"))
		Eventually(switching(ns, "flop")).Should(HavePrefix("True/DrainingOldStyle"))
		updateWorkflow(ctx, ns, "flop", func(wf *v1alpha1.Workflow) { wf.Spec.Style = v1alpha1.StyleSyncChain })
		// The chain's root restarted when the entry left it: it is not ready
		// until its new pods are, and the entry waits for them.
		Eventually(switching(ns, "flop")).Should(And(HavePrefix("True/NewStyleStarting"), ContainSubstring("flop-sc-x")))
		Expect(entrySelector(ns, "flop")()).To(HaveKeyWithValue("patchbay.dev/style", "so"))
		markWorkloadsReady(ctx, ns)
		Eventually(entrySelector(ns, "flop")).Should(HaveKeyWithValue("patchbay.dev/style", "sc"))
		Eventually(switching(ns, "flop")).Should(And(HavePrefix("True/DrainingOldStyle"), ContainSubstring("sync-orchestrated until")))
		pastDrain(ns, retiring(ns, "flop")[0].DrainUntil, "flop-sc-x")
		Eventually(children(ns, "flop")).Should(ConsistOf(append(chain, "Service/flop")))
		Eventually(switching(ns, "flop")).Should(HavePrefix("False/NoSwitch"))
		Expect(getWorkflow(ctx, ns, "flop").Status.Endpoint).To(Equal("http://flop." + ns + ".svc"))
	})
})

var _ = Describe("A child the API server refuses", func() {
	ctx := context.Background()

	It("turns a ready Workflow's StepsReady and Ready False with the API server's error", func() {
		ns := newNamespace("refused", nil)
		wf := newWorkflow(ns, "quote", v1alpha1.StyleSyncChain, step("price", 1))
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Eventually(func() int64 { return getWorkflow(ctx, ns, "quote").Status.ObservedGeneration }).Should(Equal(int64(1)))
		markWorkloadsReady(ctx, ns)
		Eventually(workflowCondition(ctx, ns, "quote", v1alpha1.ConditionReady)).Should(HavePrefix("True/Ready"))

		By("asking for more CPU than the limit allows, which the CRD cannot see but the Deployment's validation refuses")
		updateWorkflow(ctx, ns, "quote", func(wf *v1alpha1.Workflow) {
			wf.Spec.Steps[0].Resources = &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
			}
		})
		Eventually(workflowCondition(ctx, ns, "quote", v1alpha1.ConditionStepsReady)).Should(And(
			HavePrefix("False/ApplyFailed: "),
			ContainSubstring("apply Deployment quote-sc-price"),
			ContainSubstring("must be less than or equal to cpu limit"),
		))
		Expect(workflowCondition(ctx, ns, "quote", v1alpha1.ConditionReady)()).To(HavePrefix("False/ApplyFailed: StepsReady is False"))
		Eventually(events(ctx, ns, "quote")).Should(ContainElement(HavePrefix("Warning ApplyFailed: ")))
		wf = getWorkflow(ctx, ns, "quote")
		Expect(wf.Status.ObservedGeneration).To(Equal(wf.Generation - 1))

		By("recovering once the spec is valid again")
		updateWorkflow(ctx, ns, "quote", func(wf *v1alpha1.Workflow) { wf.Spec.Steps[0].Resources = nil })
		markWorkloadsReady(ctx, ns)
		Eventually(workflowCondition(ctx, ns, "quote", v1alpha1.ConditionReady)).Should(HavePrefix("True/Ready"))
	})
})
