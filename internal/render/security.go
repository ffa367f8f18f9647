package render

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// runtimeUser is the non-root user of the patchbay-runtime image.
const runtimeUser = int64(65532)

// restrictedPodSecurityContext meets the restricted Pod Security Standard at
// pod level: non-root and the runtime's default seccomp profile.
func restrictedPodSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// restrictedContainerSecurityContext meets the restricted Pod Security Standard
// for one container and makes its root filesystem read-only. runAsUser is nil
// when the image decides (a user's app), which runAsNonRoot still checks.
func restrictedContainerSecurityContext(runAsUser *int64) *corev1.SecurityContext {
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	if runAsUser != nil {
		sc.RunAsUser = runAsUser
		sc.RunAsGroup = runAsUser
	}
	return sc
}

// podSpecBase is what every pod the operator creates shares: restricted, no
// service-account token (no pod of ours talks to the API) and no service links
// (the plan says where everything is).
func podSpecBase() corev1.PodSpec {
	return corev1.PodSpec{
		AutomountServiceAccountToken: ptr.To(false),
		EnableServiceLinks:           ptr.To(false),
		SecurityContext:              restrictedPodSecurityContext(),
	}
}
