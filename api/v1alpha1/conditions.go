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
	// ConditionSecretsAllowed is True when every Secret the steps read
	// (spec.steps[].env[].valueFrom.secretKeyRef, spec.steps[].envFrom[].secretRef)
	// exists, is labelled LabelStepReadable "true" and is not managed by patchbay.
	// False names each step, variable and Secret refused, and the fix; the
	// Deployment of a step it names is neither created nor updated.
	ConditionSecretsAllowed = "SecretsAllowed"
	// ConditionStepsReady is True when every step, orchestrator and gateway Deployment
	// has all its replicas ready; False while any is progressing.
	ConditionStepsReady = "StepsReady"
	// ConditionReady is True when Compiled, BrokerReady, SecretsAllowed and StepsReady all are;
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
	// ConditionReadModelCurrent is present when spec.readModel is: True when
	// the projection keeps up with the events (none pending, or it projected
	// one recently), False when events wait and it has projected none for a
	// while, Unknown when the gateway cannot say.
	ConditionReadModelCurrent = "ReadModelCurrent"
)

// LabelStepReadable on a Secret, with the value "true", lets the steps of the
// Workflows in its namespace read it (spec.steps[].env[].valueFrom.secretKeyRef,
// spec.steps[].envFrom[].secretRef). Whoever may label a Secret may already
// change it: the label is the namespace owner's consent. Secrets that patchbay
// manages (labelled app.kubernetes.io/managed-by: patchbay), such as broker
// credentials, are refused even with it.
const LabelStepReadable = "patchbay.dev/step-readable"

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
	ReasonCompiled        = "Compiled"
	ReasonCompileFailed   = "CompileFailed"
	ReasonBrokerNotFound  = "BrokerNotFound"
	ReasonBrokerNotReady  = "BrokerNotReady"
	ReasonBrokerReady     = "BrokerReady"
	ReasonBrokerNotNeeded = "BrokerNotNeeded"
	// ReasonBrokerCleanupPending: a deleted Workflow waits for its stream,
	// buckets and user to be deleted from its Broker, which does not answer.
	ReasonBrokerCleanupPending = "BrokerCleanupPending"
	// ReasonBrokerDeleting: the Workflow's Broker is being deleted.
	ReasonBrokerDeleting   = "BrokerDeleting"
	ReasonNameConflict     = "NameConflict"
	ReasonNameTooLong      = "NameTooLong"
	ReasonStepsReady       = "StepsReady"
	ReasonSecretsAllowed   = "SecretsAllowed"
	ReasonSecretNotAllowed = "SecretNotAllowed"
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
	// Reasons of ReadModelCurrent.
	ReasonReadModelCurrent     = "Current"
	ReasonReadModelProjecting  = "Projecting"
	ReasonReadModelLagging     = "Lagging"
	ReasonGatewayNotReady      = "GatewayNotReady"
	ReasonReadModelUnreachable = "ReadModelUnreachable"
	// ReasonStorageChangeRequiresRecreate is the reason of a False Ready (Broker)
	// when spec.jetstream changed what the StatefulSet's volumeClaimTemplates hold,
	// which the API server does not let anyone update. The message names the field
	// and the command that lets the operator apply it.
	ReasonStorageChangeRequiresRecreate = "StorageChangeRequiresRecreate"
)
