package chart

import (
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// With watchNamespaces the chart grants the manager's rules in a Role in each
// listed namespace and nowhere else: no ClusterRole, so no Secret of any other
// namespace is readable. The manager is told which namespaces to watch.
func TestChartWatchNamespaces(t *testing.T) {
	objs := render(t, "--set", "watchNamespaces={shop,billing}")
	want := []string{
		"CustomResourceDefinition/brokers.patchbay.dev",
		"CustomResourceDefinition/workflows.patchbay.dev",
		"Deployment/pb-patchbay-manager",
		"Role/billing/pb-patchbay-manager",
		"Role/pb-patchbay-leader-election",
		"Role/shop/pb-patchbay-manager",
		"RoleBinding/billing/pb-patchbay-manager",
		"RoleBinding/pb-patchbay-leader-election",
		"RoleBinding/shop/pb-patchbay-manager",
		"Service/pb-patchbay-metrics",
		"ServiceAccount/pb-patchbay",
	}
	if got := objs.keys(); !slices.Equal(got, want) {
		t.Errorf("rendered objects:\n got %v\nwant %v", got, want)
	}

	var configRole rbacv1.ClusterRole
	readYAML(t, "config/rbac/role.yaml", &configRole)
	wantSubject := rbacv1.Subject{Kind: "ServiceAccount", Name: "pb-patchbay", Namespace: "patchbay-system"}
	for _, ns := range []string{"shop", "billing"} {
		var role rbacv1.Role
		objs.decode(t, "Role/"+ns+"/pb-patchbay-manager", &role)
		if role.Namespace != ns {
			t.Errorf("Role %s is in namespace %q", role.Name, role.Namespace)
		}
		if !equality.Semantic.DeepEqual(role.Rules, configRole.Rules) {
			t.Errorf("the Role in %s differs from config/rbac/role.yaml: run make manifests\n got %v\nwant %v", ns, role.Rules, configRole.Rules)
		}
		var binding rbacv1.RoleBinding
		objs.decode(t, "RoleBinding/"+ns+"/pb-patchbay-manager", &binding)
		wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}
		if binding.Namespace != ns || binding.RoleRef != wantRef || len(binding.Subjects) != 1 || binding.Subjects[0] != wantSubject {
			t.Errorf("RoleBinding in %s: %+v binds %v, want %v to %v", ns, binding.RoleRef, binding.Subjects, wantRef, wantSubject)
		}
	}
	// The leader-election Role, the only other grant, holds no Secret.
	var le rbacv1.Role
	objs.decode(t, "Role/pb-patchbay-leader-election", &le)
	for _, r := range le.Rules {
		if slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "*") {
			t.Errorf("the leader-election Role grants %v", r)
		}
	}

	_, c := managerContainer(t, objs)
	if !slices.Contains(c.Args, "--watch-namespaces=shop,billing") {
		t.Errorf("args %v lack --watch-namespaces=shop,billing", c.Args)
	}
}

// PodMonitors look only where the Workflows can be.
func TestChartWatchNamespacesPodMonitors(t *testing.T) {
	objs := render(t, "--set", "watchNamespaces={shop,billing}", "--set", "metrics.podMonitor.enabled=true")
	for _, key := range []string{sidecarsKey, componentsKey} {
		var pm podMonitor
		objs.decode(t, key, &pm)
		sel := pm.Spec.NamespaceSelector
		if sel.Any || !slices.Equal(sel.MatchNames, []string{"shop", "billing"}) {
			t.Errorf("%s: namespaceSelector %+v, want matchNames [shop billing]", key, sel)
		}
	}
}

// A namespace name that cannot be one fails the install, naming the value.
func TestChartWatchNamespacesSchema(t *testing.T) {
	for _, set := range []string{"watchNamespaces={Shop}", "watchNamespaces={shop,shop}", "watchNamespaces=shop"} {
		out := helmFails(t, "template", "pb", chartDir, "--set", set)
		if !strings.Contains(out, "/watchNamespaces") {
			t.Errorf("--set %s: helm's error does not name /watchNamespaces:\n%s", set, out)
		}
	}
}
