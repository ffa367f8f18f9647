package dev

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// LoadWorkflow reads the one Workflow in a YAML file (other documents, such as
// a Broker, are skipped). Unknown fields are errors, so a typo does not
// silently fall back to a default.
func LoadWorkflow(file string) (*v1alpha1.Workflow, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read workflow: %w", err)
	}
	return ParseWorkflow(file, b)
}

// ParseWorkflow is LoadWorkflow for YAML already read from file, which only
// names it in errors.
func ParseWorkflow(file string, b []byte) (*v1alpha1.Workflow, error) {
	var found []*v1alpha1.Workflow
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if meta.Kind != "Workflow" {
			continue
		}
		var wf v1alpha1.Workflow
		if err := yaml.UnmarshalStrict(doc, &wf); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		found = append(found, &wf)
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s holds no Workflow", file)
	case 1:
		if found[0].Namespace == "" {
			found[0].Namespace = "default"
		}
		return found[0], nil
	default:
		return nil, fmt.Errorf("%s holds %d Workflows: give a file with one", file, len(found))
	}
}
