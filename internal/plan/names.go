package plan

// MaxNameLen is the longest name of an object patchbay creates: a DNS label,
// as Service names and pod host names must be (docs/architecture.md, Names and
// ports). Names are never truncated: a name that does not fit is reported, so
// a long name cannot collide with another.
const MaxNameLen = 63

// ChildName is the name of a child of a Workflow: <workflow>-<suffix>, the
// suffix being a step's name, a role (OrchestratorRole, GatewayRole) or "plan".
func ChildName(workflow, suffix string) string { return workflow + "-" + suffix }

// ConfigMapName is the name of the ConfigMap that holds a Workflow's plan.
func ConfigMapName(workflow string) string { return ChildName(workflow, "plan") }

// ServiceURL is the in-cluster HTTP URL of a Service of namespace: ServicePort
// is HTTP's default port, so the URL names none.
func ServiceURL(namespace, service string) string {
	return "http://" + service + "." + namespace + ".svc"
}
