package topology

import (
	"math"
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
		c.ps.add(ReasonInvalidField, nil, "spec.style %q is not one of %s", c.style, strings.Join(names, ", "))
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

func (c *compilation) checkMetadata() {
	if !isDNSLabel(c.name) {
		c.ps.add(ReasonInvalidField, nil, "metadata.name %q must be a DNS label: lowercase letters, digits and '-', at most 63 characters", c.name)
	}
	if !isDNSLabel(c.namespace) {
		c.ps.add(ReasonInvalidField, nil, "metadata.namespace %q must be a DNS label", c.namespace)
	}
	if b := c.spec.Broker; b != nil && b.Name != "" && !isDNSLabel(b.Name) {
		c.ps.add(ReasonInvalidField, nil, "spec.broker.name %q must be a DNS label", b.Name)
	}
}

func (c *compilation) checkSteps() {
	if len(c.spec.Steps) == 0 {
		c.ps.add(ReasonInvalidField, nil, "spec.steps is empty: a workflow needs at least one step")
	}
	checkResilience(&c.ps, nil, "spec.resilience", c.spec.Resilience)
	if retryDelaysSet(c.spec.Resilience) {
		checkBackoffDelays(&c.ps, nil, "spec.resilience", resolvePolicy(c.spec.Resilience))
	}
	firstIndex := map[string]int{}
	for i := range c.spec.Steps {
		s := &c.spec.Steps[i]
		if j, dup := firstIndex[s.Name]; dup {
			c.ps.add(ReasonDuplicateStep, []string{s.Name}, "step name %q is used by spec.steps[%d] and spec.steps[%d]: step names must be unique", s.Name, j, i)
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
		c.ps.add(ReasonInvalidField, who, "spec.steps[%d].name %q must be a DNS label: lowercase letters, digits and '-', at most 63 characters", i, n)
	case n == plan.OrchestratorRole || n == plan.GatewayRole:
		c.ps.add(ReasonInvalidField, who, "step name %s is reserved for patchbay's own component: rename the step", n)
	case isDNSLabel(c.name) && len(childName(c.name, n)) > maxChildNameLen:
		c.ps.add(ReasonNameTooLong, who, "step %s: child name %s is %d characters, longer than %d: shorten the workflow or step name", n, childName(c.name, n), len(childName(c.name, n)), maxChildNameLen)
	}
	if port := s.AppPort(); port < 1 || port > 65535 {
		c.ps.add(ReasonInvalidField, who, "step %s: port %d is not a TCP port (1-65535)", n, port)
	} else if port == plan.SidecarPort || port == plan.SidecarAdminPort {
		c.ps.add(ReasonInvalidField, who, "step %s: port %d belongs to the sidecar: pick another port", n, port)
	}
	if !strings.HasPrefix(s.AppPath(), "/") {
		c.ps.add(ReasonInvalidField, who, "step %s: path %q must start with '/'", n, s.Path)
	}
	if s.DesiredReplicas() < 1 {
		c.ps.add(ReasonInvalidField, who, "step %s: replicas must be at least 1, not %d", n, s.DesiredReplicas())
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
			c.ps.add(ReasonInvalidField, who, "%s: %q is not an event type: dot-separated words of letters, digits, '-' and '_', at most %d characters", field, t, maxEventTypeLen)
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
		c.ps.add(ReasonInvalidField, nil, "spec.entry.timeout must be a positive duration, not %s", e.Timeout.Duration)
	}
	if e.Event != "" && !isEventType(e.Event) {
		c.ps.add(ReasonInvalidField, nil, "spec.entry.event %q is not an event type: dot-separated words of letters, digits, '-' and '_'", e.Event)
	}
	c.eventList(nil, "spec.entry.completesOn", e.CompletesOn)
}

func (c *compilation) checkReadModel() {
	rm := c.spec.ReadModel
	if rm == nil {
		return
	}
	if len(rm.Events) == 0 {
		c.ps.add(ReasonInvalidField, nil, "spec.readModel.events is empty: name the events to project")
	}
	c.eventList(nil, "spec.readModel.events", rm.Events)
	if !jsonPointer.MatchString(rm.Key) {
		c.ps.add(ReasonInvalidField, nil, "spec.readModel.key %q must be a JSON pointer such as /orderId", rm.Key)
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
			c.ps.add(ReasonStyleRule, nil, "spec.entry.event and spec.entry.completesOn are allowed only in styles choreography and hybrid, not %s", c.style)
		}
		if c.spec.ReadModel != nil {
			c.ps.add(ReasonStyleRule, nil, "spec.readModel projects events, so it needs style choreography or hybrid, not %s", c.style)
		}
	}
	for _, n := range c.stepNames() {
		s := c.step[n]
		if !hasEvents && (len(s.Subscribes) > 0 || len(s.Emits) > 0) {
			c.ps.add(ReasonStyleRule, []string{n}, "step %s: subscribes and emits are allowed only in styles choreography and hybrid, not %s", n, c.style)
		}
		if len(s.DependsOn) > 0 && len(s.Subscribes) > 0 {
			c.ps.add(ReasonStyleRule, []string{n}, "step %s has both dependsOn and subscribes: a step is driven by one or the other", n)
		}
		if hasEvents && entryEvent != "" && n == plan.EntryEmitter {
			c.ps.add(ReasonStyleRule, []string{n}, "step name %s is reserved when spec.entry.event is set: the event routing table names the entry so", n)
		}
	}
	switch c.style {
	case v1alpha1.StyleSyncChain:
		c.checkChain()
	case v1alpha1.StyleChoreography:
		if entryEvent == "" {
			c.ps.add(ReasonStyleRule, nil, "spec.entry.event is required in style choreography: name the event a request becomes")
		}
		if e.EntrySync() && len(completesOn) == 0 {
			c.ps.add(ReasonStyleRule, nil, "spec.entry.completesOn is required in style choreography when spec.entry.sync is true: name the events that complete a run, or set spec.entry.sync to false")
		}
		for _, n := range c.stepNames() {
			s := c.step[n]
			if len(s.DependsOn) > 0 {
				c.ps.add(ReasonStyleRule, []string{n}, "step %s has dependsOn, which style choreography does not allow: steps react to events there", n)
			} else if len(s.Subscribes) == 0 {
				c.ps.add(ReasonStyleRule, []string{n}, "step %s subscribes to no event: in style choreography every step reacts to events", n)
			}
		}
	case v1alpha1.StyleHybrid:
		if len(completesOn) > 0 {
			c.ps.add(ReasonStyleRule, nil, "spec.entry.completesOn is not supported in style hybrid: a hybrid run completes when its orchestrated sink steps finish, and event steps run outside it")
		}
		if len(c.driven) == 0 && len(c.spec.Steps) > 0 {
			c.ps.add(ReasonStyleRule, nil, "style hybrid needs at least one orchestrated step (one without subscribes): use style choreography for a flow of events only")
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
			c.ps.add(ReasonStyleRule, append([]string{n}, d...), "step %s depends on %s: in style sync-chain a step follows exactly one step, because no one merges outputs; use sync-orchestrated for fan-in", n, strings.Join(d, ", "))
		}
	}
	if len(roots) > 1 {
		c.ps.add(ReasonStyleRule, roots, "style sync-chain needs exactly one root step (without dependsOn) to receive the request; found %d: %s", len(roots), strings.Join(roots, ", "))
	} else if len(roots) == 0 && len(c.driven) > 0 {
		c.ps.add(ReasonStyleRule, nil, "style sync-chain needs exactly one root step (without dependsOn) to receive the request; every step depends on another")
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
				c.ps.add(ReasonUnknownDependency, []string{n, d}, "step %s depends on %s, which is not a step of this workflow", n, d)
			case c.style == v1alpha1.StyleHybrid && !c.isDriven[d] && c.isDriven[n]:
				c.ps.add(ReasonStyleRule, []string{n, d}, "step %s depends on %s, which reacts to events: in style hybrid only orchestrated steps (without subscribes) can be dependencies", n, d)
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
		c.ps.add(ReasonDependencyCycle, cyc[:len(cyc)-1], "dependency cycle: %s (each step lists the next in dependsOn)", strings.Join(cyc, " → "))
	}
}

// checkEvents checks the event routing of choreography and hybrid: every
// consumed event has a producer, every event step can be reached from the
// entry, and no events loop.
func (c *compilation) checkEvents() {
	entryEvent := c.entryEvent()
	emitters := map[string][]string{}
	subscribers := map[string][]string{}
	for _, n := range c.stepNames() {
		for _, t := range c.emits[n] {
			emitters[t] = append(emitters[t], n)
		}
	}
	for _, n := range c.reacting {
		for _, t := range c.subscribes[n] {
			subscribers[t] = append(subscribers[t], n)
		}
	}
	produced := func(t string) bool { return len(emitters[t]) > 0 || t == entryEvent }

	for _, t := range sortedKeys(subscribers) {
		if !produced(t) {
			subs := subscribers[t]
			c.ps.add(ReasonUnemittedEvent, subs, "event %s is subscribed to by %s %s, but no step emits it and it is not spec.entry.event", t, plural(len(subs), "step", "steps"), strings.Join(subs, ", "))
		}
	}
	if e := c.spec.Entry; e != nil {
		for _, t := range sortedSet(e.CompletesOn) {
			switch {
			case !isEventType(t):
			case t == entryEvent:
				c.ps.add(ReasonStyleRule, nil, "spec.entry.completesOn: %s is spec.entry.event, so a run would complete as soon as it starts", t)
			case len(emitters[t]) == 0:
				c.ps.add(ReasonUnemittedEvent, nil, "spec.entry.completesOn: no step emits %s, so no run would ever complete", t)
			}
		}
	}
	if rm := c.spec.ReadModel; rm != nil {
		for _, t := range sortedSet(rm.Events) {
			if isEventType(t) && !produced(t) {
				c.ps.add(ReasonUnemittedEvent, nil, "spec.readModel.events: no step emits %s and it is not spec.entry.event, so nothing would be projected", t)
			}
		}
	}

	// Reachability: the entry event and, in hybrid, what orchestrated steps
	// emit start the chains of events.
	var queue []string
	reachedEvent := map[string]bool{}
	push := func(t string) {
		if !reachedEvent[t] {
			reachedEvent[t] = true
			queue = append(queue, t)
		}
	}
	if entryEvent != "" {
		push(entryEvent)
	}
	for _, n := range c.driven {
		for _, t := range c.emits[n] {
			push(t)
		}
	}
	reachedStep := map[string]bool{}
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		for _, n := range subscribers[t] {
			if !reachedStep[n] {
				reachedStep[n] = true
				for _, e := range c.emits[n] {
					push(e)
				}
			}
		}
	}
	from := "spec.entry.event"
	if c.style == v1alpha1.StyleHybrid {
		from = "spec.entry.event or the events orchestrated steps emit"
	}
	for _, n := range c.reacting {
		subs := c.subscribes[n]
		if reachedStep[n] || !slices.ContainsFunc(subs, produced) {
			// Unreached for want of any producer: reported above already.
			continue
		}
		c.ps.add(ReasonUnreachableStep, []string{n}, "step %s is unreachable: no chain of events from %s leads to what it subscribes to (%s)", n, from, strings.Join(subs, ", "))
	}

	// Loops among reachable event steps: a step's output is published as
	// every type it emits, so a loop publishes on every run without end.
	var loopNodes []string
	for _, n := range c.reacting {
		if reachedStep[n] {
			loopNodes = append(loopNodes, n)
		}
	}
	link := func(a, b string) string { // the first event a emits that b subscribes to
		for _, t := range c.emits[a] {
			if slices.Contains(c.subscribes[b], t) {
				return t
			}
		}
		return ""
	}
	succ := func(a string) []string {
		var out []string
		for _, t := range c.emits[a] {
			for _, b := range subscribers[t] {
				if reachedStep[b] {
					out = append(out, b)
				}
			}
		}
		return sortedSet(out)
	}
	for _, cyc := range cycles(loopNodes, succ) {
		var hops []string
		for i := 0; i+1 < len(cyc); i++ {
			hops = append(hops, cyc[i]+" emits "+link(cyc[i], cyc[i+1])+" to "+cyc[i+1])
		}
		c.ps.add(ReasonEventLoop, cyc[:len(cyc)-1], "event loop: %s (%s): every run would publish these events forever", strings.Join(cyc, " → "), strings.Join(hops, ", "))
	}
}

