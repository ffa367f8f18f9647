package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/render"
)

// A step's Deployment runs with the manager's rights, not its author's: any
// Secret it names, the kubelet hands to the pods. So a step may read only the
// Secrets its namespace's owner marked for steps (v1alpha1.LabelStepReadable),
// and never one that patchbay manages, such as broker credentials. CEL at
// apply time cannot see Secrets, so the controller checks every reference on
// every reconcile, reports the refused ones in SecretsAllowed and leaves the
// Deployment of a step that has one as it is (docs/security.md).

// secretIndex indexes Workflows by the Secrets their steps read, so that a
// Secret labelled or unlabelled for steps re-checks the Workflows that name it.
const secretIndex = "patchbay.dev/secret"

// secretRef is one reference of a step to a Secret.
type secretRef struct {
	step string
	// field is the path of the reference, such as
	// spec.steps[1].env[0].valueFrom.secretKeyRef (variable DB_PASSWORD).
	field  string
	secret string
}

// stepSecretRefs lists every Secret reference of the Workflow's steps, in spec order.
func stepSecretRefs(wf *v1alpha1.Workflow) []secretRef {
	var refs []secretRef
	for i := range wf.Spec.Steps {
		st := &wf.Spec.Steps[i]
		for j, e := range st.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				refs = append(refs, secretRef{
					step:   st.Name,
					field:  fmt.Sprintf("spec.steps[%d].env[%d].valueFrom.secretKeyRef (variable %s)", i, j, e.Name),
					secret: e.ValueFrom.SecretKeyRef.Name,
				})
			}
		}
		for j, e := range st.EnvFrom {
			if e.SecretRef != nil {
				refs = append(refs, secretRef{
					step:   st.Name,
					field:  fmt.Sprintf("spec.steps[%d].envFrom[%d].secretRef", i, j),
					secret: e.SecretRef.Name,
				})
			}
		}
	}
	return refs
}

// referencedSecrets are the names of the Secrets a Workflow's steps read, once each.
func referencedSecrets(wf *v1alpha1.Workflow) []string {
	var names []string
	for _, r := range stepSecretRefs(wf) {
		if !slices.Contains(names, r.secret) {
			names = append(names, r.secret)
		}
	}
	return names
}

// secretRefusal is a reference the manager will not put into a pod, and why.
type secretRefusal struct {
	ref secretRef
	// why says what is wrong with the Secret and how to fix it.
	why string
}

// secretCheck is the outcome of checking a Workflow's Secret references.
type secretCheck struct {
	// allowed are the Secrets read, all allowed.
	allowed []string
	// refused holds the references refused, in spec order.
	refused []secretRefusal
	// kept names, by step, the Deployment a refused step keeps ("" when it
	// has none yet).
	kept map[string]string
}

// refusedSteps are the steps with a refused reference.
func (c *secretCheck) refusedSteps() map[string]bool {
	steps := map[string]bool{}
	for _, r := range c.refused {
		steps[r.ref.step] = true
	}
	return steps
}

// stepSecrets decides which Secrets steps may read. Its cache holds the
// metadata of the Secrets labelled for steps only; the API server is asked
// directly about a refused one, to say why.
type stepSecrets struct {
	cache  cache.Cache
	reader client.Reader
}

// newStepSecrets makes the cache of the Secrets labelled for steps, in the
// watched namespaces, and adds it to mgr.
func newStepSecrets(mgr ctrl.Manager, opts Options) (*stepSecrets, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:           mgr.GetHTTPClient(),
		Scheme:               mgr.GetScheme(),
		Mapper:               mgr.GetRESTMapper(),
		DefaultNamespaces:    opts.namespaces(),
		DefaultLabelSelector: labels.SelectorFromSet(labels.Set{v1alpha1.LabelStepReadable: "true"}),
	})
	if err != nil {
		return nil, fmt.Errorf("make the cache of Secrets labelled %s: %w", v1alpha1.LabelStepReadable, err)
	}
	if err := mgr.Add(c); err != nil {
		return nil, err
	}
	return &stepSecrets{cache: c, reader: mgr.GetAPIReader()}, nil
}

func secretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// check decides every Secret reference of wf.
func (s *stepSecrets) check(ctx context.Context, wf *v1alpha1.Workflow) (*secretCheck, error) {
	out := &secretCheck{kept: map[string]string{}}
	verdicts := map[string]string{} // Secret -> why it is refused, "" if allowed
	for _, ref := range stepSecretRefs(wf) {
		why, seen := verdicts[ref.secret]
		if !seen {
			var err error
			why, err = s.refusal(ctx, wf.Namespace, ref.secret)
			if err != nil {
				return nil, err
			}
			verdicts[ref.secret] = why
			if why == "" {
				out.allowed = append(out.allowed, ref.secret)
			}
		}
		if why != "" {
			out.refused = append(out.refused, secretRefusal{ref: ref, why: why})
		}
	}
	return out, nil
}

