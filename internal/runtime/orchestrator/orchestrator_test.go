package orchestrator

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bustest"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

func TestNewRefusesInconsistentPlans(t *testing.T) {
	tel := bustest.Telemetry()
	resolver := contract.StaticResolver{"a": "http://a", "b": "http://b"}
	step := func(name string, from ...string) plan.Step {
		s := plan.Step{Name: name, Mode: plan.ModeOrchestrated, Input: plan.Input{Kind: plan.InputEntry}}
		if len(from) > 0 {
			s.Input = plan.Input{Kind: plan.InputDependency, From: from}
		}
		return s
	}
	for name, tc := range map[string]struct {
		p    plan.Plan
		want string
	}{
		"unknown step in a level": {plan.Plan{Steps: []plan.Step{step("a")}, Levels: [][]string{{"x"}}, Sinks: []string{"a"}}, `unknown step "x"`},
		"input from a later level": {plan.Plan{Steps: []plan.Step{step("a", "b"), step("b")}, Levels: [][]string{{"a"}, {"b"}}, Sinks: []string{"a"}},
			"does not run in an earlier level"},
		"input from the same level": {plan.Plan{Steps: []plan.Step{step("a"), step("b", "a")}, Levels: [][]string{{"a", "b"}}, Sinks: []string{"b"}},
			"does not run in an earlier level"},
		"no sinks":           {plan.Plan{Steps: []plan.Step{step("a")}, Levels: [][]string{{"a"}}}, "no sinks"},
		"sink not in levels": {plan.Plan{Steps: []plan.Step{step("a"), step("b")}, Levels: [][]string{{"a"}}, Sinks: []string{"b"}}, "in no level"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := New(Config{Plan: &tc.p, Resolver: resolver, Telemetry: tel})
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}
