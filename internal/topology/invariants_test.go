package topology

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

var (
	// subjectToken is one token of a subject without wildcards.
	subjectToken = regexp.MustCompile(`^[^\s.*>]+$`)
	validNATS    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

func validSubject(s string) bool {
	if s == "" {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if !subjectToken.MatchString(tok) {
			return false
		}
	}
	return true
}

// validStreamSubject allows the one wildcard a stream subject needs: a final '>'.
func validStreamSubject(s string) bool {
	prefix, ok := strings.CutSuffix(s, ".>")
	return ok && validSubject(prefix)
}

// checkInvariants holds every plan Compile accepts to what the runtime and the
// controllers rely on.
func checkInvariants(t testing.TB, w *v1alpha1.Workflow, p *plan.Plan) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("plan %s/%s: "+format, append([]any{p.Namespace, p.Workflow}, args...)...)
	}
	if p.Version != plan.Version {
		fail("version %q", p.Version)
	}
	style := p.Style
	if p.Style != w.Spec.Style {
		fail("style %q, spec says %q", p.Style, w.Spec.Style)
	}

	// Each step once, in spec order.
	if len(p.Steps) != len(w.Spec.Steps) {
		fail("%d steps, spec has %d", len(p.Steps), len(w.Spec.Steps))
	}
	seen := map[string]bool{}
	for i, s := range p.Steps {
		if seen[s.Name] {
			fail("step %s twice", s.Name)
		}
		seen[s.Name] = true
		if i < len(w.Spec.Steps) && w.Spec.Steps[i].Name != s.Name {
			fail("steps[%d] is %s, spec says %s", i, s.Name, w.Spec.Steps[i].Name)
		}
	}
	roleOn := map[string]bool{plan.OrchestratorRole: p.Roles.Orchestrator, plan.GatewayRole: p.Roles.Gateway}
	isStep := func(n string) bool { return p.Step(n) != nil }

	// Roles and entry per style.
	wantOrch := style == v1alpha1.StyleSyncOrchestrated || style == v1alpha1.StyleAsyncOrchestrated || style == v1alpha1.StyleHybrid
	if p.Roles.Orchestrator != wantOrch || p.Roles.Gateway != style.IsAsync() || p.Roles.Broker != style.IsAsync() {
		fail("roles %+v do not fit style %s", p.Roles, style)
	}
	if p.Roles.Broker != (p.Roles.BrokerName != "") || p.Roles.Broker != (p.Stream != nil) {
		fail("broker %v, broker name %q, stream %v disagree", p.Roles.Broker, p.Roles.BrokerName, p.Stream != nil)
	}
	if p.Entry.Service == "" || len(p.Entry.Service) > 63 || p.Entry.Timeout.Duration <= 0 {
		fail("entry %+v", p.Entry)
	}
	switch p.Entry.Kind {
	case plan.EntryStep:
		if s := p.Step(p.Entry.Step); s == nil || len(s.DependsOn) > 0 || style != v1alpha1.StyleSyncChain {
			fail("entry step %q is not the chain's root", p.Entry.Step)
		}
	case plan.EntryOrchestrator:
		if !p.Roles.Orchestrator || p.Roles.Gateway {
			fail("entry orchestrator with roles %+v", p.Roles)
		}
	case plan.EntryGateway:
		if !p.Roles.Gateway {
			fail("entry gateway without a gateway")
		}
	default:
		fail("entry kind %q", p.Entry.Kind)
	}
	if (p.Entry.Event == "") != (p.Entry.EventSubject == "") {
		fail("entry event %q with subject %q", p.Entry.Event, p.Entry.EventSubject)
	}

	// Levels: every driven step once, dependencies in earlier levels.
	levelOf := map[string]int{}
	for i, l := range p.Levels {
		if len(l) == 0 || !slices.IsSorted(l) {
			fail("level %d is %v: empty or unsorted", i, l)
		}
		for _, n := range l {
			if _, dup := levelOf[n]; dup || !isStep(n) {
				fail("level %d lists %s, twice or not a step", i, n)
			}
			levelOf[n] = i
		}
	}
	dependedOn := map[string]bool{}
	for _, s := range p.Steps {
		lvl, inLevels := levelOf[s.Name]
		switch s.Mode {
		case plan.ModeEvent:
			if inLevels || len(s.DependsOn) > 0 || s.Input.Kind != plan.InputEvent {
				fail("event step %s: in levels %v (level %d), dependsOn %v, input %s", s.Name, inLevels, lvl, s.DependsOn, s.Input.Kind)
			}
			if !style.HasEvents() || len(s.Consumers) == 0 {
				fail("event step %s in style %s with %d consumers", s.Name, style, len(s.Consumers))
			}
		case plan.ModeChain, plan.ModeOrchestrated:
			if !inLevels {
				fail("step %s is in no level", s.Name)
			}
			if (s.Mode == plan.ModeChain) != (style == v1alpha1.StyleSyncChain) {
				fail("step %s has mode %s in style %s", s.Name, s.Mode, style)
			}
		default:
			fail("step %s has mode %q", s.Name, s.Mode)
		}
		if !slices.IsSorted(s.DependsOn) {
			fail("step %s: dependsOn %v unsorted", s.Name, s.DependsOn)
		}
		for _, d := range s.DependsOn {
			dependedOn[d] = true
			ds := p.Step(d)
			if ds == nil || ds.Mode == plan.ModeEvent {
				fail("step %s depends on %s: not a driven step", s.Name, d)
			} else if levelOf[d] >= lvl {
				fail("step %s (level %d) depends on %s (level %d)", s.Name, lvl, d, levelOf[d])
			}
		}
		wantInput := plan.InputEvent
		switch {
		case s.Mode == plan.ModeEvent:
		case len(s.DependsOn) == 0:
			wantInput = plan.InputEntry
		case len(s.DependsOn) == 1:
			wantInput = plan.InputDependency
		default:
			wantInput = plan.InputMerge
		}
		if s.Input.Kind != wantInput || (wantInput != plan.InputEntry && wantInput != plan.InputEvent && !slices.Equal(s.Input.From, s.DependsOn)) {
			fail("step %s: input %+v with dependsOn %v", s.Name, s.Input, s.DependsOn)
		}
		for _, n := range s.Output.Next {
			ns := p.Step(n)
			if ns == nil || !slices.Contains(ns.DependsOn, s.Name) {
				fail("step %s forwards to %s, which does not follow it", s.Name, n)
			}
		}
		for _, c := range s.Callers {
			if !isStep(c) && !roleOn[c] {
				fail("step %s is called by %s: neither a step nor a role of this plan", s.Name, c)
			}
		}
		if s.Service == "" || len(s.Service) > 63 || s.Replicas < 1 || s.App.Port < 1 || !strings.HasPrefix(s.App.Path, "/") {
			fail("step %s: service %q, replicas %d, app %+v", s.Name, s.Service, s.Replicas, s.App)
		}
		checkPolicy(fail, s.Name, s.Policy)
		if (s.Output.ResultSubject != "") != (s.Mode == plan.ModeOrchestrated && p.Stream != nil) {
			fail("step %s: result subject %q", s.Name, s.Output.ResultSubject)
		}
	}
	for _, n := range p.Sinks {
		s := p.Step(n)
		if s == nil || s.Mode == plan.ModeEvent || dependedOn[n] {
			fail("sink %s is not a driven step nobody depends on", n)
		}
	}
	if len(levelOf) > 0 && len(p.Sinks) == 0 {
		fail("driven steps but no sink")
	}

	// Events.
	for i, r := range p.Events {
		if i > 0 && p.Events[i-1].Type >= r.Type {
			fail("events not sorted by type at %s", r.Type)
		}
		for _, e := range r.Emitters {
			if e != plan.EntryEmitter && !isStep(e) {
				fail("event %s emitted by unknown %s", r.Type, e)
			}
		}
		for _, s := range r.Subscribers {
			if st := p.Step(s); st == nil || st.Mode != plan.ModeEvent {
				fail("event %s subscribed by %s, not an event step", r.Type, s)
			}
		}
		if len(r.Subscribers) > 0 && len(r.Emitters) == 0 {
			fail("event %s has subscribers but no emitter", r.Type)
		}
	}

	// Subjects and JetStream names.
	var subjects []string
	var streamPrefix string
	if st := p.Stream; st != nil {
		if len(st.Subjects) != 1 || !validStreamSubject(st.Subjects[0]) || !strings.HasSuffix(st.Subjects[0], ".>") {
			fail("stream subjects %v", st.Subjects)
		}
		streamPrefix = strings.TrimSuffix(st.Subjects[0], ">")
		subjects = append(subjects, st.ResultPrefix, st.DeadLetter)
		for _, n := range []string{st.Name, st.RunsBucket} {
			if !validNATS.MatchString(n) {
				fail("invalid JetStream name %q", n)
			}
		}
	}
	durables := map[string]bool{}
	if rm := p.ReadModel; rm != nil {
		if !validNATS.MatchString(rm.Bucket) || !validNATS.MatchString(rm.Durable) {
			fail("read model names %q, %q", rm.Bucket, rm.Durable)
		}
		durables[rm.Durable] = true
	}
	if p.Entry.EventSubject != "" {
		subjects = append(subjects, p.Entry.EventSubject)
	}
	for _, r := range p.Events {
		subjects = append(subjects, r.Subject)
	}
	for _, s := range p.Steps {
		if s.Output.ResultSubject != "" {
			subjects = append(subjects, s.Output.ResultSubject)
		}
		for _, e := range s.Output.Emits {
			subjects = append(subjects, e.Subject)
		}
		for _, c := range s.Consumers {
			subjects = append(subjects, c.FilterSubject)
			if !validNATS.MatchString(c.Durable) || durables[c.Durable] {
				fail("step %s: durable %q invalid or taken", s.Name, c.Durable)
			}
			durables[c.Durable] = true
			if c.MaxAckPending < 1 || c.MaxDeliver != s.Policy.Retry.Attempts || c.AckWait.Duration <= s.Policy.Timeout.Duration {
				fail("step %s: consumer %+v", s.Name, c)
			}
		}
		if len(s.Consumers) > 0 && p.Stream == nil {
			fail("step %s has consumers without a stream", s.Name)
		}
	}
	for _, sub := range subjects {
		if !validSubject(sub) {
			fail("invalid subject %q", sub)
		}
		if p.Stream != nil && !strings.HasPrefix(sub, streamPrefix) {
			fail("subject %q outside the stream %s", sub, p.Stream.Subjects)
		}
	}
	if p.Stream == nil && len(subjects) > 0 {
		fail("subjects %v without a stream", subjects)
	}
}

func checkPolicy(fail func(string, ...any), step string, p plan.Policy) {
	r, cb := p.Retry, p.CircuitBreaker
	if p.Timeout.Duration <= 0 || r.Attempts < 1 || r.InitialDelay.Duration <= 0 || r.MaxDelay.Duration <= 0 ||
		(r.Backoff != string(v1alpha1.BackoffExponential) && r.Backoff != string(v1alpha1.BackoffConstant)) ||
		(r.Backoff == string(v1alpha1.BackoffExponential) && r.MaxDelay.Duration < r.InitialDelay.Duration) ||
		cb.ConsecutiveFailures < 1 || cb.OpenDuration.Duration <= 0 || cb.HalfOpenRequests < 1 || p.Bulkhead.MaxConcurrent < 1 {
		fail("step %s: policy %+v is not fully resolved", step, p)
	}
}
