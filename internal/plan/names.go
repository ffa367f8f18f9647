package plan

import "github.com/patchbay-dev/patchbay/api/style"

// MaxNameLen is the longest name of an object patchbay creates: a DNS label,
// as Service names and pod host names must be (docs/architecture.md, Names and
// ports). Names are never truncated: a name that does not fit is reported, so
// a long name cannot collide with another.
const MaxNameLen = 63

// ChildName is the name of a child of a Workflow in a style:
// <workflow>-<code>-<suffix>, the code being the style's (style.Style.Code)
// and the suffix a step's name, a role (OrchestratorRole, GatewayRole) or
// "plan". The code lets the children of two styles run side by side during a
// switch (docs/operations.md, Switching style); only the entry Service,
// <workflow>, is the same in every style.
func ChildName(workflow string, s style.Style, suffix string) string {
	return workflow + "-" + s.Code() + "-" + suffix
}

// ConfigMapName is the name of the ConfigMap that holds a Workflow's plan in a style.
func ConfigMapName(workflow string, s style.Style) string {
	return ChildName(workflow, s, "plan")
}

// ServiceURL is the in-cluster HTTP URL of a Service of namespace: ServicePort
// is HTTP's default port, so the URL names none.
func ServiceURL(namespace, service string) string {
	return "http://" + service + "." + namespace + ".svc"
}
