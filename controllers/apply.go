package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
)

// FieldOwner is the one field manager under which the operator applies every
// child and writes every status.
const FieldOwner = "patchbay"

// maxStatefulSetNameLength is the longest name a StatefulSet may have; every
// other child's is plan.MaxNameLen. Its pods carry a controller-revision-hash
// label of the name, a dash and ten characters.
const maxStatefulSetNameLength = plan.MaxNameLen - 11

// applyOutcome says what apply did.
type applyOutcome int

const (
	unchanged applyOutcome = iota
	created
	updated
)

// nameError is a child that cannot be applied under its name: the name is too
// long, or an object the owner does not control already has it. It is reported
// in a condition, never resolved by truncating or taking the object over.
type nameError struct {
	reason  string
	message string
}

func (e *nameError) Error() string { return e.message }

// createOnly is the resourceVersion that makes a server-side apply create its
// object or fail: an apply that names a resourceVersion is refused with a
// Conflict unless the live object has exactly that version, and none has this
// one (the largest revision the storage can count to). An absent object is
// created, as if no version were named.
const createOnly = "9223372036854775807"

// applier applies rendered children with server-side apply, and only when the
// live object differs from what the operator owns of it: an unchanged desired
// state costs reads from the cache and no write at all.
type applier struct {
	client client.Client
	// reader reads the API server directly, for names the cache does not hold.
	reader client.Reader
}

// apply makes the live child match desired, which owner must control.
//
// A child the cache lacks is created with an apply that cannot touch an
// existing object (createOnly), rather than after a read: the cache holds only
// what patchbay manages, so the name may still be held by someone else, and
// the API server then refuses the apply and the holder is read directly.
func (a *applier) apply(ctx context.Context, owner, desired client.Object) (applyOutcome, error) {
	kind := desired.GetObjectKind().GroupVersionKind().Kind
	name := desired.GetName()
	if nerr := checkNameLength(kind, name); nerr != nil {
		return unchanged, nerr
	}
	body, err := render.Unstructured(desired)
	if err != nil {
		return unchanged, err
	}
	live := reflect.New(reflect.TypeOf(desired).Elem()).Interface().(client.Object)
	key := client.ObjectKeyFromObject(desired)
	err = a.client.Get(ctx, key, live)
	if apierrors.IsNotFound(err) {
		made, cerr := a.create(ctx, body)
		switch {
		case cerr != nil:
			return unchanged, cerr
		case made:
			return created, nil
		}
		// The name is taken by an object the cache does not hold.
		err = a.reader.Get(ctx, key, live)
		if apierrors.IsNotFound(err) {
			return unchanged, fmt.Errorf("create %s %s: it existed a moment ago and is gone now", kind, name)
		}
	}
	if err != nil {
		return unchanged, fmt.Errorf("get %s %s: %w", kind, name, err)
	}
	if nerr := checkControlled(owner, kind, live); nerr != nil {
		return unchanged, nerr
	}
	same, err := ownsAlready(body, live)
	if err != nil {
		return unchanged, fmt.Errorf("compare %s %s: %w", kind, name, err)
	}
	if same {
		return unchanged, nil
	}
	log.FromContext(ctx).V(1).Info("Applying child", "kind", kind, "name", name, "create", false)
	if err := a.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(body), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return unchanged, fmt.Errorf("apply %s %s: %w", kind, name, err)
	}
	return updated, nil
}

// create applies body only if no object has its name, and reports whether it
// did; a name already taken is no error.
func (a *applier) create(ctx context.Context, body *unstructured.Unstructured) (bool, error) {
	kind, name := body.GetKind(), body.GetName()
	log.FromContext(ctx).V(1).Info("Applying child", "kind", kind, "name", name, "create", true)
	obj := body.DeepCopy()
	obj.SetResourceVersion(createOnly)
	err := a.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(FieldOwner), client.ForceOwnership)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsConflict(err):
		return false, nil
	default:
		return false, fmt.Errorf("apply %s %s: %w", kind, name, err)
	}
}

func checkNameLength(kind, name string) *nameError {
	limit := plan.MaxNameLen
	if kind == "StatefulSet" {
		limit = maxStatefulSetNameLength
	}
	if len(name) > limit {
		return &nameError{
			reason:  v1alpha1.ReasonNameTooLong,
			message: fmt.Sprintf("%s name %s is %d characters, longer than %d: shorten the names it is made of", kind, name, len(name), limit),
		}
	}
	return nil
}

// checkControlled refuses a live object that owner does not control.
func checkControlled(owner client.Object, kind string, live client.Object) *nameError {
	ref := metav1.GetControllerOf(live)
	if ref != nil && ref.UID == owner.GetUID() {
		return nil
	}
	holder := "no patchbay object"
	if ref != nil {
		holder = ref.Kind + " " + ref.Name
	}
	return &nameError{
		reason: v1alpha1.ReasonNameConflict,
		message: fmt.Sprintf("%s %s already exists and belongs to %s; it is left alone: rename this %s or the step the name comes from",
			kind, live.GetName(), holder, kindOf(owner)),
	}
}

// ownsAlready reports whether the fields the operator owns in live hold
// exactly the values of body. Comparing what we own, rather than the whole
// object, ignores what the API server defaults and what others add; a field
// someone else changed has moved to their manager, so it reads as missing and
// the child is applied again.
func ownsAlready(body *unstructured.Unstructured, live client.Object) (bool, error) {
	owned, err := extractOwned(live)
	if err != nil {
		return false, err
	}
	a, err := normalized(owned)
	if err != nil {
		return false, err
	}
	b, err := normalized(body.Object)
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(a, b), nil
}

// normalized round-trips v through JSON, so that both sides of a comparison
// have the same number types, and drops empty values, which apply neither sets
// nor records, and the statuses of objects: no child sets one, but the API
// server defaults the status of a StatefulSet's claim templates, which are
// owned as a whole. Only those statuses go: a label, an annotation or a
// ConfigMap key named "status" is compared like any other field.
func normalized(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := utiljson.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	dropStatuses(out)
	return dropEmpty(out), nil
}

// dropStatuses deletes the status of the object obj and of the objects it
// embeds whole: a StatefulSet's volume claim templates.
func dropStatuses(obj any) {
	m, ok := obj.(map[string]any)
	if !ok {
		return
	}
	delete(m, "status")
	spec, _ := m["spec"].(map[string]any)
	templates, _ := spec["volumeClaimTemplates"].([]any)
	for _, t := range templates {
		if t, ok := t.(map[string]any); ok {
			delete(t, "status")
		}
	}
}

func dropEmpty(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			e = dropEmpty(e)
			if isEmpty(e) {
				delete(v, k)
				continue
			}
			v[k] = e
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = dropEmpty(e)
		}
		return v
	default:
		return v
	}
}

func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(v) == 0
	case []any:
		return len(v) == 0
	default:
		return false
	}
}

// kindOf names the kind of an owner; objects read through a typed client
// carry no TypeMeta.
func kindOf(owner client.Object) string {
	switch owner.(type) {
	case *v1alpha1.Workflow:
		return "Workflow"
	case *v1alpha1.Broker:
		return "Broker"
	default:
		return fmt.Sprintf("%T", owner)
	}
}
