package render

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// Labels and annotations on the children of Workflows and Brokers.
const (
	// LabelWorkflow names the Workflow a child belongs to.
	LabelWorkflow = "patchbay.dev/workflow"
	// LabelBroker names the Broker a child belongs to.
	LabelBroker = "patchbay.dev/broker"
	// LabelBrokerClient marks the pods that may connect to the named Broker; the
	// Broker's NetworkPolicy admits clients by it.
	LabelBrokerClient = "patchbay.dev/broker-client"
	// LabelStep names the step of a step's children.
	LabelStep = "patchbay.dev/step"
	// LabelStyle is the code of the style (v1alpha1.Style.Code) whose children
	// and pods carry it: every child of a Workflow but its entry Service, whose
	// selector carries the code of the style it serves.
	LabelStyle = "patchbay.dev/style"
	// LabelComponent is one of the Component* values.
	LabelComponent = "patchbay.dev/component"
	// AnnotationPlanHash on a pod template is the hash of the plan the pods run,
	// so that a changed plan rolls them.
	AnnotationPlanHash = "patchbay.dev/plan-hash"
	// AnnotationNATSCredentialsHash on a pod template is the hash of the
	// workflow's NATS credentials, so that new credentials roll the pods:
	// a role reads them only when it connects.
	AnnotationNATSCredentialsHash = "patchbay.dev/nats-credentials-hash"
	// AnnotationNATSUser on the plan ConfigMap is the public key of the
	// workflow's NATS user: it outlives a deleted credentials Secret, so that
	// the user it held can still be revoked.
	AnnotationNATSUser = "patchbay.dev/nats-user"
	// AnnotationConfigHash on the NATS pod template is the hash of nats.conf.
	AnnotationConfigHash = "patchbay.dev/config-hash"

	// LabelManagedBy is ManagedBy on every child; the manager caches only those.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "patchbay"

	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	labelComponent = "app.kubernetes.io/component"
	appName        = "patchbay"
)

// Components: what a child is part of.
const (
	ComponentStep         = "step"
	ComponentOrchestrator = "orchestrator"
	ComponentGateway      = "gateway"
	ComponentPlan         = "plan"
	ComponentNATS         = "nats"
	// ComponentEntry is the Workflow's stable entry Service, <workflow>.
	ComponentEntry = "entry"
)

// owner is the object whose children are rendered, with the label that names it.
type owner struct {
	obj   metav1.Object
	kind  string
	label string
	// style is the code of the Workflow's style; empty for a Broker.
	style string
}

func workflowOwner(wf *v1alpha1.Workflow) owner {
	return owner{obj: wf, kind: "Workflow", label: LabelWorkflow, style: wf.Spec.Style.Code()}
}

func brokerOwner(b *v1alpha1.Broker) owner {
	return owner{obj: b, kind: "Broker", label: LabelBroker}
}

// selectorLabels select the pods of one component (and step) of an owner, in
// a Workflow's current style. They are immutable in a Deployment or
// StatefulSet selector, so they hold only what never changes for a given name.
func selectorLabels(o owner, component, step string) map[string]string {
	l := map[string]string{o.label: o.obj.GetName(), LabelComponent: component}
	if step != "" {
		l[LabelStep] = step
	}
	if o.style != "" {
		l[LabelStyle] = o.style
	}
	return l
}

// objectLabels are the labels of every child and pod: the selector labels plus
// the app.kubernetes.io ones.
func objectLabels(o owner, component, step string) map[string]string {
	l := selectorLabels(o, component, step)
	l[labelName] = appName
	l[labelInstance] = o.obj.GetName()
	l[labelComponent] = component
	l[LabelManagedBy] = ManagedBy
	return l
}

// stamp gives a child its name, namespace, labels and the controller reference
// to its owner. Every rendered child goes through it.
func stamp(obj client.Object, o owner, name, component, step string) {
	obj.SetName(name)
	obj.SetNamespace(o.obj.GetNamespace())
	obj.SetLabels(objectLabels(o, component, step))
	obj.SetOwnerReferences([]metav1.OwnerReference{*metav1.NewControllerRef(o.obj, v1alpha1.GroupVersion.WithKind(o.kind))})
}
