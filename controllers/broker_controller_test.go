package controllers_test

import (
	"context"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// brokerCondition polls a Broker's Ready condition.
func brokerCondition(ctx context.Context, ns, name string) func() string {
	return func() string {
		var b v1alpha1.Broker
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &b); err != nil {
			return err.Error()
		}
		return condition(b.Status.Conditions, v1alpha1.ConditionBrokerAvailable)
	}
}

// updateBroker changes a Broker's spec as a user would, retrying on conflicts.
func updateBroker(ctx context.Context, ns, name string, change func(*v1alpha1.Broker)) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		b := &v1alpha1.Broker{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, b)).To(Succeed())
		change(b)
		return k8s.Update(ctx, b)
	})).To(Succeed())
}

var _ = Describe("A Broker whose StatefulSet the API server refuses", func() {
	ctx := context.Background()

	It("reports the API server's error in Ready", func() {
		ns := newNamespace("refused-broker", nil)
		b := &v1alpha1.Broker{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "events"},
			// A StorageClass name must be a DNS subdomain; the CRD does not check it, the StatefulSet's validation does.
			Spec: v1alpha1.BrokerSpec{JetStream: &v1alpha1.JetStream{StorageClassName: ptr.To("Fast_SSD")}},
		}
		Expect(k8s.Create(ctx, b)).To(Succeed())
		// A refused child is retried with backoff; the other specs count writes.
		DeferCleanup(func() { Expect(k8s.Delete(ctx, b)).To(Succeed()) })
		Eventually(brokerCondition(ctx, ns, "events")).Should(And(
			HavePrefix("False/ApplyFailed: "),
			ContainSubstring("create StatefulSet events-nats"),
			ContainSubstring("storageClassName"),
		))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), b)).To(Succeed())
		Expect(b.Status.ObservedGeneration).To(BeZero())
	})
})

var _ = Describe("A Broker whose storage changes", func() {
	ctx := context.Background()

	It("keeps the Workflows that use it on the streams its servers run until the change is applied", func() {
		ns := newNamespace("storage-held", nil)
		b := &v1alpha1.Broker{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
			Spec:       v1alpha1.BrokerSpec{Replicas: ptr.To(int32(3))},
		}
		Expect(k8s.Create(ctx, b)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(ctx, b)).To(Succeed()) })
		wf := &v1alpha1.Workflow{}
		readSample("async-orchestrated.yaml", wf)
		wf.Namespace = ns
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		gateway := types.NamespacedName{Namespace: ns, Name: wf.Name + "-ao-gateway"}
		streamArgs := func() []string {
			d := &appsv1.Deployment{}
			if err := k8s.Get(ctx, gateway, d); err != nil {
				return []string{err.Error()}
			}
			var args []string
			for _, a := range d.Spec.Template.Spec.Containers[0].Args {
				if strings.HasPrefix(a, "--stream-") {
					args = append(args, a)
				}
			}
			return args
		}
		Eventually(streamArgs).Should(Equal([]string{"--stream-replicas=3", "--stream-storage=file"}))
		markWorkloadsReady(ctx, ns)
		Eventually(brokerCondition(ctx, ns, "default")).Should(HavePrefix("True/ReplicasReady"))

		By("moving to memory storage on five servers, which the StatefulSet cannot take")
		updateBroker(ctx, ns, "default", func(b *v1alpha1.Broker) {
			b.Spec.Replicas = ptr.To(int32(5))
			b.Spec.JetStream = &v1alpha1.JetStream{Storage: v1alpha1.StorageMemory}
		})
		Eventually(brokerCondition(ctx, ns, "default")).Should(HavePrefix("False/StorageChangeRequiresRecreate"))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), b)).To(Succeed())
		Expect(b.Status.Replicas).To(Equal(int32(3)))
		Expect(b.Status.Storage).To(Equal(v1alpha1.StorageFile))
		Consistently(streamArgs, "2s").Should(Equal([]string{"--stream-replicas=3", "--stream-storage=file"}))

		By("applying it as the condition says: the Workflows follow")
		sts := &appsv1.StatefulSet{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "default-nats"}, sts)).To(Succeed())
		Expect(k8s.Delete(ctx, sts)).To(Succeed())
		Eventually(streamArgs).Should(Equal([]string{"--stream-replicas=5", "--stream-storage=memory"}))
	})

	It("keeps its servers as they are and says how to apply the change", func() {
		ns := newNamespace("storage", nil)
		size := resource.MustParse("1Gi")
		b := &v1alpha1.Broker{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "events"},
			Spec:       v1alpha1.BrokerSpec{Replicas: ptr.To(int32(3)), JetStream: &v1alpha1.JetStream{Size: &size}},
		}
		Expect(k8s.Create(ctx, b)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(ctx, b)).To(Succeed()) })
		stsKey := types.NamespacedName{Namespace: ns, Name: "events-nats"}
		claimSize := func() string {
			sts := &appsv1.StatefulSet{}
			if err := k8s.Get(ctx, stsKey, sts); err != nil {
				return err.Error()
			}
			q := sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]
			return q.String()
		}
		Eventually(claimSize).Should(Equal("1Gi"))
		markWorkloadsReady(ctx, ns)
		Eventually(brokerCondition(ctx, ns, "events")).Should(HavePrefix("True/ReplicasReady"))
		config := &corev1.ConfigMap{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "events-nats-config"}, config)).To(Succeed())

		By("growing the volumes, which the StatefulSet's claim templates cannot take")
		updateBroker(ctx, ns, "events", func(b *v1alpha1.Broker) {
			b.Spec.JetStream.Size = ptr.To(resource.MustParse("2Gi"))
		})
		Eventually(brokerCondition(ctx, ns, "events")).Should(And(
			HavePrefix("False/StorageChangeRequiresRecreate: spec.jetstream.size changed from 1Gi to 2Gi, but"),
			ContainSubstring("kubectl -n "+ns+" delete statefulset events-nats --cascade=orphan"),
			ContainSubstring("data-events-nats-<ordinal>"),
		))
		Consistently(func() string {
			live := &corev1.ConfigMap{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(config), live)).To(Succeed())
			return claimSize() + " " + live.ResourceVersion
		}).Should(Equal("1Gi " + config.ResourceVersion))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), b)).To(Succeed())
		Expect(b.Status.ObservedGeneration).To(Equal(b.Generation - 1))

		By("deleting the StatefulSet as the condition says; envtest has no garbage collector, so the orphaning is already done")
		sts := &appsv1.StatefulSet{}
		Expect(k8s.Get(ctx, stsKey, sts)).To(Succeed())
		Expect(k8s.Delete(ctx, sts)).To(Succeed())
		Eventually(claimSize).Should(Equal("2Gi"))
		markWorkloadsReady(ctx, ns)
		Eventually(brokerCondition(ctx, ns, "events")).Should(HavePrefix("True/ReplicasReady"))
		Eventually(func() string {
			live := &corev1.ConfigMap{}
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(config), live)).To(Succeed())
			return live.Data["nats.conf"]
		}).Should(ContainSubstring("max_file_store: 2147483648"))
	})
})