// checkRoleNames reports component child names longer than a DNS label.
func (c *compilation) checkRoleNames() {
	if !isDNSLabel(c.name) {
		return
	}
	roles := c.roles()
	names := []string{childName(c.name, "plan")}
	if roles.Orchestrator {
		names = append(names, childName(c.name, plan.OrchestratorRole))
	}
	if roles.Gateway {
		names = append(names, childName(c.name, plan.GatewayRole))
	}
	for _, n := range names {
		if len(n) > maxChildNameLen {
			c.ps.add(ReasonNameTooLong, nil, "child name %s is %d characters, longer than %d: shorten the workflow name", n, len(n), maxChildNameLen)
		}
	}
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

// build assembles the plan of a spec that passed every check.
func (c *compilation) build() *plan.Plan {
	p := &plan.Plan{
		Version:   plan.Version,
		Namespace: c.namespace,
		Workflow:  c.name,
		Style:     string(c.style),
		Roles:     c.roles(),
		Levels:    c.levels,
	}
	subj := newSubjects(c.namespace, c.name)
	if c.style.IsAsync() {
		p.Stream = &plan.Stream{
			Name:          streamName(c.namespace, c.name),
			Subjects:      []string{subj.all()},
			Prefix:        subj.prefix,
			CommandPrefix: subj.commands(),
			ResultPrefix:  subj.results(),
			EventPrefix:   subj.events(),
			DeadLetter:    subj.deadLetter(),
			RunsBucket:    runsBucketName(c.namespace, c.name),
		}
	}
	p.Entry = c.buildEntry(subj)

	dependents := map[string][]string{}
	for _, n := range c.driven {
		for _, d := range c.deps[n] {
			dependents[d] = append(dependents[d], n)
		}
	}
	for _, n := range c.driven {
		if len(dependents[n]) == 0 {
			p.Sinks = append(p.Sinks, n)
		}
	}
	slices.Sort(p.Sinks)

	for _, n := range c.stepNames() {
		p.Steps = append(p.Steps, c.buildStep(n, subj, sortedSet(dependents[n])))
	}
	if c.style.HasEvents() {
		p.Events = c.buildEvents(subj)
	}
	if rm := c.spec.ReadModel; rm != nil {
		p.ReadModel = &plan.ReadModel{
			Events:  sortedSet(rm.Events),
			Key:     rm.Key,
			Bucket:  readModelBucketName(c.namespace, c.name),
			Durable: readModelDurable,
		}
	}
	return p
}

func (c *compilation) buildEntry(subj subjects) plan.Entry {
	e := c.spec.Entry
	entry := plan.Entry{Sync: e.EntrySync(), Timeout: plan.D(e.EntryTimeout())}
	switch c.style {
	case v1alpha1.StyleSyncChain:
		entry.Kind = plan.EntryStep
		for _, n := range c.driven {
			if len(c.deps[n]) == 0 {
				entry.Step = n
			}
		}
		entry.Service = childName(c.name, entry.Step)
		entry.Sync = true
	case v1alpha1.StyleSyncOrchestrated:
		entry.Kind = plan.EntryOrchestrator
		entry.Service = childName(c.name, plan.OrchestratorRole)
		entry.Sync = true
	default:
		entry.Kind = plan.EntryGateway
		entry.Service = childName(c.name, plan.GatewayRole)
	}
	if ev := c.entryEvent(); ev != "" {
		entry.Event = ev
		entry.EventSubject = subj.event(ev)
	}
	if c.style == v1alpha1.StyleChoreography && e != nil {
		entry.CompletesOn = sortedSet(e.CompletesOn)
	}
	return entry
}

func (c *compilation) buildStep(n string, subj subjects, dependents []string) plan.Step {
	s := c.step[n]
	policy := resolvePolicy(s.Resilience, c.spec.Resilience)
	st := plan.Step{
		Name:     n,
		Service:  childName(c.name, n),
		Replicas: s.DesiredReplicas(),
		App:      plan.App{Port: s.AppPort(), Path: s.AppPath()},
		Level:    -1,
		Policy:   policy,
	}
	async := c.style.IsAsync()
	if c.isDriven[n] {
		st.DependsOn = c.deps[n]
		st.Level = c.level[n]
		switch len(st.DependsOn) {
		case 0:
			st.Input = plan.Input{Kind: plan.InputEntry}
		case 1:
			st.Input = plan.Input{Kind: plan.InputDependency, From: st.DependsOn}
		default:
			st.Input = plan.Input{Kind: plan.InputMerge, From: st.DependsOn}
		}
		if c.style == v1alpha1.StyleSyncChain {
			st.Mode = plan.ModeChain
			st.Output.Next = dependents
			st.Callers = st.DependsOn
		} else {
			st.Mode = plan.ModeOrchestrated
			st.Output.ToOrchestrator = true
		}
		if async {
			st.Output.ResultSubject = subj.result(n)
			st.Consumers = append(st.Consumers, c.consumer(commandDurable(n), subj.command(n), "", s, policy))
		}
	} else {
		st.Mode = plan.ModeEvent
		st.Input = plan.Input{Kind: plan.InputEvent}
		for _, t := range c.subscribes[n] {
			st.Consumers = append(st.Consumers, c.consumer(eventDurable(n, t), subj.event(t), t, s, policy))
		}
	}
	for _, t := range c.emits[n] {
		st.Output.Emits = append(st.Output.Emits, plan.Emit{Type: t, Subject: subj.event(t)})
	}
	switch {
	case c.style == v1alpha1.StyleSyncOrchestrated:
		st.Callers = []string{plan.OrchestratorRole}
	case async:
		st.Callers = []string{plan.GatewayRole}
	}
	return st
}

func (c *compilation) consumer(durable, subject, event string, s *v1alpha1.Step, policy plan.Policy) plan.Consumer {
	pending := int64(policy.Bulkhead.MaxConcurrent) * int64(s.DesiredReplicas())
	return plan.Consumer{
		Durable:       durable,
		FilterSubject: subject,
		Event:         event,
		MaxAckPending: int32(min(pending, math.MaxInt32)),
		AckWait:       plan.D(ackWait(policy.Timeout.Duration)),
		MaxDeliver:    policy.Retry.Attempts,
	}
}

func (c *compilation) buildEvents(subj subjects) []plan.EventRoute {
	routes := map[string]*plan.EventRoute{}
	route := func(t string) *plan.EventRoute {
		r := routes[t]
		if r == nil {
			r = &plan.EventRoute{Type: t, Subject: subj.event(t)}
			routes[t] = r
		}
		return r
	}
	if ev := c.entryEvent(); ev != "" {
		r := route(ev)
		r.Emitters = append(r.Emitters, plan.EntryEmitter)
	}
	for _, n := range c.stepNames() {
		for _, t := range c.emits[n] {
			r := route(t)
			r.Emitters = append(r.Emitters, n)
		}
	}
	for _, n := range c.reacting {
		for _, t := range c.subscribes[n] {
			r := route(t)
			r.Subscribers = append(r.Subscribers, n)
		}
	}
	if c.style == v1alpha1.StyleChoreography && c.spec.Entry != nil {
		for _, t := range c.spec.Entry.CompletesOn {
			route(t).Completes = true
		}
	}
	if rm := c.spec.ReadModel; rm != nil {
		for _, t := range rm.Events {
			route(t).Projected = true
		}
	}
	out := make([]plan.EventRoute, 0, len(routes))
	for _, t := range sortedKeys(routes) {
		r := routes[t]
		slices.Sort(r.Emitters)
		slices.Sort(r.Subscribers)
		out = append(out, *r)
	}
	return out
}

// checkGeneratedNames is a safety net over the names the compiler made up:
// every JetStream name is valid and no two consumers of the stream share one.
func checkGeneratedNames(ps *problems, p *plan.Plan) {
	valid := func(kind, name string) {
		if len(name) == 0 || len(name) > maxNATSNameLen || !natsName.MatchString(name) {
			ps.add(ReasonNameCollision, nil, "generated %s name %q is not a valid JetStream name", kind, name)
		}
	}
	if p.Stream != nil {
		valid("stream", p.Stream.Name)
		valid("bucket", p.Stream.RunsBucket)
	}
	owner := map[string]string{}
	claim := func(durable, who string) {
		valid("consumer", durable)
		if prev, taken := owner[durable]; taken {
			ps.add(ReasonNameCollision, nil, "consumer name %s is generated for both %s and %s: rename one of them", durable, prev, who)
			return
		}
		owner[durable] = who
	}
	if p.ReadModel != nil {
		valid("bucket", p.ReadModel.Bucket)
		claim(p.ReadModel.Durable, "the read model")
	}
	for _, s := range p.Steps {
		for _, cons := range s.Consumers {
			who := "step " + s.Name
			if cons.Event != "" {
				who += " (event " + cons.Event + ")"
			}
			claim(cons.Durable, who)
		}
	}
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
