package topology

import (
	"slices"
	"strings"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

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
			c.ps.addf(ReasonUnemittedEvent, subs, "event %s is subscribed to by %s %s, but no step emits it and it is not spec.entry.event", t, plural(len(subs), "step", "steps"), strings.Join(subs, ", "))
		}
	}
	if e := c.spec.Entry; e != nil {
		for _, t := range sortedSet(e.CompletesOn) {
			switch {
			case !isEventType(t):
			case t == entryEvent:
				c.ps.addf(ReasonStyleRule, nil, "spec.entry.completesOn: %s is spec.entry.event, so a run would complete as soon as it starts", t)
			case len(emitters[t]) == 0:
				c.ps.addf(ReasonUnemittedEvent, nil, "spec.entry.completesOn: no step emits %s, so no run would ever complete", t)
			}
		}
	}
	if rm := c.spec.ReadModel; rm != nil {
		for _, t := range sortedSet(rm.Events) {
			if isEventType(t) && !produced(t) {
				c.ps.addf(ReasonUnemittedEvent, nil, "spec.readModel.events: no step emits %s and it is not spec.entry.event, so nothing would be projected", t)
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
		c.ps.addf(ReasonUnreachableStep, []string{n}, "step %s is unreachable: no chain of events from %s leads to what it subscribes to (%s)", n, from, strings.Join(subs, ", "))
	}

	// Loops among reachable event steps: a step may publish any type it
	// emits (docs/step-contract.md, Events), so a loop may publish on every
	// run without end.
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
		c.ps.addf(ReasonEventLoop, cyc[:len(cyc)-1], "event loop: %s (%s): every run would publish these events forever", strings.Join(cyc, " → "), strings.Join(hops, ", "))
	}
}
