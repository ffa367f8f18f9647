package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/api/style"
)

// Style says how requests and events travel between the steps of a Workflow.
// It is defined, with the questions asked of it (IsAsync, HasEvents, Code), in
// package style, which the data plane links without the Kubernetes types.
// +kubebuilder:validation:Enum=sync-chain;sync-orchestrated;async-orchestrated;choreography;hybrid
type Style = style.Style

// The styles (package style).
const (
	// StyleSyncChain means each step's sidecar forwards its output to the next steps over HTTP.
	StyleSyncChain = style.SyncChain
	// StyleSyncOrchestrated means an orchestrator calls the steps over HTTP, each once its dependencies answered.
	StyleSyncOrchestrated = style.SyncOrchestrated
	// StyleAsyncOrchestrated means an orchestrator drives the steps over NATS JetStream.
	StyleAsyncOrchestrated = style.AsyncOrchestrated
	// StyleChoreography means steps react to events and emit events; nobody drives the flow.
	StyleChoreography = style.Choreography
	// StyleHybrid means an orchestrator for the explicit steps, events for the leaves.
	StyleHybrid = style.Hybrid
)

// Styles lists every style, in the order the documentation gives them.
var Styles = style.All

// StyleOfCode is the style whose Code is code, or "" for none.
func StyleOfCode(code string) Style { return style.OfCode(code) }

