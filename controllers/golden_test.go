package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// goldenUID is the owner UID the golden files are rendered with (internal/render tests).
const goldenUID = "00000000-0000-0000-0000-00000000cafe"

// readGolden returns the objects of internal/render/testdata/<dir>, with the
// golden owner UID replaced by owner's.
func readGolden(dir string, owner types.UID) []*unstructured.Unstructured {
	path := filepath.Join("..", "internal", "render", "testdata", dir)
	entries, err := os.ReadDir(path)
	Expect(err).NotTo(HaveOccurred())
	var objs []*unstructured.Unstructured
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(path, e.Name()))
		Expect(err).NotTo(HaveOccurred())
		u := &unstructured.Unstructured{}
		Expect(yaml.Unmarshal(b, &u.Object)).To(Succeed(), e.Name())
		refs := u.GetOwnerReferences()
		for i := range refs {
			if refs[i].UID == goldenUID {
				refs[i].UID = owner
			}
		}
		u.SetOwnerReferences(refs)
		objs = append(objs, u)
	}
	Expect(objs).NotTo(BeEmpty(), "no golden files in "+path)
	return objs
}

// goldenNames are the "Kind/name" of golden objects.
func goldenNames(objs []*unstructured.Unstructured) []string {
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.GetKind() + "/" + o.GetName()
	}
	return names
}

// matchesGolden reports how a live object differs from its golden file: every
// field of the golden must be in the live object with the same value; the API
// server's defaults may add more. ignore names paths (such as
// "spec.template.metadata.annotations.patchbay.dev/config-hash") not compared.
func matchesGolden(ctx context.Context, golden *unstructured.Unstructured, ignore ...string) error {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(golden.GroupVersionKind())
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(golden), live); err != nil {
		return err
	}
	skip := map[string]bool{}
	for _, p := range ignore {
		skip[p] = true
	}
	return subset(golden.GetKind()+"/"+golden.GetName(), "", golden.Object, live.Object, skip)
}

func subset(where, path string, want, got any, skip map[string]bool) error {
	if skip[path] {
		return nil
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s is %v, want %v", where, path, got, want)
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			gv, present := g[k]
			if !present {
				if m, isMap := w[k].(map[string]any); isMap && len(m) == 0 {
					continue // an empty object that the API server dropped
				}
				if skip[p] {
					continue
				}
				return fmt.Errorf("%s: %s is missing, want %v", where, p, w[k])
			}
			if err := subset(where, p, w[k], gv, skip); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: %s is %v, want %v", where, path, got, want)
		}
		for i := range w {
			if err := subset(where, fmt.Sprintf("%s[%d]", path, i), w[i], g[i], skip); err != nil {
				return err
			}
		}
		return nil
	default:
		// YAML numbers decode as float64, the API server's as int64: compare as text.
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return fmt.Errorf("%s: %s is %v, want %v", where, path, got, want)
		}
		return nil
	}
}
