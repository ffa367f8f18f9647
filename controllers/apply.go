package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/csaupgrade"
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

// desiredLabel is, on a child the operator created, the digest of what it
// rendered for the child then (desiredDigest). A child is created with a
// plain create, which costs the API server about half of a server-side apply
// that creates (make bench, operator section); the fields it sets are then
// owned by an Update entry of FieldOwner, which tells neither a default nor
// a field someone else set from what the operator rendered. So the digest
// says whether the desired state is still the one created; a change, even one
// that only drops a field, moves the child's fields to FieldOwner's apply
// entry (csaupgrade) and applies it as any other, which removes the dropped
// field and the digest. It is a label, not an annotation: the API server
// gives a Deployment a new generation when its annotations change, and its
// status then reads not ready until the Deployment controller catches up.
const desiredLabel = "patchbay.dev/desired"

// desiredDigest is the digest of a rendered child (its JSON, whose object
// keys encoding/json sorts).
func desiredDigest(body *unstructured.Unstructured) (string, error) {
	b, err := json.Marshal(body.Object)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}

// applier creates rendered children, then applies them with server-side
// apply, and only when the live object differs from what the operator owns
// of it: an unchanged desired state costs reads from the cache and no write
// at all.
type applier struct {
	client client.Client
	// reader reads the API server directly, for names the cache does not hold.
	reader client.Reader
}

// apply makes the live child match desired, which owner must control.
//
// A child the cache lacks is created (a create cannot touch an existing
// object) rather than after a read: the cache holds only what patchbay
// manages, so the name may still be held by someone else, and the API server
// then refuses the create and the holder is read directly.
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
	digest, err := desiredDigest(body)
	if err != nil {
		return unchanged, err
	}
	live := reflect.New(reflect.TypeOf(desired).Elem()).Interface().(client.Object)
	key := client.ObjectKeyFromObject(desired)
	err = a.client.Get(ctx, key, live)
	if apierrors.IsNotFound(err) {
		made, cerr := a.create(ctx, body, digest)
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
	same, err := ownsAlready(body, digest, live)
	if err != nil {
		return unchanged, fmt.Errorf("compare %s %s: %w", kind, name, err)
	}
	if same {
		return unchanged, nil
	}
	if createdOnly(live) {
		// The fields it was created with become the apply's, so that
		// what the apply leaves out is removed; but only for an apply the
		// API server takes (a dry run says), so that a refused change that
		// is then undone leaves the child as it was created. The dry run
		// sends a copy: an apply writes the answer into what it sends.
		if err := a.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(body.DeepCopy()), client.FieldOwner(FieldOwner), client.ForceOwnership, client.DryRunAll); err != nil {
			return unchanged, fmt.Errorf("apply %s %s: %w", kind, name, err)
		}
		if err := a.takeOver(ctx, live); err != nil {
			return unchanged, fmt.Errorf("take over the fields of %s %s: %w", kind, name, err)
		}
	}
	log.FromContext(ctx).V(1).Info("Applying child", "kind", kind, "name", name, "create", false)
	if err := a.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(body), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return unchanged, fmt.Errorf("apply %s %s: %w", kind, name, err)
	}
	return updated, nil
}

// takeOver moves the fields that live was created with from FieldOwner's
// Update entry to its apply entry (csaupgrade). The patch holds live's
// resourceVersion, so a live object the cache has not caught up with is
// refused with a Conflict: it is read again from the API server and the
// patch made once more.
func (a *applier) takeOver(ctx context.Context, live client.Object) error {
	for attempt := 0; ; attempt++ {
		patch, err := csaupgrade.UpgradeManagedFieldsPatch(live, sets.New(FieldOwner), FieldOwner)
		if err != nil || patch == nil {
			return err
		}
		err = a.client.Patch(ctx, live, client.RawPatch(types.JSONPatchType, patch))
		if !apierrors.IsConflict(err) || attempt > 0 {
			return err
		}
		if err := a.reader.Get(ctx, client.ObjectKeyFromObject(live), live); err != nil {
			return err
		}
		if !createdOnly(live) {
			return nil
		}
	}
}

// create creates body, with the digest of what was rendered
// (desiredLabel), if no object has its name, and reports whether it
// did; a name already taken is no error.
func (a *applier) create(ctx context.Context, body *unstructured.Unstructured, digest string) (bool, error) {
	kind, name := body.GetKind(), body.GetName()
	log.FromContext(ctx).V(1).Info("Creating child", "kind", kind, "name", name)
	obj := body.DeepCopy()
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[desiredLabel] = digest
	obj.SetLabels(labels)
	err := a.client.Create(ctx, obj, client.FieldOwner(FieldOwner))
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsAlreadyExists(err):
		return false, nil
	default:
		return false, fmt.Errorf("create %s %s: %w", kind, name, err)
	}
}

// createdOnly reports whether the operator's fields of live are those it
// was created with: FieldOwner has an Update entry of the object and no
// apply entry.
func createdOnly(live client.Object) bool {
	updated := false
	for _, f := range live.GetManagedFields() {
		if f.Manager != FieldOwner || f.Subresource != "" {
			continue
		}
		if f.Operation == metav1.ManagedFieldsOperationApply {
			return false
		}
		updated = true
	}
	return updated
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
//
// A child as the operator created it (createdOnly) owns its defaults too: it
// is the same when it was created from this desired state (digest) and
// still holds every value of body.
func ownsAlready(body *unstructured.Unstructured, digest string, live client.Object) (bool, error) {
	if createdOnly(live) {
		if live.GetLabels()[desiredLabel] != digest {
			return false, nil
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(live)
		if err != nil {
			return false, err
		}
		a, err := normalized(obj)
		if err != nil {
			return false, err
		}
		want := body.DeepCopy().Object
		delete(want, "apiVersion")
		delete(want, "kind")
		b, err := normalized(want)
		if err != nil {
			return false, err
		}
		return holds(a, b), nil
	}
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

// holds reports whether have holds every value of want: each key of a map
// with a value it holds, each item of a list in the same place.
func holds(have, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			if hv, ok := h[k]; !ok || !holds(hv, v) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !holds(h[i], w[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(have, want)
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
