package style

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The Enum marker of Style (the CRD's) and of its alias in the API package
// (kube-api-linter's) list exactly the styles of All, in order.
func TestEnumMarkersListEveryStyle(t *testing.T) {
	var want []string
	for _, s := range All {
		want = append(want, string(s))
	}
	marker := regexp.MustCompile(`(?m)^// \+kubebuilder:validation:Enum=(.*)\ntype Style\b`)
	for _, file := range []string{"style.go", "../v1alpha1/workflow_types.go"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m := marker.FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: no Enum marker right above type Style", file)
			continue
		}
		if got := strings.Split(string(m[1]), ";"); strings.Join(got, ";") != strings.Join(want, ";") {
			t.Errorf("%s: Enum %q, want %q", file, got, want)
		}
	}
}
