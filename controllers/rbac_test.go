package controllers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// The least privilege of the manager (docs/security.md) is tested against the
// API server's own record of what it authorized: its audit log. The manager
// runs as the chart's ServiceAccount (managerIdentity); every request it made
// that the API server refused is a missing permission, and every verb that
// config/rbac/role.yaml grants and the manager never used is an extra one.

// configureAudit makes the API server log every request (metadata only) to a
// file it returns, and enforce that who sets blockOwnerDeletion on an owner
// reference may update the owner's finalizers, as most clusters do.
func configureAudit(env *envtest.Environment) string {
	dir, err := os.MkdirTemp("", "patchbay-audit-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	policy := filepath.Join(dir, "policy.yaml")
	Expect(os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"), 0o600)).To(Succeed())
	log := filepath.Join(dir, "audit.log")
	env.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", policy).
		Set("audit-log-path", log).
		Set("audit-log-maxsize", "0").
		Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	return log
}

// auditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type auditEvent struct {
	AuditID          string `json:"auditID"`
	Verb             string `json:"verb"`
	RequestURI       string `json:"requestURI"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ObjectRef *struct {
		APIGroup    string `json:"apiGroup"`
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int32 `json:"code"`
	} `json:"responseStatus"`
}

// permission is a verb on a resource (or resource/subresource) of an API group.
type permission struct{ group, resource, verb string }

func (p permission) String() string {
	g := p.group
	if g == "" {
		g = "core"
	}
	return fmt.Sprintf("%s %s (%s)", p.verb, p.resource, g)
}

// auditOf reads the requests that user made, as the API server authorized
// them: what it was allowed, and what it was refused.
func auditOf(user string) (used, refused map[permission][]string) {
	f, err := os.Open(auditLog)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	used, refused = map[permission][]string{}, map[permission][]string{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		Expect(json.Unmarshal(sc.Bytes(), &e)).To(Succeed())
		if e.ImpersonatedUser == nil || e.ImpersonatedUser.Username != user || e.ObjectRef == nil || e.ResponseStatus == nil || seen[e.AuditID] {
			continue
		}
		seen[e.AuditID] = true
		resource := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			resource += "/" + e.ObjectRef.Subresource
		}
		p := permission{group: e.ObjectRef.APIGroup, resource: resource, verb: e.Verb}
		if e.ResponseStatus.Code == 403 {
			refused[p] = append(refused[p], e.RequestURI)
			continue
		}
		used[p] = append(used[p], e.ObjectRef.Namespace)
		switch {
		case e.Verb == "patch" && e.ResponseStatus.Code == 201:
			// A server-side apply that made its object needed create as well as patch.
			p.verb = "create"
			used[p] = append(used[p], e.ObjectRef.Namespace)
		case e.Verb == "watch" && strings.Contains(e.RequestURI, "sendInitialEvents=true"):
			// An informer's streaming list, which the API server authorizes
			// as a watch; one that does not stream lists gets a LIST instead.
			p.verb = "list"
			used[p] = append(used[p], e.ObjectRef.Namespace)
		}
	}
	Expect(sc.Err()).NotTo(HaveOccurred())
	return used, refused
}

// granted lists every permission the rules grant.
func granted(rules []rbacv1.PolicyRule) []permission {
	var out []permission
	for _, r := range rules {
		Expect(r.NonResourceURLs).To(BeEmpty(), "the manager's role grants non-resource URLs")
		Expect(r.ResourceNames).To(BeEmpty(), "the manager's role is limited to resource names")
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					Expect(g+res+v).NotTo(ContainSubstring("*"), "the manager's role holds a wildcard")
					out = append(out, permission{group: g, resource: res, verb: v})
				}
			}
		}
	}
	return out
}

// ownerFinalizersUsed are the update permissions on owners' finalizers that
// OwnerReferencesPermissionEnforcement required of whoever created the
// children in ns: each child's blocking owner reference needs one. The
// manager creates every child; the audit log does not show this check.
func ownerFinalizersUsed(ctx context.Context, ns string) map[permission]bool {
	out := map[permission]bool{}
	for _, obj := range labelledObjects(ctx, ns, client.MatchingLabels{"app.kubernetes.io/managed-by": "patchbay"}) {
		for _, ref := range obj.GetOwnerReferences() {
			if ptr.Deref(ref.BlockOwnerDeletion, false) {
				group, _, found := strings.Cut(ref.APIVersion, "/")
				if !found {
					group = "" // the core group: apiVersion v1
				}
				out[permission{group: group, resource: strings.ToLower(ref.Kind) + "s/finalizers", verb: "update"}] = true
			}
		}
	}
	return out
}

// foreign makes an object that patchbay does not manage, named as a child would be.
func foreign(ns, name string, obj client.Object) client.Object {
	obj.SetNamespace(ns)
	obj.SetName(name)
	return obj
}

// staleChild makes an object the Workflow controls, as an older plan or
// release would have left it: the manager must prune it.
func staleChild(wf *v1alpha1.Workflow, obj client.Object) client.Object {
	obj.SetNamespace(wf.Namespace)
	obj.SetName(wf.Name + "-stale")
	obj.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "patchbay", "patchbay.dev/workflow": wf.Name})
	obj.SetOwnerReferences([]metav1.OwnerReference{*metav1.NewControllerRef(wf, v1alpha1.GroupVersion.WithKind("Workflow"))})
	return obj
}

func minimalDeployment() *appsv1.Deployment {
	selector, template := minimalPods()
	return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Selector: selector, Template: template}}
}

func minimalStatefulSet() *appsv1.StatefulSet {
	selector, template := minimalPods()
	return &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Selector: selector, Template: template}}
}

// minimalPods are the selector and pod template of a minimal workload.
func minimalPods() (*metav1.LabelSelector, corev1.PodTemplateSpec) {
	labels := map[string]string{"app": "x"}
	return &metav1.LabelSelector{MatchLabels: labels}, corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "registry.test/x:1"}}},
	}
}

func headlessService() *corev1.Service {
	return &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}}
}

// samplesReady applies the Broker and Workflow samples to ns and waits until
// every one is Ready.
func samplesReady(ctx context.Context, ns string) {
	broker := &v1alpha1.Broker{}
	readSample("broker.yaml", broker)
	broker.Namespace = ns
	Expect(k8s.Create(ctx, broker)).To(Succeed())
	var names []string
	for _, s := range samples {
		wf := &v1alpha1.Workflow{}
		readSample(s.file, wf)
		wf.Namespace = ns
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		names = append(names, wf.Name)
	}
	By("waiting until every child is applied, then reporting the workloads ready")
	for _, name := range names {
		Eventually(workflowCondition(ctx, ns, name, v1alpha1.ConditionStepsReady)).Should(HavePrefix("False/StepsProgressing"), name)
	}
	Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: broker.Name + "-nats"}, &appsv1.StatefulSet{})
	}).Should(Succeed())
	markWorkloadsReady(ctx, ns)
	for _, name := range names {
		Eventually(workflowCondition(ctx, ns, name, v1alpha1.ConditionReady)).Should(HavePrefix("True/Ready"), name)
	}
}

var _ = Describe("The manager's role", Ordered, func() {
	ctx := context.Background()
	var ns string

	BeforeAll(func() {
		ns = newNamespace("rbac", nil)
	})

	It("lets the chart's ServiceAccount reconcile the samples into their children", func() {
		samplesReady(ctx, ns)
		Expect(childNames(ctx, ns, "shop")).To(ContainElements("Deployment/shop-hy-orchestrator", "Deployment/shop-hy-gateway", "ConfigMap/shop-hy-plan"))
	})

	It("lets it prune every kind of child a Workflow may leave behind", func() {
		wf := getWorkflow(ctx, ns, "quote")
		stale := []client.Object{
			staleChild(wf, &corev1.ConfigMap{}),
			staleChild(wf, &corev1.Secret{}),
			staleChild(wf, headlessService()),
			staleChild(wf, minimalDeployment()),
			staleChild(wf, &networkingv1.NetworkPolicy{}),
			staleChild(wf, &policyv1.PodDisruptionBudget{Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intOrOne)}}),
		}
		for _, o := range stale {
			Expect(k8s.Create(ctx, o)).To(Succeed())
		}
		for _, o := range stale {
			Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(o), o))
			}).Should(BeTrue(), "%T %s is not pruned", o, o.GetName())
		}
	})

	It("lets it find who holds a child's name, for every kind of child", func() {
		for _, o := range []client.Object{
			foreign(ns, "held-sc-plan", &corev1.ConfigMap{}),
			foreign(ns, "held-sc-a", headlessService()),
			foreign(ns, "held-sc-a", minimalDeployment()),
			foreign(ns, "held-sc-a", &networkingv1.NetworkPolicy{}),
			foreign(ns, "held-sc-a", &policyv1.PodDisruptionBudget{Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intOrOne)}}),
			foreign(ns, "held-nats", minimalStatefulSet()),
		} {
			Expect(k8s.Create(ctx, o)).To(Succeed())
		}
		wf := newWorkflow(ns, "held", v1alpha1.StyleSyncChain, step("a", 2))
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		b := &v1alpha1.Broker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "held"}}
		Expect(k8s.Create(ctx, b)).To(Succeed())
		// Unconverged, they retry their creates, refused, on every start of a manager.
		DeferCleanup(func() {
			Expect(k8s.Delete(ctx, wf)).To(Succeed())
			Expect(k8s.Delete(ctx, b)).To(Succeed())
		})
		Eventually(workflowCondition(ctx, ns, "held", v1alpha1.ConditionStepsReady)).Should(And(
			HavePrefix("False/NameConflict"), ContainSubstring("ConfigMap held-sc-plan"), ContainSubstring("Deployment held-sc-a"),
			ContainSubstring("Service held-sc-a"), ContainSubstring("NetworkPolicy held-sc-a"), ContainSubstring("PodDisruptionBudget held-sc-a")))
		Eventually(func() string {
			b := &v1alpha1.Broker{}
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "held"}, b)).To(Succeed())
			return condition(b.Status.Conditions, v1alpha1.ConditionBrokerAvailable)
		}).Should(And(HavePrefix("False/NameConflict"), ContainSubstring("StatefulSet held-nats")))
	})

	It("lets it record an event again, as a series", func() {
		Expect(k8s.Create(ctx, newWorkflow(ns, "echo", v1alpha1.StyleSyncChain, step("a", 1)))).To(Succeed())
		for range 2 {
			d := deployment(ctx, ns, "echo-sc-a")
			Eventually(d).ShouldNot(BeNil())
			uid := d().UID
			Expect(k8s.Delete(ctx, d())).To(Succeed())
			Eventually(func() bool { now := d(); return now != nil && now.UID != uid }).Should(BeTrue())
		}
		Eventually(func() []string {
			used, _ := auditOf(serviceAccountUser(chartNamespace, chartServiceAccount))
			return used[permission{group: "events.k8s.io", resource: "events", verb: "patch"}]
		}).ShouldNot(BeEmpty())
	})

	It("lets it undo a change someone else made to any kind of child", func() {
		Expect(k8s.Create(ctx, newWorkflow(ns, "drift", v1alpha1.StyleSyncChain, step("a", 2)))).To(Succeed())
		b := &v1alpha1.Broker{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "drift"}}
		Expect(k8s.Create(ctx, b)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(ctx, b)).To(Succeed()) })
		// A child of each kind the manager makes: one created and unchanged
		// since is patched only once someone else changes it.
		children := []client.Object{
			&appsv1.Deployment{}, &corev1.ConfigMap{}, &corev1.Service{}, &networkingv1.NetworkPolicy{},
			&corev1.Secret{}, &appsv1.StatefulSet{}, &policyv1.PodDisruptionBudget{},
		}
		for i, name := range []string{"drift-sc-a", "drift-sc-plan", "drift", "drift-sc-a", "drift-nats-auth", "drift-nats", "drift-sc-a"} {
			children[i].SetNamespace(ns)
			children[i].SetName(name)
		}
		for _, child := range children {
			key := client.ObjectKeyFromObject(child)
			Eventually(func() error { return k8s.Get(ctx, key, child) }).Should(Succeed(), "%T %s", child, key.Name)
			Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if err := k8s.Get(ctx, key, child); err != nil {
					return err
				}
				labels := child.GetLabels()
				labels["app.kubernetes.io/name"] = "drifted"
				child.SetLabels(labels)
				if pdb, ok := child.(*policyv1.PodDisruptionBudget); ok {
					two := intstr.FromInt32(2)
					pdb.Spec.MaxUnavailable = &two
				}
				return k8s.Update(ctx, child)
			})).To(Succeed(), "%T %s", child, key.Name)
		}
		Eventually(func(g Gomega) {
			for _, child := range children {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(child), child)).To(Succeed())
				g.Expect(child.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/name", "patchbay"), "%T %s", child, child.GetName())
				if pdb, ok := child.(*policyv1.PodDisruptionBudget); ok {
					g.Expect(pdb.Spec.MaxUnavailable).To(HaveValue(Equal(intOrOne)))
				}
			}
		}).Should(Succeed())
	})

	It("holds no permission it did not use, and was refused none", func() {
		used, refused := auditOf(serviceAccountUser(chartNamespace, chartServiceAccount))
		Expect(refused).To(BeEmpty(), "the API server refused the manager these requests: add the permissions to +kubebuilder:rbac markers and run make manifests")
		for p := range ownerFinalizersUsed(ctx, ns) {
			used[p] = append(used[p], ns)
		}
		var unused []string
		for _, p := range granted(managerRole().Rules) {
			if _, ok := used[p]; !ok {
				unused = append(unused, p.String())
			}
		}
		Expect(unused).To(BeEmpty(), "config/rbac/role.yaml grants what the manager never used: remove it from the +kubebuilder:rbac markers and run make manifests, or test what needs it here")
	})
})

// intOrOne is a PodDisruptionBudget's maxUnavailable of one pod.
var intOrOne = intstr.FromInt32(1)

var _ = Describe("A manager that watches some namespaces", Ordered, func() {
	ctx := context.Background()
	const serviceAccount = "patchbay-namespaced"
	var watched, other string
	var namespaced *runningManager

	BeforeAll(func() {
		watched = newNamespace("watched", nil)
		other = newNamespace("unwatched", nil)
		By("granting config/rbac/role.yaml in the watched namespace only, as the chart does with watchNamespaces")
		role := managerRole()
		Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "patchbay-manager"}, Rules: role.Rules})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "patchbay-manager"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "patchbay-manager"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: chartNamespace, Name: serviceAccount}},
		})).To(Succeed())

		By("running it instead of the cluster-wide manager")
		manager.stop()
		DeferCleanup(func() { manager = startManager() })
		opts := testOptions
		opts.WatchNamespaces = []string{watched}
		namespaced = startManagerWith(impersonating(chartNamespace, serviceAccount), opts)
		DeferCleanup(func() { namespaced.stop() })
	})

	It("reconciles the samples in its namespace with no ClusterRole", func() {
		samplesReady(ctx, watched)
		used, refused := auditOf(serviceAccountUser(chartNamespace, serviceAccount))
		Expect(refused).To(BeEmpty(), "the namespaced manager was refused these requests")
		for p, namespaces := range used {
			for _, n := range namespaces {
				Expect(n).To(Equal(watched), "the namespaced manager sent %s outside its namespace", p)
			}
		}
	})

	It("leaves Workflows and Brokers in other namespaces alone", func() {
		wf := &v1alpha1.Workflow{}
		readSample("sync-chain.yaml", wf)
		wf.Namespace = other
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Expect(k8s.Create(ctx, &v1alpha1.Broker{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "default"}})).To(Succeed())
		Consistently(func() []string { return childNames(ctx, other, wf.Name) }).Should(BeEmpty())
		Expect(getWorkflow(ctx, other, wf.Name).Status.Conditions).To(BeEmpty())
		Expect(labelledObjects(ctx, other, client.MatchingLabels{"patchbay.dev/broker": "default"})).To(BeEmpty())
	})
})
