package topology

import (
	"slices"
	"strings"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

func (c *compilation) checkMetadata() {
	if !isDNSLabel(c.name) {
		c.ps.addf(ReasonInvalidField, nil, "metadata.name %q must be a DNS label: lowercase letters, digits and '-', at most %d characters", c.name, plan.MaxNameLen)
	}
	if !isDNSLabel(c.namespace) {
		c.ps.addf(ReasonInvalidField, nil, "metadata.namespace %q must be a DNS label", c.namespace)
	}
	if b := c.spec.Broker; b != nil && b.Name != "" && !isDNSLabel(b.Name) {
		c.ps.addf(ReasonInvalidField, nil, "spec.broker.name %q must be a DNS label", b.Name)
	}
}

func (c *compilation) checkSteps() {
	if len(c.spec.Steps) == 0 {
		c.ps.addf(ReasonInvalidField, nil, "spec.steps is empty: a workflow needs at least one step")
	}
	checkResilience(&c.ps, nil, "spec.resilience", c.spec.Resilience)
	if retryDelaysSet(c.spec.Resilience) {
		checkBackoffDelays(&c.ps, nil, "spec.resilience", resolvePolicy(c.spec.Resilience))
	}
	firstIndex := map[string]int{}
	for i := range c.spec.Steps {
		s := &c.spec.Steps[i]
		if j, dup := firstIndex[s.Name]; dup {
			c.ps.addf(ReasonDuplicateStep, []string{s.Name}, "step name %q is used by spec.steps[%d] and spec.steps[%d]: step names must be unique", s.Name, j, i)
			continue
		}
		firstIndex[s.Name] = i
		c.step[s.Name] = s
		c.checkStep(i, s)
	}
}

func (c *compilation) checkStep(i int, s *v1alpha1.Step) {
	n := s.Name
	who := []string{n}
	switch {
	case !isDNSLabel(n):
		c.ps.addf(ReasonInvalidField, who, "spec.steps[%d].name %q must be a DNS label: lowercase letters, digits and '-', at most %d characters", i, n, plan.MaxNameLen)
	case n == plan.OrchestratorRole || n == plan.GatewayRole:
		c.ps.addf(ReasonInvalidField, who, "step name %s is reserved for patchbay's own component: rename the step", n)
	case isDNSLabel(c.name) && len(plan.ChildName(c.name, c.style, n)) > plan.MaxNameLen:
		c.ps.addf(ReasonNameTooLong, who, "step %s: child name %s is %d characters, longer than %d: shorten the workflow or step name", n, plan.ChildName(c.name, c.style, n), len(plan.ChildName(c.name, c.style, n)), plan.MaxNameLen)
	}
	if port := s.AppPort(); port < 1 || port > 65535 {
		c.ps.addf(ReasonInvalidField, who, "step %s: port %d is not a TCP port (1-65535)", n, port)
	} else if port == plan.SidecarPort || port == plan.SidecarAdminPort {
		c.ps.addf(ReasonInvalidField, who, "step %s: port %d belongs to the sidecar: pick another port", n, port)
	}
	if !strings.HasPrefix(s.AppPath(), "/") {
		c.ps.addf(ReasonInvalidField, who, "step %s: path %q must start with '/'", n, s.Path)
	}
	if s.DesiredReplicas() < 1 {
		c.ps.addf(ReasonInvalidField, who, "step %s: replicas must be at least 1, not %d", n, s.DesiredReplicas())
	}
	where := "spec.steps[" + n + "].resilience"
	checkResilience(&c.ps, who, where, s.Resilience)
	if retryDelaysSet(s.Resilience) {
		checkBackoffDelays(&c.ps, who, where, resolvePolicy(s.Resilience, c.spec.Resilience))
	}
	c.deps[n] = sortedSet(s.DependsOn)
	c.subscribes[n] = c.eventList(who, "step "+n+": subscribes", s.Subscribes)
	c.emits[n] = c.eventList(who, "step "+n+": emits", s.Emits)
}

// eventList checks event types and returns them sorted, without repeats and
// without invalid ones (already reported).
func (c *compilation) eventList(who []string, field string, types []string) []string {
	var ok []string
	for _, t := range types {
		if !isEventType(t) {
			c.ps.addf(ReasonInvalidField, who, "%s: %q is not an event type: dot-separated words of letters, digits, '-' and '_', at most %d characters", field, t, maxEventTypeLen)
			continue
		}
		ok = append(ok, t)
	}
	return sortedSet(ok)
}

func (c *compilation) checkEntry() {
	e := c.spec.Entry
	if e == nil {
		return
	}
	if e.Timeout != nil && e.Timeout.Duration <= 0 {
		c.ps.addf(ReasonInvalidField, nil, "spec.entry.timeout must be a positive duration, not %s", e.Timeout.Duration)
	}
	if e.Event != "" && !isEventType(e.Event) {
		c.ps.addf(ReasonInvalidField, nil, "spec.entry.event %q is not an event type: dot-separated words of letters, digits, '-' and '_'", e.Event)
	}
	c.eventList(nil, "spec.entry.completesOn", e.CompletesOn)
}

func (c *compilation) checkReadModel() {
	rm := c.spec.ReadModel
	if rm == nil {
		return
	}
	if len(rm.Events) == 0 {
		c.ps.addf(ReasonInvalidField, nil, "spec.readModel.events is empty: name the events to project")
	}
	c.eventList(nil, "spec.readModel.events", rm.Events)
	if !jsonPointer.MatchString(rm.Key) {
		c.ps.addf(ReasonInvalidField, nil, "spec.readModel.key %q must be a JSON pointer such as /orderId", rm.Key)
	}
	switch rm.Mode {
	case "", v1alpha1.ReadModelMerge, v1alpha1.ReadModelReplace:
	default:
		c.ps.addf(ReasonInvalidField, nil, "spec.readModel.mode %q must be merge or replace", rm.Mode)
	}
	seen := map[string]bool{}
	for _, f := range rm.Fields {
		switch {
		case seen[f.Event]:
			c.ps.addf(ReasonInvalidField, nil, "spec.readModel.fields lists event %s twice: give each event one select", f.Event)
		case !slices.Contains(rm.Events, f.Event):
			c.ps.addf(ReasonInvalidField, nil, "spec.readModel.fields[].event %s is not in spec.readModel.events: only projected events have fields to select", f.Event)
		}
		seen[f.Event] = true
		if len(f.Select) == 0 {
			c.ps.addf(ReasonInvalidField, nil, "spec.readModel.fields[].select of event %s is empty: name the JSON pointers to keep, or remove the entry to keep the whole event", f.Event)
		}
		for _, ptr := range f.Select {
			if !jsonPointer.MatchString(ptr) {
				c.ps.addf(ReasonInvalidField, nil, "spec.readModel.fields[].select of event %s: %q must be a JSON pointer such as /status", f.Event, ptr)
			}
		}
	}
}

// classifySteps splits the steps into driven ones (by the chain or the
// orchestrator) and event-driven ones, as the style says.
func (c *compilation) classifySteps() {
	for _, n := range c.stepNames() {
		driven := false
		switch c.style {
		case v1alpha1.StyleSyncChain, v1alpha1.StyleSyncOrchestrated, v1alpha1.StyleAsyncOrchestrated:
			driven = true
		case v1alpha1.StyleHybrid:
			driven = len(c.step[n].Subscribes) == 0
		}
		if driven {
			c.driven = append(c.driven, n)
			c.isDriven[n] = true
		} else {
			c.reacting = append(c.reacting, n)
		}
	}
}

// stepNames are the unique step names in spec order.
func (c *compilation) stepNames() []string {
	var names []string
	for i := range c.spec.Steps {
		n := c.spec.Steps[i].Name
		if c.step[n] == &c.spec.Steps[i] {
			names = append(names, n)
		}
	}
	return names
}

func (c *compilation) checkStyleRules() {
	e := c.spec.Entry
	hasEvents := c.style.HasEvents()
	entryEvent, completesOn := "", []string(nil)
	if e != nil {
		entryEvent, completesOn = e.Event, e.CompletesOn
	}
	if !hasEvents {
		if entryEvent != "" || len(completesOn) > 0 {
			c.ps.addf(ReasonStyleRule, nil, "spec.entry.event and spec.entry.completesOn are allowed only in styles choreography and hybrid, not %s", c.style)
		}
		if c.spec.ReadModel != nil {
			c.ps.addf(ReasonStyleRule, nil, "spec.readModel projects events, so it needs style choreography or hybrid, not %s", c.style)
		}
	}
	for _, n := range c.stepNames() {
		s := c.step[n]
		if !hasEvents && (len(s.Subscribes) > 0 || len(s.Emits) > 0) {
			c.ps.addf(ReasonStyleRule, []string{n}, "step %s: subscribes and emits are allowed only in styles choreography and hybrid, not %s", n, c.style)
		}
		if len(s.DependsOn) > 0 && len(s.Subscribes) > 0 {
			c.ps.addf(ReasonStyleRule, []string{n}, "step %s has both dependsOn and subscribes: a step is driven by one or the other", n)
		}
		if hasEvents && entryEvent != "" && n == plan.EntryEmitter {
			c.ps.addf(ReasonStyleRule, []string{n}, "step name %s is reserved when spec.entry.event is set: the event routing table names the entry so", n)
		}
	}
	switch c.style {
	case v1alpha1.StyleSyncChain:
		c.checkChain()
	case v1alpha1.StyleChoreography:
		if entryEvent == "" {
			c.ps.addf(ReasonStyleRule, nil, "spec.entry.event is required in style choreography: name the event a request becomes")
		}
		if e.EntrySync() && len(completesOn) == 0 {
			c.ps.addf(ReasonStyleRule, nil, "spec.entry.completesOn is required in style choreography when spec.entry.sync is true: name the events that complete a run, or set spec.entry.sync to false")
		}
		for _, n := range c.stepNames() {
			s := c.step[n]
			if len(s.DependsOn) > 0 {
				c.ps.addf(ReasonStyleRule, []string{n}, "step %s has dependsOn, which style choreography does not allow: steps react to events there", n)
			} else if len(s.Subscribes) == 0 {
				c.ps.addf(ReasonStyleRule, []string{n}, "step %s subscribes to no event: in style choreography every step reacts to events", n)
			}
		}
	case v1alpha1.StyleHybrid:
		if len(completesOn) > 0 {
			c.ps.addf(ReasonStyleRule, nil, "spec.entry.completesOn is not supported in style hybrid: a hybrid run completes when its orchestrated sink steps finish, and event steps run outside it")
		}
		if len(c.driven) == 0 && len(c.spec.Steps) > 0 {
			c.ps.addf(ReasonStyleRule, nil, "style hybrid needs at least one orchestrated step (one without subscribes): use style choreography for a flow of events only")
		}
	}
}

// checkChain: a sync-chain has one root that receives the request, and no
// step follows two steps, because no one would merge their outputs.
func (c *compilation) checkChain() {
	var roots []string
	for _, n := range c.driven {
		switch d := c.deps[n]; {
		case len(d) == 0:
			roots = append(roots, n)
		case len(d) > 1:
			c.ps.addf(ReasonStyleRule, append([]string{n}, d...), "step %s depends on %s: in style sync-chain a step follows exactly one step, because no one merges outputs; use sync-orchestrated for fan-in", n, strings.Join(d, ", "))
		}
	}
	if len(roots) > 1 {
		c.ps.addf(ReasonStyleRule, roots, "style sync-chain needs exactly one root step (without dependsOn) to receive the request; found %d: %s", len(roots), strings.Join(roots, ", "))
	} else if len(roots) == 0 && len(c.driven) > 0 {
		c.ps.addf(ReasonStyleRule, nil, "style sync-chain needs exactly one root step (without dependsOn) to receive the request; every step depends on another")
	}
}

// checkDependencies reports unknown dependencies and dependencies on event
// steps, then orders the driven steps in levels and reports cycles.
func (c *compilation) checkDependencies() {
	graph := map[string][]string{}
	for _, n := range c.stepNames() {
		for _, d := range c.deps[n] {
			switch {
			case c.step[d] == nil:
				c.ps.addf(ReasonUnknownDependency, []string{n, d}, "step %s depends on %s, which is not a step of this workflow", n, d)
			case c.style == v1alpha1.StyleHybrid && !c.isDriven[d] && c.isDriven[n]:
				c.ps.addf(ReasonStyleRule, []string{n, d}, "step %s depends on %s, which reacts to events: in style hybrid only orchestrated steps (without subscribes) can be dependencies", n, d)
			case c.isDriven[n]:
				graph[n] = append(graph[n], d)
			}
		}
	}
	lvls, leftover := levels(c.driven, graph)
	c.levels = lvls
	for i, l := range lvls {
		for _, n := range l {
			c.level[n] = i
		}
	}
	if len(leftover) == 0 {
		return
	}
	inLeftover := map[string]bool{}
	for _, n := range leftover {
		inLeftover[n] = true
	}
	succ := func(n string) []string {
		var out []string
		for _, d := range graph[n] {
			if inLeftover[d] {
				out = append(out, d)
			}
		}
		return out
	}
	for _, cyc := range cycles(leftover, succ) {
		c.ps.addf(ReasonDependencyCycle, cyc[:len(cyc)-1], "dependency cycle: %s (each step lists the next in dependsOn)", strings.Join(cyc, " → "))
	}
}

// checkRoleNames reports component child names longer than a DNS label.
func (c *compilation) checkRoleNames() {
	if !isDNSLabel(c.name) {
		return
	}
	roles := c.roles()
	names := []string{plan.ConfigMapName(c.name, c.style)}
	if roles.Orchestrator {
		names = append(names, plan.ChildName(c.name, c.style, plan.OrchestratorRole))
	}
	if roles.Gateway {
		names = append(names, plan.ChildName(c.name, c.style, plan.GatewayRole))
	}
	for _, n := range names {
		if len(n) > plan.MaxNameLen {
			c.ps.addf(ReasonNameTooLong, nil, "child name %s is %d characters, longer than %d: shorten the workflow name", n, len(n), plan.MaxNameLen)
		}
	}
}
