package topology

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// update rewrites the golden files: go test ./internal/topology -run TestGolden -update
// (or UPDATE_GOLDEN=1 go test ./internal/topology -run TestGolden).
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func updating() bool { return *update || os.Getenv("UPDATE_GOLDEN") != "" }

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
			golden(t, name+".plan.json", b)
			golden(t, name+".dot", []byte(g.DOT))
			golden(t, name+".mmd", []byte(g.Mermaid))
		})
	}
}

func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if updating() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/topology -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the compiler's output (run go test ./internal/topology -run TestGolden -update and review the diff):\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the first lines where want and got part.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
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
