package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
			ContainSubstring("apply StatefulSet events-nats"),
			ContainSubstring("storageClassName"),
		))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), b)).To(Succeed())
		Expect(b.Status.ObservedGeneration).To(BeZero())
	})
})
