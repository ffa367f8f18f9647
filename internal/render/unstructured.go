package render

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Unstructured converts a rendered object into the exact body that is applied
// (and written to the golden files): every field the object sets, nothing else.
// Typed objects serialize unset timestamps as null and carry empty statuses
// (also in a StatefulSet's claim templates); applying those would claim fields
// the operator has no opinion about.
func Unstructured(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %T %s: %w", obj, obj.GetName(), err)
	}
	delete(m, "status")
	dropUnset(m)
	return &unstructured.Unstructured{Object: m}, nil
}

// dropUnset removes nulls and empty statuses at any depth.
func dropUnset(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if st, ok := e.(map[string]any); e == nil || (k == "status" && ok && len(st) == 0) {
				delete(v, k)
				continue
			}
			dropUnset(e)
		}
	case []any:
		for _, e := range v {
			dropUnset(e)
		}
	}
}
