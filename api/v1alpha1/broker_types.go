package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Storage is where JetStream keeps its streams.
// +kubebuilder:validation:Enum=file;memory
type Storage string

const (
	// StorageFile keeps streams on a PersistentVolume of every NATS pod.
	StorageFile Storage = "file"
	// StorageMemory keeps streams in memory; they do not survive a restart.
	StorageMemory Storage = "memory"
)

// BrokerSpec is the desired NATS cluster.
type BrokerSpec struct {
	// replicas is the number of NATS servers: 1, 3 or 5 (odd, for JetStream's quorum). Defaults to 1.
	// +optional
	// +kubebuilder:validation:Enum=1;3;5
	Replicas *int32 `json:"replicas,omitempty"`

	// image is the NATS server image. Defaults to the operator's --nats-image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// jetstream configures persistence.
	// +optional
	JetStream *JetStream `json:"jetstream,omitempty"`
}

// JetStream configures where and how much the broker stores.
type JetStream struct {
	// storage is file or memory. Defaults to file.
	// +optional
	Storage Storage `json:"storage,omitempty"`

	// size is the volume size per server (file) or the memory limit (memory). Defaults to 10Gi.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// storageClassName is the StorageClass of the volumes; empty means the cluster default.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// BrokerStatus is the observed state of a Broker.
type BrokerStatus struct {
	// observedGeneration is the generation the last successful reconcile acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// url is the client URL of the NATS cluster.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	URL string `json:"url,omitempty"`

	// replicas is the number of NATS servers the Broker runs with: spec.replicas
	// once applied. While a storage change is held (Ready is
	// StorageChangeRequiresRecreate), it stays what the servers run, and so do
	// the streams of the Workflows that use the Broker.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// storage is the JetStream storage the servers run with: spec.jetstream.storage
	// once applied, the previous one while a storage change is held. Workflows
	// create their streams and buckets with it.
	// +optional
	Storage Storage `json:"storage,omitempty"`

	// readyReplicas is the number of ready NATS servers.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// conditions are the Broker's conditions: Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Broker owns one NATS cluster with JetStream that async Workflows in its namespace use.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=patchbay
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Broker struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired NATS cluster.
	// +optional
	Spec BrokerSpec `json:"spec,omitempty"`

	// status is the observed state.
	// +optional
	Status BrokerStatus `json:"status,omitempty"`
}

// BrokerList is a list of Brokers.
//
// +kubebuilder:object:root=true
type BrokerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Broker `json:"items"`
}
