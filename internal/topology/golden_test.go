package topology

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/golden"
)

const samplesDir = "../../config/samples"

// samples reads every Workflow in config/samples, by file name without .yaml.
func samples(t testing.TB) map[string]*v1alpha1.Workflow {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(samplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*v1alpha1.Workflow{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(b, &meta); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if meta.Kind != "Workflow" {
			continue
		}
		var w v1alpha1.Workflow
		if err := yaml.UnmarshalStrict(b, &w); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".yaml")] = &w
	}
	if len(out) < len(v1alpha1.Styles) {
		t.Fatalf("found %d sample Workflows in %s, want one per style", len(out), samplesDir)
	}
	return out
}

func TestGolden(t *testing.T) {
	for name, w := range samples(t) {
		t.Run(name, func(t *testing.T) {
			p, err := Compile(w)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			checkInvariants(t, w, p)
			b, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			g := Graph(p)
			golden.Check(t, name+".plan.json", b)
			golden.Check(t, name+".dot", []byte(g.DOT))
			golden.Check(t, name+".mmd", []byte(g.Mermaid))
		})
	}
}

func mustMarshal(t testing.TB, p interface{ Marshal() ([]byte, error) }) string {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sprintAny(v any) string { return fmt.Sprintf("%+v", v) }
