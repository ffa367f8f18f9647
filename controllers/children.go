package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// childKey identifies a child by kind and name; its namespace is its owner's.
type childKey struct {
	kind string
	name string
}

func (k childKey) String() string { return k.kind + " " + k.name }

func keyOf(obj client.Object) childKey {
	return childKey{kind: obj.GetObjectKind().GroupVersionKind().Kind, name: obj.GetName()}
}

// childList is a kind of child, by the kind name rendered objects carry, and
// the list type to read it with.
type childList struct {
	kind string
	list client.ObjectList
}

// workflowChildLists are the kinds a Workflow's children come in.
func workflowChildLists() []childList {
	return []childList{
		{"PodDisruptionBudget", &policyv1.PodDisruptionBudgetList{}},
		{"NetworkPolicy", &networkingv1.NetworkPolicyList{}},
		{"Service", &corev1.ServiceList{}},
		{"Deployment", &appsv1.DeploymentList{}},
		{"ConfigMap", &corev1.ConfigMapList{}},
	}
}

// pruneChildren deletes the children that owner controls, that carry the
// owner's label, and that the desired set no longer holds: the orchestrator
// after a switch to choreography, the PDB of a step scaled down to one.
// It returns what it deleted.
func pruneChildren(ctx context.Context, c client.Client, owner client.Object, lists []childList, selector client.MatchingLabels, desired map[childKey]bool) ([]childKey, error) {
	var deleted []childKey
	for _, l := range lists {
		kind, list := l.kind, l.list
		if err := c.List(ctx, list, client.InNamespace(owner.GetNamespace()), selector); err != nil {
			return deleted, fmt.Errorf("list %s: %w", kind, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return deleted, err
		}
		for _, item := range items {
			obj := item.(client.Object)
			key := childKey{kind: kind, name: obj.GetName()}
			ref := metav1.GetControllerOf(obj)
			if desired[key] || ref == nil || ref.UID != owner.GetUID() || obj.GetDeletionTimestamp() != nil {
				continue
			}
			log.FromContext(ctx).Info("Deleting child the workflow no longer needs", "kind", kind, "name", obj.GetName())
			uid := obj.GetUID()
			err := c.Delete(ctx, obj, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
			if client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
				return deleted, fmt.Errorf("delete %s: %w", key, err)
			}
			deleted = append(deleted, key)
		}
	}
	return deleted, nil
}
