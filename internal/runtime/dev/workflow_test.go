package dev

import (
	"strings"
	"testing"
)

func TestParseWorkflowSkipsOtherDocuments(t *testing.T) {
	const wf = `apiVersion: patchbay.dev/v1alpha1
kind: Workflow
metadata:
  name: wf
spec:
  style: sync-chain
  steps:
  - name: a
    image: example.com/a
`
	const broker = `apiVersion: patchbay.dev/v1alpha1
kind: Broker
metadata:
  name: b
`
	for name, in := range map[string]string{
		"alone":                 wf,
		"after a Broker":        broker + "---\n" + wf,
		"leading separator":     "---\n" + wf + "---\n",
		"separator and comment": broker + "--- # the workflow\n" + wf,
		"empty documents":       "---\n---\n" + wf + "\n---\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseWorkflow("in.yaml", []byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != "wf" || got.Namespace != "default" || len(got.Spec.Steps) != 1 {
				t.Errorf("got %s/%s with %d steps", got.Namespace, got.Name, len(got.Spec.Steps))
			}
		})
	}
	for name, c := range map[string]struct{ in, want string }{
		"none": {broker, "holds no Workflow"},
		"two":  {wf + "---\n" + wf, "holds 2 Workflows"},
		"typo": {strings.Replace(wf, "steps:", "stepz:", 1), "unknown field"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseWorkflow("in.yaml", []byte(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
