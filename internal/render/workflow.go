package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// WorkflowInput is everything a Workflow's children are rendered from: the
// Workflow (the owner, and the app containers the Plan does not describe), its
// compiled Plan and the operator's settings.
type WorkflowInput struct {
	Workflow *v1alpha1.Workflow
	Plan     *plan.Plan
	Settings Settings
	// Streams is how the workflow's stream and KV buckets are stored, from
	// the Broker it uses; nil while that Broker does not exist.
	Streams *Streams
	// NATSCredentialsHash is the hash of the workflow's credentials Secret
	// (CredentialsHash), on the pod templates of the async styles; empty
	// while the Secret cannot be made (no Broker yet).
	NATSCredentialsHash string
	// NATSUser is the public key of the user in those credentials, on the
	// plan ConfigMap (AnnotationNATSUser).
	NATSUser string

	planJSON []byte
	planHash string
	steps    map[string]*v1alpha1.Step
}

// NewWorkflowInput checks that the Plan belongs to the Workflow and marshals it once.
func NewWorkflowInput(wf *v1alpha1.Workflow, p *plan.Plan, s Settings) (*WorkflowInput, error) {
	if p.Workflow != wf.Name || p.Namespace != wf.Namespace {
		return nil, fmt.Errorf("plan of %s/%s cannot render Workflow %s/%s", p.Namespace, p.Workflow, wf.Namespace, wf.Name)
	}
	b, err := p.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal plan: %w", err)
	}
	h, err := p.Hash()
	if err != nil {
		return nil, fmt.Errorf("hash plan: %w", err)
	}
	in := &WorkflowInput{Workflow: wf, Plan: p, Settings: s, planJSON: b, planHash: h, steps: map[string]*v1alpha1.Step{}}
	for i := range wf.Spec.Steps {
		in.steps[wf.Spec.Steps[i].Name] = &wf.Spec.Steps[i]
	}
	for _, st := range p.Steps {
		if in.steps[st.Name] == nil {
			return nil, fmt.Errorf("plan step %q is not in the Workflow's spec.steps", st.Name)
		}
	}
	return in, nil
}

// Streams is the replication and storage of a workflow's JetStream stream and
// KV buckets. The Plan does not hold them, as they come from the Broker, not
// the Workflow. The manager creates the stream and buckets with them
// (bus.EnsureResources); they are runtime arguments too, so a Broker change
// rolls the pods.
type Streams struct {
	// Replicas is the Broker's number of servers: every server holds a copy.
	Replicas int32
	// Storage is the Broker's JetStream storage.
	Storage v1alpha1.Storage
}

// BrokerStreams are the streams a Broker can hold: as many replicas as it
// has servers, on its storage, as its status reports them applied (a held
// storage change keeps them as the servers run them); its spec's until its
// controller has written them.
func BrokerStreams(b *v1alpha1.Broker) *Streams {
	st := &Streams{Replicas: b.Status.Replicas, Storage: b.Status.Storage}
	if st.Replicas == 0 {
		st.Replicas = b.DesiredReplicas()
	}
	if st.Storage == "" {
		st.Storage = b.StorageKind()
	}
	return st
}

// PlanHash is the hash of the plan, as the pods carry it.
func (in *WorkflowInput) PlanHash() string { return in.planHash }

func (in *WorkflowInput) owner() owner { return workflowOwner(in.Workflow) }

// usesBroker reports whether the workflow's pods connect to a Broker.
func (in *WorkflowInput) usesBroker() bool {
	return in.Plan.Roles.Broker && in.Plan.Roles.BrokerName != ""
}

// Components lists the patchbay components the plan runs beside the steps, in
// the order they are rendered.
func Components(p *plan.Plan) []string {
	var cs []string
	if p.Roles.Orchestrator {
		cs = append(cs, ComponentOrchestrator)
	}
	if p.Roles.Gateway {
		cs = append(cs, ComponentGateway)
	}
	return cs
}

// StepObjects renders the Deployment and Service of every step.
func StepObjects(in *WorkflowInput) []client.Object {
	var objs []client.Object
	for i := range in.Plan.Steps {
		st := &in.Plan.Steps[i]
		objs = append(objs, StepDeployment(in, st), StepService(in, st))
	}
	return objs
}

// ComponentObjects renders the orchestrator's and the gateway's Deployment and
// Service, for those the plan runs.
func ComponentObjects(in *WorkflowInput) []client.Object {
	var objs []client.Object
	for _, c := range Components(in.Plan) {
		objs = append(objs, ComponentDeployment(in, c), ComponentService(in, c))
	}
	return objs
}

// WorkflowObjects renders every child of a Workflow in its style, in the order
// the controller applies them; the entry Service waits, during a style
// switch, until the others are ready.
func WorkflowObjects(in *WorkflowInput) []client.Object {
	objs := []client.Object{PlanConfigMap(in)}
	objs = append(objs, StepObjects(in)...)
	objs = append(objs, ComponentObjects(in)...)
	objs = append(objs, EntryService(in))
	objs = append(objs, NetworkPolicies(in)...)
	objs = append(objs, DisruptionBudgets(in)...)
	return objs
}

// CredentialsHash is the hash of a workflow's NATS credentials as its pod
// templates carry it.
func CredentialsHash(creds []byte) string {
	sum := sha256.Sum256(creds)
	return hex.EncodeToString(sum[:])[:16]
}

// WorkflowCredentialsSecret renders <workflow>-nats-credentials, the
// workflow's own NATS user (natsauth.CredentialsKey), which only its pods mount.
func WorkflowCredentialsSecret(in *WorkflowInput, creds []byte) *corev1.Secret {
	s := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		Type:     corev1.SecretTypeOpaque,
		Data:     map[string][]byte{natsauth.CredentialsKey: creds},
	}
	stamp(s, in.owner(), WorkflowCredentialsSecretName(in.Workflow.Name), ComponentNATS, "")
	return s
}
