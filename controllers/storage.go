package controllers

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// storageChange describes how the volume claim templates of the desired
// StatefulSet differ from the live one's, by the Broker fields they come from;
// empty when they do not.
//
// The operator does not recreate the StatefulSet itself: the live claims keep
// their size and class whatever the template says (a claim cannot shrink, and
// grows only where its StorageClass allows expansion), so a silent recreate
// would report a storage the servers do not have. The user decides, with the
// command the condition gives, and resizes the claims if needed.
func storageChange(b *v1alpha1.Broker, live, desired *appsv1.StatefulSet) string {
	was, want := live.Spec.VolumeClaimTemplates, desired.Spec.VolumeClaimTemplates
	var changes []string
	switch {
	case len(was) != len(want):
		from, to := v1alpha1.StorageMemory, v1alpha1.StorageFile
		if len(want) == 0 {
			from, to = to, from
		}
		changes = append(changes, fmt.Sprintf("spec.jetstream.storage changed from %s to %s", from, to))
	default:
		for i := range want {
			w, l := want[i], was[i]
			wSize, lSize := w.Spec.Resources.Requests[corev1.ResourceStorage], l.Spec.Resources.Requests[corev1.ResourceStorage]
			if wSize.Cmp(lSize) != 0 {
				changes = append(changes, fmt.Sprintf("spec.jetstream.size changed from %s to %s", lSize.String(), wSize.String()))
			}
			if wc, lc := ptr.Deref(w.Spec.StorageClassName, ""), ptr.Deref(l.Spec.StorageClassName, ""); wc != lc {
				changes = append(changes, fmt.Sprintf("spec.jetstream.storageClassName changed from %q to %q", lc, wc))
			}
		}
	}
	if len(changes) == 0 {
		return ""
	}
	return fmt.Sprintf("%s, but the API server does not let the volumeClaimTemplates of StatefulSet %s change, so the NATS servers keep their previous storage and configuration. "+
		"To apply it, run `kubectl -n %s delete statefulset %s --cascade=orphan`: the pods keep running and their PersistentVolumeClaims (data-%s-<ordinal>) keep their data; "+
		"patchbay recreates the StatefulSet, which adopts the pods and replaces them one at a time on the same claims. "+
		"Existing claims keep their size and class: grow them with `kubectl patch pvc` where the StorageClass allows expansion; a smaller size or another class reaches only new claims. "+
		"Or revert the change",
		strings.Join(changes, " and "), live.Name, b.Namespace, live.Name, live.Name)
}
