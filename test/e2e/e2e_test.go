//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/render"
)

// converge bounds how long a Workflow or Broker may take to go Ready on kwok:
// the manager renders, kube-controller-manager creates ReplicaSets and pods,
// kube-scheduler binds them and kwok marks them Ready.
const converge = 2 * time.Minute

var _ = Describe("patchbay installed with Helm on a kwok cluster", Ordered, func() {
	It("runs the chart's manager Deployment (simulated) under the restricted Pod Security Standard", func(ctx SpecContext) {
		var d appsv1.Deployment
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: release + "-manager"}, &d)).To(Succeed())
		Expect(d.Status.AvailableReplicas).To(Equal(*d.Spec.Replicas))

		// The namespace does enforce the standard: a plain pod is refused.
		out, err := cluster.kubectl(ctx, "run", "unrestricted", "--image=busybox", "--namespace", releaseNamespace, "--dry-run=server")
		Expect(err).To(MatchError(ContainSubstring("violates PodSecurity")), out)
	})

	It("brings the Broker and every sample Workflow to Ready", func(ctx SpecContext) {
		out, err := cluster.kubectl(ctx, "apply", "--namespace", samplesNamespace, "-k", filepath.Join(root, "config", "samples"))
		Expect(err).NotTo(HaveOccurred(), out)

		expectBrokerReady(ctx, "default")
		for _, name := range sampleWorkflows {
			expectWorkflowReady(ctx, name)
		}
		expectKubectlShowsReady(ctx)
	})

	It("converges again when a Workflow switches style", func(ctx SpecContext) {
		out, err := cluster.kubectl(ctx, "patch", "workflow", "checkout", "--namespace", samplesNamespace,
			"--type", "merge", "--patch", `{"spec":{"style":"async-orchestrated"}}`)
		Expect(err).NotTo(HaveOccurred(), out)

		wf := expectWorkflowReady(ctx, "checkout")
		Expect(wf.Spec.Style).To(Equal(v1alpha1.StyleAsyncOrchestrated))
		// The async style reaches the steps through the broker, and callers
		// through a gateway, which the sync style had no need for.
		var gateway appsv1.Deployment
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: samplesNamespace, Name: "checkout-ao-gateway"}, &gateway)).To(Succeed())
		Expect(gateway.Status.ReadyReplicas).To(BeNumerically(">", 0))
		expectKubectlShowsReady(ctx)
	})

	It("garbage-collects the children of a deleted Workflow", func(ctx SpecContext) {
		quote := children("quote")
		Expect(quote.names(ctx)).To(ContainElements("Deployment/quote-sc-cart", "Service/quote-sc-cart", "ConfigMap/quote-sc-plan"))

		out, err := cluster.kubectl(ctx, "delete", "workflow", "quote", "--namespace", samplesNamespace, "--wait")
		Expect(err).NotTo(HaveOccurred(), out)

		// The manager deletes nothing here: owner references make
		// kube-controller-manager's garbage collector remove them.
		Eventually(quote.names).WithArguments(ctx).
			WithContext(ctx).WithTimeout(converge).Should(BeEmpty())
		// The other Workflows keep theirs.
		Expect(children("checkout").names(ctx)).To(ContainElement("Deployment/checkout-ao-validate"))
	})
})

// sampleWorkflows are the Workflows of config/samples, one per style.
var sampleWorkflows = []string{"quote", "checkout", "fulfilment", "orders", "shop"}

// expectWorkflowReady waits until the Workflow's current generation is Ready
// with every step's replicas ready, and returns it.
func expectWorkflowReady(ctx context.Context, name string) *v1alpha1.Workflow {
	GinkgoHelper()
	wf := &v1alpha1.Workflow{}
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: samplesNamespace, Name: name}, wf)).To(Succeed())
		g.Expect(wf.Status.ObservedGeneration).To(Equal(wf.Generation), "observedGeneration")
		ready := meta.FindStatusCondition(wf.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil(), "no Ready condition")
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %s: %s", ready.Reason, ready.Message)
		n := len(wf.Spec.Steps)
		g.Expect(wf.Status.ReadySteps).To(Equal(fmt.Sprintf("%d/%d", n, n)))
	}).WithContext(ctx).WithTimeout(converge).WithPolling(time.Second).Should(Succeed(), "Workflow %s is not Ready", name)
	return wf
}

func expectBrokerReady(ctx context.Context, name string) {
	GinkgoHelper()
	b := &v1alpha1.Broker{}
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: samplesNamespace, Name: name}, b)).To(Succeed())
		ready := meta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionBrokerAvailable)
		g.Expect(ready).NotTo(BeNil(), "no Ready condition")
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %s: %s", ready.Reason, ready.Message)
		g.Expect(b.Status.ReadyReplicas).To(Equal(b.DesiredReplicas()))
	}).WithContext(ctx).WithTimeout(converge).WithPolling(time.Second).Should(Succeed(), "Broker %s is not Ready", name)
}

// expectKubectlShowsReady reads `kubectl get workflows` as a user does: every
// row READY True and STEPS n/n.
func expectKubectlShowsReady(ctx context.Context) {
	GinkgoHelper()
	out, err := cluster.kubectl(ctx, "get", "workflows", "--namespace", samplesNamespace)
	Expect(err).NotTo(HaveOccurred())
	GinkgoWriter.Printf("kubectl get workflows:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	Expect(strings.Fields(lines[0])).To(HaveExactElements("NAME", "STYLE", "READY", "STEPS", "ENDPOINT", "AGE"))
	Expect(lines[1:]).NotTo(BeEmpty())
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		Expect(f[2]).To(Equal("True"), line)
		var ready, total int
		_, err := fmt.Sscanf(f[3], "%d/%d", &ready, &total)
		Expect(err).NotTo(HaveOccurred(), line)
		Expect(ready).To(Equal(total), line)
	}
}

// children are the objects in the samples namespace labelled as a Workflow's.
type children string

// names lists them as kind/name.
func (wf children) names(ctx context.Context) []string {
	GinkgoHelper()
	lists := map[string]client.ObjectList{
		"Deployment": &appsv1.DeploymentList{}, "ReplicaSet": &appsv1.ReplicaSetList{}, "Pod": &corev1.PodList{},
		"Service": &corev1.ServiceList{}, "ConfigMap": &corev1.ConfigMapList{},
		"NetworkPolicy": &networkingv1.NetworkPolicyList{}, "PodDisruptionBudget": &policyv1.PodDisruptionBudgetList{},
	}
	var names []string
	for kind, list := range lists {
		Expect(k8sClient.List(ctx, list, client.InNamespace(samplesNamespace),
			client.MatchingLabels{render.LabelWorkflow: string(wf)})).To(Succeed())
		Expect(meta.EachListItem(list, func(o runtime.Object) error {
			names = append(names, kind+"/"+o.(client.Object).GetName())
			return nil
		})).To(Succeed())
	}
	return names
}
