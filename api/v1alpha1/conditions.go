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

// Condition type of a Broker.
const (
	// ConditionBrokerAvailable is the Broker's Ready condition: True when every NATS
	// server is ready, False while any is not.
	ConditionBrokerAvailable = "Ready"
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
