package render

import "fmt"

// Names of a Broker's children (docs/architecture.md, Names and ports); a
// Workflow's are plan.ChildName. They are never truncated: a name that does
// not fit is reported by the controller, so a long name cannot collide with
// another.

// NATSName is the name of a Broker's StatefulSet, client Service, PDB and NetworkPolicy.
func NATSName(broker string) string { return broker + "-nats" }

// NATSHeadlessName is the name of a Broker's headless Service.
func NATSHeadlessName(broker string) string { return broker + "-nats-headless" }

// NATSConfigName is the name of a Broker's nats.conf ConfigMap.
func NATSConfigName(broker string) string { return broker + "-nats-config" }

// NATSAuthSecretName is the name of the Secret with a Broker's keys.
func NATSAuthSecretName(broker string) string { return broker + "-nats-auth" }

// WorkflowCredentialsSecretName is the name of the Secret with a workflow's
// NATS credentials.
func WorkflowCredentialsSecretName(workflow string) string { return workflow + "-nats-credentials" }

// BrokerURL is the client URL of a Broker.
func BrokerURL(namespace, broker string) string {
	return fmt.Sprintf("nats://%s.%s.svc:%d", NATSName(broker), namespace, natsClientPort)
}
