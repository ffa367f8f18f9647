package plan

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/patchbay-dev/patchbay/api/style"
)

// Version is the schema version of the Plan JSON. The runtime refuses a plan
// whose version it does not know.
const Version = "patchbay.dev/plan/v1"

// Ports and paths fixed by the architecture (docs/architecture.md, Names and ports).
const (
	ServicePort      = 80    // every Service serves HTTP on port 80
	SidecarPort      = 15080 // sidecar inbound HTTP
	SidecarAdminPort = 15090 // sidecar metrics and health
	ComponentPort    = 8080  // orchestrator and gateway HTTP
	OrchestratorRole = "orchestrator"
	GatewayRole      = "gateway"
	// DefaultMaxBodyLen is the size budget: the largest payload a hop
	// accepts, in bytes (Plan.MaxBodyLen).
	DefaultMaxBodyLen = 4 << 20
	// MaxHeaderLen is what a message may add to its payload: headers, such
	// as a dead letter's.
	MaxHeaderLen = 64 << 10
	// MaxMessageLen is the largest NATS message a Broker accepts (max_payload)
	// and a stream or bucket stores: a payload of DefaultMaxBodyLen with its
	// headers. Dead letters and run records refer to payloads rather than
	// copy them, so nothing larger is ever published.
	MaxMessageLen = DefaultMaxBodyLen + MaxHeaderLen
)

// Plan is a compiled Workflow. The same Workflow spec always gives the same Plan,
// byte for byte, once marshalled.
type Plan struct {
	// Version is the schema version, always Version.
	Version string `json:"version"`
	// Namespace and Workflow identify the source object.
	Namespace string `json:"namespace"`
	Workflow  string `json:"workflow"`
	// Style is the Workflow's spec.style; ask it, not the other fields, whether
	// the workflow is async (Style.IsAsync) or has events (Style.HasEvents).
	Style style.Style `json:"style"`
	// Roles says which patchbay components this workflow runs.
	Roles Roles `json:"roles"`
	// Entry says where requests land and when a run completes.
	Entry Entry `json:"entry"`
	// Steps in spec order.
	Steps []Step `json:"steps"`
	// Levels is the orchestrated DAG in topological levels: the steps of one level
	// have all their dependencies in earlier levels and may run concurrently; the
	// names in a level are sorted. In sync-chain it is the chain's order (a tree
	// that fans out has several steps in a level). Event-driven steps are not in it.
	Levels [][]string `json:"levels,omitempty"`
	// Sinks are the orchestrated (or chained) steps no other step depends on, sorted;
	// the run's result is the sink's output, or an object {sink: output} of several.
	// A run completes when every sink has finished. Event-driven steps are never
	// sinks: in hybrid they run outside the run's completion and result. Empty in
	// choreography, whose runs complete on Entry.CompletesOn.
	Sinks []string `json:"sinks,omitempty"`
	// Events is the routing table of the event-driven styles, sorted by type.
	Events []EventRoute `json:"events,omitempty"`
	// Stream is the JetStream stream and subjects of the async styles; nil for sync styles.
	Stream *Stream `json:"stream,omitempty"`
	// ReadModel is the CQRS projection; nil when the spec has none.
	ReadModel *ReadModel `json:"readModel,omitempty"`
	// MaxBodyLen is the size budget: the largest request body, step output
	// or message payload (DefaultMaxBodyLen).
	MaxBodyLen int64 `json:"maxBodyLen,omitzero"`
	// RunTimeout is the deadline of an async run (spec.runTimeout, else
	// entry.timeout): past it the run fails with 504 and is dead-lettered.
	// Zero in the sync styles, where Entry.Timeout is the run's deadline.
	RunTimeout Duration `json:"runTimeout,omitzero"`
}

// Roles are the components beside the steps.
type Roles struct {
	// Orchestrator runs the DAG (sync-orchestrated, async-orchestrated, hybrid).
	Orchestrator bool `json:"orchestrator"`
	// Gateway is the sync wrapper in front of an async flow.
	Gateway bool `json:"gateway"`
	// Broker is true when the workflow needs a NATS broker.
	Broker bool `json:"broker"`
	// BrokerName is the Broker the workflow uses, empty when Broker is false.
	BrokerName string `json:"brokerName,omitempty"`
}

