package topology

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// workflow builds a Workflow named name in namespace shop from a spec in YAML.
func workflow(t testing.TB, name, spec string) *v1alpha1.Workflow {
	t.Helper()
	w := &v1alpha1.Workflow{}
	w.Name, w.Namespace = name, "shop"
	if err := yaml.UnmarshalStrict([]byte(spec), &w.Spec); err != nil {
		t.Fatalf("spec: %v\n%s", err, spec)
	}
	return w
}

// TestCompileErrors pins every problem the compiler reports, with its reason
// and exact message: the controller shows these in the Compiled condition.
func TestCompileErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compile(workflow(t, cmp.Or(tc.wf, "wf"), tc.spec))
			if err == nil {
				t.Fatalf("Compile accepted the spec:\n%s", mustMarshal(t, p))
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("error %T is not a *topology.Error: %v", err, err)
			}
			var got []want
			for _, pr := range cerr.Problems {
				got = append(got, want{pr.Reason, pr.Steps, pr.Message})
			}
			if !slices.EqualFunc(got, tc.want, func(a, b want) bool {
				return a.reason == b.reason && a.message == b.message && slices.Equal(a.steps, b.steps)
			}) {
				t.Errorf("problems differ\ngot:\n%s\nwant:\n%s", formatWants(got), formatWants(tc.want))
			}
			for _, w := range tc.want {
				if !cerr.Has(w.reason) {
					t.Errorf("Has(%s) is false", w.reason)
				}
			}
			if !strings.Contains(err.Error(), tc.want[0].message) {
				t.Errorf("Error() %q does not carry the first message", err.Error())
			}
		})
	}
}

type want struct {
	reason  Reason
	steps   []string
	message string
}

