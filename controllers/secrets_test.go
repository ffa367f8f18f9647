package controllers_test

import (
	"context"
	"net/url"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/managertest"
	"github.com/patchbay-dev/patchbay/internal/render"
)

func secretEnv(name, secret string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "value",
	}}}
}

func secretEnvFrom(secret string) corev1.EnvFromSource {
	return corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}
}

func newSecret(ns, name string, readable bool) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: map[string]string{"value": "s3cret"}}
	if readable {
		s.Labels = map[string]string{v1alpha1.LabelStepReadable: "true"}
	}
	return s
}

// setSecretLabel sets (value != "") or removes the step-readable label of a Secret.
func setSecretLabel(ctx context.Context, ns, name, value string) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := &corev1.Secret{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)).To(Succeed())
		if value == "" {
			delete(s.Labels, v1alpha1.LabelStepReadable)
		} else {
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
			s.Labels[v1alpha1.LabelStepReadable] = value
		}
		return k8s.Update(ctx, s)
	})).To(Succeed())
}

// deployment polls a Deployment, nil while it does not exist.
func deployment(ctx context.Context, ns, name string) func() *appsv1.Deployment {
	return func() *appsv1.Deployment {
		d := &appsv1.Deployment{}
		err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, d)
		if apierrors.IsNotFound(err) {
			return nil
		}
		Expect(err).NotTo(HaveOccurred())
		return d
	}
}