// Entry kinds: who receives the caller's request.
const (
	EntryStep         = "step"         // sync-chain: the root step's sidecar
	EntryOrchestrator = "orchestrator" // sync-orchestrated
	EntryGateway      = "gateway"      // async styles
)

// Entry is where requests land.
type Entry struct {
	// Kind is EntryStep, EntryOrchestrator or EntryGateway.
	Kind string `json:"kind"`
	// Step is the root step when Kind is EntryStep.
	Step string `json:"step,omitempty"`
	// Service is the Kubernetes Service that receives requests (port
	// ServicePort): it is named after the Workflow and selects the entry's
	// pods, so it stays the same when the style changes.
	Service string `json:"service"`
	// Sync holds the caller until the run completes. Always true in the sync
	// styles, which have no run store to answer later.
	Sync bool `json:"sync"`
	// Timeout is how long a sync caller is held before 202 + Location. In the
	// sync styles it is the deadline of the whole run: past it the caller gets
	// 504 Gateway Timeout.
	Timeout Duration `json:"timeout"`
	// IdempotencyWindow is how long the gateway remembers an
	// Idempotency-Key (Stream.IdempotencyBucket); zero in the sync styles.
	IdempotencyWindow Duration `json:"idempotencyWindow,omitzero"`
	// Event is the event a request becomes (choreography; hybrid when set).
	Event string `json:"event,omitempty"`
	// EventSubject is the subject Event is published on.
	EventSubject string `json:"eventSubject,omitempty"`
	// CompletesOn are the events that complete a choreographed run, sorted; the
	// first of them a run emits completes it, and its payload is the run's result.
	// Choreography only: other styles complete on Plan.Sinks.
	CompletesOn []string `json:"completesOn,omitempty"`
}

// Step modes: how a step is driven.
const (
	ModeChain        = "chain"        // sync-chain: its sidecar forwards to Output.Next
	ModeOrchestrated = "orchestrated" // the orchestrator calls it (HTTP or a command subject)
	ModeEvent        = "event"        // it reacts to subscribed events
)

// Input kinds: what a step receives as its request body.
const (
	InputEntry      = "entry"      // the entry payload (no dependency)
	InputDependency = "dependency" // the output of its single dependency
	InputMerge      = "merge"      // a JSON object {dep: output, ...} of several
	InputEvent      = "event"      // the payload of the event that triggered it
)

// Step is one service of the workflow and everything its sidecar needs.
type Step struct {
	Name string `json:"name"`
	// Service is the step's Kubernetes Service: <workflow>-<step>, port ServicePort.
	Service string `json:"service"`
	// Replicas is the desired pod count.
	Replicas int32 `json:"replicas"`
	// Mode is ModeChain, ModeOrchestrated or ModeEvent.
	Mode string `json:"mode"`
	// App is where the sidecar calls the user's container.
	App App `json:"app"`
	// DependsOn are the step's dependencies, sorted.
	DependsOn []string `json:"dependsOn,omitempty"`
	// Input is what the step receives.
	Input Input `json:"input"`
	// Output is where its output goes.
	Output Output `json:"output"`
	// Consumers are the durable JetStream consumers the sidecar pulls from:
	// the command subject in async-orchestrated/hybrid, one per subscribed event
	// in the event-driven styles. Empty in the sync styles.
	Consumers []Consumer `json:"consumers,omitempty"`
	// Callers are the components allowed to call this step over HTTP
	// ("orchestrator", "gateway" or step names), sorted; NetworkPolicies come from it.
	//   - sync-chain: the step it follows (its dependsOn). The root lists nothing:
	//     it is the entry, called from outside the workflow (Entry.Kind EntryStep).
	//   - sync-orchestrated: "orchestrator".
	//   - async-orchestrated, choreography, hybrid: "gateway". Work reaches these
	//     steps over NATS, but their sidecars also serve plain HTTP at all times
	//     (dual support, docs/architecture.md); the gateway is the one HTTP door, so it is the
	//     only caller. No step of these styles is called by another step.
	// Empty means "anyone the namespace allows" and occurs only for the sync-chain root.
	Callers []string `json:"callers,omitempty"`
	// Policy is the resolved resilience policy for calls to this step.
	Policy Policy `json:"policy"`
}

