package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// TestNotOwnCreate: a child the manager applied does not queue its owner on
// creation; one created by anyone else does (so that it is pruned), and so do
// updates and deletes of any child (drift).
func TestNotOwnCreate(t *testing.T) {
	cm := func(fields ...metav1.ManagedFieldsEntry) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", ManagedFields: fields}}
	}
	created := func(fields ...metav1.ManagedFieldsEntry) *corev1.ConfigMap {
		c := cm(fields...)
		c.Labels = map[string]string{desiredLabel: "digest"}
		return c
	}
	applied := metav1.ManagedFieldsEntry{Manager: FieldOwner, Operation: metav1.ManagedFieldsOperationApply}
	for _, tc := range []struct {
		name string
		obj  *corev1.ConfigMap
		want bool
	}{
		{"applied by the manager", cm(applied), false},
		{"applied by the manager, then edited", cm(applied, metav1.ManagedFieldsEntry{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate}), false},
		{"created by someone else", cm(metav1.ManagedFieldsEntry{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate}), true},
		{"updated under the manager's name, not applied", cm(metav1.ManagedFieldsEntry{Manager: FieldOwner, Operation: metav1.ManagedFieldsOperationUpdate}), true},
		{"created by the manager", created(metav1.ManagedFieldsEntry{Manager: FieldOwner, Operation: metav1.ManagedFieldsOperationUpdate}), false},
		{"no managed fields", cm(), true},
	} {
		if got := notOwnCreate.Create(event.CreateEvent{Object: tc.obj}); got != tc.want {
			t.Errorf("%s: create passes = %v, want %v", tc.name, got, tc.want)
		}
	}
	if !notOwnCreate.Update(event.UpdateEvent{ObjectOld: cm(applied), ObjectNew: cm(applied)}) {
		t.Error("an update of an applied child must queue its owner")
	}
	if !notOwnCreate.Delete(event.DeleteEvent{Object: cm(applied)}) {
		t.Error("a delete of an applied child must queue its owner")
	}
}
