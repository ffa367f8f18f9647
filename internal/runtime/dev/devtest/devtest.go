// Package devtest writes the test Workflows that the dev data plane's tests
// (in process, and through the patchbay-runtime binary) run.
package devtest

import (
	"fmt"
	"strings"
)

// Step is one step of a test Workflow, whose app is a demo-step run with Args.
type Step struct {
	Name       string
	Args       []string
	DependsOn  []string
	Resilience string // inline YAML, such as {timeout: 100ms}
}

// WorkflowYAML renders a Workflow "test" of style with a workflow-wide
// resilience (inline YAML, none if empty).
func WorkflowYAML(style, resilience string, steps ...Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: patchbay.dev/v1alpha1\nkind: Workflow\nmetadata: {name: test}\nspec:\n  style: %s\n", style)
	if resilience != "" {
		fmt.Fprintf(&b, "  resilience: %s\n", resilience)
	}
	b.WriteString("  steps:\n")
	for _, s := range steps {
		fmt.Fprintf(&b, "  - name: %s\n    image: ghcr.io/patchbay-dev/demo-step:0.1.0\n", s.Name)
		if len(s.Args) > 0 {
			quoted := make([]string, len(s.Args))
			for i, a := range s.Args {
				quoted[i] = fmt.Sprintf("%q", a)
			}
			fmt.Fprintf(&b, "    args: [%s]\n", strings.Join(quoted, ", "))
		}
		if len(s.DependsOn) > 0 {
			fmt.Fprintf(&b, "    dependsOn: [%s]\n", strings.Join(s.DependsOn, ", "))
		}
		if s.Resilience != "" {
			fmt.Fprintf(&b, "    resilience: %s\n", s.Resilience)
		}
	}
	return b.String()
}
