package contract

import (
	"fmt"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Resolver maps a step to the base URL of its sidecar, where runs call it.
type Resolver interface {
	StepURL(step *plan.Step) (string, error)
}

// ClusterResolver reaches steps through their Services (plan.ServiceURL).
type ClusterResolver struct{ Namespace string }

// StepURL implements Resolver.
func (c ClusterResolver) StepURL(step *plan.Step) (string, error) {
	return plan.ServiceURL(c.Namespace, step.Service), nil
}

// StaticResolver maps step names to base URLs, for the dev mode and tests.
type StaticResolver map[string]string

// StepURL implements Resolver.
func (s StaticResolver) StepURL(step *plan.Step) (string, error) {
	u, ok := s[step.Name]
	if !ok {
		return "", fmt.Errorf("no address for step %s", step.Name)
	}
	return u, nil
}

// OverrideResolver resolves the steps it lists to fixed URLs and every other
// step through Next.
type OverrideResolver struct {
	URLs map[string]string
	Next Resolver
}

// StepURL implements Resolver.
func (o OverrideResolver) StepURL(step *plan.Step) (string, error) {
	if u, ok := o.URLs[step.Name]; ok {
		return u, nil
	}
	return o.Next.StepURL(step)
}
