package topology

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

func compileOK(t *testing.T, name, spec string) *plan.Plan {
	t.Helper()
	w := workflow(t, name, spec)
	p, err := Compile(w)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	checkInvariants(t, w, p)
	return p
}

func TestEmptyNamespaceCompilesAsDefault(t *testing.T) {
	w := workflow(t, "wf", `{style: async-orchestrated, steps: [{name: a, image: x}]}`)
	w.Namespace = ""
	p, err := Compile(w)
	if err != nil {
		t.Fatal(err)
	}
	if p.Namespace != "default" || p.Stream.Subjects[0] != "pb.default.wf.>" || p.Stream.Name != "pb_default_wf" {
		t.Errorf("namespace %q, subjects %q, stream %q", p.Namespace, p.Stream.Subjects, p.Stream.Name)
	}
}

// TestSetsDoNotDependOnOrder: dependsOn, subscribes, emits and completesOn are
// sets, so their order in the spec must not change the plan.
func TestSetsDoNotDependOnOrder(t *testing.T) {
	a := compileOK(t, "wf", `
style: choreography
entry: {event: start, completesOn: [done, also]}
steps:
- {name: x, image: i, subscribes: [start], emits: [done, mid]}
- {name: z, image: i, subscribes: [mid, start], emits: [also, other]}`)
	b := compileOK(t, "wf", `
style: choreography
entry: {event: start, completesOn: [also, done]}
steps:
- {name: x, image: i, subscribes: [start], emits: [mid, done]}
- {name: z, image: i, subscribes: [start, mid], emits: [other, also]}`)
	if ab, bb := mustMarshal(t, a), mustMarshal(t, b); ab != bb {
		t.Errorf("plans differ:\n%s\n%s", ab, bb)
	}
}

func TestSyncChainFansOut(t *testing.T) {
	p := compileOK(t, "wf", `
style: sync-chain
steps:
- {name: root, image: x}
- {name: right, image: x, dependsOn: [root]}
- {name: left, image: x, dependsOn: [root]}
- {name: leaf, image: x, dependsOn: [left]}`)
	if got := p.Step("root").Output.Next; !slices.Equal(got, []string{"left", "right"}) {
		t.Errorf("root forwards to %v", got)
	}
	if !slices.Equal(p.Sinks, []string{"leaf", "right"}) {
		t.Errorf("sinks %v", p.Sinks)
	}
	if got := p.Step("root").Callers; got != nil {
		t.Errorf("the root is called from outside, so it lists no callers, got %v", got)
	}
	if got := p.Step("leaf").Callers; !slices.Equal(got, []string{"left"}) {
		t.Errorf("leaf callers %v", got)
	}
	if p.Entry.Step != "root" || p.Entry.Service != "wf" {
		t.Errorf("entry %+v", p.Entry)
	}
}

func TestSyncStylesAlwaysHoldTheCaller(t *testing.T) {
	for _, style := range []string{"sync-chain", "sync-orchestrated"} {
		p := compileOK(t, "wf", `{style: `+style+`, entry: {sync: false, timeout: 3s}, steps: [{name: a, image: x}]}`)
		if !p.Entry.Sync || p.Entry.Timeout.String() != "3s" {
			t.Errorf("%s: entry %+v", style, p.Entry)
		}
	}
	p := compileOK(t, "wf", `{style: async-orchestrated, entry: {sync: false}, steps: [{name: a, image: x}]}`)
	if p.Entry.Sync {
		t.Errorf("async-orchestrated keeps sync: false, got %+v", p.Entry)
	}
}

func TestHybridEntryEventAndEventChains(t *testing.T) {
	p := compileOK(t, "wf", `
style: hybrid
entry: {event: order.received}
steps:
- {name: core, image: x, emits: [paid]}
- {name: log, image: x, subscribes: [order.received]}
- {name: index, image: x, subscribes: [paid], emits: [indexed]}
- {name: mail, image: x, subscribes: [indexed]}`)
	if p.Entry.Event != "order.received" || p.Entry.EventSubject != "pb.shop.wf.evt.order.received" || p.Entry.CompletesOn != nil {
		t.Errorf("entry %+v", p.Entry)
	}
	if !slices.Equal(p.Sinks, []string{"core"}) || len(p.Levels) != 1 || !slices.Equal(p.Levels[0], []string{"core"}) {
		t.Errorf("only the orchestrated step completes the run: sinks %v, levels %v", p.Sinks, p.Levels)
	}
	var received plan.EventRoute
	for _, r := range p.Events {
		if r.Type == "order.received" {
			received = r
		}
	}
	if !slices.Equal(received.Emitters, []string{plan.EntryEmitter}) || !slices.Equal(received.Subscribers, []string{"log"}) {
		t.Errorf("entry event route %+v", received)
	}
}

