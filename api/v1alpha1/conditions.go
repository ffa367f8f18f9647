package v1alpha1

// Condition types of a Workflow. Each is set by exactly one setXCondition function
// in the controller.
const (
	// ConditionCompiled is True when the spec compiled into a plan; False carries the
	// compiler's message (a cycle, an unreachable step, an event nobody emits).
	ConditionCompiled = "Compiled"
	// ConditionBrokerReady is True when the Broker an async style needs is ready, or
	// when the style needs none; False when it is missing or not ready yet.
	ConditionBrokerReady = "BrokerReady"
	// ConditionStepsReady is True when every step, orchestrator and gateway Deployment
	// has all its replicas ready; False while any is progressing.
	ConditionStepsReady = "StepsReady"
	// ConditionReady is True when Compiled, BrokerReady and StepsReady all are;
	// False names the first that is not.
	ConditionReady = "Ready"
	// ConditionSwitching is True while a style switch is in progress: the new
	// style's children start, then the entry moves to them, then the earlier
	// styles' children drain and are deleted. Its reason says which of these it
	// waits for; False once only the current style's children remain.
	ConditionSwitching = "Switching"
	// ConditionStyleAdvised is True when spec.traffic fits the chosen style, False when
	// the pattern guidance suggests another style (the message says which and why),
	// Unknown when spec.traffic is not given.
	ConditionStyleAdvised = "StyleAdvised"
)

// Condition type of a Broker.
const (
	// ConditionBrokerAvailable is the Broker's Ready condition: True when every NATS
	// server is ready, False while any is not.
	ConditionBrokerAvailable = "Ready"
)

// Reasons of the Switching condition.
const (
	// ReasonNewStyleStarting: the new style's Deployments are not all ready;
	// the entry stays on the style it serves.
	ReasonNewStyleStarting = "NewStyleStarting"
	// ReasonEntryMoved: the entry has just moved to the new style.
	ReasonEntryMoved = "EntryMoved"
	// ReasonDrainingOldStyle: the earlier styles' children finish their work in
	// hand until their drain period ends.
	ReasonDrainingOldStyle = "DrainingOldStyle"
	// ReasonNoSwitch: only the current style's children run.
	ReasonNoSwitch = "NoSwitch"
)

// Condition reasons.
const (
	ReasonCompiled         = "Compiled"
	ReasonCompileFailed    = "CompileFailed"
	ReasonBrokerNotFound   = "BrokerNotFound"
	ReasonBrokerNotReady   = "BrokerNotReady"
	ReasonBrokerReady      = "BrokerReady"
	ReasonBrokerNotNeeded  = "BrokerNotNeeded"
	ReasonNameConflict     = "NameConflict"
	ReasonNameTooLong      = "NameTooLong"
	ReasonStepsReady       = "StepsReady"
	ReasonStepsProgressing = "StepsProgressing"
	ReasonReady            = "Ready"
	ReasonNotReady         = "NotReady"
	ReasonStyleFits        = "StyleFits"
	ReasonStyleMismatch    = "StyleMismatch"
	ReasonNoTraffic        = "NoTrafficGiven"
	ReasonReplicasReady    = "ReplicasReady"
	ReasonReplicasNotReady = "ReplicasNotReady"
	// ReasonApplyFailed is the reason of a False StepsReady and Ready (Workflow) or
	// Ready (Broker) when the API server refused a child: the live children may be
	// stale, so the owner is not ready whatever their replicas say. The message
	// carries the API server's errors.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonStorageChangeRequiresRecreate is the reason of a False Ready (Broker)
	// when spec.jetstream changed what the StatefulSet's volumeClaimTemplates hold,
	// which the API server does not let anyone update. The message names the field
	// and the command that lets the operator apply it.
	ReasonStorageChangeRequiresRecreate = "StorageChangeRequiresRecreate"
)
