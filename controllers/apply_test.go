package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/internal/render"
)

// appliedBy marks every field of fields as applied by the operator, as the
// API server records a server-side apply.
func appliedBy(fields string) []metav1.ManagedFieldsEntry {
	return []metav1.ManagedFieldsEntry{{
		Manager: FieldOwner, Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1",
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(fields),
	}}
}

// A label, an annotation or a data key named "status" is a field like any
// other: when it drifts, the child is applied again.
func TestOwnsAlreadyComparesFieldsNamedStatus(t *testing.T) {
	const fields = `{"f:data":{".":{},"f:other":{},"f:status":{}},` +
		`"f:metadata":{"f:annotations":{".":{},"f:status":{}},"f:labels":{".":{},"f:status":{}}}}`
	desired := func(label, annotation, data string) *corev1.ConfigMap {
		return &corev1.ConfigMap{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{
				Name: "cm", Namespace: "ns",
				Labels:      map[string]string{"status": label},
				Annotations: map[string]string{"status": annotation},
			},
			Data: map[string]string{"status": data, "other": "x"},
		}
	}
	live := desired("ok", "ok", "ok")
	live.ManagedFields = appliedBy(fields)
	for _, tc := range []struct {
		name string
		want *corev1.ConfigMap
		same bool
	}{
		{"unchanged", desired("ok", "ok", "ok"), true},
		{"label", desired("drifted", "ok", "ok"), false},
		{"annotation", desired("ok", "drifted", "ok"), false},
		{"data key", desired("ok", "ok", "drifted"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := render.Unstructured(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			same, err := ownsAlready(body, "", live)
			if err != nil {
				t.Fatal(err)
			}
			if same != tc.same {
				t.Errorf("ownsAlready = %v, want %v", same, tc.same)
			}
		})
	}
}

// The API server defaults the status of a StatefulSet's claim templates, which
// the operator owns as a whole: that status is no difference.
func TestOwnsAlreadyIgnoresClaimTemplateStatus(t *testing.T) {
	const fields = `{"f:spec":{"f:serviceName":{},"f:volumeClaimTemplates":{}}}`
	claim := func(phase corev1.PersistentVolumeClaimPhase) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
			ObjectMeta: metav1.ObjectMeta{Name: "sts", Namespace: "ns"},
			Spec: appsv1.StatefulSetSpec{ServiceName: "sts", VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceStorage: resource.MustParse("1Gi"),
					}},
				},
				Status: corev1.PersistentVolumeClaimStatus{Phase: phase},
			}}},
		}
	}
	live := claim(corev1.ClaimPending)
	live.ManagedFields = appliedBy(fields)
	live.ManagedFields[0].APIVersion = "apps/v1"
	body, err := render.Unstructured(claim(""))
	if err != nil {
		t.Fatal(err)
	}
	same, err := ownsAlready(body, "", live)
	if err != nil {
		t.Fatal(err)
	}
	if !same {
		t.Error("ownsAlready = false for a live claim template that differs only in its defaulted status")
	}
}

// A child the operator created owns the defaults the API server added to
// it, so what it owns cannot be compared: it is the same when it was created
// from the same desired state (its digest) and still holds every rendered
// value; a default is no difference, a changed value or another digest is.
func TestOwnsAlreadyOfACreatedChild(t *testing.T) {
	desired := func(replicas int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "ns", Labels: map[string]string{"app": "a"}},
			Spec: appsv1.DeploymentSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: "demo"}},
			}}},
		}
	}
	body, err := render.Unstructured(desired(2))
	if err != nil {
		t.Fatal(err)
	}
	digest, err := desiredDigest(body)
	if err != nil {
		t.Fatal(err)
	}
	created := func(replicas int32, digest string) *appsv1.Deployment {
		d := desired(replicas)
		d.Labels[desiredLabel] = digest
		d.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: FieldOwner, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1"}}
		// Defaults the API server adds.
		d.Spec.RevisionHistoryLimit = new(int32(10))
		d.Spec.Template.Spec.Containers[0].TerminationMessagePath = "/dev/termination-log"
		return d
	}
	for _, tc := range []struct {
		name string
		live *appsv1.Deployment
		same bool
	}{
		{"as created, with defaults", created(2, digest), true},
		{"a rendered value changed by someone else", created(3, digest), false},
		{"created from another desired state", created(2, "other"), false},
	} {
		same, err := ownsAlready(body, digest, tc.live)
		if err != nil {
			t.Fatal(err)
		}
		if same != tc.same {
			t.Errorf("%s: ownsAlready = %v, want %v", tc.name, same, tc.same)
		}
	}
}
