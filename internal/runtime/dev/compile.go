package dev

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// compile turns a Workflow into its Plan. It has the signature of
// topology.Compile, which replaces it once the compiler lands.
var compile = compileSync

// compileSync is a stand-in for topology.Compile that covers the two sync
// styles, enough for the dev mode until the compiler lands.
func compileSync(w *v1alpha1.Workflow) (*plan.Plan, error) {
	s := &w.Spec
	p := &plan.Plan{
		Version: plan.Version, Namespace: w.Namespace, Workflow: w.Name, Style: string(s.Style),
		Entry: plan.Entry{Sync: true, Timeout: plan.D(s.Entry.EntryTimeout())},
	}
	chain := s.Style == v1alpha1.StyleSyncChain
	dependents := map[string][]string{}
	deps := map[string][]string{}
	for _, st := range s.Steps {
		d := slices.Clone(st.DependsOn)
		slices.Sort(d)
		deps[st.Name] = d
		for _, dep := range d {
			dependents[dep] = append(dependents[dep], st.Name)
		}
	}
	// Levels by Kahn's algorithm; a step left over sits on a cycle.
	level := map[string]int{}
	for len(level) < len(s.Steps) {
		var next []string
		for _, st := range s.Steps {
			if _, done := level[st.Name]; done {
				continue
			}
			ready := true
			for _, d := range deps[st.Name] {
				if _, ok := level[d]; !ok {
					ready = false
				}
			}
			if ready {
				next = append(next, st.Name)
			}
		}
		if len(next) == 0 {
			return nil, fmt.Errorf("workflow %s: the dependsOn graph has a cycle", w.Name)
		}
		slices.Sort(next)
		for _, n := range next {
			level[n] = len(p.Levels)
		}
		p.Levels = append(p.Levels, next)
	}
	for _, st := range s.Steps {
		ps := plan.Step{
			Name: st.Name, Service: w.Name + "-" + st.Name, Replicas: st.DesiredReplicas(),
			Mode: plan.ModeOrchestrated, App: plan.App{Port: st.AppPort(), Path: st.AppPath()},
			DependsOn: deps[st.Name], Level: level[st.Name], Policy: resolvePolicy(s.Resilience, st.Resilience),
		}
		switch len(ps.DependsOn) {
		case 0:
			ps.Input = plan.Input{Kind: plan.InputEntry}
		case 1:
			ps.Input = plan.Input{Kind: plan.InputDependency, From: ps.DependsOn}
		default:
			ps.Input = plan.Input{Kind: plan.InputMerge, From: ps.DependsOn}
		}
		if chain {
			ps.Mode = plan.ModeChain
			ps.Output.Next = slices.Sorted(slices.Values(dependents[st.Name]))
			ps.Callers = ps.DependsOn
			if len(ps.DependsOn) == 0 {
				p.Entry = plan.Entry{Kind: plan.EntryStep, Step: st.Name, Service: ps.Service, Sync: true, Timeout: p.Entry.Timeout}
			}
		} else {
			ps.Output.ToOrchestrator = true
			ps.Callers = []string{plan.OrchestratorRole}
		}
		if len(dependents[st.Name]) == 0 {
			p.Sinks = append(p.Sinks, st.Name)
		}
		p.Steps = append(p.Steps, ps)
	}
	slices.Sort(p.Sinks)
	if !chain {
		p.Roles.Orchestrator = true
		p.Entry = plan.Entry{Kind: plan.EntryOrchestrator, Service: w.Name + "-" + plan.OrchestratorRole, Sync: true, Timeout: p.Entry.Timeout}
	}
	if chain && p.Entry.Step == "" {
		return nil, fmt.Errorf("workflow %s: sync-chain needs exactly one root step", w.Name)
	}
	return p, nil
}

func resolvePolicy(layers ...*v1alpha1.Resilience) plan.Policy {
	p := plan.Policy{
		Timeout: plan.D(v1alpha1.DefaultTimeout),
		Retry: plan.Retry{Attempts: v1alpha1.DefaultRetryAttempts, Backoff: string(v1alpha1.DefaultBackoff),
			InitialDelay: plan.D(v1alpha1.DefaultInitialDelay), MaxDelay: plan.D(v1alpha1.DefaultMaxDelay)},
		CircuitBreaker: plan.CircuitBreaker{ConsecutiveFailures: v1alpha1.DefaultFailures,
			OpenDuration: plan.D(v1alpha1.DefaultOpenDuration), HalfOpenRequests: v1alpha1.DefaultHalfOpen},
		Bulkhead: plan.Bulkhead{MaxConcurrent: v1alpha1.DefaultMaxConcurrent},
	}
	dur := func(dst *plan.Duration, src *metav1.Duration) {
		if src != nil {
			*dst = plan.D(src.Duration)
		}
	}
	for _, r := range layers {
		if r == nil {
			continue
		}
		dur(&p.Timeout, r.Timeout)
		if rt := r.Retry; rt != nil {
			if rt.Attempts != nil {
				p.Retry.Attempts = *rt.Attempts
			}
			if rt.Backoff != "" {
				p.Retry.Backoff = strings.ToLower(string(rt.Backoff))
			}
			dur(&p.Retry.InitialDelay, rt.InitialDelay)
			dur(&p.Retry.MaxDelay, rt.MaxDelay)
		}
		if cb := r.CircuitBreaker; cb != nil {
			if cb.ConsecutiveFailures != nil {
				p.CircuitBreaker.ConsecutiveFailures = *cb.ConsecutiveFailures
			}
			dur(&p.CircuitBreaker.OpenDuration, cb.OpenDuration)
			if cb.HalfOpenRequests != nil {
				p.CircuitBreaker.HalfOpenRequests = *cb.HalfOpenRequests
			}
		}
		if bh := r.Bulkhead; bh != nil && bh.MaxConcurrent != nil {
			p.Bulkhead.MaxConcurrent = *bh.MaxConcurrent
		}
	}
	return p
}
