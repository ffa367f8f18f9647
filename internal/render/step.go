package render

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

const tmpVolume = "tmp"

// StepDeployment renders <workflow>-<step>: the user's container and the
// runtime sidecar in front of it.
func StepDeployment(in *WorkflowInput, step *plan.Step) *appsv1.Deployment {
	spec := in.steps[step.Name]
	app := corev1.Container{
		Name:            AppContainerName,
		Image:           spec.Image,
		Command:         spec.Command,
		Args:            spec.Args,
		Env:             spec.Env,
		EnvFrom:         spec.EnvFrom,
		Ports:           []corev1.ContainerPort{tcpPort("app", step.App.Port)},
		SecurityContext: restrictedContainerSecurityContext(nil),
		// The root filesystem is read-only; most HTTP servers still want a scratch /tmp.
		VolumeMounts: []corev1.VolumeMount{{Name: tmpVolume, MountPath: "/tmp"}},
		// The sidecar stops taking work and finishes its work in hand before
		// the app stops.
		Lifecycle: drainSidecarHook(),
	}
	if spec.Resources != nil {
		app.Resources = *spec.Resources
	}
	pod := podSpecBase()
	pod.InitContainers = []corev1.Container{sidecarContainer(in, step)}
	pod.Containers = []corev1.Container{app}
	pod.Volumes = append(runtimeVolumes(in), corev1.Volume{
		Name: tmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
	})
	d := workflowDeployment(in, plan.ChildName(in.Workflow.Name, in.Workflow.Spec.Style, step.Name), ComponentStep, step.Name, step.Replicas, pod)
	d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To(stepTerminationGracePeriodSeconds)
	return d
}

// StepService renders <workflow>-<step>: port 80 to the sidecar's inbound port.
func StepService(in *WorkflowInput, step *plan.Step) *corev1.Service {
	return workflowService(in, plan.ChildName(in.Workflow.Name, in.Workflow.Spec.Style, step.Name), ComponentStep, step.Name, plan.SidecarPort)
}

// ComponentDeployment renders <workflow>-orchestrator or <workflow>-gateway.
func ComponentDeployment(in *WorkflowInput, component string) *appsv1.Deployment {
	pod := podSpecBase()
	pod.Containers = []corev1.Container{componentContainer(in, component)}
	pod.Volumes = runtimeVolumes(in)
	return workflowDeployment(in, plan.ChildName(in.Workflow.Name, in.Workflow.Spec.Style, component), component, "", in.Settings.ComponentReplicas, pod)
}

// ComponentService renders the Service of the orchestrator or the gateway.
func ComponentService(in *WorkflowInput, component string) *corev1.Service {
	return workflowService(in, plan.ChildName(in.Workflow.Name, in.Workflow.Spec.Style, component), component, "", plan.ComponentPort)
}

// EntryService renders <workflow>, the Workflow's stable entry: port 80 to the
// pods that take callers in the current style (the root step's sidecar in a
// sync-chain, the orchestrator in sync-orchestrated, the gateway in the async
// styles) of the current style. A style switch moves its selector, never its
// name or address; the controller moves it only once the new style is ready
// (docs/operations.md, Switching style).
func EntryService(in *WorkflowInput) *corev1.Service {
	o := in.owner()
	component, step, port := ComponentStep, in.Plan.Entry.Step, int32(plan.SidecarPort)
	if in.Plan.Entry.Kind != plan.EntryStep {
		component, step, port = in.Plan.Entry.Kind, "", plan.ComponentPort
	}
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		Spec: corev1.ServiceSpec{
			Selector: selectorLabels(o, component, step),
			Ports:    []corev1.ServicePort{servicePort("http", plan.ServicePort, port)},
		},
	}
	stamp(svc, o, in.Plan.Entry.Service, ComponentEntry, "")
	// The entry belongs to no style: only its selector names one.
	delete(svc.Labels, LabelStyle)
	return svc
}

// workflowDeployment wraps a pod of the workflow in a Deployment whose pods
// carry the plan hash and the hash of the workflow's NATS credentials, so
// that a new plan or new credentials roll them, and have the time to drain
// that the runtime needs.
func workflowDeployment(in *WorkflowInput, name, component, step string, replicas int32, pod corev1.PodSpec) *appsv1.Deployment {
	o := in.owner()
	labels := objectLabels(o, component, step)
	if in.usesBroker() {
		labels[LabelBrokerClient] = in.Plan.Roles.BrokerName
	}
	annotations := map[string]string{AnnotationPlanHash: in.planHash}
	if in.usesBroker() && in.NATSCredentialsHash != "" {
		annotations[AnnotationNATSCredentialsHash] = in.NATSCredentialsHash
	}
	pod.TerminationGracePeriodSeconds = ptr.To(terminationGracePeriodSeconds)
	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(o, component, step)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      labels,
					Annotations: annotations,
				},
				Spec: pod,
			},
		},
	}
	stamp(d, o, name, component, step)
	return d
}

func workflowService(in *WorkflowInput, name, component, step string, targetPort int32) *corev1.Service {
	o := in.owner()
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		Spec: corev1.ServiceSpec{
			Selector: selectorLabels(o, component, step),
			Ports:    []corev1.ServicePort{servicePort("http", plan.ServicePort, targetPort)},
		},
	}
	stamp(svc, o, name, component, step)
	return svc
}
