package render

import (
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// objectFiles names each object's golden file <kind>-<name>.yaml and renders
// it as the body the controller applies.
func objectFiles(t *testing.T, objs []client.Object) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, o := range objs {
		u, err := Unstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.ToLower(u.GetKind()) + "-" + u.GetName() + ".yaml"
		if _, dup := files[name]; dup {
			t.Fatalf("two objects render to %s", name)
		}
		files[name] = b
	}
	return files
}
