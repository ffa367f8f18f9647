package render

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// otlpPorts are the OpenTelemetry collector ports (gRPC, HTTP) the components
// export traces to; the collector's address is not known here, so any.
var otlpPorts = []int32{4317, 4318}

// NetworkPolicies renders one NetworkPolicy per step and per component.
//
// A step's inbound port admits only the pods the plan lists as its callers
// (all sources for the entry step of a sync-chain, which callers reach through
// its Service); its admin port (metrics, health) admits all. Step egress is not
// restricted: the user's app may call anything. The orchestrator and gateway
// serve callers on 8080 when they are the workflow's entry, and nobody
// otherwise; they may reach only DNS, the steps that list them as
// callers, their Broker and a trace collector.
func NetworkPolicies(in *WorkflowInput) []client.Object {
	var objs []client.Object
	for i := range in.Plan.Steps {
		objs = append(objs, stepNetworkPolicy(in, &in.Plan.Steps[i]))
	}
	for _, c := range Components(in.Plan) {
		objs = append(objs, componentNetworkPolicy(in, c))
	}
	return objs
}

func stepNetworkPolicy(in *WorkflowInput, step *plan.Step) *networkingv1.NetworkPolicy {
	o := in.owner()
	var ingress []networkingv1.NetworkPolicyIngressRule
	isEntry := in.Plan.Entry.Kind == plan.EntryStep && in.Plan.Entry.Step == step.Name
	switch {
	case isEntry:
		ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{Ports: tcpPolicyPorts(plan.SidecarPort)})
	case len(step.Callers) > 0:
		var from []networkingv1.NetworkPolicyPeer
		for _, c := range step.Callers {
			from = append(from, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: callerSelector(o, c)}})
		}
		ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{Ports: tcpPolicyPorts(plan.SidecarPort), From: from})
	}
	ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{Ports: tcpPolicyPorts(plan.SidecarAdminPort)})
	np := &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selectorLabels(o, ComponentStep, step.Name)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     ingress,
		},
	}
	stamp(np, o, plan.ChildName(in.Workflow.Name, in.Workflow.Spec.Style, step.Name), ComponentStep, step.Name)
	return np
}

func componentNetworkPolicy(in *WorkflowInput, component string) *networkingv1.NetworkPolicy {
	o := in.owner()
	egress := []networkingv1.NetworkPolicyEgressRule{{Ports: dnsPolicyPorts()}}
	var steps []networkingv1.NetworkPolicyPeer
	for _, st := range in.Plan.Steps {
		for _, c := range st.Callers {
			if c == component {
				steps = append(steps, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: selectorLabels(o, ComponentStep, st.Name)}})
			}
		}
	}
	if len(steps) > 0 {
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{Ports: tcpPolicyPorts(plan.SidecarPort), To: steps})
	}
	if in.usesBroker() {
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{
			Ports: tcpPolicyPorts(natsClientPort),
			To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{LabelBroker: in.Plan.Roles.BrokerName, LabelComponent: ComponentNATS},
			}}},
		})
	}
	egress = append(egress, networkingv1.NetworkPolicyEgressRule{Ports: tcpPolicyPorts(otlpPorts...)})
	np := &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selectorLabels(o, component, "")},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     componentIngress(in.Plan, component),
			Egress:      egress,
		},
	}
	stamp(np, o, plan.ChildName(in.Workflow.Name, in.Workflow.Spec.Style, component), component, "")
	return np
}

// componentIngress admits callers from anywhere on the entry's port, and
// nobody to a component that is not the entry: an async orchestrator takes its
// work from the broker, so a pod that could reach it could only probe it. The
// kubelet's probes come from the node, which NetworkPolicy implementations
// always admit; a Prometheus outside the graph needs a policy of its own to
// scrape such a component.
func componentIngress(p *plan.Plan, component string) []networkingv1.NetworkPolicyIngressRule {
	if p.Entry.Kind != component {
		return nil
	}
	return []networkingv1.NetworkPolicyIngressRule{{Ports: tcpPolicyPorts(plan.ComponentPort)}}
}

// callerSelector selects the pods of a caller named in plan.Step.Callers.
func callerSelector(o owner, caller string) map[string]string {
	switch caller {
	case plan.OrchestratorRole:
		return selectorLabels(o, ComponentOrchestrator, "")
	case plan.GatewayRole:
		return selectorLabels(o, ComponentGateway, "")
	default:
		return selectorLabels(o, ComponentStep, caller)
	}
}

func tcpPolicyPorts(ports ...int32) []networkingv1.NetworkPolicyPort {
	out := make([]networkingv1.NetworkPolicyPort, 0, len(ports))
	for _, p := range ports {
		out = append(out, policyPort(corev1.ProtocolTCP, p))
	}
	return out
}

func dnsPolicyPorts() []networkingv1.NetworkPolicyPort {
	return []networkingv1.NetworkPolicyPort{policyPort(corev1.ProtocolUDP, 53), policyPort(corev1.ProtocolTCP, 53)}
}

func policyPort(proto corev1.Protocol, port int32) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(port)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func servicePort(name string, port, targetPort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(targetPort), Protocol: corev1.ProtocolTCP}
}
