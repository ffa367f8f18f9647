package topology

import (
	"math"
	"slices"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// build assembles the plan of a spec that passed every check.
func (c *compilation) build() *plan.Plan {
	p := &plan.Plan{
		Version:   plan.Version,
		Namespace: c.namespace,
		Workflow:  c.name,
		Style:     c.style,
		Roles:     c.roles(),
		Levels:    c.levels,
		// One size budget for every hop, stream and bucket of the workflow.
		MaxBodyLen: plan.DefaultMaxBodyLen,
	}
	subj := newSubjects(c.namespace, c.name)
	if c.style.IsAsync() {
		p.Stream = &plan.Stream{
			Name:         streamName(c.namespace, c.name),
			Subjects:     []string{subj.all()},
			ResultPrefix: subj.results(),
			DeadLetter:   subj.deadLetter(),
			RunsBucket:   runsBucketName(c.namespace, c.name),

			IdempotencyBucket:   idempotencyBucketName(c.namespace, c.name),
			DeadLetterStream:    deadLetterStreamName(c.namespace, c.name),
			DeadLetterRetention: plan.D(c.spec.DeadLetterRetention()),
			DeadlineDurable:     deadlineDurable,
			DeadlineSubject:     subj.deadline(),
		}
		p.RunTimeout = plan.D(c.spec.RunDeadline())
		if c.style == v1alpha1.StyleChoreography {
			p.Stream.CompletionDurable = completionDurable
		} else {
			p.Stream.StartSubject = subj.start()
			p.Stream.OutputSubject = subj.output()
			p.Stream.OrchestratorDurable = orchestratorDurable
		}
	}
	p.Entry = c.buildEntry(subj)
	if p.Stream != nil {
		p.Entry.IdempotencyWindow = plan.D(c.spec.Entry.EntryIdempotencyWindow())
	}
	if p.Stream != nil && p.Stream.StartSubject == "" && len(p.Entry.CompletesOn) == 0 {
		// A choreographed run without completesOn never finishes, so it has
		// no deadline either.
		p.Stream.DeadlineDurable, p.Stream.DeadlineSubject, p.RunTimeout = "", "", plan.Duration{}
	}

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
			Mode:    string(rm.Mode),
			Bucket:  readModelBucketName(c.namespace, c.name),
			Durable: readModelDurable,
		}
		if p.ReadModel.Mode == "" {
			p.ReadModel.Mode = plan.ReadModelMerge
		}
		for _, f := range rm.Fields {
			if p.ReadModel.Fields == nil {
				p.ReadModel.Fields = map[string][]string{}
			}
			p.ReadModel.Fields[f.Event] = sortedSet(f.Select)
		}
	}
	return p
}

func (c *compilation) buildEntry(subj subjects) plan.Entry {
	e := c.spec.Entry
	// The entry Service is named after the Workflow in every style, so that
	// status.endpoint does not change when the style does.
	entry := plan.Entry{Sync: e.EntrySync(), Timeout: plan.D(e.EntryTimeout()), Service: c.name}
	switch c.style {
	case v1alpha1.StyleSyncChain:
		entry.Kind = plan.EntryStep
		for _, n := range c.driven {
			if len(c.deps[n]) == 0 {
				entry.Step = n
			}
		}
		entry.Sync = true
	case v1alpha1.StyleSyncOrchestrated:
		entry.Kind = plan.EntryOrchestrator
		entry.Sync = true
	default:
		entry.Kind = plan.EntryGateway
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
		Service:  plan.ChildName(c.name, c.style, n),
		Replicas: s.DesiredReplicas(),
		App:      plan.App{Port: s.AppPort(), Path: s.AppPath()},
		Policy:   policy,
	}
	async := c.style.IsAsync()
	if c.isDriven[n] {
		st.DependsOn = c.deps[n]
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
		if name == "" || len(name) > maxNATSNameLen || !natsName.MatchString(name) {
			ps.addf(ReasonNameCollision, nil, "generated %s name %q is not a valid JetStream name", kind, name)
		}
	}
	if p.Stream != nil {
		valid("stream", p.Stream.Name)
		valid("bucket", p.Stream.RunsBucket)
		valid("stream", p.Stream.DeadLetterStream)
		valid("bucket", p.Stream.IdempotencyBucket)
	}
	owner := map[string]string{}
	claim := func(durable, who string) {
		valid("consumer", durable)
		if prev, taken := owner[durable]; taken {
			ps.addf(ReasonNameCollision, nil, "consumer name %s is generated for both %s and %s: rename one of them", durable, prev, who)
			return
		}
		owner[durable] = who
	}
	if p.Stream != nil {
		for _, d := range []string{p.Stream.OrchestratorDurable, p.Stream.CompletionDurable, p.Stream.DeadlineDurable} {
			if d != "" {
				claim(d, "the runtime")
			}
		}
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