var _ = Describe("Steps that read Secrets", func() {
	ctx := context.Background()

	It("read only Secrets labelled for steps, never patchbay's own, and start once the owner labels them", func() {
		ns := newNamespace("step-secrets", nil)
		broker := &v1alpha1.Broker{}
		readSample("broker.yaml", broker)
		broker.Namespace = ns
		Expect(k8s.Create(ctx, broker)).To(Succeed())
		credentials := render.NATSAuthSecretName(broker.Name)
		Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: credentials}, &corev1.Secret{})
		}).Should(Succeed())
		By("labelling even the broker credentials for steps, which must not help")
		setSecretLabel(ctx, ns, credentials, "true")
		Expect(k8s.Create(ctx, newSecret(ns, "db", false))).To(Succeed())

		reads := step("reads-db", 1)
		reads.Env = []corev1.EnvVar{{Name: "MODE", Value: "x"}, secretEnv("DB_PASSWORD", "db")}
		steals := step("steals", 1)
		steals.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}, secretEnvFrom(credentials)}
		early := step("early", 1)
		early.EnvFrom = []corev1.EnvFromSource{secretEnvFrom("later")}
		plain := step("plain", 1)
		wf := newWorkflow(ns, "shop", v1alpha1.StyleSyncOrchestrated, reads, steals, early, plain)
		Expect(k8s.Create(ctx, wf)).To(Succeed())

		Eventually(workflowCondition(ctx, ns, "shop", v1alpha1.ConditionSecretsAllowed)).Should(Equal("False/SecretNotAllowed: " +
			"step reads-db, spec.steps[0].env[1].valueFrom.secretKeyRef (variable DB_PASSWORD): Secret db is not labelled patchbay.dev/step-readable: \"true\": " +
			"if the steps of namespace " + ns + " may read it, its owner runs kubectl label secret -n " + ns + " db patchbay.dev/step-readable=true; else remove the reference; " +
			"step steals, spec.steps[1].envFrom[1].secretRef: Secret " + credentials + " is managed by patchbay (it belongs to Broker " + broker.Name + "), and no step may read it: remove the reference; " +
			"step early, spec.steps[2].envFrom[0].secretRef: Secret later does not exist: create it with the label patchbay.dev/step-readable: \"true\", or remove the reference; " +
			"step reads-db gets no Deployment until then; step steals gets no Deployment until then; step early gets no Deployment until then"))
		Expect(workflowCondition(ctx, ns, "shop", v1alpha1.ConditionReady)()).To(HavePrefix("False/SecretNotAllowed: SecretsAllowed is False: step reads-db"))
		Expect(events(ctx, ns, "shop")()).To(ContainElement(HavePrefix("Warning SecretNotAllowed: step reads-db")))

		By("running every other part of the topology")
		Eventually(deployment(ctx, ns, "shop-so-plain")).ShouldNot(BeNil())
		Eventually(deployment(ctx, ns, "shop-so-orchestrator")).ShouldNot(BeNil())
		Eventually(func() []string { return childNames(ctx, ns, "shop") }).Should(ContainElements("Service/shop-so-reads-db", "Service/shop-so-steals", "Service/shop-so-early"))
		for _, name := range []string{"shop-so-reads-db", "shop-so-steals", "shop-so-early"} {
			Consistently(deployment(ctx, ns, name)).Should(BeNil(), name)
		}

		By("creating the Deployment that reads a Secret once its owner labels it")
		setSecretLabel(ctx, ns, "db", "true")
		Eventually(deployment(ctx, ns, "shop-so-reads-db")).ShouldNot(BeNil())
		Expect(deployment(ctx, ns, "shop-so-reads-db")().Spec.Template.Spec.Containers[0].Env).To(ContainElement(secretEnv("DB_PASSWORD", "db")))
		By("and once a missing Secret is created with the label")
		Expect(k8s.Create(ctx, newSecret(ns, "later", true))).To(Succeed())
		Eventually(deployment(ctx, ns, "shop-so-early")).ShouldNot(BeNil())
		Expect(deployment(ctx, ns, "shop-so-early")().Spec.Template.Spec.Containers[0].EnvFrom).To(Equal([]corev1.EnvFromSource{secretEnvFrom("later")}))
		Eventually(workflowCondition(ctx, ns, "shop", v1alpha1.ConditionSecretsAllowed)).Should(Equal("False/SecretNotAllowed: " +
			"step steals, spec.steps[1].envFrom[1].secretRef: Secret " + credentials + " is managed by patchbay (it belongs to Broker " + broker.Name + "), and no step may read it: remove the reference; " +
			"step steals gets no Deployment until then"))
		Expect(getWorkflow(ctx, ns, "shop").Status.ObservedGeneration).To(BeZero())
		Consistently(deployment(ctx, ns, "shop-so-steals")).Should(BeNil())

		By("running the last step once its reference to the broker credentials is gone")
		updateWorkflow(ctx, ns, "shop", func(wf *v1alpha1.Workflow) { wf.Spec.Steps[1].EnvFrom = wf.Spec.Steps[1].EnvFrom[:1] })
		Eventually(workflowCondition(ctx, ns, "shop", v1alpha1.ConditionSecretsAllowed)).Should(Equal(
			"True/SecretsAllowed: Steps read only Secrets labelled patchbay.dev/step-readable: \"true\": db, later"))
		Eventually(deployment(ctx, ns, "shop-so-steals")).ShouldNot(BeNil())
		Eventually(func() int64 { return getWorkflow(ctx, ns, "shop").Status.ObservedGeneration }).Should(Equal(int64(2)))
	})

	It("keep their last accepted Deployment when a Secret loses its label", func() {
		ns := newNamespace("step-secrets-revoked", nil)
		Expect(k8s.Create(ctx, newSecret(ns, "api", true))).To(Succeed())
		s := step("call", 2)
		s.EnvFrom = []corev1.EnvFromSource{secretEnvFrom("api")}
		Expect(k8s.Create(ctx, newWorkflow(ns, "calls", v1alpha1.StyleSyncChain, s))).To(Succeed())
		Eventually(deployment(ctx, ns, "calls-sc-call")).ShouldNot(BeNil())
		Eventually(workflowCondition(ctx, ns, "calls", v1alpha1.ConditionSecretsAllowed)).Should(HavePrefix("True/SecretsAllowed"))
		before := deployment(ctx, ns, "calls-sc-call")()

		setSecretLabel(ctx, ns, "api", "")
		Eventually(workflowCondition(ctx, ns, "calls", v1alpha1.ConditionSecretsAllowed)).Should(Equal("False/SecretNotAllowed: " +
			"step call, spec.steps[0].envFrom[0].secretRef: Secret api is not labelled patchbay.dev/step-readable: \"true\": " +
			"if the steps of namespace " + ns + " may read it, its owner runs kubectl label secret -n " + ns + " api patchbay.dev/step-readable=true; else remove the reference; " +
			"Deployment calls-sc-call is not updated and keeps running its last accepted spec"))

		By("not applying a new spec to it, and neither deleting nor pruning it")
		updateWorkflow(ctx, ns, "calls", func(wf *v1alpha1.Workflow) {
			wf.Spec.Steps[0].Image = "registry.test/call:2"
			wf.Spec.Steps[0].Replicas = nil
		})
		Eventually(func() int64 {
			c := getWorkflow(ctx, ns, "calls").Status.Conditions
			for _, cond := range c {
				if cond.Type == v1alpha1.ConditionSecretsAllowed {
					return cond.ObservedGeneration
				}
			}
			return 0
		}).Should(Equal(int64(2)))
		Consistently(func() *appsv1.Deployment {
			d := deployment(ctx, ns, "calls-sc-call")()
			Expect(d).NotTo(BeNil())
			return d
		}).Should(HaveField("ObjectMeta.Generation", before.Generation))
		Expect(deployment(ctx, ns, "calls-sc-call")().Spec.Template.Spec.Containers[0].Image).To(Equal("registry.test/call:1"))

		By("applying the new spec once the label is back")
		setSecretLabel(ctx, ns, "api", "true")
		Eventually(func() string {
			return deployment(ctx, ns, "calls-sc-call")().Spec.Template.Spec.Containers[0].Image
		}).Should(Equal("registry.test/call:2"))
		Eventually(workflowCondition(ctx, ns, "calls", v1alpha1.ConditionSecretsAllowed)).Should(HavePrefix("True/SecretsAllowed"))
	})
})

var _ = Describe("The manager's cache of Secrets", func() {
	It("lists and watches only the Secrets patchbay manages and those labelled for steps, never every Secret", func() {
		managed := url.QueryEscape(render.LabelManagedBy + "=" + render.ManagedBy)
		stepReadable := url.QueryEscape(v1alpha1.LabelStepReadable + "=true")
		Eventually(secretReads(manager.requests)).Should(ContainElements(
			And(ContainSubstring("watch=true"), ContainSubstring("labelSelector="+managed)),
			And(ContainSubstring("watch=true"), ContainSubstring("labelSelector="+stepReadable)),
		))
		for _, r := range secretReads(manager.requests)() {
			Expect(r).To(Or(ContainSubstring("labelSelector="+managed), ContainSubstring("labelSelector="+stepReadable)), r)
		}
	})
})

// secretReads are the lists and watches of Secrets among what q recorded,
// with their query.
func secretReads(q *managertest.Requests) func() []string {
	return func() []string {
		var out []string
		for _, r := range q.Reads() {
			if path, _, _ := strings.Cut(r, "?"); strings.HasSuffix(path, "/secrets") {
				out = append(out, r)
			}
		}
		return out
	}
}
