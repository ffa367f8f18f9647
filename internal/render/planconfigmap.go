package render

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// PlanKey is the key of the plan JSON in the plan ConfigMap.
const PlanKey = "plan.json"

// PlanConfigMap renders <workflow>-<code>-plan, the Plan JSON every pod of the
// workflow in its style mounts.
func PlanConfigMap(in *WorkflowInput) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		Data:     map[string]string{PlanKey: string(in.planJSON)},
	}
	stamp(cm, in.owner(), plan.ConfigMapName(in.Workflow.Name, in.Workflow.Spec.Style), ComponentPlan, "")
	cm.Annotations = map[string]string{AnnotationPlanHash: in.planHash}
	if in.usesBroker() && in.NATSUser != "" {
		cm.Annotations[AnnotationNATSUser] = in.NATSUser
	}
	return cm
}
