package render

// Settings are the operator-wide values that rendering needs beyond the Plan.
// The manager resolves them from its flags; render never falls back to defaults
// of its own, so the images in use are always the ones the operator was given.
type Settings struct {
	// RuntimeImage is the patchbay-runtime image of sidecars, orchestrators and gateways.
	RuntimeImage string
	// NATSImage is the NATS server image of Brokers that do not name their own.
	NATSImage string
	// ComponentReplicas is the number of orchestrator and gateway pods.
	ComponentReplicas int32
}