// errorCases are specs the compiler refuses, each with every problem it must
// report. FuzzCompile uses them as seeds too.
var errorCases = []struct {
	name string
	wf   string // workflow name; "wf" when empty
	spec string
	want []want
}{
	{
		name: "dependency cycle spelled out from its smallest step",
		spec: `
style: sync-orchestrated
steps:
- {name: root, image: x}
- {name: c, image: x, dependsOn: [b]}
- {name: b, image: x, dependsOn: [a]}
- {name: a, image: x, dependsOn: [c, root]}
- {name: after, image: x, dependsOn: [a]}`,
		want: []want{{ReasonDependencyCycle, []string{"a", "c", "b"}, "dependency cycle: a → c → b → a (each step lists the next in dependsOn)"}},
	},
	{
		name: "every cycle once, and a self-dependency",
		spec: `
style: async-orchestrated
steps:
- {name: q, image: x, dependsOn: [p]}
- {name: p, image: x, dependsOn: [q]}
- {name: s, image: x, dependsOn: [s]}
- {name: ok, image: x}`,
		want: []want{
			{ReasonDependencyCycle, []string{"p", "q"}, "dependency cycle: p → q → p (each step lists the next in dependsOn)"},
			{ReasonDependencyCycle, []string{"s"}, "dependency cycle: s → s (each step lists the next in dependsOn)"},
		},
	},
	{
		name: "unknown dependency",
		spec: `
style: sync-orchestrated
steps:
- {name: a, image: x, dependsOn: [ghost]}`,
		want: []want{{ReasonUnknownDependency, []string{"a", "ghost"}, "step a depends on ghost, which is not a step of this workflow"}},
	},
	{
		name: "duplicate step names",
		spec: `
style: sync-orchestrated
steps:
- {name: a, image: x}
- {name: a, image: y}`,
		want: []want{{ReasonDuplicateStep, []string{"a"}, `step name "a" is used by spec.steps[0] and spec.steps[1]: step names must be unique`}},
	},
	{
		name: "event subscribed but never emitted",
		spec: `
style: choreography
entry: {event: order.requested, completesOn: [done]}
steps:
- {name: a, image: x, subscribes: [order.requested], emits: [done]}
- {name: b, image: x, subscribes: [order.lost]}
- {name: c, image: x, subscribes: [order.lost]}`,
		want: []want{{ReasonUnemittedEvent, []string{"b", "c"}, "event order.lost is subscribed to by steps b, c, but no step emits it and it is not spec.entry.event"}},
	},
	{
		name: "choreography steps no chain of events reaches",
		spec: `
style: choreography
entry: {event: start, completesOn: [done]}
steps:
- {name: a, image: x, subscribes: [start], emits: [done]}
- {name: ping, image: x, subscribes: [pong], emits: [ping]}
- {name: pong, image: x, subscribes: [ping], emits: [pong]}`,
		want: []want{
			{ReasonUnreachableStep, []string{"ping"}, "step ping is unreachable: no chain of events from spec.entry.event leads to what it subscribes to (pong)"},
			{ReasonUnreachableStep, []string{"pong"}, "step pong is unreachable: no chain of events from spec.entry.event leads to what it subscribes to (ping)"},
		},
	},
	{
		name: "hybrid event step no chain reaches",
		spec: `
style: hybrid
steps:
- {name: a, image: x, emits: [paid]}
- {name: note, image: x, subscribes: [paid]}
- {name: m, image: x, subscribes: [indexed], emits: [audited]}
- {name: k, image: x, subscribes: [audited], emits: [indexed]}`,
		want: []want{
			{ReasonUnreachableStep, []string{"m"}, "step m is unreachable: no chain of events from spec.entry.event or the events orchestrated steps emit leads to what it subscribes to (indexed)"},
			{ReasonUnreachableStep, []string{"k"}, "step k is unreachable: no chain of events from spec.entry.event or the events orchestrated steps emit leads to what it subscribes to (audited)"},
		},
	},
	{
		name: "completion event nothing emits",
		spec: `
style: choreography
entry: {event: start, completesOn: [done, finished]}
steps:
- {name: a, image: x, subscribes: [start], emits: [done]}`,
		want: []want{{ReasonUnemittedEvent, nil, "spec.entry.completesOn: no step emits finished, so no run would ever complete"}},
	},
	{
		name: "completion on the entry event",
		spec: `
style: choreography
entry: {event: start, completesOn: [start]}
steps:
- {name: a, image: x, subscribes: [start]}`,
		want: []want{{ReasonStyleRule, nil, "spec.entry.completesOn: start is spec.entry.event, so a run would complete as soon as it starts"}},
	},
	{
		name: "read model event nobody emits",
		spec: `
style: hybrid
steps:
- {name: a, image: x, emits: [paid]}
readModel: {events: [paid, refunded], key: /orderId}`,
		want: []want{{ReasonUnemittedEvent, nil, "spec.readModel.events: no step emits refunded and it is not spec.entry.event, so nothing would be projected"}},
	},
	{
		name: "hybrid step depending on an event step",
		spec: `
style: hybrid
steps:
- {name: a, image: x, emits: [paid]}
- {name: note, image: x, subscribes: [paid]}
- {name: b, image: x, dependsOn: [note]}`,
		want: []want{{ReasonStyleRule, []string{"b", "note"}, "step b depends on note, which reacts to events: in style hybrid only orchestrated steps (without subscribes) can be dependencies"}},
	},
	{
		name: "event loop",
		spec: `
style: choreography
entry: {event: start, sync: false}
steps:
- {name: a, image: x, subscribes: [start, again], emits: [next]}
- {name: b, image: x, subscribes: [next], emits: [again]}`,
		want: []want{{ReasonEventLoop, []string{"a", "b"}, "event loop: a → b → a (a emits next to b, b emits again to a): every run would publish these events forever"}},
	},
	{
		name: "child names longer than 63 characters",
		wf:   "a-workflow-name-of-exactly-fifty-two-characters-long",
		spec: `
style: async-orchestrated
steps:
- {name: tiny, image: x}
- {name: twelve-chars, image: x}`,
		want: []want{
			{ReasonNameTooLong, []string{"twelve-chars"}, "step twelve-chars: child name a-workflow-name-of-exactly-fifty-two-characters-long-ao-twelve-chars is 68 characters, longer than 63: shorten the workflow or step name"},
			{ReasonNameTooLong, nil, "child name a-workflow-name-of-exactly-fifty-two-characters-long-ao-orchestrator is 68 characters, longer than 63: shorten the workflow name"},
		},
	},
	{
		name: "sync-chain fan-in and two roots",
		spec: `
style: sync-chain
steps:
- {name: a, image: x}
- {name: b, image: x}
- {name: c, image: x, dependsOn: [b, a]}`,
		want: []want{
			{ReasonStyleRule, []string{"c", "a", "b"}, "step c depends on a, b: in style sync-chain a step follows exactly one step, because no one merges outputs; use sync-orchestrated for fan-in"},
			{ReasonStyleRule, []string{"a", "b"}, "style sync-chain needs exactly one root step (without dependsOn) to receive the request; found 2: a, b"},
		},
	},
	{
		name: "sync-chain without a root",
		spec: `
style: sync-chain
steps:
- {name: a, image: x, dependsOn: [b]}
- {name: b, image: x, dependsOn: [a]}`,
		want: []want{
			{ReasonStyleRule, nil, "style sync-chain needs exactly one root step (without dependsOn) to receive the request; every step depends on another"},
			{ReasonDependencyCycle, []string{"a", "b"}, "dependency cycle: a → b → a (each step lists the next in dependsOn)"},
		},
	},
	{
		name: "choreography rules",
		spec: `
style: choreography
steps:
- {name: a, image: x, dependsOn: [b]}
- {name: b, image: x}`,
		want: []want{
			{ReasonStyleRule, nil, "spec.entry.event is required in style choreography: name the event a request becomes"},
			{ReasonStyleRule, nil, "spec.entry.completesOn is required in style choreography when spec.entry.sync is true: name the events that complete a run, or set spec.entry.sync to false"},
			{ReasonStyleRule, []string{"a"}, "step a has dependsOn, which style choreography does not allow: steps react to events there"},
			{ReasonStyleRule, []string{"b"}, "step b subscribes to no event: in style choreography every step reacts to events"},
		},
	},
	{
		name: "hybrid completesOn and no orchestrated step",
		spec: `
style: hybrid
entry: {event: start, completesOn: [done]}
steps:
- {name: a, image: x, subscribes: [start], emits: [done]}`,
		want: []want{
			{ReasonStyleRule, nil, "spec.entry.completesOn is not supported in style hybrid: a hybrid run completes when its orchestrated sink steps finish, and event steps run outside it"},
			{ReasonStyleRule, nil, "style hybrid needs at least one orchestrated step (one without subscribes): use style choreography for a flow of events only"},
		},
	},
	{
		name: "events and read model outside the event styles",
		spec: `
style: async-orchestrated
entry: {event: start}
steps:
- {name: a, image: x, emits: [done]}
readModel: {events: [done], key: /id}`,
		want: []want{
			{ReasonStyleRule, nil, "spec.entry.event and spec.entry.completesOn are allowed only in styles choreography and hybrid, not async-orchestrated"},
			{ReasonStyleRule, nil, "spec.readModel projects events, so it needs style choreography or hybrid, not async-orchestrated"},
			{ReasonStyleRule, []string{"a"}, "step a: subscribes and emits are allowed only in styles choreography and hybrid, not async-orchestrated"},
		},
	},
	{
		name: "both dependsOn and subscribes",
		spec: `
style: hybrid
steps:
- {name: a, image: x, emits: [e]}
- {name: b, image: x, dependsOn: [a], subscribes: [e]}`,
		want: []want{{ReasonStyleRule, []string{"b"}, "step b has both dependsOn and subscribes: a step is driven by one or the other"}},
	},
	{
		name: "reserved step names",
		spec: `
style: choreography
entry: {event: start, sync: false}
steps:
- {name: orchestrator, image: x, subscribes: [start]}
- {name: entry, image: x, subscribes: [start]}`,
		want: []want{
			{ReasonInvalidField, []string{"orchestrator"}, "step name orchestrator is reserved for patchbay's own component: rename the step"},
			{ReasonStyleRule, []string{"entry"}, "step name entry is reserved when spec.entry.event is set: the event routing table names the entry so"},
		},
	},
	{
		name: "invalid fields",
		wf:   "Bad_Name",
		spec: `
style: sync-orchestrated
broker: {name: Bad.Broker}
entry: {timeout: 0s}
resilience: {timeout: -1s, retry: {attempts: 0, backoff: linear}}
steps:
- {name: Step_1, image: x}
- {name: p, image: x, port: 15080, path: nope, replicas: 0}
- {name: q, image: x, port: 70000, resilience: {bulkhead: {maxConcurrent: 0}, circuitBreaker: {consecutiveFailures: 0, openDuration: 0s, halfOpenRequests: 0}}}`,
		want: []want{
			{ReasonInvalidField, nil, `metadata.name "Bad_Name" must be a DNS label: lowercase letters, digits and '-', at most 63 characters`},
			{ReasonInvalidField, nil, `spec.broker.name "Bad.Broker" must be a DNS label`},
			{ReasonInvalidField, nil, "spec.resilience.timeout must be a positive duration, not -1s"},
			{ReasonInvalidField, nil, "spec.resilience.retry.attempts must be at least 1, not 0"},
			{ReasonInvalidField, nil, `spec.resilience.retry.backoff must be exponential or constant, not "linear"`},
			{ReasonInvalidField, []string{"Step_1"}, `spec.steps[0].name "Step_1" must be a DNS label: lowercase letters, digits and '-', at most 63 characters`},
			{ReasonInvalidField, []string{"p"}, "step p: port 15080 belongs to the sidecar: pick another port"},
			{ReasonInvalidField, []string{"p"}, `step p: path "nope" must start with '/'`},
			{ReasonInvalidField, []string{"p"}, "step p: replicas must be at least 1, not 0"},
			{ReasonInvalidField, []string{"q"}, "step q: port 70000 is not a TCP port (1-65535)"},
			{ReasonInvalidField, []string{"q"}, "spec.steps[q].resilience.circuitBreaker.consecutiveFailures must be at least 1, not 0"},
			{ReasonInvalidField, []string{"q"}, "spec.steps[q].resilience.circuitBreaker.openDuration must be a positive duration, not 0s"},
			{ReasonInvalidField, []string{"q"}, "spec.steps[q].resilience.circuitBreaker.halfOpenRequests must be at least 1, not 0"},
			{ReasonInvalidField, []string{"q"}, "spec.steps[q].resilience.bulkhead.maxConcurrent must be at least 1, not 0"},
			{ReasonInvalidField, nil, "spec.entry.timeout must be a positive duration, not 0s"},
		},
	},
	{
		name: "exponential backoff whose first delay passes its cap",
		spec: `
style: sync-orchestrated
resilience: {retry: {initialDelay: 3s}}
steps:
- {name: a, image: x, resilience: {retry: {maxDelay: 500ms, initialDelay: 200ms}}}
- {name: b, image: x, resilience: {retry: {backoff: constant}}}
- {name: c, image: x, resilience: {retry: {maxDelay: 1s}}}`,
		want: []want{
			{ReasonInvalidField, nil, "spec.resilience.retry: initialDelay 3s is longer than maxDelay 2s, so exponential backoff has nowhere to grow"},
			{ReasonInvalidField, []string{"c"}, "spec.steps[c].resilience.retry: initialDelay 3s is longer than maxDelay 1s, so exponential backoff has nowhere to grow"},
		},
	},
	{
		name: "invalid event types and read model key",
		spec: `
style: choreography
entry: {event: "bad event", completesOn: ["..."]}
steps:
- {name: a, image: x, subscribes: ["a..b"], emits: ["x>"]}
readModel: {events: [], key: orderId}`,
		want: []want{
			{ReasonInvalidField, []string{"a"}, `step a: subscribes: "a..b" is not an event type: dot-separated words of letters, digits, '-' and '_', at most 253 characters`},
			{ReasonInvalidField, []string{"a"}, `step a: emits: "x>" is not an event type: dot-separated words of letters, digits, '-' and '_', at most 253 characters`},
			{ReasonInvalidField, nil, `spec.entry.event "bad event" is not an event type: dot-separated words of letters, digits, '-' and '_'`},
			{ReasonInvalidField, nil, `spec.entry.completesOn: "..." is not an event type: dot-separated words of letters, digits, '-' and '_', at most 253 characters`},
			{ReasonInvalidField, nil, "spec.readModel.events is empty: name the events to project"},
			{ReasonInvalidField, nil, `spec.readModel.key "orderId" must be a JSON pointer such as /orderId`},
		},
	},
	{
		name: "read model mode and fields",
		spec: `
style: choreography
entry: {event: req, completesOn: [done]}
steps:
- {name: a, image: x, subscribes: [req], emits: [done]}
readModel:
  events: [done]
  key: /id
  mode: append
  fields:
  - {event: req, select: [/x]}
  - {event: done, select: [status]}
  - {event: done, select: []}`,
		want: []want{
			{ReasonInvalidField, nil, `spec.readModel.mode "append" must be merge or replace`},
			{ReasonInvalidField, nil, "spec.readModel.fields[].event req is not in spec.readModel.events: only projected events have fields to select"},
			{ReasonInvalidField, nil, `spec.readModel.fields[].select of event done: "status" must be a JSON pointer such as /status`},
			{ReasonInvalidField, nil, "spec.readModel.fields lists event done twice: give each event one select"},
			{ReasonInvalidField, nil, "spec.readModel.fields[].select of event done is empty: name the JSON pointers to keep, or remove the entry to keep the whole event"},
		},
	},
	{
		name: "unknown style and no steps",
		spec: `
style: telepathy
steps: []`,
		want: []want{
			{ReasonInvalidField, nil, "spec.steps is empty: a workflow needs at least one step"},
			{ReasonInvalidField, nil, `spec.style "telepathy" is not one of sync-chain, sync-orchestrated, async-orchestrated, choreography, hybrid`},
		},
	},
}

func formatWants[T any](ws []T) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString("  ")
		b.WriteString(strings.TrimSpace(strings.ReplaceAll(sprintAny(w), "\n", " ")))
		b.WriteString("\n")
	}
	return b.String()
}