func TestJetStreamNamesStayValidAndDistinct(t *testing.T) {
	long := strings.Repeat("s", 40)
	p := compileOK(t, "wf", `
style: choreography
entry: {event: start, sync: false}
steps:
- {name: src, image: x, subscribes: [start], emits: [a.b, a_b, `+strings.Repeat("e.", 20)+`end]}
- {name: a, image: x, subscribes: [start, a.b, a_b]}
- {name: `+long+`, image: x, subscribes: [start, `+strings.Repeat("e.", 20)+`end]}`)
	a := p.Step("a")
	var names []string
	for _, c := range a.Consumers {
		names = append(names, c.Durable)
	}
	if names[0] != "a_evt_a_b" || !strings.HasPrefix(names[1], "a_evt_a_b_") || len(names[1]) != len("a_evt_a_b_")+hashLen || names[2] != "a_evt_start" {
		t.Errorf("durables of a: %v (a.b stays readable, a_b gets a hash suffix)", names)
	}
	for _, c := range p.Step(long).Consumers {
		if len(c.Durable) > maxNATSNameLen {
			t.Errorf("durable %q is longer than %d", c.Durable, maxNATSNameLen)
		}
	}
	// The same workflow name in a long namespace keeps the stream name bounded.
	w := workflow(t, strings.Repeat("w", 52), `{style: async-orchestrated, steps: [{name: a, image: x}]}`)
	w.Namespace = strings.Repeat("n", 63)
	q, err := Compile(w)
	if err == nil {
		t.Fatalf("a 52-character workflow with an orchestrator must be refused (child name too long), got %s", q.Stream.Name)
	}
	w.Name = strings.Repeat("w", 47)
	q, err = Compile(w)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, w, q)
	if n := q.Stream.Name; len(n) != maxNATSNameLen || !strings.HasPrefix(n, "pb_nnn") {
		t.Errorf("stream name %q", n)
	}
	if q.Stream.Name == q.Stream.RunsBucket {
		t.Errorf("stream and runs bucket share %q", q.Stream.Name)
	}
}

func TestMaxAckPendingIsPerPodBulkheadTimesReplicas(t *testing.T) {
	p := compileOK(t, "wf", `
style: async-orchestrated
resilience: {bulkhead: {maxConcurrent: 10000}}
steps:
- {name: a, image: x, replicas: 3}
- {name: b, image: x, replicas: 1000, resilience: {bulkhead: {maxConcurrent: 2147483647}}}`)
	if got := p.Step("a").Consumers[0].MaxAckPending; got != 30000 {
		t.Errorf("a: MaxAckPending %d, want 30000", got)
	}
	if got := p.Step("b").Consumers[0].MaxAckPending; got != 2147483647 {
		t.Errorf("b: MaxAckPending %d, want the int32 cap", got)
	}
}

func TestCompileIsDeterministic(t *testing.T) {
	for name, w := range samples(t) {
		a, err := Compile(w)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Compile(w.DeepCopy())
		if ab, bb := mustMarshal(t, a), mustMarshal(t, b); ab != bb {
			t.Errorf("%s: two compilations differ", name)
		}
		if g1, g2 := Graph(a), Graph(b); g1 != g2 {
			t.Errorf("%s: two graphs differ", name)
		}
		ha, _ := a.Hash()
		parsed, err := plan.Parse([]byte(mustMarshal(t, a)))
		if err != nil {
			t.Fatal(err)
		}
		if hb, _ := parsed.Hash(); ha != hb {
			t.Errorf("%s: hash changes through Parse: %s vs %s", name, ha, hb)
		}
		if !bytes.Contains([]byte(mustMarshal(t, a)), []byte(`"version": "`+plan.Version+`"`)) {
			t.Errorf("%s: no version", name)
		}
	}
}
