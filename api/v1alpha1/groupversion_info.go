// Package v1alpha1 holds the patchbay.dev/v1alpha1 API: Workflow and Broker.
//
// +kubebuilder:object:generate=true
// +groupName=patchbay.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "patchbay.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a scheme. It is
	// apimachinery's, as in k8s.io/api, so that importing the API types pulls
	// in no controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Workflow{}, &WorkflowList{}, &Broker{}, &BrokerList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
