package topology

import (
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Compile turns a Workflow into its Plan. It is pure and deterministic: the
// same spec always gives a plan that marshals to the same bytes. It re-checks
// what the API server's CEL rules check, so that a spec that bypassed them
// never becomes an inconsistent plan, and checks what CEL cannot see (cycles,
// events nobody emits, unreachable steps, name lengths). A refused Workflow
// gives a *Error that lists every problem.
func Compile(w *v1alpha1.Workflow) (*plan.Plan, error) {
	c := newCompilation(w)
	c.check()
	if err := c.ps.err(); err != nil {
		return nil, err
	}
	p := c.build()
	checkGeneratedNames(&c.ps, p)
	if err := c.ps.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// compilation holds one Workflow while it is checked and turned into a plan.
type compilation struct {
	ps        problems
	spec      *v1alpha1.WorkflowSpec
	namespace string
	name      string
	style     v1alpha1.Style

	// Per step name (its first occurrence when names repeat): the spec, and
	// its dependsOn, subscribes and emits, sorted and without repeats.
	step       map[string]*v1alpha1.Step
	deps       map[string][]string
	subscribes map[string][]string
	emits      map[string][]string

	// driven are the steps run by the orchestrator or the chain, in spec
	// order; reacting are the event-driven steps, in spec order.
	driven   []string
	reacting []string
	isDriven map[string]bool

	levels [][]string
	level  map[string]int
}

func newCompilation(w *v1alpha1.Workflow) *compilation {
	ns := w.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	return &compilation{
		spec:       &w.Spec,
		namespace:  ns,
		name:       w.Name,
		style:      w.Spec.Style,
		step:       map[string]*v1alpha1.Step{},
		deps:       map[string][]string{},
		subscribes: map[string][]string{},
		emits:      map[string][]string{},
		isDriven:   map[string]bool{},
		level:      map[string]int{},
	}
}

// knownStyle reports whether the style is one of the five.
func knownStyle(s v1alpha1.Style) bool { return slices.Contains(v1alpha1.Styles, s) }

func (c *compilation) check() {
	c.checkMetadata()
	c.checkSteps()
	c.checkEntry()
	c.checkReadModel()
	if !knownStyle(c.style) {
		names := make([]string, len(v1alpha1.Styles))
		for i, s := range v1alpha1.Styles {
			names[i] = string(s)
		}
		c.ps.addf(ReasonInvalidField, nil, "spec.style %q is not one of %s", c.style, strings.Join(names, ", "))
		return
	}
	c.classifySteps()
	c.checkStyleRules()
	c.checkDependencies()
	if c.style.HasEvents() {
		c.checkEvents()
	}
	c.checkRoleNames()
}

func (c *compilation) entryEvent() string {
	if c.spec.Entry == nil || !c.style.HasEvents() {
		return ""
	}
	return c.spec.Entry.Event
}

func (c *compilation) roles() plan.Roles {
	r := plan.Roles{
		Orchestrator: c.style == v1alpha1.StyleSyncOrchestrated || c.style == v1alpha1.StyleAsyncOrchestrated || c.style == v1alpha1.StyleHybrid,
		Gateway:      c.style.IsAsync(),
		Broker:       c.style.IsAsync(),
	}
	if r.Broker {
		r.BrokerName = c.workflowBrokerName()
	}
	return r
}

func (c *compilation) workflowBrokerName() string {
	w := v1alpha1.Workflow{Spec: v1alpha1.WorkflowSpec{Broker: c.spec.Broker}}
	return w.BrokerName()
}

func sortedSet(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