// App is the user's container as its sidecar sees it.
type App struct {
	Port int32  `json:"port"`
	Path string `json:"path"`
}

// Input says what a step receives.
type Input struct {
	// Kind is InputEntry, InputDependency, InputMerge or InputEvent.
	Kind string `json:"kind"`
	// From are the steps whose outputs make the input (dependency, merge), sorted.
	From []string `json:"from,omitempty"`
}

// Output says where a step's output goes.
type Output struct {
	// Next are the steps the sidecar forwards to (sync-chain), sorted. A chain
	// is a tree from Entry.Step (fan-out allowed, fan-in refused by the compiler):
	// the sidecar sends its app's output to every Next step and answers its
	// caller with the result of its subtree, its sink's output or an object
	// {sink: output} of its sinks. Empty for a sink.
	Next []string `json:"next,omitempty"`
	// ToOrchestrator is true when the output returns to the orchestrator
	// (the HTTP response in sync-orchestrated, ResultSubject in async).
	ToOrchestrator bool `json:"toOrchestrator,omitempty"`
	// ResultSubject is where an async step publishes its result.
	ResultSubject string `json:"resultSubject,omitempty"`
	// Emits are the events the output is published as.
	Emits []Emit `json:"emits,omitempty"`
}

// Emit is one event type a step publishes its output as.
type Emit struct {
	Type    string `json:"type"`
	Subject string `json:"subject"`
}

// Consumer is a durable JetStream pull consumer of one step. Its replicas share it
// (queue semantics); MaxAckPending is the step's bulkhead.
type Consumer struct {
	// Durable is the consumer name: a valid NATS name, unique within the stream.
	// Step consumers are <step>_cmd and <step>_evt_<type with '.' as '_'>, cut
	// and hash-suffixed when longer than 64 characters or ambiguous. They all
	// contain '_', which step names cannot, so a name without '_' (such as the
	// read model's, or one a runtime role picks for itself) never collides with them.
	Durable string `json:"durable"`
	// FilterSubject is the subject the consumer reads.
	FilterSubject string `json:"filterSubject"`
	// Event is the event type, for event consumers; empty for commands.
	Event string `json:"event,omitempty"`
	// MaxAckPending bounds unacknowledged messages across the step's replicas:
	// the bulkhead times Replicas, so each pod handles at most the bulkhead's
	// maxConcurrent at once, as in the sync styles.
	MaxAckPending int32 `json:"maxAckPending"`
	// AckWait is how long a delivered message may stay unacknowledged before
	// redelivery: the step's attempt timeout plus slack.
	AckWait Duration `json:"ackWait"`
	// MaxDeliver is the retry attempts (Policy.Retry.Attempts); after it the
	// message is dead-lettered.
	MaxDeliver int32 `json:"maxDeliver"`
}

// EntryEmitter stands for the entry in EventRoute.Emitters: the gateway
// publishes Entry.Event for every request. The compiler refuses a step named
// "entry" in a workflow with an entry event.
const EntryEmitter = "entry"

// EventRoute is one event type with who emits and who subscribes to it.
type EventRoute struct {
	Type        string   `json:"type"`
	Subject     string   `json:"subject"`
	Emitters    []string `json:"emitters,omitempty"`    // steps, sorted; EntryEmitter for the entry event
	Subscribers []string `json:"subscribers,omitempty"` // steps, sorted
	// Completes is true when the event completes a run (entry.completesOn).
	Completes bool `json:"completes,omitempty"`
	// Projected is true when the read model projects the event.
	Projected bool `json:"projected,omitempty"`
}