// refusal says why a step may not read the Secret, or "" if it may.
func (s *stepSecrets) refusal(ctx context.Context, namespace, name string) (string, error) {
	if name == "" {
		// The CRD refuses it; a Workflow stored before that rule may hold one.
		return "the reference names no Secret: set its name, or remove it", nil
	}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	m := secretMetadata()
	err := s.cache.Get(ctx, key, m)
	switch {
	case err == nil:
		if !managedByPatchbay(m) {
			return "", nil
		}
	case apierrors.IsNotFound(err):
		// Not labelled for steps, or missing: ask the API server which.
		err = s.reader.Get(ctx, key, m)
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("Secret %s does not exist: create it with the label %s: \"true\", or remove the reference", name, v1alpha1.LabelStepReadable), nil
		}
		if err != nil {
			return "", fmt.Errorf("get Secret %s: %w", name, err)
		}
	default:
		return "", fmt.Errorf("get Secret %s from the cache: %w", name, err)
	}
	if managedByPatchbay(m) {
		return fmt.Sprintf("Secret %s is managed by patchbay (%s), and no step may read it: remove the reference", name, managedSecretOwner(m)), nil
	}
	return fmt.Sprintf("Secret %s is not labelled %s: \"true\": if the steps of namespace %s may read it, its owner runs kubectl label secret -n %s %s %s=true; else remove the reference",
		name, v1alpha1.LabelStepReadable, namespace, namespace, name, v1alpha1.LabelStepReadable), nil
}

// managedByPatchbay reports whether patchbay manages the object: it carries
// the label every child of a Workflow or Broker gets (render.stamp).
func managedByPatchbay(o metav1.Object) bool {
	return o.GetLabels()[render.LabelManagedBy] == render.ManagedBy
}

// managedSecretOwner names what a managed Secret belongs to.
func managedSecretOwner(o metav1.Object) string {
	if ref := metav1.GetControllerOf(o); ref != nil {
		return fmt.Sprintf("it belongs to %s %s", ref.Kind, ref.Name)
	}
	return "it is labelled " + render.LabelManagedBy + ": " + render.ManagedBy
}

// setSecretsAllowedCondition records whether every Secret the steps read is
// allowed, naming each refused reference and what became of its step.
func setSecretsAllowedCondition(wf *v1alpha1.Workflow, c *secretCheck) {
	if c == nil {
		// The check did not run (the reconcile failed before it).
		return
	}
	if len(c.refused) == 0 {
		msg := "No step reads a Secret"
		if len(c.allowed) > 0 {
			msg = fmt.Sprintf("Steps read only Secrets labelled %s: \"true\": %s", v1alpha1.LabelStepReadable, strings.Join(c.allowed, ", "))
		}
		setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionSecretsAllowed, metav1.ConditionTrue, v1alpha1.ReasonSecretsAllowed, msg)
		return
	}
	var msgs []string
	for _, r := range c.refused {
		msgs = append(msgs, fmt.Sprintf("step %s, %s: %s", r.ref.step, r.ref.field, r.why))
	}
	var steps []string
	for _, r := range c.refused {
		if !slices.Contains(steps, r.ref.step) {
			steps = append(steps, r.ref.step)
		}
	}
	for _, st := range steps {
		if d := c.kept[st]; d != "" {
			msgs = append(msgs, fmt.Sprintf("Deployment %s is not updated and keeps running its last accepted spec", d))
		} else {
			msgs = append(msgs, fmt.Sprintf("step %s gets no Deployment until then", st))
		}
	}
	msg := strings.Join(msgs, "; ")
	if len(msg) > maxConditionMessage {
		msg = msg[:maxConditionMessage-len("…")] + "…"
	}
	setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionSecretsAllowed, metav1.ConditionFalse, v1alpha1.ReasonSecretNotAllowed, msg)
}

// secretSource re-checks the Workflows that name a Secret when it gains or
// loses the step-readable label, or is created or deleted with it.
func (r *WorkflowReconciler) secretSource() source.Source {
	return source.Kind(r.secrets.cache, secretMetadata(), handler.TypedEnqueueRequestsFromMapFunc(r.workflowsReadingSecret))
}

// workflowsReadingSecret maps a Secret to the Workflows in its namespace that read it.
func (r *WorkflowReconciler) workflowsReadingSecret(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
	var list v1alpha1.WorkflowList
	if err := r.client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{secretIndex: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "Cannot list the Workflows that read a Secret", "secret", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i, wf := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&wf)}
	}
	return reqs
}