// WorkflowSpec is the desired topology: the steps and the style that connects them.
//
// +kubebuilder:validation:XValidation:rule="self.style != 'choreography' || self.steps.all(s, !has(s.dependsOn) || size(s.dependsOn) == 0)",message="spec.steps[].dependsOn is not allowed in style choreography: steps react to events there; use subscribes and emits, or pick an orchestrated style"
// +kubebuilder:validation:XValidation:rule="self.style == 'choreography' || self.style == 'hybrid' || self.steps.all(s, (!has(s.subscribes) || size(s.subscribes) == 0) && (!has(s.emits) || size(s.emits) == 0))",message="spec.steps[].subscribes and spec.steps[].emits are allowed only in styles choreography and hybrid: remove them or change spec.style"
// +kubebuilder:validation:XValidation:rule="self.style != 'sync-chain' || size(self.steps.filter(s, !has(s.dependsOn) || size(s.dependsOn) == 0)) == 1",message="spec.steps: style sync-chain needs exactly one root step (a step without dependsOn) that receives the request"
// +kubebuilder:validation:XValidation:rule="self.style != 'choreography' || (has(self.entry) && has(self.entry.event))",message="spec.entry.event is required in style choreography: name the event a request becomes"
// +kubebuilder:validation:XValidation:rule="self.style != 'choreography' || !has(self.entry) || (has(self.entry.sync) && !self.entry.sync) || (has(self.entry.completesOn) && size(self.entry.completesOn) > 0)",message="spec.entry.completesOn is required in style choreography when spec.entry.sync is true (the default): name the events that complete a run, or set spec.entry.sync to false"
// +kubebuilder:validation:XValidation:rule="self.style == 'choreography' || self.style == 'hybrid' || !has(self.entry) || !has(self.entry.event) || size(self.entry.event) == 0",message="spec.entry.event is allowed only in styles choreography and hybrid: remove it or change spec.style"
// +kubebuilder:validation:XValidation:rule="self.style == 'choreography' || !has(self.entry) || !has(self.entry.completesOn) || size(self.entry.completesOn) == 0",message="spec.entry.completesOn is allowed only in style choreography: a hybrid run completes when its orchestrated sink steps finish, and the other styles complete when their last step answers"
// +kubebuilder:validation:XValidation:rule="self.style.startsWith('async') || self.style == 'choreography' || self.style == 'hybrid' || !has(self.entry) || !has(self.entry.sync) || self.entry.sync",message="spec.entry.sync: false needs an async style, where the gateway keeps runs and answers 202 with Location: /runs/{id}; the sync styles always answer synchronously, so remove it or change spec.style"
// +kubebuilder:validation:XValidation:rule="self.style != 'choreography' || self.steps.all(s, has(s.subscribes) && size(s.subscribes) > 0)",message="spec.steps[].subscribes is required for every step in style choreography: steps react to events there, so name the events each step reacts to"
// +kubebuilder:validation:XValidation:rule="self.style != 'hybrid' || self.steps.exists(s, !has(s.subscribes) || size(s.subscribes) == 0)",message="spec.steps: style hybrid needs at least one orchestrated step (one without subscribes); use style choreography for a flow of events only"
// +kubebuilder:validation:XValidation:rule="self.style != 'sync-chain' || self.steps.all(s, !has(s.dependsOn) || size(s.dependsOn) <= 1)",message="spec.steps[].dependsOn: in style sync-chain a step follows exactly one step, because nobody merges outputs; use sync-orchestrated for fan-in"
// +kubebuilder:validation:XValidation:rule="!has(self.entry) || !has(self.entry.event) || !self.steps.exists(s, s.name == 'entry')",message="spec.steps[].name: entry is reserved when spec.entry.event is set, because the event routing table names the request's event so; rename the step"
// +kubebuilder:validation:XValidation:rule="!has(self.readModel) || self.style == 'choreography' || self.style == 'hybrid'",message="spec.readModel projects events, so it needs style choreography or hybrid"
// +kubebuilder:validation:XValidation:rule="self.steps.all(s, !has(s.subscribes) || s.subscribes.all(e, (has(self.entry) && has(self.entry.event) && self.entry.event == e) || self.steps.exists(t, has(t.emits) && e in t.emits)))",message="spec.steps[].subscribes names an event that no step emits and that is not spec.entry.event: add the event to some step's emits or fix the name"
type WorkflowSpec struct {
	// style is how the steps are connected: sync-chain, sync-orchestrated,
	// async-orchestrated, choreography or hybrid. Changing it re-renders the topology.
	// +required
	Style Style `json:"style,omitempty"`

	// broker names the Broker in this namespace that carries messages for the
	// async styles (async-orchestrated, choreography, hybrid). Ignored by the sync styles.
	// +optional
	Broker *BrokerRef `json:"broker,omitempty"`

	// entry says how callers start a run.
	// +optional
	Entry *Entry `json:"entry,omitempty"`

	// resilience is the policy for every hop of this workflow; a step may override any part.
	// +optional
	Resilience *Resilience `json:"resilience,omitempty"`

	// traffic is the expected load; it lets the operator advise on the style
	// through the StyleAdvised condition.
	// +optional
	Traffic *Traffic `json:"traffic,omitempty"`

	// steps are the services of this workflow, each an HTTP container.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(s, !has(s.dependsOn) || s.dependsOn.all(d, self.exists(t, t.name == d)))",message="spec.steps[].dependsOn must name steps of this workflow: a listed step does not exist"
	Steps []Step `json:"steps,omitempty"`

	// readModel is an optional CQRS projection of events into a key-value read store
	// that the gateway serves at GET /query/{key}.
	// +optional
	ReadModel *ReadModel `json:"readModel,omitempty"`

	// runTimeout is the deadline of a run in the async styles: a run that has
	// not finished by then fails with 504 Gateway Timeout, naming the step it
	// waits on, and is dead-lettered. Defaults to entry.timeout. At most 24h,
	// the time run records are kept. The sync styles use entry.timeout and
	// keep runTimeout for a switch back to an async style.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('24h')",message="spec.runTimeout must be a positive duration of at most 24h such as 30s, 5m or 2h"
	RunTimeout *metav1.Duration `json:"runTimeout,omitempty"`

	// deadLetters says how long the dead letters of the async styles are kept.
	// A sync style, which answers the caller with the error, keeps it for a
	// switch back.
	// +optional
	DeadLetters *DeadLetters `json:"deadLetters,omitempty"`
}

// DeadLetters configures a workflow's dead-letter stream (docs/operations.md, Dead letters).
type DeadLetters struct {
	// retention is how long a dead letter is kept for inspection and replay.
	// Defaults to 168h (7 days); from 1h to 2160h (90 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('1h') && duration(self) <= duration('2160h')",message="spec.deadLetters.retention must be a duration from 1h to 2160h (90 days) such as 168h"
	Retention *metav1.Duration `json:"retention,omitempty"`
}

// BrokerRef names a Broker in the Workflow's namespace.
type BrokerRef struct {
	// name of the Broker. Defaults to "default".
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="spec.broker.name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	Name string `json:"name,omitempty"`
}

