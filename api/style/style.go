// Package style is the vocabulary of a Workflow's communication styles: the
// Style type of spec.style (v1alpha1.Style is an alias of it) and the
// questions asked of a style. It imports nothing, so that the data plane
// (internal/plan and the sidecar) knows the styles without linking the
// Kubernetes API types (docs/architecture.md, The runtime binaries).
package style

// Style says how requests and events travel between the steps of a Workflow.
// The Enum marker is controller-gen's (the CRD schema); v1alpha1.Style, the
// alias, repeats it for kube-api-linter, and a test keeps both equal to All.
// +kubebuilder:validation:Enum=sync-chain;sync-orchestrated;async-orchestrated;choreography;hybrid
type Style string

const (
	// SyncChain means each step's sidecar forwards its output to the next steps over HTTP.
	SyncChain Style = "sync-chain"
	// SyncOrchestrated means an orchestrator calls the steps over HTTP, each once its dependencies answered.
	SyncOrchestrated Style = "sync-orchestrated"
	// AsyncOrchestrated means an orchestrator drives the steps over NATS JetStream.
	AsyncOrchestrated Style = "async-orchestrated"
	// Choreography means steps react to events and emit events; nobody drives the flow.
	Choreography Style = "choreography"
	// Hybrid means an orchestrator for the explicit steps, events for the leaves.
	Hybrid Style = "hybrid"
)

// All lists every style, in the order the documentation gives them.
var All = []Style{SyncChain, SyncOrchestrated, AsyncOrchestrated, Choreography, Hybrid}

// IsAsync reports whether the style moves work over the broker.
func (s Style) IsAsync() bool {
	return s == AsyncOrchestrated || s == Choreography || s == Hybrid
}

// Code is the style's two-letter code. The children of a style carry it in
// their names (<workflow>-<code>-<step>), so that during a switch the
// children of the old and the new style run side by side (docs/operations.md,
// Switching style).
func (s Style) Code() string {
	switch s {
	case SyncChain:
		return "sc"
	case SyncOrchestrated:
		return "so"
	case AsyncOrchestrated:
		return "ao"
	case Choreography:
		return "ch"
	case Hybrid:
		return "hy"
	default:
		return "xx"
	}
}

// OfCode is the style whose Code is code, or "" for none.
func OfCode(code string) Style {
	for _, s := range All {
		if s.Code() == code {
			return s
		}
	}
	return ""
}

// HasEvents reports whether steps of this style may subscribe to and emit events.
func (s Style) HasEvents() bool { return s == Choreography || s == Hybrid }
