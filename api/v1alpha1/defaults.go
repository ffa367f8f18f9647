package v1alpha1

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Defaults for every optional field live here, and only here: the compiler and
// the controllers resolve unset fields through these values, and the CRD leaves
// them unset so that a step's override can be told apart from an inherited value.
const (
	DefaultBrokerName   = "default"
	DefaultEntrySync    = true
	DefaultEntryTimeout = 10 * time.Second
	// DefaultIdempotencyWindow is how long an Idempotency-Key is remembered.
	DefaultIdempotencyWindow = 24 * time.Hour
	// DefaultDeadLetterRetention is how long dead letters are kept: 7 days.
	DefaultDeadLetterRetention = 7 * 24 * time.Hour
	DefaultStepPort            = int32(8080)
	DefaultStepPath            = "/"
	DefaultStepReplicas        = int32(1)
	DefaultTimeout             = 2 * time.Second
	DefaultRetryAttempts       = int32(3)
	DefaultBackoff             = BackoffExponential
	DefaultInitialDelay        = 100 * time.Millisecond
	DefaultMaxDelay            = 2 * time.Second
	DefaultFailures            = int32(5)
	DefaultOpenDuration        = 30 * time.Second
	DefaultHalfOpen            = int32(1)
	DefaultMaxConcurrent       = int32(64)
	DefaultBrokerReplicas      = int32(1)
	DefaultStorage             = StorageFile
)

// DefaultStorageSize is the JetStream volume size when spec.jetstream.size is unset.
var DefaultStorageSize = resource.MustParse("10Gi")

// BrokerName is the Broker this workflow uses.
func (w *Workflow) BrokerName() string {
	if w.Spec.Broker != nil && w.Spec.Broker.Name != "" {
		return w.Spec.Broker.Name
	}
	return DefaultBrokerName
}

// EntrySync reports whether callers are held until the run completes.
func (e *Entry) EntrySync() bool {
	if e == nil || e.Sync == nil {
		return DefaultEntrySync
	}
	return *e.Sync
}

// EntryTimeout is how long a synchronous caller is held.
func (e *Entry) EntryTimeout() time.Duration {
	if e == nil || e.Timeout == nil {
		return DefaultEntryTimeout
	}
	return e.Timeout.Duration
}

// EntryIdempotencyWindow is how long an Idempotency-Key is remembered.
func (e *Entry) EntryIdempotencyWindow() time.Duration {
	if e == nil || e.IdempotencyWindow == nil {
		return DefaultIdempotencyWindow
	}
	return e.IdempotencyWindow.Duration
}

// RunDeadline is how long a run of an async style may take: spec.runTimeout,
// else entry.timeout.
func (s *WorkflowSpec) RunDeadline() time.Duration {
	if s.RunTimeout != nil {
		return s.RunTimeout.Duration
	}
	return s.Entry.EntryTimeout()
}

// DeadLetterRetention is how long dead letters are kept.
func (s *WorkflowSpec) DeadLetterRetention() time.Duration {
	if s.DeadLetters == nil || s.DeadLetters.Retention == nil {
		return DefaultDeadLetterRetention
	}
	return s.DeadLetters.Retention.Duration
}

// AppPort is the port the step's app listens on.
func (s *Step) AppPort() int32 {
	if s.Port != nil {
		return *s.Port
	}
	return DefaultStepPort
}

// AppPath is the path the sidecar posts to.
func (s *Step) AppPath() string {
	if s.Path != "" {
		return s.Path
	}
	return DefaultStepPath
}

// DesiredReplicas is the number of pods of the step.
func (s *Step) DesiredReplicas() int32 {
	if s.Replicas != nil {
		return *s.Replicas
	}
	return DefaultStepReplicas
}

// DesiredReplicas is the number of NATS servers.
func (b *Broker) DesiredReplicas() int32 {
	if b.Spec.Replicas != nil {
		return *b.Spec.Replicas
	}
	return DefaultBrokerReplicas
}

// StorageKind is where JetStream keeps its streams.
func (b *Broker) StorageKind() Storage {
	if b.Spec.JetStream != nil && b.Spec.JetStream.Storage != "" {
		return b.Spec.JetStream.Storage
	}
	return DefaultStorage
}

// StorageSize is the JetStream volume size or memory limit.
func (b *Broker) StorageSize() resource.Quantity {
	if b.Spec.JetStream != nil && b.Spec.JetStream.Size != nil {
		return *b.Spec.JetStream.Size
	}
	return DefaultStorageSize.DeepCopy()
}
