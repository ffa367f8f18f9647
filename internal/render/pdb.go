package render

import (
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// DisruptionBudgets renders a PodDisruptionBudget for every step, orchestrator
// and gateway with more than one replica: a drain then takes one pod at a time.
// A single pod gets none, so that it never blocks a node drain.
func DisruptionBudgets(in *WorkflowInput) []client.Object {
	o := in.owner()
	var objs []client.Object
	for _, st := range in.Plan.Steps {
		if st.Replicas > 1 {
			objs = append(objs, disruptionBudget(o, plan.ChildName(in.Workflow.Name, in.Workflow.Spec.Style, st.Name), ComponentStep, st.Name))
		}
	}
	if in.Settings.ComponentReplicas > 1 {
		for _, c := range Components(in.Plan) {
			objs = append(objs, disruptionBudget(o, plan.ChildName(in.Workflow.Name, in.Workflow.Spec.Style, c), c, ""))
		}
	}
	return objs
}

func disruptionBudget(o owner, name, component, step string) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	alwaysAllow := policyv1.AlwaysAllow
	pdb := &policyv1.PodDisruptionBudget{
		TypeMeta: metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &one,
			Selector:       &metav1.LabelSelector{MatchLabels: selectorLabels(o, component, step)},
			// A pod that is not ready serves nobody; let a drain evict it.
			UnhealthyPodEvictionPolicy: &alwaysAllow,
		},
	}
	stamp(pdb, o, name, component, step)
	return pdb
}
