package controllers

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// TestChildKindsHaveRBAC ties the +kubebuilder:rbac markers, which cannot be
// generated from childKinds, to it: the manager's role must grant every verb
// the controllers use on every kind of child.
func TestChildKindsHaveRBAC(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(b, &role); err != nil {
		t.Fatal(err)
	}
	for _, k := range childKinds {
		gvk, err := apiutil.GVKForObject(k.newObject(), clientgoscheme.Scheme)
		if err != nil {
			t.Fatal(err)
		}
		if gvk.Kind != k.kind {
			t.Errorf("child kind %s is made as a %s", k.kind, gvk.Kind)
		}
		resource, _ := meta.UnsafeGuessKindToResource(gvk)
		// The cache and the Owns() watch list and watch; apply gets, and
		// creates and patches with server-side apply; pruning deletes.
		verbs := []string{"get", "list", "watch", "create", "patch"}
		if k.owners&ownedByWorkflow != 0 {
			verbs = append(verbs, "delete")
		}
		for _, verb := range verbs {
			if !grants(role.Rules, gvk.Group, resource.Resource, verb) {
				t.Errorf("config/rbac/role.yaml does not grant %s on %s in group %q: add it to a +kubebuilder:rbac marker and run make manifests",
					verb, resource.Resource, gvk.Group)
			}
		}
	}
}

func grants(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// TestChildKindsCoverRenderedObjects renders every sample Workflow and the
// sample Broker and checks that each child's kind is in childKinds for its
// owner, so that a kind the renderer gains is cached, watched and pruned.
func TestChildKindsCoverRenderedObjects(t *testing.T) {
	dir := filepath.Join("..", "config", "samples")
	var broker v1alpha1.Broker
	readYAML(t, filepath.Join(dir, "broker.yaml"), &broker)
	broker.Namespace = "default"
	settings := render.Settings{RuntimeImage: "runtime:test", NATSImage: "nats:test", ComponentReplicas: 2}
	check := func(what string, o owners, objs []client.Object) {
		t.Helper()
		for _, obj := range objs {
			k, ok := childKindByType(obj)
			if !ok || k.owners&o == 0 {
				t.Errorf("%s renders %T %s, which childKinds does not list for it", what, obj, obj.GetName())
				continue
			}
			if got := obj.GetObjectKind().GroupVersionKind().Kind; got != k.kind {
				t.Errorf("%s renders %s as kind %q, childKinds names it %q", what, obj.GetName(), got, k.kind)
			}
		}
	}
	check("Broker", ownedByBroker, render.BrokerObjects(&render.BrokerInput{Broker: &broker, Settings: settings, Auth: testAuth(t)}))

	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "kind: Workflow") {
			continue
		}
		var wf v1alpha1.Workflow
		readYAML(t, f, &wf)
		wf.Namespace = "default"
		p, err := topology.Compile(&wf)
		if err != nil {
			t.Fatalf("compile %s: %v", f, err)
		}
		in, err := render.NewWorkflowInput(&wf, p, settings)
		if err != nil {
			t.Fatal(err)
		}
		if wf.Spec.Style.IsAsync() {
			in.Streams = render.BrokerStreams(&broker)
		}
		check(filepath.Base(f), ownedByWorkflow, render.WorkflowObjects(in))
		n++
	}
	if n == 0 {
		t.Fatalf("no Workflow samples in %s", dir)
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