// Entry says how a run starts and when a synchronous caller gets its answer.
type Entry struct {
	// sync serves a synchronous endpoint that holds the caller until the run
	// completes (for async styles, through the gateway). Defaults to true.
	// +optional
	Sync *bool `json:"sync,omitempty"`

	// timeout is how long a synchronous caller is held; after it the caller gets
	// 202 Accepted with Location: /runs/{id}. Defaults to 10s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) > duration('0s')",message="spec.entry.timeout must be a positive duration such as 500ms, 10s or 1m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// idempotencyWindow is how long the gateway of an async style remembers
	// an Idempotency-Key: a POST with a key it saw within the window gets
	// the run the key started (same id, same result) instead of a new one.
	// Defaults to 24h, the time run records are kept; at most 24h. A sync
	// style keeps it for a switch back.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="spec.entry.idempotencyWindow must be a duration from 1s to 24h such as 10m or 24h"
	IdempotencyWindow *metav1.Duration `json:"idempotencyWindow,omitempty"`

	// event is the event type a request becomes (choreography, and optionally hybrid).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_-]+(\\\\.[A-Za-z0-9_-]+)*$')",message="spec.entry.event must be dot-separated words of letters, digits, '-' and '_', such as order.requested"
	Event string `json:"event,omitempty"`

	// completesOn lists the event types that complete a run (choreography).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[A-Za-z0-9_-]+(\\\\.[A-Za-z0-9_-]+)*$')",message="spec.entry.completesOn[] must be event types: dot-separated words of letters, digits, '-' and '_'"
	CompletesOn []string `json:"completesOn,omitempty"`
}

