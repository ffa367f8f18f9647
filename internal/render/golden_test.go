package render

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// update rewrites the golden files: go test ./internal/render -update
// (or UPDATE_GOLDEN=1 go test ./internal/render, as make test-update-golden does).
var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func updating() bool { return *update || os.Getenv("UPDATE_GOLDEN") != "" }

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

// checkGoldenDir compares testdata/<dir> with want, file by file; with -update
// it rewrites the directory, stale files included.
func checkGoldenDir(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	path := filepath.Join("testdata", dir)
	if updating() {
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(path, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		t.Fatalf("%v (run make test-update-golden to create the golden files)", err)
	}
	var have []string
	for _, e := range entries {
		have = append(have, e.Name())
		if _, ok := want[e.Name()]; !ok {
			t.Errorf("%s/%s is no longer rendered", path, e.Name())
		}
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got, err := os.ReadFile(filepath.Join(path, name))
		if err != nil {
			t.Errorf("%s/%s is rendered but has no golden file", path, name)
			continue
		}
		if !bytes.Equal(got, want[name]) {
			t.Errorf("%s/%s differs from the rendered object (run make test-update-golden and review the diff):\n%s", path, name, lineDiff(string(got), string(want[name])))
		}
	}
}

// lineDiff shows the first lines where two texts part.
func lineDiff(golden, rendered string) string {
	g, r := strings.Split(golden, "\n"), strings.Split(rendered, "\n")
	for i := 0; i < len(g) || i < len(r); i++ {
		var gl, rl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(r) {
			rl = r[i]
		}
		if gl != rl {
			return "line " + strconv.Itoa(i+1) + ":\n  golden:   " + gl + "\n  rendered: " + rl
		}
	}
	return ""
}
