package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/patchbay-dev/patchbay/controllers"
)

var _ = Describe("A child the applier created", func() {
	ctx := context.Background()
	var (
		ns    string
		owner *corev1.ConfigMap
	)
	BeforeEach(func() {
		ns = newNamespace("applier", nil)
		owner = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}}
		Expect(k8s.Create(ctx, owner)).To(Succeed())
	})
	desired := func(labels map[string]string, env ...corev1.EnvVar) *appsv1.Deployment {
		selector := map[string]string{"app": "a"}
		return &appsv1.Deployment{
			TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a", Labels: labels, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}}},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: selector},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: selector},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "demo:1", Env: env}}},
				},
			},
		}
	}
	apply := func(d *appsv1.Deployment) string {
		out, err := controllers.ApplyChild(ctx, k8s, owner, d)
		Expect(err).NotTo(HaveOccurred())
		return out
	}
	live := func() *appsv1.Deployment {
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a"}, d)).To(Succeed())
		return d
	}
	// entries are the operations of FieldOwner's entries of obj's own fields.
	entries := func(obj client.Object) []string {
		var ops []string
		for _, f := range obj.GetManagedFields() {
			if f.Manager == controllers.FieldOwner && f.Subresource == "" {
				ops = append(ops, string(f.Operation))
			}
		}
		return ops
	}

	It("keeps its generation and defaults through a change of its labels, and loses what the desired state drops", func() {
		x := corev1.EnvVar{Name: "X", Value: "1"}

		Expect(apply(desired(map[string]string{"a": "1"}, x))).To(Equal("created"))
		first := live()
		Expect(first.Spec.RevisionHistoryLimit).To(HaveValue(Equal(int32(10))), "the API server's default")
		Expect(apply(desired(map[string]string{"a": "1"}, x))).To(Equal("unchanged"))

		By("changing only its labels")
		Expect(apply(desired(map[string]string{"a": "1", "b": "2"}, x))).To(Equal("updated"))
		second := live()
		Expect(second.Labels).To(HaveKeyWithValue("b", "2"))
		Expect(second.Generation).To(Equal(first.Generation), "a change of labels gave the Deployment a new generation")
		Expect(second.Spec).To(Equal(first.Spec))
		Expect(entries(second)).To(Equal([]string{string(metav1.ManagedFieldsOperationApply)}), "the fields it was created with are the apply's now")
		Expect(apply(desired(map[string]string{"a": "1", "b": "2"}, x))).To(Equal("unchanged"))

		By("dropping a label and a variable")
		Expect(apply(desired(map[string]string{"a": "1"}))).To(Equal("updated"))
		third := live()
		Expect(third.Labels).NotTo(HaveKey("b"))
		Expect(third.Spec.Template.Spec.Containers[0].Env).To(BeEmpty())
		Expect(third.Spec.RevisionHistoryLimit).To(HaveValue(Equal(int32(10))))
		Expect(apply(desired(map[string]string{"a": "1"}))).To(Equal("unchanged"))
	})
	It("is taken over when the cache holds an older copy of it", func() {
		Expect(apply(desired(map[string]string{"a": "1"}))).To(Equal("created"))
		stale := live()
		By("someone else changing it, which the cache has not seen yet")
		edited := stale.DeepCopy()
		edited.Labels["other"] = "x"
		Expect(k8s.Update(ctx, edited)).To(Succeed())
		watching, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		cache := interceptor.NewClient(watching, interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if d, ok := obj.(*appsv1.Deployment); ok {
					stale.DeepCopyInto(d)
					return nil
				}
				return c.Get(ctx, key, obj, opts...)
			},
		})
		out, err := controllers.ApplyChildFrom(ctx, cache, k8s, owner, desired(map[string]string{"a": "1", "b": "2"}))
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(Equal("updated"))
		now := live()
		Expect(now.Labels).To(HaveKeyWithValue("b", "2"))
		Expect(now.Labels).To(HaveKeyWithValue("other", "x"), "someone else's label")
		Expect(entries(now)).To(Equal([]string{string(metav1.ManagedFieldsOperationApply)}))
	})
})