// Stream is the workflow's JetStream stream and its subjects (docs/architecture.md, Names and ports):
// one stream per workflow over pb.<namespace>.<workflow>.>.
type Stream struct {
	// Name is the stream name: a valid JetStream name of bounded length.
	Name string `json:"name"`
	// Subjects is the stream's subject list: [pb.<namespace>.<workflow>.>].
	Subjects []string `json:"subjects"`
	// ResultPrefix is the prefix of the steps' result subjects
	// (pb.<namespace>.<workflow>.res), which the orchestrator consumes.
	ResultPrefix string `json:"resultPrefix"`
	// DeadLetter is the dead-letter subject (prefix.dlq).
	DeadLetter string `json:"deadLetter"`
	// IdempotencyBucket maps Idempotency-Keys to runs for
	// Entry.IdempotencyWindow.
	IdempotencyBucket string `json:"idempotencyBucket"`
	// DeadLetterStream keeps the dead letters (sourced from DeadLetter) for
	// DeadLetterRetention, beyond the workflow stream's 24h.
	DeadLetterStream    string   `json:"deadLetterStream"`
	DeadLetterRetention Duration `json:"deadLetterRetention"`
	// DeadlineDurable is the gateways' shared consumer of the messages that
	// start runs (StartSubject, or Entry.EventSubject in choreography), which
	// enforces the run deadline (RunTimeout).
	DeadlineDurable string `json:"deadlineDurable"`
	// OutputSubject (prefix.out) keeps the merged result of a run with
	// several sinks, which the run record refers to.
	OutputSubject string `json:"outputSubject,omitempty"`
	// DeadlineSubject (prefix.deadline) carries the deadline of a replayed
	// run to DeadlineDurable.
	DeadlineSubject string `json:"deadlineSubject"`
	// RunsBucket is the JetStream KV bucket with run state and outcomes.
	RunsBucket string `json:"runsBucket"`
	// StartSubject is where the gateway starts a run of an orchestrated flow
	// (async-orchestrated, hybrid): prefix.start. The message carries the entry
	// payload and the run ID in header Patchbay-Run-Id; the gateway has stored
	// the run as pending in RunsBucket first. Empty in choreography.
	StartSubject string `json:"startSubject,omitempty"`
	// OrchestratorDurable is the orchestrators' shared consumer of StartSubject
	// and of every result subject (ResultPrefix.>); empty without an orchestrator.
	OrchestratorDurable string `json:"orchestratorDurable,omitempty"`
	// CompletionDurable is the gateways' shared consumer of the Entry.CompletesOn
	// subjects and of DeadLetter, which completes or fails choreographed runs;
	// empty in the other styles.
	CompletionDurable string `json:"completionDurable,omitempty"`
}

// Read model modes (the Workflow's spec.readModel.mode).
const (
	ReadModelMerge   = "merge"
	ReadModelReplace = "replace"
)

// ReadModel is the CQRS projection of events into a KV bucket: one JSON
// document per key.
type ReadModel struct {
	Events []string `json:"events"`
	// Key is a JSON pointer into the event payload.
	Key string `json:"key"`
	// Mode is ReadModelMerge (an event is a JSON merge patch of its key's
	// document, RFC 7386) or ReadModelReplace (it becomes the document).
	Mode string `json:"mode"`
	// Fields are, per event type, the JSON pointers of the parts of the
	// event that the projection keeps; a type without an entry keeps all.
	Fields map[string][]string `json:"fields,omitempty"`
	// Bucket is the JetStream KV bucket of the read store.
	Bucket string `json:"bucket"`
	// Durable is the projector's consumer name.
	Durable string `json:"durable"`
}

// Policy is a fully resolved resilience policy: no field is unset.
type Policy struct {
	// Timeout bounds each attempt.
	Timeout        Duration       `json:"timeout"`
	Retry          Retry          `json:"retry"`
	CircuitBreaker CircuitBreaker `json:"circuitBreaker"`
	Bulkhead       Bulkhead       `json:"bulkhead"`
}

// Retry is a resolved retry policy.
type Retry struct {
	// Attempts counts the first attempt too.
	Attempts     int32    `json:"attempts"`
	Backoff      string   `json:"backoff"` // exponential | constant
	InitialDelay Duration `json:"initialDelay"`
	// MaxDelay caps the delay; with exponential backoff it is never below InitialDelay.
	MaxDelay Duration `json:"maxDelay"`
}