// Resilience is the policy applied to a hop. Every part is optional: a step's
// value overrides the workflow's, which overrides the project's defaults.
type Resilience struct {
	// timeout bounds each attempt. Defaults to 2s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) > duration('0s')",message="resilience.timeout must be a positive duration such as 500ms or 2s"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// retry says how failed attempts are repeated.
	// +optional
	Retry *Retry `json:"retry,omitempty"`

	// circuitBreaker stops calling a failing step for a while.
	// +optional
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`

	// bulkhead bounds the requests a step handles at once.
	// +optional
	Bulkhead *Bulkhead `json:"bulkhead,omitempty"`
}

// Backoff is how the delay between retries grows.
// +kubebuilder:validation:Enum=exponential;constant
type Backoff string

const (
	// BackoffExponential doubles the delay after every attempt, with jitter, up to maxDelay.
	BackoffExponential Backoff = "exponential"
	// BackoffConstant waits initialDelay between attempts.
	BackoffConstant Backoff = "constant"
)

// Retry repeats attempts that failed with 408, 429, 5xx, a connect error or a timeout.
//
// +kubebuilder:validation:XValidation:rule="!has(self.initialDelay) || !has(self.maxDelay) || duration(self.initialDelay) <= duration(self.maxDelay)",message="resilience.retry.initialDelay must not be longer than resilience.retry.maxDelay"
type Retry struct {
	// attempts is the total number of attempts, the first included (1 means no retry).
	// Defaults to 3.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Attempts *int32 `json:"attempts,omitempty"`

	// backoff is exponential or constant. Defaults to exponential.
	// +optional
	Backoff Backoff `json:"backoff,omitempty"`

	// initialDelay is the delay before the second attempt. Defaults to 100ms.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) > duration('0s')",message="resilience.retry.initialDelay must be a positive duration such as 100ms"
	InitialDelay *metav1.Duration `json:"initialDelay,omitempty"`

	// maxDelay caps the delay between attempts. Defaults to 2s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) > duration('0s')",message="resilience.retry.maxDelay must be a positive duration such as 2s"
	MaxDelay *metav1.Duration `json:"maxDelay,omitempty"`
}

// CircuitBreaker opens after consecutive failures and rejects calls at once
// until openDuration passes; then halfOpenRequests probes decide.
type CircuitBreaker struct {
	// consecutiveFailures opens the breaker. Defaults to 5.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	ConsecutiveFailures *int32 `json:"consecutiveFailures,omitempty"`

	// openDuration is how long the breaker stays open. Defaults to 30s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) > duration('0s')",message="resilience.circuitBreaker.openDuration must be a positive duration such as 30s"
	OpenDuration *metav1.Duration `json:"openDuration,omitempty"`

	// halfOpenRequests is how many probes may pass while half-open. Defaults to 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	HalfOpenRequests *int32 `json:"halfOpenRequests,omitempty"`
}

// Bulkhead bounds concurrency; requests over the bound are rejected, not queued.
type Bulkhead struct {
	// maxConcurrent is the most requests a step handles at once. Defaults to 64.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxConcurrent *int32 `json:"maxConcurrent,omitempty"`
}

// Traffic is the expected load, used only for style advice.
type Traffic struct {
	// readsPerSecond is the expected rate of read requests.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ReadsPerSecond int32 `json:"readsPerSecond,omitempty"`

	// writesPerSecond is the expected rate of write requests.
	// +optional
	// +kubebuilder:validation:Minimum=0
	WritesPerSecond int32 `json:"writesPerSecond,omitempty"`
}

// Step is one service of the workflow: a container that serves HTTP.
//
// +kubebuilder:validation:XValidation:rule="!has(self.dependsOn) || !(self.name in self.dependsOn)",message="spec.steps[].dependsOn: a step cannot depend on itself"
// +kubebuilder:validation:XValidation:rule="!has(self.dependsOn) || size(self.dependsOn) == 0 || !has(self.subscribes) || size(self.subscribes) == 0",message="spec.steps[]: a step is driven either by dependsOn or by subscribes, not both"
type Step struct {
	// name identifies the step; children are named <workflow>-<name>.
	// It is a DNS label; orchestrator and gateway are reserved.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="spec.steps[].name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="!(self in ['orchestrator', 'gateway'])",message="spec.steps[].name: orchestrator and gateway are reserved for patchbay's own components; rename the step"
	Name string `json:"name,omitempty"`

	// image is the step's container image.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// port is the port the app listens on. Defaults to 8080; 15080 and 15090 belong to the sidecar.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:validation:XValidation:rule="self != 15080 && self != 15090",message="spec.steps[].port must not be 15080 or 15090: the sidecar listens there; pick another port"
	Port *int32 `json:"port,omitempty"`

	// path is the HTTP path the sidecar posts to. Defaults to /.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="spec.steps[].path must start with '/'"
	Path string `json:"path,omitempty"`

	// replicas is the number of pods of this step. Defaults to 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Replicas *int32 `json:"replicas,omitempty"`

	// dependsOn lists the steps whose output this step takes as input
	// (orchestrated styles and sync-chain). Steps whose dependencies are met run in parallel.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	DependsOn []string `json:"dependsOn,omitempty"`

	// subscribes lists the event types this step reacts to (choreography, hybrid).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[A-Za-z0-9_-]+(\\\\.[A-Za-z0-9_-]+)*$')",message="spec.steps[].subscribes[] must be event types: dot-separated words of letters, digits, '-' and '_'"
	Subscribes []string `json:"subscribes,omitempty"`

	// emits lists the event types this step's output may be published as (choreography, hybrid):
	// the app names one in its answer's Ce-Type header, or the step declares exactly one.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[A-Za-z0-9_-]+(\\\\.[A-Za-z0-9_-]+)*$')",message="spec.steps[].emits[] must be event types: dot-separated words of letters, digits, '-' and '_'"
	Emits []string `json:"emits,omitempty"`

	// resilience overrides parts of the workflow's policy for calls to this step.
	// +optional
	Resilience *Resilience `json:"resilience,omitempty"`

	// command overrides the image's entrypoint, as in a core/v1 Container.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=4096
	Command []string `json:"command,omitempty"`

	// args are the arguments to the entrypoint, as in a core/v1 Container.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=4096
	Args []string `json:"args,omitempty"`

	// env sets environment variables in the app container, as in a core/v1 Container.
	// A valueFrom.secretKeyRef may name only a Secret of the namespace labelled
	// patchbay.dev/step-readable: "true" that patchbay does not manage; the
	// SecretsAllowed condition reports any other, and the step's Deployment is
	// then not updated.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:XValidation:rule="!has(self.valueFrom) || !has(self.valueFrom.secretKeyRef) || (has(self.valueFrom.secretKeyRef.name) && size(self.valueFrom.secretKeyRef.name) > 0)",message="spec.steps[].env[].valueFrom.secretKeyRef.name must name a Secret"
	Env []corev1.EnvVar `json:"env,omitempty"`

	// envFrom sets environment variables in the app container from every key
	// of a ConfigMap or a Secret, as in a core/v1 Container. A secretRef is
	// allowed as env's secretKeyRef is.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:XValidation:rule="has(self.configMapRef) != has(self.secretRef)",message="spec.steps[].envFrom[] must set exactly one of configMapRef and secretRef"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.secretRef) || (has(self.secretRef.name) && size(self.secretRef.name) > 0)",message="spec.steps[].envFrom[].secretRef.name must name a Secret"
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`

	// resources are the app container's compute resources, as in a core/v1 Container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// ReadModelMode is how an event updates its key's document.
// +kubebuilder:validation:Enum=merge;replace
type ReadModelMode string

// Read model modes.
const (
	// ReadModelMerge applies each event (or its selected fields) to the
	// document as a JSON merge patch (RFC 7386).
	ReadModelMerge ReadModelMode = "merge"
	// ReadModelReplace makes each event (or its selected fields) the document.
	ReadModelReplace ReadModelMode = "replace"
)

// ReadModel projects events into a JetStream key-value read store (CQRS):
// one JSON document per key.
// +kubebuilder:validation:XValidation:rule="!has(self.fields) || self.fields.all(f, f.event in self.events)",message="spec.readModel.fields[].event must be one of spec.readModel.events: only projected events have fields to select"
type ReadModel struct {
	// events lists the event types projected into the read store.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[A-Za-z0-9_-]+(\\\\.[A-Za-z0-9_-]+)*$')",message="spec.readModel.events[] must be event types: dot-separated words of letters, digits, '-' and '_'"
	Events []string `json:"events,omitempty"`

	// key is a JSON pointer (RFC 6901) into the event payload whose value keys the entry, such as /orderId.
	// +required
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^(/([^/~]|~[01])*)+$')",message="spec.readModel.key must be a JSON pointer such as /orderId"
	Key string `json:"key,omitempty"`

	// mode is how an event updates its key's document: merge (the default)
	// applies the event as a JSON merge patch (RFC 7386), so that the
	// document gathers the fields of every event of its key; replace makes
	// the latest event the document.
	// +optional
	Mode ReadModelMode `json:"mode,omitempty"`

	// fields selects, per event type, the parts of the event that reach the
	// document; an event type not listed projects its whole payload.
	// +optional
	// +listType=map
	// +listMapKey=event
	// +kubebuilder:validation:MaxItems=16
	Fields []ReadModelFields `json:"fields,omitempty"`
}

// ReadModelFields selects the parts of one event type that the read model projects.
type ReadModelFields struct {
	// event is the event type, one of spec.readModel.events.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_-]+(\\\\.[A-Za-z0-9_-]+)*$')",message="spec.readModel.fields[].event must be an event type: dot-separated words of letters, digits, '-' and '_'"
	Event string `json:"event,omitempty"`

	// select are JSON pointers (RFC 6901) into the event payload, such as
	// /status or /payment/amount: the document receives these values at
	// the same places, and a pointer the event lacks is left out.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^(/([^/~]|~[01])*)+$')",message="spec.readModel.fields[].select[] must be JSON pointers such as /status"
	Select []string `json:"select,omitempty"`
}

// StepStatus is the observed state of one step's Deployment.
type StepStatus struct {
	// name of the step.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name,omitempty"`
	// replicas is the desired number of pods.
	// +optional
	Replicas int32 `json:"replicas"`
	// readyReplicas is the number of ready pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
}

// RetiringStyle is an earlier style of a Workflow whose children still run.
type RetiringStyle struct {
	// style is the earlier style.
	// +required
	Style Style `json:"style,omitempty"`

	// drainUntil is when its children are deleted: set when the entry moved to
	// the current style, to that time plus the style's drain period (its
	// longest run, or entry.timeout in the sync styles). Unset while the entry
	// still serves an earlier style.
	// +optional
	DrainUntil *metav1.Time `json:"drainUntil,omitempty"`
}

// WorkflowStatus is the observed state of a Workflow.
type WorkflowStatus struct {
	// observedGeneration is the generation the last successful reconcile acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// endpoint is the URL callers use to start a run.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Endpoint string `json:"endpoint,omitempty"`

	// planHash identifies the compiled plan the pods run.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	PlanHash string `json:"planHash,omitempty"`

	// readySteps is "ready/total": steps whose every replica is ready, over all steps.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=16
	ReadySteps string `json:"readySteps,omitempty"`

	// steps is the readiness of each step.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Steps []StepStatus `json:"steps,omitempty"`

	// retiring are the earlier styles whose children still run while a style
	// switch drains them (docs/operations.md, Switching style); empty when no
	// switch is in progress.
	// +optional
	// +listType=map
	// +listMapKey=style
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5
	Retiring []RetiringStyle `json:"retiring,omitempty"`

	// conditions are the Workflow's conditions: Compiled, BrokerReady, SecretsAllowed, StepsReady, Ready, Switching and StyleAdvised.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Workflow is a set of HTTP services and the communication style that connects them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=wf,categories=patchbay
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 47",message="metadata.name of a Workflow must be a DNS label (lowercase letters, digits and '-') of at most 47 characters, so that <name>-<style code>-orchestrator fits a Service name: it prefixes the names of its Services and its NATS subjects"
// +kubebuilder:printcolumn:name="Style",type=string,JSONPath=`.spec.style`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Steps",type=string,JSONPath=`.status.readySteps`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Workflow struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired topology.
	// +required
	Spec WorkflowSpec `json:"spec,omitzero"`

	// status is the observed state.
	// +optional
	Status WorkflowStatus `json:"status,omitempty"`
}

// WorkflowList is a list of Workflows.
//
// +kubebuilder:object:root=true
type WorkflowList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Workflow `json:"items"`
}
