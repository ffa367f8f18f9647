package render

import (
	"fmt"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// Child names (docs/architecture.md, Names and ports). They are never truncated: a name that does not fit
// is reported by the controller, so a long name cannot collide with another.

// The children of a style carry the style's code in their names, so that the
// children of two styles run side by side during a switch; only the entry
// Service, <workflow>, is the same in every style.

// StepName is the name of a step's Deployment, Service, NetworkPolicy and PDB
// in a style: <workflow>-<code>-<step>.
func StepName(workflow string, style v1alpha1.Style, step string) string {
	return styleChildName(workflow, style, step)
}

// ComponentName is the name of the orchestrator's or gateway's children in a style.
func ComponentName(workflow string, style v1alpha1.Style, component string) string {
	return styleChildName(workflow, style, component)
}

// PlanConfigMapName is the name of the ConfigMap holding a workflow's plan in a style.
func PlanConfigMapName(workflow string, style v1alpha1.Style) string {
	return styleChildName(workflow, style, "plan")
}

func styleChildName(workflow string, style v1alpha1.Style, suffix string) string {
	return workflow + "-" + style.Code() + "-" + suffix
}

// NATSName is the name of a Broker's StatefulSet, client Service, PDB and NetworkPolicy.
func NATSName(broker string) string { return broker + "-nats" }

// NATSHeadlessName is the name of a Broker's headless Service.
func NATSHeadlessName(broker string) string { return broker + "-nats-headless" }

// NATSConfigName is the name of a Broker's nats.conf ConfigMap.
func NATSConfigName(broker string) string { return broker + "-nats-config" }

// NATSClientSecretName is the name of the Secret with a Broker's client credentials.
func NATSClientSecretName(broker string) string { return broker + "-nats-client" }

// BrokerURL is the client URL of a Broker.
func BrokerURL(namespace, broker string) string {
	return fmt.Sprintf("nats://%s.%s.svc:%d", NATSName(broker), namespace, natsClientPort)
}

// ServiceURL is the in-cluster HTTP URL of a Service on port 80.
func ServiceURL(namespace, service string) string {
	return fmt.Sprintf("http://%s.%s.svc", service, namespace)
}