// CircuitBreaker is a resolved breaker policy.
type CircuitBreaker struct {
	ConsecutiveFailures int32    `json:"consecutiveFailures"`
	OpenDuration        Duration `json:"openDuration"`
	HalfOpenRequests    int32    `json:"halfOpenRequests"`
}

// Bulkhead is a resolved bulkhead policy.
type Bulkhead struct {
	MaxConcurrent int32 `json:"maxConcurrent"`
}

// EntryMaxConcurrent bounds the requests one gateway or orchestrator replica
// serves at once: the workflow's resilience.bulkhead.maxConcurrent, from which
// every step's policy resolves (the largest of the steps' when some override
// it, so that the entry never sheds load that every step could take).
func (p *Plan) EntryMaxConcurrent() int32 {
	var n int32
	for i := range p.Steps {
		n = max(n, p.Steps[i].Policy.Bulkhead.MaxConcurrent)
	}
	if n <= 0 {
		return 64 // v1alpha1.DefaultMaxConcurrent; a plan always resolves it
	}
	return n
}

// Step returns the named step, or nil.
func (p *Plan) Step(name string) *Step {
	for i := range p.Steps {
		if p.Steps[i].Name == name {
			return &p.Steps[i]
		}
	}
	return nil
}

// Roots are the orchestrated steps without dependencies, which an
// orchestrator commands first (Levels order); none in the styles without one.
func (p *Plan) Roots() []string {
	var out []string
	for _, level := range p.Levels {
		for _, name := range level {
			if st := p.Step(name); st != nil && st.Mode == ModeOrchestrated && len(st.DependsOn) == 0 {
				out = append(out, name)
			}
		}
	}
	return out
}

// Duration is a time.Duration that reads and writes JSON as a Go duration string ("2s").
type Duration struct{ time.Duration }

// D makes a Duration.
func D(d time.Duration) Duration { return Duration{d} }

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"2s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MaxBody is the size budget of the plan's payloads (MaxBodyLen, else
// DefaultMaxBodyLen for a plan written before it).
func (p *Plan) MaxBody() int64 {
	if p.MaxBodyLen > 0 {
		return p.MaxBodyLen
	}
	return DefaultMaxBodyLen
}

// MaxMessage is the largest message of the plan's stream and buckets: a
// payload of MaxBody with its headers.
func (p *Plan) MaxMessage() int64 { return p.MaxBody() + MaxHeaderLen }

// DrainPeriod bounds how long the pods of this plan may still have work in
// hand once the entry stops sending them requests: what a style switch waits
// before it deletes them (docs/operations.md, Switching style). In the sync
// styles it is Entry.Timeout, the deadline of a whole run. In the async ones
// it is the longer of Entry.Timeout (a caller the gateway holds) and the
// longest a run can take before it succeeds or is failed by a dead letter:
// along the DAG's levels, each level as long as its slowest step's every
// delivery (MaxDeliver attempts of AckWait plus the retry's longest delay),
// then every event-driven step in turn (an event chain has no cycle), and
// never longer than RunTimeout, the deadline at which a pending run is failed.
func (p *Plan) DrainPeriod() time.Duration {
	if p.Stream == nil {
		return p.Entry.Timeout.Duration
	}
	budget := func(st *Step) time.Duration {
		var longest time.Duration
		for _, c := range st.Consumers {
			longest = max(longest, time.Duration(c.MaxDeliver)*(c.AckWait.Duration+st.Policy.Retry.MaxDelay.Duration))
		}
		return longest
	}
	var run time.Duration
	for _, level := range p.Levels {
		var slowest time.Duration
		for _, n := range level {
			if st := p.Step(n); st != nil {
				slowest = max(slowest, budget(st))
			}
		}
		run += slowest
	}
	for i := range p.Steps {
		if p.Steps[i].Mode == ModeEvent {
			run += budget(&p.Steps[i])
		}
	}
	if d := p.RunTimeout.Duration; d > 0 {
		run = min(run, d)
	}
	return max(p.Entry.Timeout.Duration, run)
}
