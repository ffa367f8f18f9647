package controllers

import (
	"context"
	"fmt"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
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

// owners says which owners have children of a kind.
type owners uint8

const (
	ownedByWorkflow owners = 1 << iota
	ownedByBroker
)

// childKind is a kind of child: the one place that lists what the operator
// creates. The cache options, the Owns() watches, the pruning and the
// extraction of owned fields are derived from childKinds; the RBAC markers on
// the reconcilers cannot be, and TestChildKindsHaveRBAC ties them to it.
type childKind struct {
	// kind is the kind name rendered objects carry.
	kind string
	// owners are the owners whose children come in this kind.
	owners owners
	// newObject and newList make an empty object and list of the kind.
	newObject func() client.Object
	newList   func() client.ObjectList
	// extract returns the fields of an object of the kind that FieldOwner manages.
	extract func(client.Object) (any, error)
}

// childKinds are the kinds of every child, in the order a Workflow's are
// pruned: disruption budgets and policies before the Services and
// Deployments they are about, ConfigMaps last.
var childKinds = []childKind{
	child(ownedByWorkflow|ownedByBroker, "PodDisruptionBudget", &policyv1.PodDisruptionBudgetList{}, policyv1ac.ExtractPodDisruptionBudget),
	child(ownedByWorkflow|ownedByBroker, "NetworkPolicy", &networkingv1.NetworkPolicyList{}, networkingv1ac.ExtractNetworkPolicy),
	child(ownedByWorkflow|ownedByBroker, "Service", &corev1.ServiceList{}, corev1ac.ExtractService),
	child(ownedByWorkflow, "Deployment", &appsv1.DeploymentList{}, appsv1ac.ExtractDeployment),
	child(ownedByBroker, "StatefulSet", &appsv1.StatefulSetList{}, appsv1ac.ExtractStatefulSet),
	child(ownedByWorkflow|ownedByBroker, "ConfigMap", &corev1.ConfigMapList{}, corev1ac.ExtractConfigMap),
	child(ownedByWorkflow|ownedByBroker, "Secret", &corev1.SecretList{}, corev1ac.ExtractSecret),
}

// child makes the childKind of the objects T, listed with L and extracted with
// the applyconfigurations' Extract function for the kind.
func child[T client.Object, L client.ObjectList, A any](o owners, kind string, _ L, extract func(T, string) (A, error)) childKind {
	newT := func() client.Object { return reflect.New(reflect.TypeFor[T]().Elem()).Interface().(T) }
	return childKind{
		kind:      kind,
		owners:    o,
		newObject: newT,
		newList:   func() client.ObjectList { return reflect.New(reflect.TypeFor[L]().Elem()).Interface().(L) },
		extract: func(live client.Object) (any, error) {
			t, ok := live.(T)
			if !ok {
				return nil, fmt.Errorf("a %s cannot be read from %T", kind, live)
			}
			return extract(t, FieldOwner)
		},
	}
}

// childKindsOf are the kinds of the children of owner.
func childKindsOf(o owners) []childKind {
	var out []childKind
	for _, k := range childKinds {
		if k.owners&o != 0 {
			out = append(out, k)
		}
	}
	return out
}

// childKindByType finds the kind of the typed object obj, which, read through
// a typed client, carries no TypeMeta.
func childKindByType(obj client.Object) (childKind, bool) {
	t := reflect.TypeOf(obj)
	for _, k := range childKinds {
		if reflect.TypeOf(k.newObject()) == t {
			return k, true
		}
	}
	return childKind{}, false
}

// extractOwned returns the fields of live that FieldOwner manages.
func extractOwned(live client.Object) (any, error) {
	k, ok := childKindByType(live)
	if !ok {
		return nil, fmt.Errorf("no field extraction for %T", live)
	}
	return k.extract(live)
}

// ownChildren adds a watch of each kind of o's children to b, so that drift
// of a child is undone, and a child someone else created for the owner is
// pruned.
func ownChildren(b *builder.Builder, o owners) *builder.Builder {
	for _, k := range childKindsOf(o) {
		b = b.Owns(k.newObject(), builder.WithPredicates(notOwnCreate))
	}
	return b
}

// notOwnCreate passes every event but the creation of a child that the
// manager applied itself: the reconcile that applied it is done with it, and
// queueing the owner again doubled the reconciles of a converging Workflow
// (make bench, operator section). After a restart the owners' own create
// events reconcile every owner once.
var notOwnCreate = predicate.Funcs{CreateFunc: func(e event.CreateEvent) bool { return !appliedByManager(e.Object) }}

// appliedByManager reports whether obj carries fields that the manager
// applied, or is a child it created (with the digest of what it rendered).
func appliedByManager(obj client.Object) bool {
	_, created := obj.GetLabels()[desiredLabel]
	for _, f := range obj.GetManagedFields() {
		if f.Manager == FieldOwner && f.Subresource == "" &&
			(f.Operation == metav1.ManagedFieldsOperationApply || created) {
			return true
		}
	}
	return false
}

// controllerIndex indexes the cached children by the UID of the object that
// controls them, so that an owner's children are listed without a scan of
// every child of the namespace: with a label selector alone, each reconcile
// matched the labels of every cached child of each kind, which made a
// namespace of 1000 Workflows cost the manager half its CPU (make bench,
// operator section).
const controllerIndex = "patchbay.dev/controller-uid"

// indexChildren registers controllerIndex for every child kind.
func indexChildren(ctx context.Context, mgr ctrl.Manager) error {
	for _, k := range childKinds {
		err := mgr.GetFieldIndexer().IndexField(ctx, k.newObject(), controllerIndex, func(o client.Object) []string {
			if ref := metav1.GetControllerOf(o); ref != nil {
				return []string{string(ref.UID)}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index %s by controller: %w", k.kind, err)
		}
	}
	return nil
}

// controlledBy lists the children owner controls (controllerIndex).
func controlledBy(owner client.Object) client.MatchingFields {
	return client.MatchingFields{controllerIndex: string(owner.GetUID())}
}

// pruneChildren deletes the children that owner controls, that carry the
// owner's label, and that the desired set no longer holds: the orchestrator
// after a switch to choreography, the PDB of a step scaled down to one.
// It returns what it deleted.
func pruneChildren(ctx context.Context, c client.Client, owner client.Object, kinds []childKind, selector client.MatchingLabels, desired map[childKey]bool) ([]childKey, error) {
	var deleted []childKey
	for _, l := range kinds {
		kind, list := l.kind, l.newList()
		if err := c.List(ctx, list, client.InNamespace(owner.GetNamespace()), selector, controlledBy(owner)); err != nil {
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
